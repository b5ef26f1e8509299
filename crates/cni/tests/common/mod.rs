//! Fixtures for running Debian's reference plugins for real without touching the host network.
//!
//! Each test process (nextest runs one test per process) first moves its thread into a fresh
//! network namespace — the "node" — and only then starts the tokio runtime, so every worker
//! thread and every plugin it spawns inherits the node netns: bridges, veth host ends, iptables
//! rules and sysctls land there and vanish with the process. Pod namespaces are made with
//! `ip netns add` (a bind mount under /run/netns, visible host-wide, hence unique names and a
//! `Drop` that deletes them even when the test fails).

#![allow(dead_code)]

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use deckhand_cni::{Attachment, CniCaller, CniConfig};
use serde_json::{json, Value};

/// Where Debian's `containernetworking-plugins` installs the plugins.
pub const PLUGIN_DIR: &str = "/usr/lib/cni";

pub fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "these tests run the real CNI plugins in network namespaces: run them as root"
    );
    for plugin in ["bridge", "host-local", "portmap", "loopback"] {
        assert!(
            Path::new(PLUGIN_DIR).join(plugin).exists(),
            "{PLUGIN_DIR}/{plugin} is missing: apt-get install containernetworking-plugins"
        );
    }
}

pub fn unique(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!(
        "{prefix}{:x}{:x}{}",
        std::process::id(),
        nanos & 0xfff,
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Run a command; its stdout, or a panic with its stderr.
pub fn run(program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Whether a command succeeds.
pub fn succeeds(program: &str, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// The test's node: its own netns (the calling thread's), dirs, bridge name and runtime.
pub struct Node {
    pub tmp: tempfile::TempDir,
    pub conf_dir: PathBuf,
    pub cache_dir: PathBuf,
    pub ipam_dir: PathBuf,
    /// Extra plugins (fakes) written by the test; searched before the real ones.
    pub fake_bin: PathBuf,
    pub bridge: String,
    pub rt: tokio::runtime::Runtime,
}

impl Node {
    /// Must be the first thing a test does: it moves the thread into a new netns, and only
    /// threads started afterwards (the runtime's) follow it.
    pub fn new() -> Node {
        require_root();
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)
            .expect("unshare(CLONE_NEWNET) for the test's node netns");
        run("ip", &["link", "set", "lo", "up"]);
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().to_path_buf();
        let node = Node {
            conf_dir: root.join("net.d"),
            cache_dir: root.join("cache"),
            ipam_dir: root.join("ipam"),
            fake_bin: root.join("bin"),
            bridge: unique("dhbr").chars().take(15).collect(),
            tmp,
            rt: tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap(),
        };
        for d in [&node.conf_dir, &node.fake_bin] {
            std::fs::create_dir_all(d).unwrap();
        }
        node
    }

    pub fn caller(&self) -> CniCaller {
        CniCaller::new(CniConfig {
            conf_dir: self.conf_dir.clone(),
            bin_dirs: vec![self.fake_bin.clone(), PLUGIN_DIR.into()],
            cache_dir: self.cache_dir.clone(),
        })
    }

    /// bridge (with host-local IPAM on `subnet`, gateway .1, default route) as the network's
    /// main plugin; the test adds chained ones.
    pub fn bridge_plugin(&self, subnet: &str) -> Value {
        json!({
            "type": "bridge",
            "bridge": self.bridge,
            "isGateway": true,
            "ipMasq": false,
            "hairpinMode": true,
            "ipam": {
                "type": "host-local",
                "ranges": [[{"subnet": subnet}]],
                "routes": [{"dst": "0.0.0.0/0"}],
                "dataDir": self.ipam_dir,
            }
        })
    }

    pub fn write_conflist(&self, file: &str, version: &str, plugins: Vec<Value>) {
        let list = json!({"cniVersion": version, "name": "dhnet", "plugins": plugins});
        std::fs::write(self.conf_dir.join(file), list.to_string()).unwrap();
    }

    /// IPs host-local holds reserved for the network (one file per IP).
    pub fn reserved_ips(&self) -> Vec<IpAddr> {
        let dir = self.ipam_dir.join("dhnet");
        let Ok(entries) = std::fs::read_dir(dir) else {
            return Vec::new();
        };
        let mut ips: Vec<IpAddr> = entries
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
            .collect();
        ips.sort();
        ips
    }

    /// veth links in the node netns (the host ends of pod interfaces).
    pub fn host_veths(&self) -> Vec<String> {
        let out = run("ip", &["-j", "link", "show", "type", "veth"]);
        let links: Vec<Value> =
            serde_json::from_str(if out.trim().is_empty() { "[]" } else { &out }).unwrap();
        links
            .iter()
            .map(|l| l["ifname"].as_str().unwrap().to_string())
            .collect()
    }

    /// A fake plugin: a shell script in the first bin dir.
    pub fn write_fake_plugin(&self, name: &str, body: &str) {
        use std::os::unix::fs::PermissionsExt;
        let path = self.fake_bin.join(name);
        std::fs::write(&path, body).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
}

/// A pod's network namespace, deleted on drop.
pub struct PodNetns {
    pub name: String,
    pub path: PathBuf,
}

impl PodNetns {
    pub fn new() -> PodNetns {
        let name = unique("dh-cni-");
        run("ip", &["netns", "add", &name]);
        PodNetns {
            path: PathBuf::from("/run/netns").join(&name),
            name,
        }
    }

    pub fn attachment(&self, container_id: &str) -> Attachment {
        Attachment {
            container_id: container_id.into(),
            netns: self.path.clone(),
            pod_namespace: "default".into(),
            pod_name: format!("pod-{container_id}"),
            pod_uid: format!("uid-{container_id}"),
            ..Attachment::default()
        }
    }

    /// `ip -n <pod> <args>`.
    pub fn ip(&self, args: &[&str]) -> String {
        let mut full = vec!["-n", self.name.as_str()];
        full.extend_from_slice(args);
        run("ip", &full)
    }

    /// One ping from inside the pod (busybox's, Debian's busybox-static).
    pub fn ping(&self, target: IpAddr) -> bool {
        let target = target.to_string();
        succeeds(
            "ip",
            &[
                "netns", "exec", &self.name, "busybox", "ping", "-c", "1", "-W", "2", &target,
            ],
        )
    }
}

impl Drop for PodNetns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}
