//! The atomic writer behind configMap, secret, downwardAPI and projected volumes: a running
//! container sees either the whole old payload or the whole new one, never a mix.
//!
//! Layout inside the volume directory (upstream's `pkg/volume/util/atomic_writer.go`):
//!
//! ```text
//! ..2026_11_29_04_05_00.1234   the payload, written fresh on every change
//! ..data -> ..2026_11_29_04_05_00.1234
//! key -> ..data/key             one symlink per top-level entry of the payload
//! ```
//!
//! An update writes a new timestamped directory, points a temporary symlink at it and renames
//! that over `..data` (rename is atomic), then fixes the user-visible symlinks and removes the
//! old directory. An unchanged payload writes nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

const DATA_DIR: &str = "..data";
const DATA_DIR_TMP: &str = "..data_tmp";
const MAX_PATH_LENGTH: usize = 4096;
const MAX_SEGMENT_LENGTH: usize = 255;

/// One file of a payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileProjection {
    pub data: Vec<u8>,
    /// Permission bits (`defaultMode` or an item's `mode`).
    pub mode: u32,
    /// Owner to set on the file (the projected service-account token for a `runAsUser`).
    pub fs_user: Option<u32>,
}

impl FileProjection {
    pub fn new(data: impl Into<Vec<u8>>, mode: u32) -> Self {
        FileProjection {
            data: data.into(),
            mode,
            fs_user: None,
        }
    }
}

/// Relative path (as the volume's `items[].path` spells it) → file.
pub type Payload = BTreeMap<String, FileProjection>;

#[derive(Debug, thiserror::Error)]
pub enum AtomicWriteError {
    /// The payload names a path that can never be written: fix the volume spec; retrying does
    /// not help.
    #[error("{context}: invalid path {path:?}: {reason}")]
    InvalidPath {
        context: String,
        path: String,
        reason: String,
    },
    /// A file-system call failed; retrying may help (e.g. after space is freed).
    #[error("{context}: {op} {path}: {source}")]
    Io {
        context: String,
        op: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// What [`AtomicWriter::write`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteOutcome {
    /// The payload on disk already matched: nothing was written.
    Unchanged,
    /// A new data directory (its name under the target directory) is now behind `..data`.
    Written { data_dir: String },
}

/// Writes payloads into one volume directory. Not safe for two writers on the same
/// directory at once (the kubelet serialises setups per volume); readers are always safe.
#[derive(Debug, Clone)]
pub struct AtomicWriter {
    target_dir: PathBuf,
    /// Names the volume in errors, e.g. `pod default/web volume "config"`.
    context: String,
}

/// Ownership applied to every written file and directory (a pod's `fsGroup`): group-owned by
/// the group, group-readable, directories setgid, as upstream's `SetVolumeOwnership` does for
/// read-only volumes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FsGroup(pub u32);

impl AtomicWriter {
    pub fn new(target_dir: impl Into<PathBuf>, context: impl Into<String>) -> Self {
        AtomicWriter {
            target_dir: target_dir.into(),
            context: context.into(),
        }
    }

    pub fn target_dir(&self) -> &Path {
        &self.target_dir
    }

