//! emptyDir: a directory on the node's disk, or a tmpfs for `medium: Memory` (also the backing
//! of secret and projected volumes). Also the shared directory helpers of the other plugins.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use k8s_openapi::api::core::v1::{EmptyDirVolumeSource, Pod};

use super::{io_err, VolumeContext, VolumeError};
use crate::mounter::Mounter;
use crate::quantity;

pub(super) fn setup(
    pod: &Pod,
    src: &EmptyDirVolumeSource,
    dir: &Path,
    ctx: &VolumeContext<'_>,
    context: &str,
) -> Result<(), VolumeError> {
    match src.medium.as_deref().unwrap_or("") {
        "" => {
            let fresh = !dir.exists();
            ensure_dir(dir, context)?;
            if fresh {
                // World-writable, whatever the umask, as upstream: any container user may write.
                chmod(dir, 0o777, context)?;
            }
        }
        "Memory" => {
            let size = memory_size(pod, src, ctx.node_allocatable.memory_bytes, context)?;
            ensure_tmpfs(dir, size, ctx, context)?;
        }
        other => {
            return Err(VolumeError::Invalid {
                context: context.to_string(),
                message: format!(
                    "emptyDir medium {other:?} is not supported (use \"\" or \"Memory\")"
                ),
            })
        }
    }
    if let Some(gid) = ctx.fs_group {
        // Group-owned, group-writable, setgid so new files inherit the group.
        std::os::unix::fs::chown(dir, None, Some(gid))
            .map_err(|e| io_err(context, "chown", dir, e))?;
        let mode = std::fs::metadata(dir)
            .map_err(|e| io_err(context, "stat", dir, e))?
            .permissions()
            .mode();
        chmod(dir, (mode & 0o7777) | 0o2770, context)?;
    }
    Ok(())
}

/// The tmpfs size of a secret or projected volume: an emptyDir without `sizeLimit`.
pub(super) fn wrapped_memory_size(
    pod: &Pod,
    ctx: &VolumeContext<'_>,
    context: &str,
) -> Result<Option<u64>, VolumeError> {
    memory_size(
        pod,
        &EmptyDirVolumeSource::default(),
        ctx.node_allocatable.memory_bytes,
        context,
    )
}

/// The tmpfs size upstream uses: node allocatable memory, lowered to the pod's memory limit
/// (when every container declares one) and to the volume's `sizeLimit` when those are smaller.
fn memory_size(
    pod: &Pod,
    src: &EmptyDirVolumeSource,
    allocatable: Option<u64>,
    context: &str,
) -> Result<Option<u64>, VolumeError> {
    let invalid = |e: quantity::QuantityError| VolumeError::Invalid {
        context: context.to_string(),
        message: e.to_string(),
    };
    let mut size = allocatable.map(u128::from);
    let lower = |size: Option<u128>, v: u128| match size {
        Some(s) if v > 0 && v <= s => Some(v),
        None if v > 0 => Some(v),
        s => s,
    };
    if let Some(limit) = pod_memory_limit(pod).map_err(invalid)? {
        size = lower(size, limit);
    }
    if let Some(q) = &src.size_limit {
        let v = quantity::value(q).map_err(invalid)?;
        size = lower(size, v.max(0) as u128);
    }
    Ok(size.map(|s| s.min(u64::MAX as u128) as u64))
}

/// Sum of the containers' memory limits (max with any init container's), when all declare one.
fn pod_memory_limit(pod: &Pod) -> Result<Option<u128>, quantity::QuantityError> {
    let Some(spec) = &pod.spec else {
        return Ok(None);
    };
    let limit = |c: &k8s_openapi::api::core::v1::Container| -> Result<Option<u128>, quantity::QuantityError> {
        match c
            .resources
            .as_ref()
            .and_then(|r| r.limits.as_ref())
            .and_then(|l| l.get("memory"))
        {
            Some(q) => Ok(Some(quantity::value(q)?.max(0) as u128)),
            None => Ok(None),
        }
    };
    let mut sum = 0u128;
    for c in &spec.containers {
        match limit(c)? {
            Some(v) => sum += v,
            None => return Ok(None),
        }
    }
    for c in spec.init_containers.iter().flatten() {
        match limit(c)? {
            Some(v) => sum = sum.max(v),
            None => return Ok(None),
        }
    }
    Ok(Some(sum))
}

pub(super) fn ensure_dir(dir: &Path, context: &str) -> Result<(), VolumeError> {
    std::fs::create_dir_all(dir).map_err(|e| io_err(context, "create directory", dir, e))
}

fn chmod(path: &Path, mode: u32, context: &str) -> Result<(), VolumeError> {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| io_err(context, "chmod", path, e))
}

/// Create `dir` and mount a tmpfs on it unless one is already there.
pub(super) fn ensure_tmpfs(
    dir: &Path,
    size: Option<u64>,
    ctx: &VolumeContext<'_>,
    context: &str,
) -> Result<(), VolumeError> {
    ensure_dir(dir, context)?;
    let mounted = ctx
        .mounter
        .is_mount_point(dir)
        .map_err(|e| io_err(context, "check mount point", dir, e))?;
    if !mounted {
        ctx.mounter
            .mount_tmpfs(dir, size)
            .map_err(|source| VolumeError::Mount {
                context: context.to_string(),
                source,
            })?;
    }
    Ok(())
}

/// Unmount whatever is on `dir`, then remove it. Never removes through a mount: if the unmount
/// did not take, the contents of the mounted file system stay untouched.
pub(super) fn remove(dir: &Path, mounter: &dyn Mounter, context: &str) -> Result<(), VolumeError> {
    if !dir.exists() {
        return Ok(());
    }
    let mounted = mounter
        .is_mount_point(dir)
        .map_err(|e| io_err(context, "check mount point", dir, e))?;
    if mounted {
        mounter.unmount(dir).map_err(|source| VolumeError::Mount {
            context: context.to_string(),
            source,
        })?;
        let still = mounter
            .is_mount_point(dir)
            .map_err(|e| io_err(context, "check mount point", dir, e))?;
        if still {
            return Err(io_err(
                context,
                "unmount",
                dir,
                std::io::Error::other("still mounted after unmount; not removing its contents"),
            ));
        }
    }
    let root_dev = match std::fs::symlink_metadata(dir) {
        Ok(m) => m.dev(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io_err(context, "stat", dir, e)),
    };
    remove_same_device(dir, root_dev, context)
}

/// Remove `path` recursively, refusing to descend into another file system (a mount a
/// container propagated into the volume, a leftover bind): deleting through it would destroy
/// data that is not the volume's.
fn remove_same_device(path: &Path, root_dev: u64, context: &str) -> Result<(), VolumeError> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io_err(context, "stat", path, e)),
    };
    if !meta.is_dir() {
        return std::fs::remove_file(path)
            .or_else(ignore_not_found)
            .map_err(|e| io_err(context, "remove", path, e));
    }
    if meta.dev() != root_dev {
        return Err(io_err(
            context,
            "remove",
            path,
            std::io::Error::other("a file system is mounted here; unmount it first"),
        ));
    }
    let entries =
        std::fs::read_dir(path).map_err(|e| io_err(context, "read directory", path, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| io_err(context, "read directory", path, e))?;
        remove_same_device(&entry.path(), root_dev, context)?;
    }
    std::fs::remove_dir(path)
        .or_else(ignore_not_found)
        .map_err(|e| io_err(context, "remove", path, e))
}

fn ignore_not_found(e: std::io::Error) -> std::io::Result<()> {
    if e.kind() == std::io::ErrorKind::NotFound {
        Ok(())
    } else {
        Err(e)
    }
}
