//! A container's `volumeMounts` as CRI mounts: host path of the volume (and subPath),
//! read-only-ness, propagation. subPaths are checked so they cannot leave their volume.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use k8s_cri::v1::{Mount, MountPropagation};
use k8s_openapi::api::core::v1::{Container, VolumeMount};

use crate::mounter::Mounter;
use crate::volumes::MountedVolume;

/// How [`container_mounts`] treats what the caller's runtime and host allow.
#[derive(Clone, Copy)]
pub struct MountOptions<'a> {
    /// Whether the runtime handler supports recursive read-only mounts (decides
    /// `recursiveReadOnly: IfPossible`, refuses `Enabled` when false).
    pub runtime_supports_rro: bool,
    /// Bind each subPath to `<pod_dir>/volume-subpaths/<volume>/<container>/<index>` through
    /// [`Mounter::bind_beneath`], so a symlink swapped in after the check cannot redirect the
    /// runtime's mount. `None` hands the runtime the checked path itself (tests, or runtimes
    /// that do their own safe open).
    pub safe_sub_paths: Option<SafeSubPaths<'a>>,
}

#[derive(Clone, Copy)]
pub struct SafeSubPaths<'a> {
    /// `<pods_dir>/<uid>`.
    pub pod_dir: &'a Path,
    pub mounter: &'a dyn Mounter,
}

