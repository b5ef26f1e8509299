//! One CRI runtime under test with everything around it: a private mount and network
//! namespace for the calling thread, the test registry holding the CRI fixtures, a CNI
//! conflist (bridge + host-local + loopback) with a per-test bridge name, a per-test cgroup
//! subtree, a log dir, and the runtime itself (containerd with its CRI plugin, or
//! `deckhand runtime`), then a connected [`CriClient`] in a [`SuiteCtx`].
//!
//! Everything is torn down on drop, in this order: the pods' processes (cgroup subtree), the
//! runtime and its shims and mounts, the registry, the temp dir.

use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::cgroups::CgroupTree;
use crate::containerd::{Containerd, CriOptions};
use crate::cri::CriClient;
use crate::cri_suite::{Caps, SuiteCtx};
use crate::fixtures::{self, Fixtures};
use crate::registry::{Auth, Registry};
use crate::util::{self, ChildGuard};

/// Which runtime a [`CriEnv`] runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Which {
    Containerd,
    Deckhand,
}

/// Subnet of the test bridge. Every env has its own network namespace, so all can use it.
pub const POD_SUBNET: &str = "10.88.0.0/16";

/// The CRI fixtures pushed to the test registry as `<name>:1`.
pub const IMAGES: &[&str] = fixtures::CRI;

pub struct CriEnv {
    pub ctx: SuiteCtx,
    runtime: RuntimeProc,
    pub cgroups: CgroupTree,
    pub registry: Registry,
    pub tmp: tempfile::TempDir,
}

enum RuntimeProc {
    Containerd(Box<Containerd>),
    Deckhand(DeckhandRuntime),
}

impl CriEnv {
    /// Sets up the calling thread's namespaces and starts everything. Call it from the test's
    /// own thread (a current-thread tokio runtime, as `#[tokio::test]` makes), and keep using
    /// that thread: the namespaces are per thread.
    pub async fn start(which: Which, cache_root: &str) -> Result<CriEnv> {
        util::require_root();
        util::private_mount_namespace();
        util::private_network_namespace();
        // containerd puts shim sockets in /run/containerd/s whatever its state dir, and libcni
        // its result cache in /var/lib/cni: both get a private tmpfs in this mount namespace.
        util::tmpfs_over(Path::new("/run/containerd"))?;
        util::tmpfs_over(Path::new("/var/lib/cni"))?;
        let fx = fixtures::shared_cri(Path::new(cache_root));
        Self::start_in_namespaces(which, &fx).await
    }

    /// [`CriEnv::start`] without the namespace setup, for callers that did it already (the
    /// `cri-env` helper of the benchmark scripts).
    pub async fn start_in_namespaces(which: Which, fx: &Fixtures) -> Result<CriEnv> {
        let registry = Registry::start(Auth::None)?;
        for n in IMAGES {
            registry.push(&fx.layout(n), fixtures::TAG, n)?;
        }
        let tmp = tempfile::Builder::new().prefix("deckhand-cri-").tempdir()?;
        let cni_conf_dir = tmp.path().join("cni/net.d");
        let bridge = unique_bridge_name();
        write_cni_conflist(&cni_conf_dir, &bridge, &tmp.path().join("cni/ipam"))?;
        let log_root = tmp.path().join("logs");
        fs::create_dir_all(&log_root)?;
        let cgroups = CgroupTree::new("deckhand-cri");
        let sandbox_image = registry.reference("pause", fixtures::TAG);
        let (runtime, endpoint, caps) = match which {
            Which::Containerd => {
                let c = Containerd::start_cri(&CriOptions {
                    registry_host: registry.host(),
                    sandbox_image: sandbox_image.clone(),
                    cni_conf_dir: cni_conf_dir.clone(),
                    cni_bin_dir: PathBuf::from("/usr/lib/cni"),
                })?;
                let ep = c.endpoint();
                (RuntimeProc::Containerd(Box::new(c)), ep, Caps::containerd())
            }
            Which::Deckhand => {
                let d = DeckhandRuntime::start(
                    &tmp.path().join("deckhand"),
                    &cni_conf_dir,
                    Path::new("/usr/lib/cni"),
                )?;
                let ep = d.endpoint();
                (RuntimeProc::Deckhand(d), ep, Caps::deckhand())
            }
        };
        let cri = CriClient::connect(&endpoint).await?;
        let ctx = SuiteCtx {
            cri,
            registry_host: registry.host(),
            busybox: registry.reference("busybox", fixtures::TAG),
            stopsignal: registry.reference("stopsignal", fixtures::TAG),
            pause: sandbox_image,
            busybox_config_digest: fx.info("busybox").images[0].config_digest.clone(),
            busybox_manifest_digest: fx.info("busybox").images[0].manifest_digest.clone(),
            log_root,
            cgroup_parent: cgroups.name.clone(),
            bridge,
            caps,
            seq: AtomicU32::new(0),
        };
        Ok(CriEnv {
            ctx,
            runtime,
            cgroups,
            registry,
            tmp,
        })
    }

