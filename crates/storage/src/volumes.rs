//! The kubelet's built-in volume plugins: emptyDir, hostPath, configMap, secret, downwardAPI and
//! projected. [`setup`] makes a pod's volume ready on the host and says where it is;
//! [`teardown`] undoes it. Both are idempotent: the kubelet calls `setup` again on every pod sync
//! so configMap/secret changes reach running pods (through the atomic writer), and may call
//! `teardown` again after a crash.
//!
//! Host layout (upstream's): `<pods_dir>/<uid>/volumes/kubernetes.io~<plugin>/<name>`; a
//! hostPath volume is the host path itself.

mod downward_api;
mod empty_dir;
mod host_path;
mod objects;
mod projected;

use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret, ServiceAccountTokenProjection, Volume};

use crate::atomic_writer::{AtomicWriteError, FsGroup};
use crate::mounter::Mounter;

pub use downward_api::{format_map, render_downward_api_item};

/// Which plugin serves a volume; its directory under the pod's `volumes` directory is
/// `kubernetes.io~<dir_name>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Plugin {
    EmptyDir,
    HostPath,
    ConfigMap,
    Secret,
    DownwardApi,
    Projected,
}

impl Plugin {
    pub fn dir_name(self) -> &'static str {
        match self {
            Plugin::EmptyDir => "kubernetes.io~empty-dir",
            Plugin::HostPath => "kubernetes.io~host-path",
            Plugin::ConfigMap => "kubernetes.io~configmap",
            Plugin::Secret => "kubernetes.io~secret",
            Plugin::DownwardApi => "kubernetes.io~downward-api",
            Plugin::Projected => "kubernetes.io~projected",
        }
    }

    /// The plugin for `volume`, or `None` for a source this crate does not serve.
    pub fn of(volume: &Volume) -> Option<Plugin> {
        if volume.empty_dir.is_some() {
            Some(Plugin::EmptyDir)
        } else if volume.host_path.is_some() {
            Some(Plugin::HostPath)
        } else if volume.config_map.is_some() {
            Some(Plugin::ConfigMap)
        } else if volume.secret.is_some() {
            Some(Plugin::Secret)
        } else if volume.downward_api.is_some() {
            Some(Plugin::DownwardApi)
        } else if volume.projected.is_some() {
            Some(Plugin::Projected)
        } else {
            None
        }
    }
}

/// A volume ready on the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountedVolume {
    pub name: String,
    pub plugin: Plugin,
    /// What containers bind-mount.
    pub host_path: PathBuf,
    /// configMap, secret, downwardAPI and projected volumes are always mounted read-only into
    /// containers, whatever the volumeMount says (as upstream since 1.9.4).
    pub read_only: bool,
}

/// Objects the kubelet reads from the API (through its informer cache). Called from `setup`
/// on the calling thread; may block briefly, must not wait on the network indefinitely.
pub trait ObjectLookup {
    /// `Ok(None)` when the object does not exist.
    fn config_map(&self, namespace: &str, name: &str) -> Result<Option<ConfigMap>, LookupError>;
    /// `Ok(None)` when the object does not exist.
    fn secret(&self, namespace: &str, name: &str) -> Result<Option<Secret>, LookupError>;
    /// The token for a projected `serviceAccountToken` source (TokenRequest done by the caller).
    fn service_account_token(
        &self,
        pod: &Pod,
        projection: &ServiceAccountTokenProjection,
    ) -> Result<Vec<u8>, LookupError>;
}

/// A lookup failed for a reason other than "not found" (cache not synced, API unreachable):
/// the next sync retries.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct LookupError(pub String);

/// Node values the downward API falls back to for containers without limits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NodeAllocatable {
    pub cpu_millis: Option<u64>,
    pub memory_bytes: Option<u64>,
    pub ephemeral_storage_bytes: Option<u64>,
}

