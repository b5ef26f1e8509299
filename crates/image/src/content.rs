//! The content-addressed blob store under `<root>/blobs/sha256/<hex>`.
//!
//! Writes go to `<root>/ingest/<hex>` (kept across crashes so a later pull can resume with a
//! `Range` request), are verified against the expected digest and size, fsynced, and renamed
//! into place: a blob is either absent or complete and correct. An exclusive file lock on
//! `<root>/ingest/<hex>.lock` makes concurrent writers of one digest (tasks or processes)
//! download it once: the second waits, then finds the blob committed.
//!
//! The lock file is removed by its holder when it is done, so a waiter may find itself holding
//! a lock on an unlinked file; it then re-opens the path and locks again (the usual
//! "lock, then check the path still names the locked inode" protocol), which keeps exactly one
//! writer per digest at any time.

use crate::digest::{Digest, Verifier};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum ContentError {
    /// Retrying will not help: the source served the wrong bytes.
    #[error("blob {expected} failed verification (got {actual}, {actual_size} bytes, expected {expected_size} bytes); nothing was stored")]
    DigestMismatch {
        expected: Digest,
        actual: Digest,
        expected_size: u64,
        actual_size: u64,
    },
    #[error("blob {0} not found in the content store")]
    NotFound(Digest),
    #[error("no space left on the device holding {path} while writing blob {digest}: free space and retry")]
    NoSpace { path: PathBuf, digest: Digest },
    #[error("content store {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

#[derive(Debug, Clone)]
pub struct ContentStore {
    root: PathBuf,
}

/// An open, locked ingest for one digest. Data appended with [`Ingest::write`]; `offset()`
/// tells how much a previous, interrupted writer left (already hashed on open).
pub struct Ingest {
    store: ContentStore,
    expected: Digest,
    expected_size: u64,
    path: PathBuf,
    file: File,
    verifier: Verifier,
    /// Held for the life of the ingest; released on commit, failure or drop.
    _lock: IngestLock,
}

/// An exclusive lock on `ingest/<hex>.lock` (or on any lock path). Dropping it unlinks the lock
/// file first and then closes it, so the next holder re-opens a fresh one.
struct IngestLock {
    path: PathBuf,
    file: Option<File>,
}

impl Drop for IngestLock {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
        // Closing the descriptor releases the flock.
        self.file.take();
    }
}

/// Size of reads when hashing or copying blobs.
const CHUNK: usize = 1 << 20;