    /// The runtime's own log (containerd's or deckhand's stderr), for failure messages.
    pub fn runtime_log(&self) -> String {
        match &self.runtime {
            RuntimeProc::Containerd(c) => c.log(),
            RuntimeProc::Deckhand(d) => d.log(),
        }
    }

    /// A string in the command line of every shim of this runtime (and of nothing else but
    /// the runtime): containerd's socket path, which its shims get as `-address`; deckhand's
    /// data dir.
    pub fn shim_match(&self) -> String {
        match &self.runtime {
            RuntimeProc::Containerd(c) => c.socket.display().to_string(),
            RuntimeProc::Deckhand(d) => d.data_dir.display().to_string(),
        }
    }

    /// Pid of the runtime daemon.
    pub fn runtime_pid(&self) -> u32 {
        match &self.runtime {
            RuntimeProc::Containerd(c) => c.pid(),
            RuntimeProc::Deckhand(d) => d.child.0.id(),
        }
    }

    /// A scenario's result, with the tail of the runtime's log added on failure.
    pub fn report(&self, name: &str, r: Result<()>) -> Result<()> {
        r.map_err(|e| {
            let log = self.runtime_log();
            let lines: Vec<&str> = log.lines().collect();
            let tail = lines[lines.len().saturating_sub(25)..].join("\n");
            anyhow::anyhow!(
                "scenario {name} failed: {e:#}\n--- runtime log (last 25 lines) ---\n{tail}"
            )
        })
    }
}

impl Drop for CriEnv {
    fn drop(&mut self) {
        // Pods first (their processes and cgroups); the fields then drop in declaration order:
        // the runtime (and its shims and mounts), the cgroup guard, the registry, the temp dir.
        self.cgroups.destroy();
        if let RuntimeProc::Deckhand(d) = &self.runtime {
            util::unmount_under(&d.data_dir);
        }
        util::unmount_under(self.tmp.path());
    }
}

fn unique_bridge_name() -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    // Interface names are at most 15 bytes.
    format!(
        "dkc{}{}",
        std::process::id() % 100_000,
        N.fetch_add(1, Ordering::Relaxed) % 1000
    )
}