/// What plugins need from the kubelet.
pub struct VolumeContext<'a> {
    /// Sizes memory-backed volumes (tmpfs `size=`) and backs the downward API's limits.
    pub node_allocatable: NodeAllocatable,
    /// The pod's `securityContext.fsGroup`: volumes are made group-owned by it.
    pub fs_group: Option<u32>,
    pub mounter: &'a dyn Mounter,
    pub objects: &'a dyn ObjectLookup,
}

#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    /// The volume spec cannot work as written; retrying without changing the pod won't help.
    #[error("{context}: {message}")]
    Invalid { context: String, message: String },
    /// hostPath type check (upstream's wording); the host may change, so retrying may help.
    #[error("{context}: hostPath type check failed: {path} is not {expected}")]
    HostPathType {
        context: String,
        path: String,
        expected: &'static str,
    },
    /// A referenced configMap/secret (or a key of it) is missing and the volume is not
    /// optional; retrying helps once it is created.
    #[error("{context}: {message}")]
    Missing { context: String, message: String },
    #[error("{context}: {source}")]
    Lookup {
        context: String,
        #[source]
        source: LookupError,
    },
    #[error(transparent)]
    Write(#[from] AtomicWriteError),
    #[error("{context}: {source}")]
    Mount {
        context: String,
        #[source]
        source: deckhand_sys::mount::MountError,
    },
    #[error("{context}: {op} {path}: {source}")]
    Io {
        context: String,
        op: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// A volume source this crate does not serve (persistentVolumeClaim, csi, ...).
    #[error("{context}: unsupported volume source (supported: emptyDir, hostPath, configMap, secret, downwardAPI, projected)")]
    Unsupported { context: String },
}

impl VolumeError {
    /// Whether the next pod sync may succeed without the pod changing.
    pub fn is_retryable(&self) -> bool {
        !matches!(
            self,
            VolumeError::Invalid { .. }
                | VolumeError::Unsupported { .. }
                | VolumeError::Write(AtomicWriteError::InvalidPath { .. })
        )
    }
}

/// `<pods_dir>/<uid>/volumes`.
pub fn pod_volumes_dir(pods_dir: &Path, pod_uid: &str) -> PathBuf {
    pods_dir.join(pod_uid).join("volumes")
}

/// Where `volume` of the pod lives on the host (hostPath: its own path).
pub fn volume_host_path(pod_volumes_dir: &Path, volume: &Volume) -> Option<PathBuf> {
    let plugin = Plugin::of(volume)?;
    if plugin == Plugin::HostPath {
        return volume.host_path.as_ref().map(|h| PathBuf::from(&h.path));
    }
    Some(pod_volumes_dir.join(plugin.dir_name()).join(&volume.name))
}

pub(crate) fn context_of(pod: &Pod, volume: &Volume) -> String {
    format!(
        "pod {}/{} volume {:?}",
        pod.metadata.namespace.as_deref().unwrap_or("default"),
        pod.metadata.name.as_deref().unwrap_or(""),
        volume.name
    )
}

pub(crate) fn io_err(
    context: &str,
    op: &'static str,
    path: &Path,
    source: std::io::Error,
) -> VolumeError {
    VolumeError::Io {
        context: context.to_string(),
        op,
        path: path.display().to_string(),
        source,
    }
}

/// Make `volume` ready on the host. Idempotent; a second call refreshes atomic-writer contents.
/// Blocks on the file system and mounts: call from `spawn_blocking` in async code.
pub fn setup(
    pod: &Pod,
    volume: &Volume,
    pod_volumes_dir: &Path,
    ctx: &VolumeContext<'_>,
) -> Result<MountedVolume, VolumeError> {
    let context = context_of(pod, volume);
    let Some(plugin) = Plugin::of(volume) else {
        return Err(VolumeError::Unsupported { context });
    };
    let dir = pod_volumes_dir.join(plugin.dir_name()).join(&volume.name);
    let fs_group = ctx.fs_group.map(FsGroup);
    let (host_path, read_only) = match plugin {
        Plugin::EmptyDir => {
            let src = volume.empty_dir.as_ref().expect("plugin matched");
            empty_dir::setup(pod, src, &dir, ctx, &context)?;
            (dir, false)
        }
        Plugin::HostPath => {
            let src = volume.host_path.as_ref().expect("plugin matched");
            (host_path::setup(src, &context)?, false)
        }
        Plugin::ConfigMap => {
            let src = volume.config_map.as_ref().expect("plugin matched");
            let payload = objects::config_map_payload(pod, src, ctx.objects, &context)?;
            empty_dir::ensure_dir(&dir, &context)?;
            objects::write(&dir, &payload, fs_group, &context)?;
            (dir, true)
        }
        Plugin::Secret => {
            let src = volume.secret.as_ref().expect("plugin matched");
            let payload = objects::secret_payload(pod, src, ctx.objects, &context)?;
            let size = empty_dir::wrapped_memory_size(pod, ctx, &context)?;
            empty_dir::ensure_tmpfs(&dir, size, ctx, &context)?;
            objects::write(&dir, &payload, fs_group, &context)?;
            (dir, true)
        }
        Plugin::DownwardApi => {
            let src = volume.downward_api.as_ref().expect("plugin matched");
            let payload = downward_api::payload(pod, src, ctx, &context)?;
            empty_dir::ensure_dir(&dir, &context)?;
            objects::write(&dir, &payload, fs_group, &context)?;
            (dir, true)
        }
        Plugin::Projected => {
            let src = volume.projected.as_ref().expect("plugin matched");
            let payload = projected::payload(pod, src, ctx, &context)?;
            let size = empty_dir::wrapped_memory_size(pod, ctx, &context)?;
            empty_dir::ensure_tmpfs(&dir, size, ctx, &context)?;
            objects::write(&dir, &payload, fs_group, &context)?;
            (dir, true)
        }
    };
    Ok(MountedVolume {
        name: volume.name.clone(),
        plugin,
        host_path,
        read_only,
    })
}

/// Undo [`setup`]: unmount a tmpfs, remove the volume directory. hostPath volumes are left
/// alone. Idempotent.
pub fn teardown(
    pod: &Pod,
    volume: &Volume,
    pod_volumes_dir: &Path,
    ctx: &VolumeContext<'_>,
) -> Result<(), VolumeError> {
    let context = context_of(pod, volume);
    let Some(plugin) = Plugin::of(volume) else {
        return Err(VolumeError::Unsupported { context });
    };
    if plugin == Plugin::HostPath {
        return Ok(());
    }
    let dir = pod_volumes_dir.join(plugin.dir_name()).join(&volume.name);
    empty_dir::remove(&dir, ctx.mounter, &context)
}

/// Tear down every volume directory under `pod_volumes_dir`, with or without the pod spec
/// (orphans after a restart): unmount what is mounted, then remove. Returns what was removed.
pub fn teardown_all(
    pod_volumes_dir: &Path,
    mounter: &dyn Mounter,
) -> Result<Vec<PathBuf>, VolumeError> {
    let context = format!("volumes under {}", pod_volumes_dir.display());
    let mut removed = Vec::new();
    let plugins = match std::fs::read_dir(pod_volumes_dir) {
        Ok(p) => p,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(removed),
        Err(e) => return Err(io_err(&context, "read directory", pod_volumes_dir, e)),
    };
    for plugin_dir in plugins {
        let plugin_dir =
            plugin_dir.map_err(|e| io_err(&context, "read directory", pod_volumes_dir, e))?;
        let path = plugin_dir.path();
        if !plugin_dir.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            continue;
        }
        let vols =
            std::fs::read_dir(&path).map_err(|e| io_err(&context, "read directory", &path, e))?;
        for v in vols {
            let v = v.map_err(|e| io_err(&context, "read directory", &path, e))?;
            empty_dir::remove(&v.path(), mounter, &context)?;
            removed.push(v.path());
        }
        std::fs::remove_dir(&path)
            .or_else(|e| {
                if e.kind() == std::io::ErrorKind::NotFound {
                    Ok(())
                } else {
                    Err(e)
                }
            })
            .map_err(|e| io_err(&context, "remove", &path, e))?;
    }
    Ok(removed)
}
