//! Image records: which names point at which manifest, under `<root>/refs/<sha256(name)>.json`.
//! A record is written (atomically) only after every blob and snapshot of the image is
//! committed, so a listed image is always complete.

use crate::digest::Digest;
use crate::manifest::{Descriptor, Platform};
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum MetadataError {
    #[error("image record {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("image record {path} is corrupt: {source}")]
    Corrupt {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ImageRecord {
    /// Fully-qualified reference string, e.g. `docker.io/library/busybox:latest`, or
    /// `name@sha256:…` for by-digest pulls.
    pub name: String,
    /// What the name resolved to (index or manifest): its digest is the repo digest.
    pub target: Descriptor,
    /// The platform manifest chosen.
    pub manifest: Digest,
    /// The config digest: the image ID.
    pub config: Digest,
    /// Top-most snapshot chain ID.
    pub top_chain: Digest,
    /// Sum of the compressed layer sizes plus config.
    pub size: u64,
    pub platform: Platform,
    /// RFC 3339 time the record was written.
    pub created_at: String,
}

#[derive(Debug, Clone)]
pub struct MetadataStore {
    root: PathBuf,
}

impl MetadataStore {
    /// `root` is `<data-dir>/images`; records live in `<root>/refs`.
    pub fn open(root: &Path) -> Result<MetadataStore, MetadataError> {
        let store = MetadataStore {
            root: root.join("refs"),
        };
        fs::create_dir_all(&store.root).map_err(|source| MetadataError::Io {
            path: store.root.clone(),
            source,
        })?;
        Ok(store)
    }
    /// Names are hashed for the file name: references contain `/` and `:`, and may be longer
    /// than a file name may be.
    fn path(&self, name: &str) -> PathBuf {
        self.root
            .join(format!("{}.json", Digest::of(name.as_bytes()).hex()))
    }
    /// Create or replace the record for `record.name`.
    pub fn put(&self, record: &ImageRecord) -> Result<(), MetadataError> {
        let path = self.path(&record.name);
        let io_err = |source| MetadataError::Io {
            path: path.clone(),
            source,
        };
        let json = serde_json::to_vec_pretty(record).map_err(|source| MetadataError::Corrupt {
            path: path.clone(),
            source,
        })?;
        // temp + fsync + rename + fsync(dir): a reader sees the old record or the new one, and
        // a crash after `put` returns cannot lose it.
        let mut tmp = tempfile::Builder::new()
            .prefix(".tmp-")
            .suffix(".partial")
            .tempfile_in(&self.root)
            .map_err(io_err)?;
        tmp.write_all(&json).map_err(io_err)?;
        tmp.as_file().sync_all().map_err(io_err)?;
        tmp.persist(&path).map_err(|e| io_err(e.error))?;
        sync_dir(&self.root)
    }
    pub fn get(&self, name: &str) -> Result<Option<ImageRecord>, MetadataError> {
        let path = self.path(name);
        let record = match self.read(&path)? {
            Some(r) => r,
            None => return Ok(None),
        };
        // Only a sha256 collision could make this differ; treat that as absent, not as a match.
        Ok(Some(record).filter(|r| r.name == name))
    }
    fn read(&self, path: &Path) -> Result<Option<ImageRecord>, MetadataError> {
        let bytes = match fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(MetadataError::Io {
                    path: path.to_path_buf(),
                    source,
                })
            }
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|source| MetadataError::Corrupt {
                path: path.to_path_buf(),
                source,
            })
    }
    /// Every record, sorted by name.
    pub fn list(&self) -> Result<Vec<ImageRecord>, MetadataError> {
        let io_err = |source| MetadataError::Io {
            path: self.root.clone(),
            source,
        };
        let mut out = Vec::new();
        for entry in fs::read_dir(&self.root).map_err(io_err)? {
            let path = entry.map_err(io_err)?.path();
            // Temp files of interrupted writes end in `.partial` and are skipped.
            if path.extension().is_some_and(|e| e == "json") {
                if let Some(r) = self.read(&path)? {
                    out.push(r);
                }
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }
    /// Ok(false) when absent.
    pub fn delete(&self, name: &str) -> Result<bool, MetadataError> {
        let path = self.path(name);
        match fs::remove_file(&path) {
            Ok(()) => {
                sync_dir(&self.root)?;
                Ok(true)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(source) => Err(MetadataError::Io { path, source }),
        }
    }
}

fn sync_dir(dir: &Path) -> Result<(), MetadataError> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|source| MetadataError::Io {
            path: dir.to_path_buf(),
            source,
        })
}

/// The current time as RFC 3339 UTC (`2024-05-01T12:34:56Z`), without a date crate.
pub fn now_rfc3339() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    format_rfc3339(secs)
}

/// Howard Hinnant's days-to-civil algorithm.
fn format_rfc3339(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn record(name: &str) -> ImageRecord {
        ImageRecord {
            name: name.into(),
            target: Descriptor {
                media_type: crate::media::OCI_INDEX.into(),
                digest: Digest::of(name.as_bytes()),
                size: 1,
                platform: None,
                annotations: BTreeMap::new(),
                urls: vec![],
            },
            manifest: Digest::of(b"m"),
            config: Digest::of(b"c"),
            top_chain: Digest::of(b"t"),
            size: 42,
            platform: Platform::parse("linux/amd64").unwrap(),
            created_at: now_rfc3339(),
        }
    }

    #[test]
    fn put_get_list_delete() {
        let dir = tempfile::tempdir().unwrap();
        let m = MetadataStore::open(dir.path()).unwrap();
        assert!(m.get("docker.io/library/busybox:latest").unwrap().is_none());
        let a = record("docker.io/library/busybox:latest");
        let b = record("127.0.0.1:5000/app@sha256:0000000000000000000000000000000000000000000000000000000000000000");
        m.put(&a).unwrap();
        m.put(&b).unwrap();
        assert_eq!(m.get(&a.name).unwrap().as_ref(), Some(&a));
        assert_eq!(m.list().unwrap(), vec![b.clone(), a.clone()]);
        // Replace.
        let mut a2 = a.clone();
        a2.size = 7;
        m.put(&a2).unwrap();
        assert_eq!(m.get(&a.name).unwrap().unwrap().size, 7);
        assert_eq!(m.list().unwrap().len(), 2);
        assert!(dir
            .path()
            .join("refs")
            .join(format!("{}.json", Digest::of(a.name.as_bytes()).hex()))
            .is_file());
        assert!(m.delete(&a.name).unwrap());
        assert!(!m.delete(&a.name).unwrap());
        assert_eq!(m.list().unwrap(), vec![b]);
    }

    #[test]
    fn corrupt_and_partial_files() {
        let dir = tempfile::tempdir().unwrap();
        let m = MetadataStore::open(dir.path()).unwrap();
        fs::write(dir.path().join("refs/.tmp-x.partial"), b"{").unwrap();
        assert!(
            m.list().unwrap().is_empty(),
            "temp files of interrupted writes are ignored"
        );
        let name = "docker.io/library/x:1";
        fs::write(m.path(name), b"{not json").unwrap();
        let e = m.get(name).unwrap_err();
        assert!(matches!(e, MetadataError::Corrupt { .. }));
        assert!(e.to_string().contains(".json"), "{e}");
    }

    #[test]
    fn rfc3339() {
        assert_eq!(format_rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(format_rfc3339(1_714_566_896), "2024-05-01T12:34:56Z");
        assert_eq!(format_rfc3339(4_102_444_799), "2099-12-31T23:59:59Z");
        assert_eq!(now_rfc3339().len(), 20);
    }
}