    /// Make the directory hold exactly `payload`. The target directory must exist.
    pub fn write(
        &self,
        payload: &Payload,
        fs_group: Option<FsGroup>,
    ) -> Result<WriteOutcome, AtomicWriteError> {
        let payload = self.validate(payload)?;
        let data_link = self.target_dir.join(DATA_DIR);
        let old_dir = match std::fs::read_link(&data_link) {
            Ok(t) => Some(t.to_string_lossy().into_owned()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(self.io("readlink", &data_link, e)),
        };
        let old_paths = match &old_dir {
            Some(d) => self.files_in(&self.target_dir.join(d))?,
            None => BTreeSet::new(),
        };
        let unchanged = match &old_dir {
            Some(d) => self.matches(&self.target_dir.join(d), &payload, &old_paths, fs_group)?,
            None => false,
        };

        let outcome = if unchanged {
            WriteOutcome::Unchanged
        } else {
            let new_dir = self.new_data_dir()?;
            let new_path = self.target_dir.join(&new_dir);
            if let Err(e) = self.write_payload(&new_path, &payload, fs_group) {
                let _ = std::fs::remove_dir_all(&new_path);
                return Err(e);
            }
            self.swap_data_link(&new_dir)?;
            WriteOutcome::Written { data_dir: new_dir }
        };

        self.create_user_visible(&payload)?;
        self.remove_user_visible(&payload, &old_paths)?;
        if let (Some(old), WriteOutcome::Written { .. }) = (&old_dir, &outcome) {
            let old_path = self.target_dir.join(old);
            // Only ever remove a directory of our own naming, never what a tampered link names.
            if is_data_dir_name(old) {
                std::fs::remove_dir_all(&old_path)
                    .or_else(ignore_not_found)
                    .map_err(|e| self.io("remove old data directory", &old_path, e))?;
            }
        }
        Ok(outcome)
    }

    fn io(&self, op: &'static str, path: &Path, source: std::io::Error) -> AtomicWriteError {
        AtomicWriteError::Io {
            context: self.context.clone(),
            op,
            path: path.display().to_string(),
            source,
        }
    }

    fn invalid(&self, path: &str, reason: impl Into<String>) -> AtomicWriteError {
        AtomicWriteError::InvalidPath {
            context: self.context.clone(),
            path: path.to_string(),
            reason: reason.into(),
        }
    }

    /// Clean every path and reject what could escape or collide.
    fn validate(&self, payload: &Payload) -> Result<Payload, AtomicWriteError> {
        let mut cleaned = Payload::new();
        for (path, file) in payload {
            let clean = validate_path(path).map_err(|reason| self.invalid(path, reason))?;
            if cleaned.insert(clean.clone(), file.clone()).is_some() {
                return Err(self.invalid(path, "names the same file as another item"));
            }
        }
        // A file cannot also be a directory of another item ("a" and "a/b").
        for path in cleaned.keys() {
            let mut prefix = String::new();
            for segment in path.split('/') {
                if !prefix.is_empty() {
                    if cleaned.contains_key(&prefix) {
                        return Err(self.invalid(
                            path,
                            format!("{prefix:?} is both a file and a directory of the payload"),
                        ));
                    }
                    prefix.push('/');
                }
                prefix.push_str(segment);
            }
        }
        Ok(cleaned)
    }

    /// Relative paths of the regular files under `dir`.
    fn files_in(&self, dir: &Path) -> Result<BTreeSet<String>, AtomicWriteError> {
        let mut out = BTreeSet::new();
        let mut stack = vec![PathBuf::new()];
        while let Some(rel) = stack.pop() {
            let abs = dir.join(&rel);
            let entries = match std::fs::read_dir(&abs) {
                Ok(e) => e,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(self.io("read directory", &abs, e)),
            };
            for entry in entries {
                let entry = entry.map_err(|e| self.io("read directory", &abs, e))?;
                let child = rel.join(entry.file_name());
                let ft = entry
                    .file_type()
                    .map_err(|e| self.io("stat", &entry.path(), e))?;
                if ft.is_dir() {
                    stack.push(child);
                } else {
                    out.insert(child.to_string_lossy().into_owned());
                }
            }
        }
        Ok(out)
    }

    /// Whether `dir` already holds exactly `payload` (contents, modes and owners).
    fn matches(
        &self,
        dir: &Path,
        payload: &Payload,
        existing: &BTreeSet<String>,
        fs_group: Option<FsGroup>,
    ) -> Result<bool, AtomicWriteError> {
        if existing.len() != payload.len() || payload.keys().any(|k| !existing.contains(k)) {
            return Ok(false);
        }
        for (path, file) in payload {
            let p = dir.join(path);
            let meta = match std::fs::symlink_metadata(&p) {
                Ok(m) => m,
                Err(_) => return Ok(false),
            };
            if meta.mode() & 0o7777 != effective_mode(file.mode, fs_group)
                || file.fs_user.is_some_and(|u| u != meta.uid())
                || fs_group.is_some_and(|g| g.0 != meta.gid())
            {
                return Ok(false);
            }
            match std::fs::read(&p) {
                Ok(data) if data == file.data => {}
                _ => return Ok(false),
            }
        }
        Ok(true)
    }

    /// Create `..<timestamp>.<unique>` and return its name.
    fn new_data_dir(&self) -> Result<String, AtomicWriteError> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let stamp = utc_stamp(now.as_secs());
        loop {
            let unique = (now.subsec_nanos() as u64)
                .wrapping_mul(31)
                .wrapping_add(std::process::id() as u64)
                .wrapping_add(COUNTER.fetch_add(1, Ordering::Relaxed))
                % 10_000_000_000;
            let name = format!("..{stamp}.{unique}");
            let path = self.target_dir.join(&name);
            match std::fs::create_dir(&path) {
                Ok(()) => {
                    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
                        .map_err(|e| self.io("chmod", &path, e))?;
                    return Ok(name);
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(self.io("create data directory", &path, e)),
            }
        }
    }

    fn write_payload(
        &self,
        dir: &Path,
        payload: &Payload,
        fs_group: Option<FsGroup>,
    ) -> Result<(), AtomicWriteError> {
        let mut dirs = BTreeSet::new();
        for (path, file) in payload {
            let p = dir.join(path);
            if let Some(parent) = p.parent() {
                if parent != dir {
                    std::fs::create_dir_all(parent)
                        .map_err(|e| self.io("create directory", parent, e))?;
                    let mut d = parent;
                    while d != dir {
                        dirs.insert(d.to_path_buf());
                        d = d.parent().unwrap_or(dir);
                    }
                }
            }
            std::fs::write(&p, &file.data).map_err(|e| self.io("write", &p, e))?;
            // Exact bits, whatever the umask.
            std::fs::set_permissions(
                &p,
                std::fs::Permissions::from_mode(effective_mode(file.mode, fs_group)),
            )
            .map_err(|e| self.io("chmod", &p, e))?;
            if file.fs_user.is_some() || fs_group.is_some() {
                std::os::unix::fs::lchown(&p, file.fs_user, fs_group.map(|g| g.0))
                    .map_err(|e| self.io("chown", &p, e))?;
            }
        }
        if let Some(g) = fs_group {
            dirs.insert(dir.to_path_buf());
            for d in &dirs {
                std::os::unix::fs::lchown(d, None, Some(g.0))
                    .map_err(|e| self.io("chown", d, e))?;
                std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o2755))
                    .map_err(|e| self.io("chmod", d, e))?;
            }
        }
        Ok(())
    }

