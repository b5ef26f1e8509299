//! hostPath: a path on the node, checked against the volume's `type` (upstream's checks and
//! messages). `DirectoryOrCreate` and `FileOrCreate` create what is missing.

use std::os::unix::fs::{FileTypeExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::HostPathVolumeSource;

use super::{io_err, VolumeError};

pub(super) fn setup(src: &HostPathVolumeSource, context: &str) -> Result<PathBuf, VolumeError> {
    let path = PathBuf::from(&src.path);
    check_type(&path, src.type_.as_deref().unwrap_or(""), context)?;
    Ok(path)
}

/// Upstream's `checkType`: follows symlinks, like `os.Stat`.
pub(super) fn check_type(path: &Path, type_: &str, context: &str) -> Result<(), VolumeError> {
    let meta = std::fs::metadata(path).ok();
    let fail = |expected: &'static str| VolumeError::HostPathType {
        context: context.to_string(),
        path: path.display().to_string(),
        expected,
    };
    let ft = meta.as_ref().map(|m| m.file_type());
    match type_ {
        "" => Ok(()),
        "DirectoryOrCreate" if meta.is_none() => {
            std::fs::create_dir_all(path)
                .map_err(|e| io_err(context, "create hostPath directory", path, e))?;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
                .map_err(|e| io_err(context, "chmod", path, e))
        }
        "DirectoryOrCreate" | "Directory" => match ft {
            Some(t) if t.is_dir() => Ok(()),
            _ => Err(fail("a directory")),
        },
        "FileOrCreate" if meta.is_none() => {
            // The parent must exist: upstream does not create it.
            std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .mode(0o644)
                .open(path)
                .map(drop)
                .map_err(|e| io_err(context, "create hostPath file", path, e))
        }
        "FileOrCreate" | "File" => match ft {
            Some(t) if t.is_file() => Ok(()),
            _ => Err(fail("a file")),
        },
        "Socket" => match ft {
            Some(t) if t.is_socket() => Ok(()),
            _ => Err(fail("a socket file")),
        },
        "CharDevice" => match ft {
            Some(t) if t.is_char_device() => Ok(()),
            _ => Err(fail("a character device")),
        },
        "BlockDevice" => match ft {
            Some(t) if t.is_block_device() => Ok(()),
            _ => Err(fail("a block device")),
        },
        other => Err(VolumeError::Invalid {
            context: context.to_string(),
            message: format!("{other} is an invalid volume type"),
        }),
    }
}