#[derive(Debug, thiserror::Error)]
pub enum ContainerMountError {
    /// The mount cannot work as written (fix the pod spec).
    #[error("container {container:?} volumeMount {mount:?}: {message}")]
    Invalid {
        container: String,
        mount: String,
        message: String,
    },
    /// The subPath resolves outside its volume (a symlink in the volume points out of it).
    #[error("container {container:?} volumeMount {mount:?}: subPath {sub_path:?} resolves to {resolved} which is outside the volume {volume}")]
    Escape {
        container: String,
        mount: String,
        sub_path: String,
        resolved: String,
        volume: String,
    },
    /// The volume is not set up (yet): retry after setup.
    #[error("container {container:?}: cannot find volume {mount:?} to mount into container")]
    NoVolume { container: String, mount: String },
    #[error("container {container:?} volumeMount {mount:?}: {op} {path}: {source}")]
    Io {
        container: String,
        mount: String,
        op: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// CRI mounts for `container`. `volumes` maps volume name → its setup result; `env` is the
/// container's resolved environment (for `subPathExpr`). Missing subPath directories are
/// created inside the volume (mode of the volume root), never through a symlink. Blocks on
/// the file system (and on mounts with [`MountOptions::safe_sub_paths`]).
pub fn container_mounts(
    container: &Container,
    volumes: &BTreeMap<String, MountedVolume>,
    env: &BTreeMap<String, String>,
    opts: &MountOptions<'_>,
) -> Result<Vec<Mount>, ContainerMountError> {
    let privileged = container
        .security_context
        .as_ref()
        .and_then(|s| s.privileged)
        .unwrap_or(false);
    container
        .volume_mounts
        .iter()
        .flatten()
        .enumerate()
        .map(|(i, m)| one_mount(&container.name, i, m, volumes, env, privileged, opts))
        .collect()
}

fn one_mount(
    container: &str,
    index: usize,
    m: &VolumeMount,
    volumes: &BTreeMap<String, MountedVolume>,
    env: &BTreeMap<String, String>,
    privileged: bool,
    opts: &MountOptions<'_>,
) -> Result<Mount, ContainerMountError> {
    let supports_rro = opts.runtime_supports_rro;
    let invalid = |message: String| ContainerMountError::Invalid {
        container: container.to_string(),
        mount: m.name.clone(),
        message,
    };
    let vol = volumes
        .get(&m.name)
        .ok_or_else(|| ContainerMountError::NoVolume {
            container: container.to_string(),
            mount: m.name.clone(),
        })?;
    let sub_path = match (m.sub_path.as_deref(), m.sub_path_expr.as_deref()) {
        (Some(s), Some(e)) if !s.is_empty() && !e.is_empty() => {
            return Err(invalid(
                "subPath and subPathExpr are mutually exclusive".into(),
            ))
        }
        (_, Some(e)) if !e.is_empty() => expand_sub_path(e, env).map_err(invalid)?,
        (Some(s), _) => s.to_string(),
        _ => String::new(),
    };
    let host_path = if sub_path.is_empty() {
        vol.host_path.clone()
    } else {
        resolve_sub_path(&vol.host_path, &sub_path).map_err(|e| match e {
            SubPathError::Invalid(message) => invalid(message),
            SubPathError::Escape(resolved) => ContainerMountError::Escape {
                container: container.to_string(),
                mount: m.name.clone(),
                sub_path: sub_path.clone(),
                resolved: resolved.display().to_string(),
                volume: vol.host_path.display().to_string(),
            },
            SubPathError::Io(op, path, source) => ContainerMountError::Io {
                container: container.to_string(),
                mount: m.name.clone(),
                op,
                path: path.display().to_string(),
                source,
            },
        })?
    };
    let host_path = match (&opts.safe_sub_paths, sub_path.is_empty()) {
        (Some(safe), false) => {
            bind_sub_path(safe, container, index, &m.name, &vol.host_path, &host_path)?
        }
        _ => host_path,
    };
    let propagation = match m.mount_propagation.as_deref().unwrap_or("None") {
        "None" => MountPropagation::PropagationPrivate,
        "HostToContainer" => MountPropagation::PropagationHostToContainer,
        "Bidirectional" if privileged => MountPropagation::PropagationBidirectional,
        "Bidirectional" => {
            return Err(invalid(
                "Bidirectional mount propagation is available only to privileged containers".into(),
            ))
        }
        other => return Err(invalid(format!("invalid mountPropagation {other:?}"))),
    };
    let readonly = m.read_only.unwrap_or(false) || vol.read_only;
    let recursive_read_only = match m.recursive_read_only.as_deref().unwrap_or("Disabled") {
        "Disabled" => false,
        mode @ ("Enabled" | "IfPossible") => {
            if !m.read_only.unwrap_or(false) {
                return Err(invalid("recursiveReadOnly requires readOnly: true".into()));
            }
            if propagation != MountPropagation::PropagationPrivate {
                return Err(invalid(
                    "recursiveReadOnly requires mountPropagation None".into(),
                ));
            }
            if mode == "Enabled" && !supports_rro {
                return Err(invalid(
                    "recursiveReadOnly: Enabled, but the container runtime does not support recursive read-only mounts"
                        .into(),
                ));
            }
            supports_rro
        }
        other => return Err(invalid(format!("invalid recursiveReadOnly {other:?}"))),
    };
    Ok(Mount {
        container_path: m.mount_path.clone(),
        host_path: host_path.to_string_lossy().into_owned(),
        readonly,
        propagation: propagation as i32,
        recursive_read_only,
        ..Default::default()
    })
}

/// `$(VAR)` expansion as upstream's: `$$` is a literal `$`, unknown or empty variables are an
/// error naming them.
pub fn expand_sub_path(expr: &str, env: &BTreeMap<String, String>) -> Result<String, String> {
    let mut out = String::new();
    let mut missing: Vec<String> = Vec::new();
    let mut rest = expr;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(r) = after.strip_prefix('$') {
            out.push('$');
            rest = r;
        } else if let Some(r) = after.strip_prefix('(') {
            match r.find(')') {
                Some(end) => {
                    let name = &r[..end];
                    match env.get(name) {
                        Some(v) if !v.is_empty() => out.push_str(v),
                        _ => {
                            if !missing.iter().any(|m| m == name) {
                                missing.push(name.to_string());
                            }
                        }
                    }
                    rest = &r[end + 1..];
                }
                None => {
                    out.push_str("$(");
                    rest = r;
                }
            }
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    if !missing.is_empty() {
        missing.sort();
        return Err(format!(
            "subPathExpr {expr:?}: missing value for {}",
            missing.join(", ")
        ));
    }
    Ok(out)
}

enum SubPathError {
    Invalid(String),
    Escape(PathBuf),
    Io(&'static str, PathBuf, std::io::Error),
}

/// The host path of `sub_path` inside `volume`, created as directories when missing.
/// Each existing component is resolved (symlinks followed) and must stay inside the volume.
fn resolve_sub_path(volume: &Path, sub_path: &str) -> Result<PathBuf, SubPathError> {
    let p = Path::new(sub_path);
    if p.is_absolute() {
        return Err(SubPathError::Invalid(format!(
            "subPath {sub_path:?} must not be an absolute path"
        )));
    }
    if p.components().any(|c| c == Component::ParentDir) {
        return Err(SubPathError::Invalid(format!(
            "subPath {sub_path:?} must not contain '..'"
        )));
    }
    let root = volume
        .canonicalize()
        .map_err(|e| SubPathError::Io("resolve volume", volume.to_path_buf(), e))?;
    let mode = std::fs::metadata(&root)
        .map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o7777)
        .map_err(|e| SubPathError::Io("stat", root.clone(), e))?;
    let mut current = root.clone();
    for c in p.components() {
        let Component::Normal(name) = c else { continue };
        let next = current.join(name);
        match std::fs::symlink_metadata(&next) {
            Ok(_) => {
                let resolved = next
                    .canonicalize()
                    .map_err(|e| SubPathError::Io("resolve", next.clone(), e))?;
                if !resolved.starts_with(&root) {
                    return Err(SubPathError::Escape(resolved));
                }
                current = resolved;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                // `current` has no symlinks left, so this creates inside the volume.
                std::fs::create_dir(&next)
                    .map_err(|e| SubPathError::Io("create subPath directory", next.clone(), e))?;
                std::fs::set_permissions(&next, std::os::unix::fs::PermissionsExt::from_mode(mode))
                    .map_err(|e| SubPathError::Io("chmod", next.clone(), e))?;
                current = next;
            }
            Err(e) => return Err(SubPathError::Io("stat", next, e)),
        }
    }
    Ok(current)
}

/// Bind the checked subPath `resolved` (inside `volume`) to its stable per-container path.
fn bind_sub_path(
    safe: &SafeSubPaths<'_>,
    container: &str,
    index: usize,
    volume_name: &str,
    volume: &Path,
    resolved: &Path,
) -> Result<PathBuf, ContainerMountError> {
    let io = |op: &'static str, path: &Path, source: std::io::Error| ContainerMountError::Io {
        container: container.to_string(),
        mount: volume_name.to_string(),
        op,
        path: path.display().to_string(),
        source,
    };
    let root = volume
        .canonicalize()
        .map_err(|e| io("resolve volume", volume, e))?;
    let rel = resolved.strip_prefix(&root).map_err(|_| {
        io(
            "subPath",
            resolved,
            std::io::Error::other("not inside the volume"),
        )
    })?;
    let target = safe
        .pod_dir
        .join("volume-subpaths")
        .join(volume_name)
        .join(container)
        .join(index.to_string());
    // A restarted container reuses its index: drop the previous bind first.
    if safe
        .mounter
        .is_mount_point(&target)
        .map_err(|e| io("check mount point", &target, e))?
    {
        safe.mounter
            .unmount(&target)
            .map_err(|e| io("unmount", &target, std::io::Error::other(e.to_string())))?;
    }
    let is_dir = std::fs::metadata(resolved)
        .map_err(|e| io("stat", resolved, e))?
        .is_dir();
    let parent = target.parent().unwrap_or(safe.pod_dir);
    std::fs::create_dir_all(parent).map_err(|e| io("create directory", parent, e))?;
    if is_dir {
        if !target.is_dir() {
            let _ = std::fs::remove_file(&target);
            std::fs::create_dir(&target).map_err(|e| io("create directory", &target, e))?;
        }
    } else if !target.is_file() {
        let _ = std::fs::remove_dir(&target);
        std::fs::File::create(&target).map_err(|e| io("create file", &target, e))?;
    }
    safe.mounter
        .bind_beneath(&root, rel, &target, false)
        .map_err(|e| {
            io(
                "bind subPath",
                &target,
                std::io::Error::other(e.to_string()),
            )
        })?;
    Ok(target)
}

/// Unmount and remove every subPath bind of the pod (`<pod_dir>/volume-subpaths`), after its
/// containers are gone. Idempotent.
pub fn clean_sub_paths(pod_dir: &Path, mounter: &dyn Mounter) -> Result<(), std::io::Error> {
    let root = pod_dir.join("volume-subpaths");
    let mut stack = vec![(root.clone(), 0)];
    let mut dirs = Vec::new();
    while let Some((dir, depth)) = stack.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        dirs.push(dir.clone());
        for entry in entries {
            let path = entry?.path();
            if depth == 2 {
                // <volume>/<container>/<index>: a bind target.
                if mounter.is_mount_point(&path)? {
                    mounter
                        .unmount(&path)
                        .map_err(|e| std::io::Error::other(e.to_string()))?;
                }
                if mounter.is_mount_point(&path)? {
                    return Err(std::io::Error::other(format!(
                        "{} is still mounted",
                        path.display()
                    )));
                }
                match std::fs::symlink_metadata(&path) {
                    Ok(m) if m.is_dir() => std::fs::remove_dir(&path)?,
                    Ok(_) => std::fs::remove_file(&path)?,
                    Err(_) => {}
                }
            } else {
                stack.push((path, depth + 1));
            }
        }
    }
    // Deepest first; each is empty by now.
    for dir in dirs.iter().rev() {
        match std::fs::remove_dir(dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