impl ContentStore {
    /// Open (creating directories) the store rooted at `root` (`<data-dir>/images`).
    pub fn open(root: &Path) -> Result<ContentStore, ContentError> {
        let store = ContentStore {
            root: root.to_path_buf(),
        };
        for dir in [store.blobs_dir(), store.ingest_dir()] {
            fs::create_dir_all(&dir).map_err(|source| ContentError::Io {
                path: dir.clone(),
                source,
            })?;
        }
        Ok(store)
    }
    pub fn root(&self) -> &Path {
        &self.root
    }
    /// Path of a committed blob (whether or not it exists).
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.root.join("blobs").join("sha256").join(digest.hex())
    }
    pub fn contains(&self, digest: &Digest) -> bool {
        self.blob_path(digest).is_file()
    }
    fn blobs_dir(&self) -> PathBuf {
        self.root.join("blobs").join("sha256")
    }
    /// `<root>/ingest`: partial downloads and their lock files.
    pub fn ingest_dir(&self) -> PathBuf {
        self.root.join("ingest")
    }
    /// Read a whole committed blob (manifests, configs).
    pub fn read(&self, digest: &Digest) -> Result<Vec<u8>, ContentError> {
        let path = self.blob_path(digest);
        fs::read(&path).map_err(|e| not_found_or_io(e, digest, path))
    }
    /// Open a committed blob for streaming.
    pub fn open_blob(&self, digest: &Digest) -> Result<std::fs::File, ContentError> {
        let path = self.blob_path(digest);
        File::open(&path).map_err(|e| not_found_or_io(e, digest, path))
    }
    /// Size in bytes of a committed blob.
    pub fn size(&self, digest: &Digest) -> Result<u64, ContentError> {
        let path = self.blob_path(digest);
        fs::metadata(&path)
            .map(|m| m.len())
            .map_err(|e| not_found_or_io(e, digest, path))
    }
    /// Write a small blob in one go (verified, atomic). No-op when already present.
    pub fn write_all(&self, expected: &Digest, data: &[u8]) -> Result<(), ContentError> {
        if let Some(mut ingest) = self.begin(expected, data.len() as u64)? {
            // Partial data of a small blob is not worth resuming from.
            ingest.truncate()?;
            ingest.write(data)?;
            ingest.commit()?;
        }
        Ok(())
    }
    /// Begin (or resume) writing `expected`. Blocks while another writer holds the lock; returns
    /// `Ok(None)` when, after acquiring it, the blob is already committed. Blocking: call from
    /// `spawn_blocking` in async code.
    pub fn begin(
        &self,
        expected: &Digest,
        expected_size: u64,
    ) -> Result<Option<Ingest>, ContentError> {
        if self.contains(expected) {
            return Ok(None);
        }
        let lock_path = self.ingest_dir().join(format!("{}.lock", expected.hex()));
        let lock = lock_exclusive(&lock_path, true)?.expect("blocking lock always acquires");
        // The previous holder may have committed while we waited.
        if self.contains(expected) {
            return Ok(None);
        }
        let path = self.ingest_dir().join(expected.hex());
        let io_err = |source| ContentError::Io {
            path: path.clone(),
            source,
        };
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io_err)?;
        // Hash what an interrupted writer left so `offset()` can be trusted for a Range resume.
        let mut verifier = Verifier::new();
        let mut buf = vec![0u8; CHUNK];
        loop {
            let n = file.read(&mut buf).map_err(io_err)?;
            if n == 0 {
                break;
            }
            verifier.update(&buf[..n]);
        }
        let mut ingest = Ingest {
            store: self.clone(),
            expected: expected.clone(),
            expected_size,
            path,
            file,
            verifier,
            _lock: lock,
        };
        if ingest.verifier.len() > expected_size {
            // Longer than the blob can be: not a prefix of it.
            ingest.truncate()?;
        }
        Ok(Some(ingest))
    }
    /// Every committed blob digest.
    pub fn list(&self) -> Result<Vec<Digest>, ContentError> {
        let dir = self.blobs_dir();
        let entries = fs::read_dir(&dir).map_err(|source| ContentError::Io {
            path: dir.clone(),
            source,
        })?;
        let mut out = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|source| ContentError::Io {
                path: dir.clone(),
                source,
            })?;
            if let Some(d) = entry
                .file_name()
                .to_str()
                .and_then(|n| Digest::from_hex(n).ok())
            {
                out.push(d);
            }
        }
        out.sort();
        Ok(out)
    }
    /// Delete a committed blob; Ok when absent.
    pub fn delete(&self, digest: &Digest) -> Result<(), ContentError> {
        let path = self.blob_path(digest);
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(ContentError::Io { path, source }),
        }
    }
    /// Re-hash every committed blob; returns the ones that do not match their name.
    pub fn verify_all(&self) -> Result<Vec<Digest>, ContentError> {
        let mut bad = Vec::new();
        for digest in self.list()? {
            let mut file = match self.open_blob(&digest) {
                Ok(f) => f,
                // Deleted by a concurrent prune since listing.
                Err(ContentError::NotFound(_)) => continue,
                Err(e) => return Err(e),
            };
            let path = self.blob_path(&digest);
            let mut verifier = Verifier::new();
            let mut buf = vec![0u8; CHUNK];
            loop {
                let n = file.read(&mut buf).map_err(|source| ContentError::Io {
                    path: path.clone(),
                    source,
                })?;
                if n == 0 {
                    break;
                }
                verifier.update(&buf[..n]);
            }
            if verifier.finish().0 != digest {
                bad.push(digest);
            }
        }
        Ok(bad)
    }

    /// Store a blob whose digest is not known in advance (a docker-archive layer file): stream
    /// it to a temp file under `ingest/` while hashing, then move it into place under the
    /// digest's lock. Returns the digest and size. Blocking.
    pub fn ingest_unknown(&self, mut reader: impl Read) -> Result<(Digest, u64), ContentError> {
        let dir = self.ingest_dir();
        let io_err = |path: &Path, source| ContentError::Io {
            path: path.to_path_buf(),
            source,
        };
        let tmp = tempfile::Builder::new()
            .prefix(TEMP_PREFIX)
            .tempfile_in(&dir)
            .map_err(|e| io_err(&dir, e))?;
        // Held while writing so `prune_ingest` can tell a live temp file from a crash leftover.
        tmp.as_file().lock().map_err(|e| io_err(tmp.path(), e))?;
        let mut verifier = Verifier::new();
        let mut buf = vec![0u8; CHUNK];
        let mut out = tmp.as_file();
        loop {
            let n = match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(io_err(tmp.path(), e)),
            };
            verifier.update(&buf[..n]);
            out.write_all(&buf[..n])
                .map_err(|e| self.write_error(e, tmp.path(), None))?;
        }
        let (digest, size) = verifier.finish();
        let lock_path = dir.join(format!("{}.lock", digest.hex()));
        let _lock = lock_exclusive(&lock_path, true)?;
        if !self.contains(&digest) {
            self.publish(tmp.as_file(), tmp.path(), &digest)?;
            // Renamed away: nothing left for the temp file's destructor to remove.
            let _ = tmp.into_temp_path().keep();
        }
        Ok((digest, size))
    }

    /// Remove partial downloads and temp files no writer holds (a writer holds the lock while
    /// it works). Returns the removed paths and their total size.
    pub fn prune_ingest(&self) -> Result<(Vec<PathBuf>, u64), ContentError> {
        let dir = self.ingest_dir();
        let entries = fs::read_dir(&dir).map_err(|source| ContentError::Io {
            path: dir.clone(),
            source,
        })?;
        let mut removed = Vec::new();
        let mut bytes = 0;
        for entry in entries {
            let entry = entry.map_err(|source| ContentError::Io {
                path: dir.clone(),
                source,
            })?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            let path = entry.path();
            let size = entry.metadata().map(|m| m.len()).unwrap_or(0);
            if name.starts_with(TEMP_PREFIX) {
                // A live temp file is flocked by its writer.
                let Ok(file) = File::open(&path) else {
                    continue;
                };
                if file.try_lock().is_ok() && fs::remove_file(&path).is_ok() {
                    bytes += size;
                    removed.push(path);
                }
            } else if let Ok(digest) = Digest::from_hex(name) {
                let lock_path = dir.join(format!("{}.lock", digest.hex()));
                // Held by a writer: skip; otherwise hold it while deleting.
                if let Some(_lock) = lock_exclusive(&lock_path, false)? {
                    if fs::remove_file(&path).is_ok() {
                        bytes += size;
                        removed.push(path);
                    }
                }
            } else if let Some(hex) = name.strip_suffix(".lock") {
                // A lock without a partial file: remove when nobody holds it.
                if !dir.join(hex).exists() {
                    drop(lock_exclusive(&path, false)?);
                }
            }
        }
        Ok((removed, bytes))
    }

    /// fsync `file`, make it read-only, rename it to the blob path, fsync the directory.
    fn publish(&self, file: &File, from: &Path, digest: &Digest) -> Result<(), ContentError> {
        let to = self.blob_path(digest);
        file.sync_all()
            .map_err(|e| self.write_error(e, from, Some(digest)))?;
        // Blobs are immutable; read-only mode guards against accidental edits through a path.
        use std::os::unix::fs::PermissionsExt as _;
        file.set_permissions(fs::Permissions::from_mode(0o444))
            .map_err(|source| ContentError::Io {
                path: from.to_path_buf(),
                source,
            })?;
        fs::rename(from, &to).map_err(|source| ContentError::Io {
            path: to.clone(),
            source,
        })?;
        let dir = self.blobs_dir();
        File::open(&dir)
            .and_then(|d| d.sync_all())
            .map_err(|source| ContentError::Io { path: dir, source })
    }

    fn write_error(&self, e: io::Error, path: &Path, digest: Option<&Digest>) -> ContentError {
        match digest {
            Some(digest)
                if matches!(
                    e.kind(),
                    io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded
                ) =>
            {
                ContentError::NoSpace {
                    path: path.to_path_buf(),
                    digest: digest.clone(),
                }
            }
            // Digest not known yet: the I/O error itself says "No space left on device".
            _ => ContentError::Io {
                path: path.to_path_buf(),
                source: e,
            },
        }
    }
}

