//! A private `containerd` (Debian's 1.6) with its own root, state and socket under a temp dir:
//! the reference puller/unpacker the e2e tests and the benchmark compare deckhand with, and,
//! with the CRI plugin enabled ([`Containerd::start_cri`]), the reference CRI runtime of the
//! CRI conformance suite.

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
    /// Started with the CRI plugin: on drop, its shims are killed and its mounts removed too.
    cri: bool,
}

/// What the CRI plugin needs to know about the test environment.
#[derive(Clone, Debug)]
pub struct CriOptions {
    /// `127.0.0.1:<port>` of the test registry (plain HTTP; configured as a mirror of itself).
    pub registry_host: String,
    /// The pod sandbox image, pulled from the test registry on the first RunPodSandbox.
    pub sandbox_image: String,
    /// Directory holding the CNI conflist (see [`crate::cri_env::write_cni_conflist`]).
    pub cni_conf_dir: PathBuf,
    /// Usually `/usr/lib/cni` (Debian's containernetworking-plugins).
    pub cni_bin_dir: PathBuf,
}

/// containerd's config with the CRI plugin: runc v2 shims, cgroupfs (no systemd),
/// overlayfs, `restrict_oom_score_adj` (the build hosts lack CAP_SYS_RESOURCE, so raising a
/// container's OOM score below containerd's own would fail), pod network namespaces pinned
/// under the state dir rather than `/var/run/netns`, and the test registry as a plain-HTTP
/// mirror of itself.
pub fn cri_config_toml(dir: &Path, o: &CriOptions) -> String {
    format!(
        r#"version = 2
root = "{root}"
state = "{state}"
oom_score = 0

[grpc]
  address = "{dir}/containerd.sock"

[ttrpc]
  address = "{dir}/containerd.sock.ttrpc"

[debug]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = "{dir}/opt"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{sandbox}"
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  enable_selinux = false
  disable_apparmor = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  max_container_log_line_size = 16384

[plugins."io.containerd.grpc.v1.cri".containerd]
  snapshotter = "overlayfs"
  default_runtime_name = "runc"

[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"

[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
  SystemdCgroup = false

[plugins."io.containerd.grpc.v1.cri".cni]
  bin_dir = "{cni_bin}"
  conf_dir = "{cni_conf}"
  max_conf_num = 1

[plugins."io.containerd.grpc.v1.cri".registry.mirrors."{reg}"]
  endpoint = ["http://{reg}"]

[plugins."io.containerd.grpc.v1.cri".registry.configs."{reg}".tls]
  insecure_skip_verify = true
"#,
        root = dir.join("root").display(),
        state = dir.join("state").display(),
        dir = dir.display(),
        sandbox = o.sandbox_image,
        cni_bin = o.cni_bin_dir.display(),
        cni_conf = o.cni_conf_dir.display(),
        reg = o.registry_host,
    )
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
        Self::start_with(false, config_toml)
    }

    /// containerd with the CRI plugin (see [`cri_config_toml`]). The caller runs it in a
    /// private mount and network namespace with tmpfs on `/run/containerd` and `/var/lib/cni`
    /// ([`crate::cri_env`]): CNI then builds its bridge there, and the shim sockets (always
    /// under `/run/containerd/s`) and libcni's cache stay off the host.
    pub fn start_cri(o: &CriOptions) -> Result<Containerd> {
        Self::start_with(true, |d| cri_config_toml(d, o))
    }

    fn start_with(cri: bool, config: impl FnOnce(&Path) -> String) -> Result<Containerd> {
        let dir = tempfile::Builder::new()
            .prefix("deckhand-containerd-")
            .tempdir()?;
        let cfg = dir.path().join("config.toml");
        fs::write(&cfg, config(dir.path()))?;
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
        Ok(Containerd {
            dir,
            socket,
            child,
            cri,
        })
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

    /// `unix://<socket>`: the CRI endpoint when started with [`Containerd::start_cri`].
    pub fn endpoint(&self) -> String {
        format!("unix://{}", self.socket.display())
    }

    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("containerd.log")).unwrap_or_default()
    }

    /// Pids of this containerd's shims: each is started with `-address <our socket>`.
    pub fn shim_pids(&self) -> Vec<i32> {
        crate::util::pids_with_cmdline(&self.socket.display().to_string())
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        if !self.cri {
            return;
        }
        // containerd first, so it restarts nothing; then its shims, which daemonise away from
        // it (containers left in their cgroups are the caller's CgroupTree's to kill); then the
        // rootfs overlays, shm and netns mounts under our root/state, before TempDir removes it.
        let _ = self.child.0.kill();
        let _ = self.child.0.wait();
        for pid in self.shim_pids() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        crate::util::unmount_under(self.dir.path());
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