    fn swap_data_link(&self, new_dir: &str) -> Result<(), AtomicWriteError> {
        let tmp = self.target_dir.join(DATA_DIR_TMP);
        // A leftover from a crash between symlink and rename.
        std::fs::remove_file(&tmp)
            .or_else(ignore_not_found)
            .map_err(|e| self.io("remove", &tmp, e))?;
        std::os::unix::fs::symlink(new_dir, &tmp).map_err(|e| self.io("symlink", &tmp, e))?;
        let data = self.target_dir.join(DATA_DIR);
        std::fs::rename(&tmp, &data).map_err(|e| self.io("rename onto ..data", &tmp, e))
    }

    /// `key -> ..data/key` for each top-level entry; existing entries are left alone.
    fn create_user_visible(&self, payload: &Payload) -> Result<(), AtomicWriteError> {
        for top in top_level(payload.keys()) {
            let link = self.target_dir.join(&top);
            match std::fs::symlink_metadata(&link) {
                Ok(_) => continue,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(self.io("stat", &link, e)),
            }
            std::os::unix::fs::symlink(Path::new(DATA_DIR).join(&top), &link)
                .map_err(|e| self.io("symlink", &link, e))?;
        }
        Ok(())
    }

    /// Remove the symlinks of top-level entries the old payload had and the new one lacks.
    fn remove_user_visible(
        &self,
        payload: &Payload,
        old_paths: &BTreeSet<String>,
    ) -> Result<(), AtomicWriteError> {
        let keep = top_level(payload.keys());
        for top in top_level(old_paths.iter()) {
            if keep.contains(&top) {
                continue;
            }
            let link = self.target_dir.join(&top);
            match std::fs::symlink_metadata(&link) {
                Ok(m) if m.file_type().is_symlink() => std::fs::remove_file(&link)
                    .or_else(ignore_not_found)
                    .map_err(|e| self.io("remove", &link, e))?,
                _ => {}
            }
        }
        Ok(())
    }
}