/// Name prefix of temp files of [`ContentStore::ingest_unknown`].
const TEMP_PREFIX: &str = ".tmp-";

fn not_found_or_io(e: io::Error, digest: &Digest, path: PathBuf) -> ContentError {
    if e.kind() == io::ErrorKind::NotFound {
        ContentError::NotFound(digest.clone())
    } else {
        ContentError::Io { path, source: e }
    }
}

/// Take the exclusive lock at `path`, creating the file. With `block` false, `Ok(None)` when
/// someone else holds it. Loops until the locked file is the one the path names (see the module
/// doc).
fn lock_exclusive(path: &Path, block: bool) -> Result<Option<IngestLock>, ContentError> {
    use std::os::unix::fs::MetadataExt as _;
    let io_err = |source| ContentError::Io {
        path: path.to_path_buf(),
        source,
    };
    loop {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(io_err)?;
        if block {
            file.lock().map_err(io_err)?;
        } else {
            match file.try_lock() {
                Ok(()) => {}
                Err(fs::TryLockError::WouldBlock) => return Ok(None),
                Err(fs::TryLockError::Error(e)) => return Err(io_err(e)),
            }
        }
        let held = file.metadata().map_err(io_err)?;
        match fs::metadata(path) {
            Ok(now) if now.dev() == held.dev() && now.ino() == held.ino() => {
                return Ok(Some(IngestLock {
                    path: path.to_path_buf(),
                    file: Some(file),
                }));
            }
            // Unlinked (or replaced) by the previous holder: lock the current file instead.
            Ok(_) => continue,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io_err(e)),
        }
    }
}