/// A CNI conflist as a node would have it: a bridge acting as the pods' gateway with host-local
/// IPAM from [`POD_SUBNET`] (its state in `ipam_dir`, not `/var/lib/cni/networks`), plus
/// loopback. No masquerading or port mapping: nothing leaves the test namespace.
pub fn write_cni_conflist(conf_dir: &Path, bridge: &str, ipam_dir: &Path) -> Result<()> {
    fs::create_dir_all(conf_dir)?;
    fs::create_dir_all(ipam_dir)?;
    let conf = serde_json::json!({
        "cniVersion": "1.0.0",
        "name": format!("{bridge}-net"),
        "plugins": [
            {
                "type": "bridge",
                "bridge": bridge,
                "isGateway": true,
                "ipMasq": false,
                "hairpinMode": true,
                "ipam": {
                    "type": "host-local",
                    "dataDir": ipam_dir,
                    "ranges": [[{"subnet": POD_SUBNET}]],
                    "routes": [{"dst": "0.0.0.0/0"}]
                }
            },
            {"type": "loopback"}
        ]
    });
    fs::write(
        conf_dir.join("10-deckhand-test.conflist"),
        serde_json::to_vec_pretty(&conf)?,
    )?;
    Ok(())
}

/// `deckhand runtime` serving CRI on a socket in its own data dir, killed on drop.
pub struct DeckhandRuntime {
    pub data_dir: PathBuf,
    pub socket: PathBuf,
    child: ChildGuard,
}

/// The command line of `deckhand runtime` for the suite: its data dir, the CRI socket, and the
/// CNI config and plugin dirs (the same conflist and plugins containerd gets). deckhand pins a
/// pod's namespaces without a pause process, so it takes no sandbox image. The one place these
/// flags are spelled, so the suite follows the CLI in one edit.
pub fn deckhand_runtime_args(
    data_dir: &Path,
    socket: &Path,
    cni_conf_dir: &Path,
    cni_bin_dir: &Path,
) -> Vec<OsString> {
    let mut a: Vec<OsString> = Vec::new();
    a.push("--data-dir".into());
    a.push(data_dir.into());
    a.push("runtime".into());
    a.push("--listen".into());
    a.push(format!("unix://{}", socket.display()).into());
    a.push("--cni-conf-dir".into());
    a.push(cni_conf_dir.into());
    a.push("--cni-bin-dir".into());
    a.push(cni_bin_dir.into());
    a
}

impl DeckhandRuntime {
    pub fn start(
        data_dir: &Path,
        cni_conf_dir: &Path,
        cni_bin_dir: &Path,
    ) -> Result<DeckhandRuntime> {
        fs::create_dir_all(data_dir)?;
        let socket = data_dir.join("cri.sock");
        let log = fs::File::create(data_dir.join("runtime.log"))?;
        let bin = crate::deckhand::bin();
        let child = Command::new(&bin)
            .args(deckhand_runtime_args(
                data_dir,
                &socket,
                cni_conf_dir,
                cni_bin_dir,
            ))
            .env("RUST_LOG", "info")
            .env("DOCKER_CONFIG", data_dir.join("docker-config"))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("spawn {} runtime", bin.display()))?;
        let mut child = ChildGuard::new(child);
        let up = util::wait_for(Duration::from_secs(30), || {
            if let Ok(Some(_)) = child.0.try_wait() {
                return Some(false);
            }
            std::os::unix::net::UnixStream::connect(&socket)
                .is_ok()
                .then_some(true)
        });
        let d = DeckhandRuntime {
            data_dir: data_dir.to_path_buf(),
            socket,
            child,
        };
        if up != Some(true) {
            bail!("deckhand runtime did not come up:\n{}", d.log());
        }
        Ok(d)
    }

    pub fn endpoint(&self) -> String {
        format!("unix://{}", self.socket.display())
    }

    pub fn log(&self) -> String {
        fs::read_to_string(self.data_dir.join("runtime.log")).unwrap_or_default()
    }
}

impl Drop for DeckhandRuntime {
    fn drop(&mut self) {
        // SIGTERM first so it can stop its shims; then SIGKILL it and any `deckhand shim`
        // that names our data dir.
        let pid = nix::unistd::Pid::from_raw(self.child.0.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let _ = util::wait_for(Duration::from_secs(5), || {
            matches!(self.child.0.try_wait(), Ok(Some(_))).then_some(())
        });
        for p in util::pids_with_cmdline(&self.data_dir.display().to_string()) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(p),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}