/// The file mode actually written: an fsGroup adds group read (upstream's read-only mask).
fn effective_mode(mode: u32, fs_group: Option<FsGroup>) -> u32 {
    let mode = mode & 0o777;
    if fs_group.is_some() {
        mode | 0o440
    } else {
        mode
    }
}

fn top_level<'a>(paths: impl Iterator<Item = &'a String>) -> BTreeSet<String> {
    paths
        .filter_map(|p| p.split('/').next())
        .map(str::to_string)
        .collect()
}

fn is_data_dir_name(name: &str) -> bool {
    name.starts_with("..")
        && name != DATA_DIR
        && name != DATA_DIR_TMP
        && !name.contains('/')
        && name.len() > 2
}

fn ignore_not_found(e: std::io::Error) -> std::io::Result<()> {
    if e.kind() == std::io::ErrorKind::NotFound {
        Ok(())
    } else {
        Err(e)
    }
}

/// Check one payload path (upstream's rules) and return it cleaned (`a//./b/` → `a/b`).
pub fn validate_path(path: &str) -> Result<String, String> {
    if path.is_empty() {
        return Err("must not be empty".into());
    }
    if path.len() > MAX_PATH_LENGTH {
        return Err(format!(
            "must be less than or equal to {MAX_PATH_LENGTH} characters"
        ));
    }
    if Path::new(path).is_absolute() {
        return Err("must be relative path".into());
    }
    if path.starts_with("..") {
        return Err("must not start with '..'".into());
    }
    let mut segments = Vec::new();
    for c in Path::new(path).components() {
        match c {
            Component::Normal(s) => {
                let s = s.to_string_lossy();
                if s.len() > MAX_SEGMENT_LENGTH {
                    return Err(format!(
                        "segments must be less than or equal to {MAX_SEGMENT_LENGTH} characters"
                    ));
                }
                segments.push(s.into_owned());
            }
            Component::CurDir => {}
            Component::ParentDir => return Err("must not contain '..'".into()),
            Component::RootDir | Component::Prefix(_) => return Err("must be relative path".into()),
        }
    }
    if segments.is_empty() {
        return Err("must name a file".into());
    }
    Ok(segments.join("/"))
}

/// `2006_01_02_15_04_05` in UTC, upstream's timestamp format.
fn utc_stamp(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}_{month:02}_{day:02}_{:02}_{:02}_{:02}",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn stamp_formats_like_upstream() {
        assert_eq!(utc_stamp(0), "1970_01_01_00_00_00");
        assert_eq!(utc_stamp(1_795_921_500), "2026_11_29_03_05_00");
    }

    #[test]
    fn paths_are_validated_and_cleaned() {
        assert_eq!(validate_path("a/./b//c").unwrap(), "a/b/c");
        assert_eq!(
            validate_path("/etc/passwd").unwrap_err(),
            "must be relative path"
        );
        assert_eq!(
            validate_path("a/../b").unwrap_err(),
            "must not contain '..'"
        );
        assert_eq!(
            validate_path("..data").unwrap_err(),
            "must not start with '..'"
        );
        assert!(validate_path(&"x".repeat(256)).is_err());
        assert!(validate_path("").is_err());
    }
}