impl Ingest {
    /// Bytes already present from an interrupted earlier write (resume from here).
    pub fn offset(&self) -> u64 {
        self.verifier.len()
    }
    /// The digest being written.
    pub fn digest(&self) -> &Digest {
        &self.expected
    }
    /// Discard partial data (the source does not support resumption).
    pub fn truncate(&mut self) -> Result<(), ContentError> {
        let io_err = |source| ContentError::Io {
            path: self.path.clone(),
            source,
        };
        self.file.set_len(0).map_err(io_err)?;
        self.file.seek(SeekFrom::Start(0)).map_err(io_err)?;
        self.verifier = Verifier::new();
        Ok(())
    }
    pub fn write(&mut self, data: &[u8]) -> Result<(), ContentError> {
        let total = self.verifier.len() + data.len() as u64;
        if total > self.expected_size {
            // Refuse early: a source that sends more than the descriptor says would otherwise
            // fill the disk before the size check at commit.
            let mut v = self.verifier.clone();
            v.update(data);
            let actual = v.finish().0;
            let _ = self.truncate();
            return Err(ContentError::DigestMismatch {
                expected: self.expected.clone(),
                actual,
                expected_size: self.expected_size,
                actual_size: total,
            });
        }
        self.file
            .write_all(data)
            .map_err(|e| self.store.write_error(e, &self.path, Some(&self.expected)))?;
        self.verifier.update(data);
        Ok(())
    }
    /// Verify digest and size, fsync, rename into `blobs/`, fsync the directory. On mismatch the
    /// partial file is removed and nothing is stored.
    pub fn commit(self) -> Result<(), ContentError> {
        let (actual, actual_size) = self.verifier.clone().finish();
        if actual != self.expected || actual_size != self.expected_size {
            let _ = fs::remove_file(&self.path);
            return Err(ContentError::DigestMismatch {
                expected: self.expected.clone(),
                actual,
                expected_size: self.expected_size,
                actual_size,
            });
        }
        self.store.publish(&self.file, &self.path, &self.expected)?;
        // The lock is released (and its file removed) as `self._lock` drops.
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::time::Duration;

    fn store() -> (tempfile::TempDir, ContentStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = ContentStore::open(dir.path()).unwrap();
        (dir, store)
    }

    #[test]
    fn write_read_list_delete() {
        let (_dir, cs) = store();
        let data = b"hello blob";
        let d = Digest::of(data);
        assert!(!cs.contains(&d));
        assert!(matches!(cs.read(&d), Err(ContentError::NotFound(x)) if x == d));
        cs.write_all(&d, data).unwrap();
        assert!(cs.contains(&d));
        assert_eq!(cs.read(&d).unwrap(), data);
        assert_eq!(cs.size(&d).unwrap(), data.len() as u64);
        let mut s = String::new();
        cs.open_blob(&d).unwrap().read_to_string(&mut s).unwrap();
        assert_eq!(s, "hello blob");
        // Idempotent.
        cs.write_all(&d, data).unwrap();
        assert_eq!(cs.list().unwrap(), vec![d.clone()]);
        // Nothing left behind in ingest/.
        assert_eq!(fs::read_dir(cs.ingest_dir()).unwrap().count(), 0);
        cs.delete(&d).unwrap();
        cs.delete(&d).unwrap();
        assert!(cs.list().unwrap().is_empty());
    }

    #[test]
    fn mismatch_stores_nothing() {
        let (_dir, cs) = store();
        let expected = Digest::of(b"right");
        let e = cs.write_all(&expected, b"wrong").unwrap_err();
        match &e {
            ContentError::DigestMismatch {
                expected: x,
                actual,
                expected_size,
                actual_size,
            } => {
                assert_eq!(x, &expected);
                assert_eq!(actual, &Digest::of(b"wrong"));
                assert_eq!((*expected_size, *actual_size), (5, 5));
            }
            other => panic!("{other:?}"),
        }
        assert!(e.to_string().contains(&expected.to_string()));
        assert!(!cs.contains(&expected));
        assert!(
            !cs.ingest_dir().join(expected.hex()).exists(),
            "partial file must be removed"
        );
        // Size mismatch with the right prefix.
        let mut ing = cs.begin(&expected, 4).unwrap().unwrap();
        assert!(matches!(
            ing.write(b"right"),
            Err(ContentError::DigestMismatch { actual_size: 5, .. })
        ));
        // The over-long write reset the ingest.
        assert_eq!(ing.offset(), 0);
        drop(ing);
        let mut ing = cs.begin(&expected, 6).unwrap().unwrap();
        ing.write(b"right").unwrap();
        assert!(matches!(
            ing.commit(),
            Err(ContentError::DigestMismatch {
                actual_size: 5,
                expected_size: 6,
                ..
            })
        ));
        assert!(!cs.contains(&expected));
        assert!(cs.list().unwrap().is_empty());
    }

    #[test]
    fn resumes_partial_data() {
        let (_dir, cs) = store();
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        let d = Digest::of(&data);
        let mut ing = cs.begin(&d, data.len() as u64).unwrap().unwrap();
        assert_eq!(ing.offset(), 0);
        ing.write(&data[..1_234_567]).unwrap();
        drop(ing); // interrupted
        assert!(!cs.contains(&d));
        assert!(
            cs.ingest_dir().join(d.hex()).exists(),
            "partial data kept for resumption"
        );
        let mut ing = cs.begin(&d, data.len() as u64).unwrap().unwrap();
        assert_eq!(ing.offset(), 1_234_567);
        assert_eq!(ing.digest(), &d);
        ing.write(&data[1_234_567..]).unwrap();
        ing.commit().unwrap();
        assert_eq!(cs.read(&d).unwrap(), data);
        assert!(cs.verify_all().unwrap().is_empty());
    }

    #[test]
    fn truncate_restarts() {
        let (_dir, cs) = store();
        let d = Digest::of(b"abcdef");
        let mut ing = cs.begin(&d, 6).unwrap().unwrap();
        ing.write(b"xyz").unwrap();
        drop(ing);
        let mut ing = cs.begin(&d, 6).unwrap().unwrap();
        assert_eq!(ing.offset(), 3);
        ing.truncate().unwrap();
        assert_eq!(ing.offset(), 0);
        ing.write(b"abcdef").unwrap();
        ing.commit().unwrap();
        assert_eq!(cs.read(&d).unwrap(), b"abcdef");
    }

    #[test]
    fn oversized_partial_is_discarded() {
        let (_dir, cs) = store();
        let d = Digest::of(b"ab");
        fs::write(cs.ingest_dir().join(d.hex()), b"way too long").unwrap();
        let ing = cs.begin(&d, 2).unwrap().unwrap();
        assert_eq!(ing.offset(), 0);
    }

    #[test]
    fn concurrent_writers_download_once() {
        let (_dir, cs) = store();
        let data = vec![7u8; 100_000];
        let d = Digest::of(&data);
        let mut first = cs.begin(&d, data.len() as u64).unwrap().unwrap();
        first.write(&data[..50_000]).unwrap();

        let (tx, rx) = mpsc::channel();
        let second = {
            let cs = cs.clone();
            let d = d.clone();
            std::thread::spawn(move || {
                tx.send("waiting").unwrap();
                let r = cs.begin(&d, 100_000).map(|o| o.is_none());
                tx.send("returned").unwrap();
                r
            })
        };
        assert_eq!(rx.recv().unwrap(), "waiting");
        // The second writer must block while the first holds the lock.
        assert!(
            rx.recv_timeout(Duration::from_millis(300)).is_err(),
            "second writer did not wait"
        );
        first.write(&data[50_000..]).unwrap();
        first.commit().unwrap();
        assert_eq!(
            rx.recv_timeout(Duration::from_secs(10)).unwrap(),
            "returned"
        );
        assert!(
            second.join().unwrap().unwrap(),
            "second writer must find the blob committed"
        );
        assert_eq!(cs.read(&d).unwrap(), data);
        assert_eq!(
            fs::read_dir(cs.ingest_dir()).unwrap().count(),
            0,
            "lock files cleaned up"
        );
    }

    #[test]
    fn waiter_takes_over_after_failed_writer() {
        let (_dir, cs) = store();
        let data = b"payload".to_vec();
        let d = Digest::of(&data);
        let mut first = cs.begin(&d, 7).unwrap().unwrap();
        first.write(b"garbage").unwrap();
        let waiter = {
            let (cs, d, data) = (cs.clone(), d.clone(), data.clone());
            std::thread::spawn(move || {
                let mut ing = cs
                    .begin(&d, 7)
                    .unwrap()
                    .expect("first writer failed, so this one writes");
                ing.write(&data).unwrap();
                ing.commit().unwrap();
            })
        };
        std::thread::sleep(Duration::from_millis(100));
        assert!(matches!(
            first.commit(),
            Err(ContentError::DigestMismatch { .. })
        ));
        waiter.join().unwrap();
        assert_eq!(cs.read(&d).unwrap(), data);
    }

    #[test]
    fn many_threads_one_blob() {
        let (_dir, cs) = store();
        let data: Vec<u8> = (0..200_000u32).map(|i| i as u8).collect();
        let d = Digest::of(&data);
        let writes = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let (cs, d, data, writes) = (cs.clone(), d.clone(), data.clone(), writes.clone());
                std::thread::spawn(move || {
                    if let Some(mut ing) = cs.begin(&d, data.len() as u64).unwrap() {
                        writes.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        for chunk in data.chunks(10_000) {
                            ing.write(chunk).unwrap();
                        }
                        ing.commit().unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(writes.load(std::sync::atomic::Ordering::SeqCst), 1);
        assert_eq!(cs.read(&d).unwrap(), data);
    }

    #[test]
    fn verify_all_finds_corruption() {
        let (_dir, cs) = store();
        let (a, b) = (Digest::of(b"a"), Digest::of(b"b"));
        cs.write_all(&a, b"a").unwrap();
        cs.write_all(&b, b"b").unwrap();
        let path = cs.blob_path(&b);
        use std::os::unix::fs::PermissionsExt as _;
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        fs::write(&path, b"corrupt").unwrap();
        assert_eq!(cs.verify_all().unwrap(), vec![b]);
    }

    #[test]
    fn blobs_are_read_only() {
        let (_dir, cs) = store();
        let d = Digest::of(b"x");
        cs.write_all(&d, b"x").unwrap();
        use std::os::unix::fs::PermissionsExt as _;
        assert_eq!(
            fs::metadata(cs.blob_path(&d)).unwrap().permissions().mode() & 0o777,
            0o444
        );
    }

    #[test]
    fn ingest_unknown_hashes_and_dedups() {
        let (_dir, cs) = store();
        let data = vec![3u8; 2_500_000];
        let (d, size) = cs.ingest_unknown(&data[..]).unwrap();
        assert_eq!((d.clone(), size), (Digest::of(&data), data.len() as u64));
        assert_eq!(cs.read(&d).unwrap(), data);
        let (d2, _) = cs.ingest_unknown(&data[..]).unwrap();
        assert_eq!(d2, d);
        assert_eq!(
            fs::read_dir(cs.ingest_dir()).unwrap().count(),
            0,
            "no temp files left"
        );
    }

    #[test]
    fn prune_ingest_skips_live_writers() {
        let (_dir, cs) = store();
        let stale = Digest::of(b"stale");
        let live = Digest::of(b"live!");
        let mut ing = cs.begin(&stale, 5).unwrap().unwrap();
        ing.write(b"st").unwrap();
        drop(ing);
        let mut live_ing = cs.begin(&live, 5).unwrap().unwrap();
        live_ing.write(b"li").unwrap();
        fs::write(cs.ingest_dir().join(".tmp-crashed"), b"123").unwrap();
        let (removed, bytes) = cs.prune_ingest().unwrap();
        assert_eq!(bytes, 2 + 3);
        assert_eq!(removed.len(), 2);
        assert!(!cs.ingest_dir().join(stale.hex()).exists());
        assert!(cs.ingest_dir().join(live.hex()).exists());
        live_ing.write(b"ve!").unwrap();
        live_ing.commit().unwrap();
        assert!(cs.contains(&live));
    }

    #[test]
    fn waits_for_a_writer_in_another_process() {
        // flock(1) holds the ingest lock from a separate process, as a second deckhand would.
        let (_dir, cs) = store();
        let d = Digest::of(b"cross-process");
        let lock = cs.ingest_dir().join(format!("{}.lock", d.hex()));
        let mut child = std::process::Command::new("flock")
            .arg(&lock)
            .args(["sleep", "1"])
            .spawn()
            .expect("flock(1) from util-linux is needed for this test");
        // Wait until the child holds the lock.
        let probe = File::open({
            while !lock.exists() {
                std::thread::sleep(Duration::from_millis(10));
            }
            &lock
        })
        .unwrap();
        while probe.try_lock().is_ok() {
            probe.unlock().unwrap();
            std::thread::sleep(Duration::from_millis(10));
        }
        let start = std::time::Instant::now();
        let ingest = cs.begin(&d, 13).unwrap();
        assert!(
            start.elapsed() >= Duration::from_millis(300),
            "begin did not wait for the other process"
        );
        assert!(ingest.is_some());
        child.wait().unwrap();
    }

    #[test]
    fn out_of_space_is_reported_as_such() {
        let (_dir, cs) = store();
        let d = Digest::of(b"x");
        let e = cs.write_error(
            io::Error::from(io::ErrorKind::StorageFull),
            Path::new("/x"),
            Some(&d),
        );
        assert!(matches!(&e, ContentError::NoSpace { digest, .. } if digest == &d));
        assert!(e.to_string().contains("free space and retry"));
        let e = cs.write_error(
            io::Error::from(io::ErrorKind::PermissionDenied),
            Path::new("/x"),
            Some(&d),
        );
        assert!(matches!(e, ContentError::Io { .. }));
    }
}
