//! A private `containerd` (Debian's 1.6) with its own root, state and socket under a temp dir:
//! the reference puller/unpacker the e2e tests and the benchmark compare deckhand with.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::util::{run_checked, wait_for, ChildGuard};

pub struct Containerd {
    pub dir: tempfile::TempDir,
    pub socket: PathBuf,
    child: ChildGuard,
}

/// containerd's config: only content, metadata and snapshots are needed, so the CRI plugin is
/// disabled (it would also want to manage the host's OOM score and CNI).
pub fn config_toml(dir: &Path) -> String {
    format!(
        r#"version = 2
root = "{root}"
state = "{state}"
disabled_plugins = ["io.containerd.grpc.v1.cri"]

[grpc]
  address = "{dir}/containerd.sock"

[ttrpc]
  address = "{dir}/containerd.sock.ttrpc"

[debug]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = "{dir}/opt"
"#,
        root = dir.join("root").display(),
        state = dir.join("state").display(),
        dir = dir.display(),
    )
}

impl Containerd {
    pub fn start() -> Result<Containerd> {
        let dir = tempfile::Builder::new()
            .prefix("deckhand-containerd-")
            .tempdir()?;
        let cfg = dir.path().join("config.toml");
        fs::write(&cfg, config_toml(dir.path()))?;
        let socket = dir.path().join("containerd.sock");
        let log = fs::File::create(dir.path().join("containerd.log"))?;
        let child = Command::new("containerd")
            .arg("--config")
            .arg(&cfg)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("spawn containerd")?;
        let mut child = ChildGuard::new(child);
        let ready = wait_for(Duration::from_secs(20), || {
            if let Ok(Some(_)) = child.0.try_wait() {
                return Some(false);
            }
            let ok = socket.exists()
                && Command::new("ctr")
                    .arg("-a")
                    .arg(&socket)
                    .arg("version")
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status()
                    .map(|s| s.success())
                    .unwrap_or(false);
            ok.then_some(true)
        });
        if ready != Some(true) {
            let log = fs::read_to_string(dir.path().join("containerd.log")).unwrap_or_default();
            bail!("containerd did not come up:\n{log}");
        }
        Ok(Containerd { dir, socket, child })
    }

    /// A `ctr -a <socket> -n <namespace>` command.
    pub fn ctr(&self, namespace: &str) -> Command {
        let mut c = Command::new("ctr");
        c.arg("-a").arg(&self.socket).arg("-n").arg(namespace);
        c
    }

    /// `ctr images pull --plain-http [--user creds] [--platform p] <reference>`.
    pub fn pull(
        &self,
        namespace: &str,
        reference: &str,
        creds: Option<&str>,
        platform: Option<&str>,
    ) -> Result<()> {
        let mut c = self.ctr(namespace);
        c.args(["images", "pull", "--plain-http"]);
        if let Some(u) = creds {
            c.arg("--user").arg(u);
        }
        if let Some(p) = platform {
            c.arg("--platform").arg(p);
        }
        c.arg(reference);
        run_checked(&mut c)?;
        Ok(())
    }

    /// Mounts the image's rootfs read-only (`ctr images mount`); unmounted on drop.
    pub fn mount(&self, namespace: &str, reference: &str, target: &Path) -> Result<CtrMount> {
        fs::create_dir_all(target)?;
        run_checked(
            self.ctr(namespace)
                .args(["images", "mount", "--rw=false"])
                .arg(reference)
                .arg(target),
        )?;
        Ok(CtrMount {
            target: target.to_path_buf(),
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.0.id()
    }
}

pub struct CtrMount {
    pub target: PathBuf,
}

impl Drop for CtrMount {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.target, nix::mount::MntFlags::MNT_DETACH);
    }
}
