//! What the runtime remembers about sandboxes and containers, on disk so that a restarted
//! runtime re-adopts everything (the processes themselves live on under their shims).
//!
//! Layout under `<data-dir>/runtime/`:
//! - `sandboxes/<id>/sandbox.json`: [`SandboxRecord`] (the CRI config kept as protobuf bytes);
//!   beside it the pinned namespaces (`ns/`), `hostname`, `hosts`, `resolv.conf`, `shim.log`;
//! - `shims/<id prefix>.sock`: the shim's socket (kept short: `sockaddr_un` holds 108 bytes);
//! - `containers/<id>.json`: [`ContainerRecord`];
//! - `oci/`: the container layer's state (`state/`, `bundles/`, `status/`), shared with shims;
//! - `rootfs/<id>`: container root file system mount points.
//!
//! Records are written to a temp file and renamed, so a crash leaves the old or the new one.

use std::io::Write;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use prost::Message;
use serde::{Deserialize, Serialize};

use super::api;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SandboxState {
    Ready,
    NotReady,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SandboxRecord {
    pub id: String,
    /// `api::PodSandboxConfig`, protobuf-encoded (base64 in JSON).
    pub config: String,
    pub runtime_handler: String,
    pub state: SandboxState,
    /// Nanoseconds since the epoch.
    pub created_at: i64,
    pub host_network: bool,
    pub host_ipc: bool,
    pub host_pid: bool,
    pub cgroup_parent: String,
    pub ip: String,
    #[serde(default)]
    pub additional_ips: Vec<String>,
    /// The CNI network attached (for DEL), when any.
    #[serde(default)]
    pub cni_attached: bool,
    pub shim_pid: i32,
}

impl SandboxRecord {
    pub fn config(&self) -> api::PodSandboxConfig {
        decode(&self.config)
    }
    pub fn set_config(&mut self, c: &api::PodSandboxConfig) {
        self.config = encode(c);
    }
    pub fn metadata(&self) -> api::PodSandboxMetadata {
        self.config().metadata.unwrap_or_default()
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ContainerRecord {
    pub id: String,
    pub sandbox_id: String,
    /// `api::ContainerConfig`, protobuf-encoded (base64 in JSON).
    pub config: String,
    /// The image as the request named it, and what it resolved to.
    pub image: String,
    pub image_id: String,
    pub image_ref: String,
    pub stop_signal: Option<String>,
    /// Absolute log path, empty when the container logs nowhere.
    pub log_path: String,
    pub created_at: i64,
    pub rootfs: PathBuf,
}

impl ContainerRecord {
    pub fn config(&self) -> api::ContainerConfig {
        decode(&self.config)
    }
    pub fn metadata(&self) -> api::ContainerMetadata {
        self.config().metadata.unwrap_or_default()
    }
}

pub fn encode<M: Message>(m: &M) -> String {
    base64::engine::general_purpose::STANDARD.encode(m.encode_to_vec())
}

pub fn decode<M: Message + Default>(s: &str) -> M {
    base64::engine::general_purpose::STANDARD
        .decode(s)
        .ok()
        .and_then(|b| M::decode(b.as_slice()).ok())
        .unwrap_or_default()
}

/// Paths of the runtime's on-disk state.
#[derive(Debug, Clone)]
pub struct Layout {
    pub root: PathBuf,
}

impl Layout {
    pub fn new(data_dir: &Path) -> Layout {
        Layout {
            root: data_dir.join("runtime"),
        }
    }
    pub fn sandbox_dir(&self, id: &str) -> PathBuf {
        self.root.join("sandboxes").join(id)
    }
    pub fn sandbox_file(&self, id: &str) -> PathBuf {
        self.sandbox_dir(id).join("sandbox.json")
    }
    pub fn shim_socket(&self, id: &str) -> PathBuf {
        self.root
            .join("shims")
            .join(format!("{}.sock", &id[..id.len().min(16)]))
    }
    pub fn container_file(&self, id: &str) -> PathBuf {
        self.root.join("containers").join(format!("{id}.json"))
    }
    pub fn oci_dir(&self) -> PathBuf {
        self.root.join("oci")
    }
    pub fn rootfs_dir(&self, id: &str) -> PathBuf {
        self.root.join("rootfs").join(id)
    }
    pub fn cni_cache_dir(&self) -> PathBuf {
        self.root.join("cni")
    }
}

pub fn save_json<T: Serialize>(path: &Path, value: &T) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(
        ".{}.tmp",
        path.file_name().unwrap_or_default().to_string_lossy()
    ));
    let json = serde_json::to_vec_pretty(value).map_err(std::io::Error::other)?;
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(&json)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path)
}

/// Every record of one kind in `dir` (unreadable ones are logged and skipped: one damaged
/// file must not stop the runtime from re-adopting the rest).
pub fn load_all<T: for<'de> Deserialize<'de>>(dir: &Path, file: Option<&str>) -> Vec<T> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for e in entries.flatten() {
        let path = match file {
            Some(f) => e.path().join(f),
            None => e.path(),
        };
        if path.extension().is_none_or(|x| x != "json") {
            continue;
        }
        match std::fs::read(&path)
            .map_err(|e| e.to_string())
            .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
        {
            Ok(r) => out.push(r),
            Err(e) if path.exists() => {
                tracing::warn!(path = %path.display(), error = %e, "skipping unreadable record")
            }
            Err(_) => {}
        }
    }
    out
}

/// A new 64-hex-digit id, as containerd makes them.
pub fn new_id() -> String {
    let mut bytes = [0u8; 32];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        let _ = std::io::Read::read_exact(&mut f, &mut bytes);
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Nanoseconds since the epoch.
pub fn now_ns() -> i64 {
    chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0)
}
