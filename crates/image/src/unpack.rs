//! Applying one layer tar (uncompressed, gzip or zstd) to a snapshot directory, converting
//! OCI / AUFS whiteouts into overlayfs form so the directory can be an overlay lowerdir as is:
//! `.wh.<name>` becomes a 0/0 character device `<name>`; `.wh..wh..opq` sets
//! `trusted.overlay.opaque=y` on its directory. Hard links, symlinks, device nodes, fifos,
//! xattrs (PAX `SCHILY.xattr.*`), modes (incl. setuid/sticky), ownership and mtimes are kept.
//! Entries that would escape the target (`..`, absolute paths, through symlinks) are refused.
//! The uncompressed stream is hashed on the way so the caller can check the diff ID.
//!
//! Three threads share the work, because decompression, SHA-256 and file-system calls each
//! take a similar share of the CPU: the calling thread decompresses, one scoped thread hashes,
//! another parses the tar and writes files (on a single CPU it is all done inline). Within
//! a layer, the later of two entries for one path wins (a non-directory is removed before its
//! replacement is created; a repeated directory only gets its metadata updated). Directory
//! modes and times are applied last, deepest first, because creating children would change
//! the times and a read-only mode would get in the way.

use crate::digest::{Digest, Verifier};
use crate::media::Compression;
use deckhand_sys::fs::{self as sysfs, FsError, NodeKind};
use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::fs::{FileTimes, OpenOptions, Permissions};
use std::io::{self, BufReader, ErrorKind, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    #[error("layer entry {entry:?} would escape the root file system; the layer is malformed or malicious")]
    Escape { entry: String },
    #[error("layer is not a valid tar stream: {0}")]
    Tar(String),
    #[error("layer decompression failed: {0}")]
    Decompress(String),
    #[error(
        "hard link {entry:?} points to {target:?}, which is in neither this layer nor its parents"
    )]
    DanglingHardlink { entry: String, target: String },
    #[error("no space left on the device holding {0}: free space and retry")]
    NoSpace(PathBuf),
    #[error("unpacking {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Sys(#[from] deckhand_sys::fs::FsError),
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UnpackStats {
    /// Uncompressed tar bytes read.
    pub tar_bytes: u64,
    pub entries: u64,
}

/// Size of the chunks handed from the decompressing thread to the writing thread.
const CHUNK: usize = 256 * 1024;
/// Chunks in flight: enough to ride out a slow `create` without stalling decompression.
const QUEUE: usize = 8;
/// Buffer for copying file data out of the tar stream.
const COPY_BUF: usize = 1024 * 1024;

const WHITEOUT_PREFIX: &str = ".wh.";
const OPAQUE_MARKER: &str = ".wh..wh..opq";
const OPAQUE_XATTR: &str = "trusted.overlay.opaque";

/// Apply `layer` to the empty directory `target`. `parents` are the already-unpacked lower
/// snapshot directories, top-most first; they are read only to resolve hard links to files of
/// lower layers (the file is copied up, then linked). Returns the diff ID (sha256 of the
/// uncompressed tar, read to its end) and stats. Blocking.
pub fn apply_layer<R: Read>(
    layer: R,
    compression: Compression,
    target: &Path,
    parents: &[PathBuf],
) -> Result<(Digest, UnpackStats), UnpackError> {
    let mut decoder: Box<dyn Read + '_> = match compression {
        Compression::None => Box::new(layer),
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(
            BufReader::with_capacity(CHUNK, layer),
        )),
        Compression::Zstd => {
            let mut d =
                zstd::stream::read::Decoder::with_buffer(BufReader::with_capacity(CHUNK, layer))
                    .map_err(|e| UnpackError::Decompress(format!("zstd: {e}")))?;
            // Accept layers compressed with `--long` (windows up to 2 GiB, as `zstd -d` does
            // with --long=31); memory is only used when a layer asks for it.
            d.window_log_max(31)
                .map_err(|e| UnpackError::Decompress(format!("zstd: {e}")))?;
            Box::new(d)
        }
    };

    // With one CPU the extra threads only add hand-offs.
    if std::thread::available_parallelism().map_or(1, |n| n.get()) < 2 {
        return apply_inline(decoder, target, parents);
    }
    let (data_tx, data_rx) = mpsc::sync_channel::<io::Result<Arc<Vec<u8>>>>(QUEUE);
    let (hash_tx, hash_rx) = mpsc::sync_channel::<Arc<Vec<u8>>>(QUEUE);
    std::thread::scope(|scope| {
        let hasher = scope.spawn(move || {
            let mut h = Verifier::new();
            for chunk in hash_rx {
                h.update(&chunk);
            }
            h.finish()
        });
        let mut writer = Some(scope.spawn(move || {
            let reader = ChunkReader {
                rx: data_rx,
                cur: Arc::default(),
                pos: 0,
            };
            Applier::new(target, parents).run(reader)
        }));
        let mut data_tx = Some(data_tx);
        let mut finished_early = None;
        let result = loop {
            let mut buf = vec![0; CHUNK];
            let n = match fill(&mut decoder, &mut buf) {
                Ok(0) => break Ok(()),
                Ok(n) => n,
                Err(e) => {
                    // Wake the writer with an error so it stops; the real cause is ours.
                    if let Some(tx) = data_tx.take() {
                        let _ = tx.send(Err(io::Error::other("layer decompression failed")));
                    }
                    break Err(UnpackError::Decompress(e.to_string()));
                }
            };
            buf.truncate(n);
            let chunk = Arc::new(buf);
            if hash_tx.send(chunk.clone()).is_err() {
                break Err(UnpackError::Decompress("the hashing thread stopped".into()));
            }
            if let Some(tx) = &data_tx {
                if tx.send(Ok(chunk)).is_err() {
                    // The writer stopped reading. Either the tar ended, and the rest of the
                    // stream (padding) is still hashed because the diff ID covers it, or it
                    // failed, and there is no point in reading on.
                    data_tx = None;
                    match writer.take().map(join) {
                        Some(Err(e)) => break Err(e),
                        other => finished_early = other,
                    }
                }
            }
        };
        drop(data_tx);
        drop(hash_tx);
        let (digest, len) = match hasher.join() {
            Ok(v) => v,
            Err(panic) => std::panic::resume_unwind(panic),
        };
        let written = writer.take().map(join);
        result?;
        let stats = match (finished_early, written) {
            (Some(stats), _) | (None, Some(stats)) => stats?,
            (None, None) => UnpackStats::default(),
        };
        Ok((
            digest,
            UnpackStats {
                tar_bytes: len,
                ..stats
            },
        ))
    })
}

/// Hashes everything read through it; remembers a read error so it can be reported as a
/// decompression failure rather than as a broken tar.
struct Hashing<'r> {
    inner: Box<dyn Read + 'r>,
    verifier: Verifier,
    failed: Option<String>,
}

impl Read for Hashing<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.inner.read(buf) {
            Ok(n) => {
                self.verifier.update(&buf[..n]);
                Ok(n)
            }
            Err(e) => {
                self.failed = Some(e.to_string());
                Err(e)
            }
        }
    }
}

fn apply_inline(
    decoder: Box<dyn Read + '_>,
    target: &Path,
    parents: &[PathBuf],
) -> Result<(Digest, UnpackStats), UnpackError> {
    let mut hashing = Hashing {
        inner: decoder,
        verifier: Verifier::new(),
        failed: None,
    };
    let result = Applier::new(target, parents).run(BufReader::with_capacity(CHUNK, &mut hashing));
    if let Some(e) = hashing.failed.take() {
        return Err(UnpackError::Decompress(e));
    }
    let stats = result?;
    io::copy(&mut hashing, &mut io::sink()).map_err(|e| UnpackError::Decompress(e.to_string()))?;
    let (digest, len) = hashing.verifier.finish();
    Ok((
        digest,
        UnpackStats {
            tar_bytes: len,
            ..stats
        },
    ))
}

/// Read until `buf` is full or the stream ends, so chunks stay large.
fn fill(r: &mut dyn Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

fn join(
    handle: std::thread::ScopedJoinHandle<'_, Result<UnpackStats, UnpackError>>,
) -> Result<UnpackStats, UnpackError> {
    match handle.join() {
        Ok(result) => result,
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

/// The writing thread's view of the decompressed stream.
struct ChunkReader {
    rx: mpsc::Receiver<io::Result<Arc<Vec<u8>>>>,
    cur: Arc<Vec<u8>>,
    pos: usize,
}

impl Read for ChunkReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.cur.len() {
            match self.rx.recv() {
                Ok(Ok(next)) => {
                    self.cur = next;
                    self.pos = 0;
                }
                Ok(Err(e)) => return Err(e),
                // The sender is gone: end of stream.
                Err(mpsc::RecvError) => return Ok(0),
            }
        }
        let n = out.len().min(self.cur.len() - self.pos);
        out[..n].copy_from_slice(&self.cur[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// Metadata of one entry that applies to every kind of file.
struct Meta {
    mode: u32,
    uid: u32,
    gid: u32,
    atime: (i64, i64),
    mtime: (i64, i64),
    xattrs: Vec<(String, Vec<u8>)>,
}

impl Meta {
    fn from_entry<R: Read>(entry: &mut tar::Entry<'_, R>) -> io::Result<Meta> {
        let h = entry.header();
        let old = h.as_old();
        let mode = lenient(&old.mode, h.mode().map(u64::from))? as u32 & 0o7777;
        let mut uid = lenient(&old.uid, h.uid())?;
        let mut gid = lenient(&old.gid, h.gid())?;
        let mut mtime = (lenient(&old.mtime, h.mtime())? as i64, 0);
        let mut atime = None;
        let mut xattrs = Vec::new();
        if let Some(pax) = entry.pax_extensions()? {
            for ext in pax {
                let ext = ext?;
                let Ok(key) = ext.key() else { continue };
                if let Some(name) = key.strip_prefix("SCHILY.xattr.") {
                    xattrs.push((name.to_string(), ext.value_bytes().to_vec()));
                    continue;
                }
                let Ok(value) = ext.value() else { continue };
                match key {
                    "uid" => uid = value.parse().unwrap_or(uid),
                    "gid" => gid = value.parse().unwrap_or(gid),
                    "mtime" => mtime = parse_pax_time(value).unwrap_or(mtime),
                    "atime" => atime = parse_pax_time(value),
                    _ => {}
                }
            }
        }
        Ok(Meta {
            mode,
            uid: u32::try_from(uid)
                .map_err(|_| io::Error::other(format!("uid {uid} out of range")))?,
            gid: u32::try_from(gid)
                .map_err(|_| io::Error::other(format!("gid {gid} out of range")))?,
            atime: atime.unwrap_or(mtime),
            mtime,
            xattrs,
        })
    }
}

/// A numeric header field that some writers leave blank (all NULs or spaces) reads as 0, as
/// GNU tar reads it; anything else unparseable is an error.
fn lenient(raw: &[u8], parsed: io::Result<u64>) -> io::Result<u64> {
    match parsed {
        Ok(v) => Ok(v),
        Err(_) if raw.iter().all(|b| *b == 0 || *b == b' ') => Ok(0),
        Err(e) => Err(e),
    }
}

/// A PAX time: decimal seconds with an optional fraction (`1700000000.123456789`).
fn parse_pax_time(v: &str) -> Option<(i64, i64)> {
    let (secs, frac) = match v.split_once('.') {
        Some((s, f)) => (s, f),
        None => (v, ""),
    };
    let secs: i64 = secs.parse().ok()?;
    let digits: String = frac.chars().take(9).collect();
    let mut nanos: i64 = if digits.is_empty() {
        0
    } else {
        digits.parse().ok()?
    };
    for _ in digits.len()..9 {
        nanos *= 10;
    }
    // "-1.5" means 1.5 s before the epoch.
    if v.starts_with('-') && nanos > 0 {
        return Some((secs - 1, 1_000_000_000 - nanos));
    }
    Some((secs, nanos))
}

fn system_time((secs, nanos): (i64, i64)) -> SystemTime {
    let nanos = Duration::from_nanos(nanos.clamp(0, 999_999_999) as u64);
    if secs >= 0 {
        UNIX_EPOCH + Duration::from_secs(secs as u64) + nanos
    } else {
        UNIX_EPOCH - Duration::from_secs(secs.unsigned_abs()) + nanos
    }
}

fn file_times(meta: &Meta) -> FileTimes {
    FileTimes::new()
        .set_accessed(system_time(meta.atime))
        .set_modified(system_time(meta.mtime))
}

/// `name` without a leading `/` or `./`, split into components; `..` anywhere is refused.
/// `Ok(None)` is the root itself.
fn normalize(raw: &[u8]) -> Result<Option<PathBuf>, UnpackError> {
    let mut out = PathBuf::new();
    for comp in raw.split(|b| *b == b'/') {
        match comp {
            b"" | b"." => {}
            b".." => {
                return Err(UnpackError::Escape {
                    entry: String::from_utf8_lossy(raw).into_owned(),
                })
            }
            c => out.push(OsStr::from_bytes(c)),
        }
    }
    Ok(if out.as_os_str().is_empty() {
        None
    } else {
        Some(out)
    })
}

fn is_whiteout(m: &std::fs::Metadata) -> bool {
    m.file_type().is_char_device() && m.rdev() == 0
}

fn io_err(path: &Path, e: io::Error) -> UnpackError {
    if e.kind() == ErrorKind::StorageFull || e.kind() == ErrorKind::QuotaExceeded {
        UnpackError::NoSpace(path.to_path_buf())
    } else {
        UnpackError::Io {
            path: path.to_path_buf(),
            source: e,
        }
    }
}

fn sys_err(path: &Path, e: FsError) -> UnpackError {
    if matches!(e.kind(), ErrorKind::StorageFull | ErrorKind::QuotaExceeded) {
        UnpackError::NoSpace(path.to_path_buf())
    } else {
        UnpackError::Sys(e)
    }
}

fn display(rel: &Path) -> String {
    rel.display().to_string()
}

/// Deferred metadata of a directory: mode and times go on last.
struct DirMeta {
    path: PathBuf,
    mode: u32,
    times: Option<((i64, i64), (i64, i64))>,
}

/// Where a path of the merged view below this layer comes from.
enum Found {
    /// In the layer being unpacked.
    Here(PathBuf),
    /// In a parent layer (absolute path inside that layer).
    Parent(PathBuf),
}

/// Why a path is not visible in the merged view.
enum Hidden {
    /// A whiteout or opaque directory hides it, or it does not exist anywhere.
    Absent,
    /// A parent component inside the layer being unpacked is a symlink.
    Symlink,
}

/// The state of one layer application (runs on the writing thread).
struct Applier<'a> {
    target: &'a Path,
    parents: &'a [PathBuf],
    /// Relative paths known to be real directories in `target` (not symlinks), so each entry
    /// costs no `lstat` of its ancestors. Cleared whenever a directory is removed.
    dirs: HashSet<PathBuf>,
    dir_meta: Vec<Option<DirMeta>>,
    dir_index: HashMap<PathBuf, usize>,
    buf: Vec<u8>,
    entries: u64,
    /// xattr names already warned about.
    warned: HashSet<String>,
}

impl<'a> Applier<'a> {
    fn new(target: &'a Path, parents: &'a [PathBuf]) -> Self {
        Applier {
            target,
            parents,
            dirs: HashSet::new(),
            dir_meta: Vec::new(),
            dir_index: HashMap::new(),
            buf: vec![0; COPY_BUF],
            entries: 0,
            warned: HashSet::new(),
        }
    }

    fn run<R: Read>(mut self, reader: R) -> Result<UnpackStats, UnpackError> {
        let mut archive = tar::Archive::new(reader);
        let entries = archive
            .entries()
            .map_err(|e| UnpackError::Tar(e.to_string()))?;
        for entry in entries {
            let mut entry = entry.map_err(|e| UnpackError::Tar(e.to_string()))?;
            if matches!(entry.header().entry_type(), tar::EntryType::XGlobalHeader) {
                continue;
            }
            self.entries += 1;
            self.entry(&mut entry)?;
        }
        self.finish_dirs()?;
        Ok(UnpackStats {
            tar_bytes: 0,
            entries: self.entries,
        })
    }

    fn entry<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>) -> Result<(), UnpackError> {
        let raw = entry.path_bytes().into_owned();
        let name = String::from_utf8_lossy(&raw).into_owned();
        let rel = normalize(&raw)?;
        let meta = Meta::from_entry(entry)
            .map_err(|e| UnpackError::Tar(format!("entry {name:?}: {e}")))?;
        let kind = match entry.header().entry_type() {
            // Pre-POSIX (v7) archives mark directories only by a trailing slash.
            tar::EntryType::Regular if raw.ends_with(b"/") => tar::EntryType::Directory,
            kind => kind,
        };

        let Some(rel) = rel else {
            // The layer's root directory: only its metadata applies.
            if kind.is_dir() {
                self.apply_dir_meta(self.target.to_path_buf(), PathBuf::new(), &meta)?;
            }
            return Ok(());
        };

        let base = rel.file_name().map(|n| n.as_bytes()).unwrap_or_default();
        if let Some(hidden) = base.strip_prefix(WHITEOUT_PREFIX.as_bytes()) {
            return self.whiteout(&rel, hidden, &meta, &name);
        }

        use tar::EntryType as T;
        match kind {
            T::Regular | T::Continuous | T::GNUSparse => self.regular(entry, &rel, &meta),
            T::Directory => self.directory(&rel, &meta),
            T::Symlink => {
                let link = entry
                    .link_name_bytes()
                    .filter(|l| !l.is_empty())
                    .ok_or_else(|| UnpackError::Tar(format!("symlink {name:?} has no target")))?
                    .into_owned();
                self.symlink(&rel, &link, &meta)
            }
            T::Link => {
                let link = entry
                    .link_name_bytes()
                    .ok_or_else(|| UnpackError::Tar(format!("hard link {name:?} has no target")))?
                    .into_owned();
                self.hardlink(&rel, &link, &name)
            }
            T::Char | T::Block | T::Fifo => {
                let h = entry.header();
                let major = h.device_major().ok().flatten().unwrap_or(0) as u64;
                let minor = h.device_minor().ok().flatten().unwrap_or(0) as u64;
                let node = match kind {
                    T::Char => NodeKind::Char,
                    T::Block => NodeKind::Block,
                    _ => NodeKind::Fifo,
                };
                self.node(&rel, node, major, minor, &meta)
            }
            other => {
                tracing::warn!(entry = %name, kind = ?other, "skipping layer entry of unsupported type");
                Ok(())
            }
        }
    }

    fn abs(&self, rel: &Path) -> PathBuf {
        self.target.join(rel)
    }

    /// Make sure every ancestor of `rel` is a real directory inside the target, creating
    /// missing ones. A symlinked ancestor is refused: writing through it could leave the root.
    fn ensure_parent(&mut self, rel: &Path, entry: &str) -> Result<(), UnpackError> {
        let Some(parent) = rel.parent().filter(|p| !p.as_os_str().is_empty()) else {
            return Ok(());
        };
        if self.dirs.contains(parent) {
            return Ok(());
        }
        let mut cur = PathBuf::new();
        for comp in parent.components() {
            cur.push(comp);
            if self.dirs.contains(&cur) {
                continue;
            }
            let abs = self.abs(&cur);
            match std::fs::symlink_metadata(&abs) {
                Ok(m) if m.is_dir() => {}
                Ok(m) if m.file_type().is_symlink() => {
                    return Err(UnpackError::Escape {
                        entry: entry.to_string(),
                    })
                }
                Ok(m) if is_whiteout(&m) => {
                    // This layer deleted the directory and now puts something in it again:
                    // the new directory hides everything below it.
                    std::fs::remove_file(&abs).map_err(|e| io_err(&abs, e))?;
                    self.implicit_dir(&cur, true)?;
                }
                Ok(_) => {
                    return Err(UnpackError::Io {
                        path: abs,
                        source: io::Error::new(
                            ErrorKind::NotADirectory,
                            format!("a parent of layer entry {entry:?} is not a directory"),
                        ),
                    })
                }
                Err(e) if e.kind() == ErrorKind::NotFound => self.implicit_dir(&cur, false)?,
                Err(e) => return Err(io_err(&abs, e)),
            }
            self.dirs.insert(cur.clone());
        }
        Ok(())
    }

    /// Create a directory the tar did not list (its entry is missing or comes later). It
    /// takes the metadata of the same directory in the top-most parent layer, because in the
    /// overlay this directory's attributes replace that one's.
    fn implicit_dir(&mut self, rel: &Path, opaque: bool) -> Result<(), UnpackError> {
        let abs = self.abs(rel);
        std::fs::create_dir(&abs).map_err(|e| io_err(&abs, e))?;
        if opaque {
            sysfs::lsetxattr(&abs, OPAQUE_XATTR, b"y").map_err(|e| sys_err(&abs, e))?;
        }
        let lower = match self.lookup_lower(rel) {
            Ok(Found::Parent(p)) => std::fs::symlink_metadata(p).ok().filter(|m| m.is_dir()),
            _ => None,
        };
        let (mode, uid, gid, times) = match lower {
            Some(m) => (
                m.mode() & 0o7777,
                m.uid(),
                m.gid(),
                Some(((m.atime(), m.atime_nsec()), (m.mtime(), m.mtime_nsec()))),
            ),
            None => (0o755, 0, 0, None),
        };
        sysfs::lchown(&abs, uid, gid).map_err(|e| sys_err(&abs, e))?;
        self.record_dir(abs, rel.to_path_buf(), mode, times);
        Ok(())
    }

    fn record_dir(
        &mut self,
        path: PathBuf,
        rel: PathBuf,
        mode: u32,
        times: Option<((i64, i64), (i64, i64))>,
    ) {
        let meta = DirMeta { path, mode, times };
        match self.dir_index.get(&rel) {
            // A repeated directory keeps its place (its first appearance) but the later
            // metadata wins.
            Some(&i) => self.dir_meta[i] = Some(meta),
            None => {
                self.dir_index.insert(rel, self.dir_meta.len());
                self.dir_meta.push(Some(meta));
            }
        }
    }

    /// Remove whatever this layer has at `rel` (a whiteout or a replacement follows).
    fn remove_existing(&mut self, rel: &Path) -> Result<bool, UnpackError> {
        let abs = self.abs(rel);
        let m = match std::fs::symlink_metadata(&abs) {
            Ok(m) => m,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(io_err(&abs, e)),
        };
        if m.is_dir() {
            // std's remove_dir_all does not follow symlinks inside the tree.
            std::fs::remove_dir_all(&abs).map_err(|e| io_err(&abs, e))?;
            self.dirs.clear();
            let gone: Vec<PathBuf> = self
                .dir_index
                .keys()
                .filter(|k| k.starts_with(rel))
                .cloned()
                .collect();
            for k in gone {
                if let Some(i) = self.dir_index.remove(&k) {
                    self.dir_meta[i] = None;
                }
            }
        } else {
            std::fs::remove_file(&abs).map_err(|e| io_err(&abs, e))?;
        }
        Ok(true)
    }

    fn set_xattrs(&mut self, path: &Path, meta: &Meta) -> Result<(), UnpackError> {
        for (name, value) in &meta.xattrs {
            // overlayfs interprets these (opaque, redirect, metacopy): a layer must not steer
            // the overlay through them. Our own opaque markers come from `.wh..wh..opq`.
            if name.starts_with("trusted.overlay.") {
                self.warn_once(
                    path,
                    name,
                    "ignoring an overlayfs xattr carried by the layer",
                );
                continue;
            }
            match sysfs::lsetxattr(path, name, value) {
                Ok(()) => {}
                Err(e) if e.is_unsupported() || e.is_permission() => self.warn_once(
                    path,
                    name,
                    &format!("extended attribute not kept ({e}): the file system or our privileges do not allow it"),
                ),
                Err(e) => return Err(sys_err(path, e)),
            }
        }
        Ok(())
    }

    /// One warning per xattr name and layer: a layer can carry thousands of the same one.
    fn warn_once(&mut self, path: &Path, xattr: &str, what: &str) {
        if self.warned.insert(xattr.to_string()) {
            tracing::warn!(path = %path.display(), xattr, "{what} (further occurrences in this layer are logged at debug level)");
        } else {
            tracing::debug!(path = %path.display(), xattr, "{what}");
        }
    }

    fn regular<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        rel: &Path,
        meta: &Meta,
    ) -> Result<(), UnpackError> {
        let name = display(rel);
        self.ensure_parent(rel, &name)?;
        let abs = self.abs(rel);
        let open = || OpenOptions::new().write(true).create_new(true).open(&abs);
        let mut file = match open() {
            Ok(f) => f,
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                // Never write into an existing inode: it may be hard-linked elsewhere.
                self.remove_existing(rel)?;
                open().map_err(|e| io_err(&abs, e))?
            }
            Err(e) => return Err(io_err(&abs, e)),
        };
        loop {
            let n = match entry.read(&mut self.buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => {
                    return Err(UnpackError::Tar(format!(
                        "reading the data of {name:?}: {e}"
                    )))
                }
            };
            file.write_all(&self.buf[..n])
                .map_err(|e| io_err(&abs, e))?;
        }
        // Order matters: chown clears setuid/setgid and file capabilities, so the mode and the
        // xattrs go on after it; the times go last because nothing after may touch them.
        std::os::unix::fs::fchown(&file, Some(meta.uid), Some(meta.gid))
            .map_err(|e| io_err(&abs, e))?;
        file.set_permissions(Permissions::from_mode(meta.mode))
            .map_err(|e| io_err(&abs, e))?;
        self.set_xattrs(&abs, meta)?;
        file.set_times(file_times(meta))
            .map_err(|e| io_err(&abs, e))?;
        Ok(())
    }

    fn directory(&mut self, rel: &Path, meta: &Meta) -> Result<(), UnpackError> {
        let name = display(rel);
        self.ensure_parent(rel, &name)?;
        let abs = self.abs(rel);
        match std::fs::create_dir(&abs) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                let m = std::fs::symlink_metadata(&abs).map_err(|e| io_err(&abs, e))?;
                if !m.is_dir() {
                    let was_whiteout = is_whiteout(&m);
                    self.remove_existing(rel)?;
                    std::fs::create_dir(&abs).map_err(|e| io_err(&abs, e))?;
                    if was_whiteout {
                        // Deleted, then created again in the same layer: nothing of the old
                        // directory below may show through.
                        sysfs::lsetxattr(&abs, OPAQUE_XATTR, b"y").map_err(|e| sys_err(&abs, e))?;
                    }
                }
            }
            Err(e) => return Err(io_err(&abs, e)),
        }
        self.dirs.insert(rel.to_path_buf());
        self.apply_dir_meta(abs, rel.to_path_buf(), meta)
    }

    fn apply_dir_meta(
        &mut self,
        abs: PathBuf,
        rel: PathBuf,
        meta: &Meta,
    ) -> Result<(), UnpackError> {
        sysfs::lchown(&abs, meta.uid, meta.gid).map_err(|e| sys_err(&abs, e))?;
        self.set_xattrs(&abs, meta)?;
        self.record_dir(abs, rel, meta.mode, Some((meta.atime, meta.mtime)));
        Ok(())
    }

    fn symlink(&mut self, rel: &Path, link: &[u8], meta: &Meta) -> Result<(), UnpackError> {
        let name = display(rel);
        self.ensure_parent(rel, &name)?;
        let abs = self.abs(rel);
        let link = OsStr::from_bytes(link);
        if let Err(e) = std::os::unix::fs::symlink(link, &abs) {
            if e.kind() != ErrorKind::AlreadyExists {
                return Err(io_err(&abs, e));
            }
            self.remove_existing(rel)?;
            std::os::unix::fs::symlink(link, &abs).map_err(|e| io_err(&abs, e))?;
        }
        sysfs::lchown(&abs, meta.uid, meta.gid).map_err(|e| sys_err(&abs, e))?;
        self.set_xattrs(&abs, meta)?;
        sysfs::lutimes(&abs, meta.atime, meta.mtime).map_err(|e| sys_err(&abs, e))?;
        Ok(())
    }

    fn node(
        &mut self,
        rel: &Path,
        kind: NodeKind,
        major: u64,
        minor: u64,
        meta: &Meta,
    ) -> Result<(), UnpackError> {
        let name = display(rel);
        self.ensure_parent(rel, &name)?;
        let abs = self.abs(rel);
        if let Err(e) = sysfs::mknod(&abs, kind, meta.mode, major, minor) {
            if e.kind() != ErrorKind::AlreadyExists {
                return Err(sys_err(&abs, e));
            }
            self.remove_existing(rel)?;
            sysfs::mknod(&abs, kind, meta.mode, major, minor).map_err(|e| sys_err(&abs, e))?;
        }
        sysfs::lchown(&abs, meta.uid, meta.gid).map_err(|e| sys_err(&abs, e))?;
        // The node was just created here and is not a symlink, so chmod by path is safe; it
        // is needed because mknod's mode passed through the umask and chown cleared setgid.
        std::fs::set_permissions(&abs, Permissions::from_mode(meta.mode))
            .map_err(|e| io_err(&abs, e))?;
        self.set_xattrs(&abs, meta)?;
        sysfs::lutimes(&abs, meta.atime, meta.mtime).map_err(|e| sys_err(&abs, e))?;
        Ok(())
    }

    fn whiteout(
        &mut self,
        rel: &Path,
        hidden: &[u8],
        meta: &Meta,
        entry: &str,
    ) -> Result<(), UnpackError> {
        let name = display(rel);
        self.ensure_parent(rel, &name)?;
        let dir = rel.parent().map(Path::to_path_buf).unwrap_or_default();
        if rel.file_name().map(|n| n.as_bytes()) == Some(OPAQUE_MARKER.as_bytes()) {
            let abs = self.abs(&dir);
            return sysfs::lsetxattr(&abs, OPAQUE_XATTR, b"y").map_err(|e| sys_err(&abs, e));
        }
        if hidden.starts_with(WHITEOUT_PREFIX.as_bytes()) {
            // Other AUFS metadata (`.wh..wh.plnk`, `.wh..wh.aufs`) means nothing to overlayfs.
            return Ok(());
        }
        if hidden.is_empty() || hidden == b"." || hidden == b".." || hidden.contains(&b'/') {
            return Err(UnpackError::Escape {
                entry: entry.to_string(),
            });
        }
        let hidden_rel = dir.join(OsStr::from_bytes(hidden));
        self.remove_existing(&hidden_rel)?;
        let abs = self.abs(&hidden_rel);
        sysfs::mknod(&abs, NodeKind::Char, 0, 0, 0).map_err(|e| sys_err(&abs, e))?;
        sysfs::lchown(&abs, meta.uid, meta.gid).map_err(|e| sys_err(&abs, e))?;
        Ok(())
    }

    fn hardlink(&mut self, rel: &Path, link: &[u8], entry: &str) -> Result<(), UnpackError> {
        let target_rel = normalize(link)?.ok_or_else(|| {
            UnpackError::Tar(format!("hard link {entry:?} points to the root directory"))
        })?;
        let link_name = String::from_utf8_lossy(link).into_owned();
        self.ensure_parent(rel, entry)?;
        let abs = self.abs(rel);
        let source = match self.lookup(&target_rel) {
            Ok(Found::Here(p)) => p,
            Ok(Found::Parent(p)) => self.copy_up(&target_rel, &p, entry)?,
            Err(Hidden::Symlink) => {
                return Err(UnpackError::Escape {
                    entry: format!("{entry} -> {link_name}"),
                })
            }
            Err(Hidden::Absent) => {
                return Err(UnpackError::DanglingHardlink {
                    entry: entry.to_string(),
                    target: link_name,
                })
            }
        };
        if std::fs::symlink_metadata(&source).is_ok_and(|m| m.is_dir()) {
            return Err(UnpackError::Tar(format!(
                "hard link {entry:?} points to the directory {link_name:?}"
            )));
        }
        if let Err(e) = std::fs::hard_link(&source, &abs) {
            if e.kind() != ErrorKind::AlreadyExists {
                return Err(io_err(&abs, e));
            }
            if rel == target_rel {
                return Ok(());
            }
            self.remove_existing(rel)?;
            std::fs::hard_link(&source, &abs).map_err(|e| io_err(&abs, e))?;
        }
        Ok(())
    }

    /// Find `rel` in the merged view of this layer over its parents, honouring whiteouts and
    /// opaque directories the way overlayfs does.
    fn lookup(&self, rel: &Path) -> Result<Found, Hidden> {
        self.lookup_in(rel, true)
    }

    /// Like [`Self::lookup`] but ignoring this layer.
    fn lookup_lower(&self, rel: &Path) -> Result<Found, Hidden> {
        self.lookup_in(rel, false)
    }

    fn lookup_in(&self, rel: &Path, include_self: bool) -> Result<Found, Hidden> {
        let here = std::iter::once(self.target).filter(|_| include_self);
        let layers = here.chain(self.parents.iter().map(PathBuf::as_path));
        let comps: Vec<_> = rel.components().collect();
        for (i, layer) in layers.enumerate() {
            let is_self = include_self && i == 0;
            let mut opaque_above = false;
            let mut missing = false;
            let mut cur = layer.to_path_buf();
            for comp in &comps[..comps.len() - 1] {
                cur.push(comp);
                match std::fs::symlink_metadata(&cur) {
                    Ok(m) if m.is_dir() => {
                        if matches!(sysfs::lgetxattr(&cur, OPAQUE_XATTR), Ok(Some(v)) if v == b"y")
                        {
                            opaque_above = true;
                        }
                    }
                    Ok(m) if is_self && m.file_type().is_symlink() => return Err(Hidden::Symlink),
                    // A whiteout or any non-directory hides everything below it.
                    Ok(_) => return Err(Hidden::Absent),
                    Err(_) => {
                        missing = true;
                        break;
                    }
                }
            }
            if !missing {
                let full = layer.join(rel);
                match std::fs::symlink_metadata(&full) {
                    Ok(m) if is_whiteout(&m) => return Err(Hidden::Absent),
                    Ok(_) if is_self => return Ok(Found::Here(full)),
                    Ok(_) => return Ok(Found::Parent(full)),
                    Err(_) => {}
                }
            }
            if opaque_above {
                return Err(Hidden::Absent);
            }
        }
        Err(Hidden::Absent)
    }

    /// Copy a parent layer's file into this layer (as overlayfs's copy-up would), so a hard
    /// link to it can be made here.
    fn copy_up(&mut self, rel: &Path, source: &Path, entry: &str) -> Result<PathBuf, UnpackError> {
        self.ensure_parent(rel, entry)?;
        let dest = self.abs(rel);
        let m = std::fs::symlink_metadata(source).map_err(|e| io_err(source, e))?;
        let ft = m.file_type();
        if ft.is_file() {
            // `copy` uses copy_file_range: a reflink or in-kernel copy where possible.
            std::fs::copy(source, &dest).map_err(|e| io_err(&dest, e))?;
        } else if ft.is_symlink() {
            let link = std::fs::read_link(source).map_err(|e| io_err(source, e))?;
            std::os::unix::fs::symlink(link, &dest).map_err(|e| io_err(&dest, e))?;
        } else if ft.is_char_device() || ft.is_block_device() || ft.is_fifo() {
            let kind = if ft.is_char_device() {
                NodeKind::Char
            } else if ft.is_block_device() {
                NodeKind::Block
            } else {
                NodeKind::Fifo
            };
            let (major, minor) = sysfs::split_dev(m.rdev());
            sysfs::mknod(&dest, kind, m.mode() & 0o7777, major, minor)
                .map_err(|e| sys_err(&dest, e))?;
        } else {
            return Err(UnpackError::Tar(format!(
                "hard link {entry:?} points to {}, which cannot be linked",
                rel.display()
            )));
        }
        sysfs::lchown(&dest, m.uid(), m.gid()).map_err(|e| sys_err(&dest, e))?;
        if !ft.is_symlink() {
            std::fs::set_permissions(&dest, Permissions::from_mode(m.mode() & 0o7777))
                .map_err(|e| io_err(&dest, e))?;
        }
        let names = sysfs::llistxattr(source).map_err(|e| sys_err(source, e))?;
        let mut xattrs = Vec::new();
        for name in names {
            if let Some(v) = sysfs::lgetxattr(source, &name).map_err(|e| sys_err(source, e))? {
                xattrs.push((name, v));
            }
        }
        let meta = Meta {
            mode: m.mode() & 0o7777,
            uid: m.uid(),
            gid: m.gid(),
            atime: (m.atime(), m.atime_nsec()),
            mtime: (m.mtime(), m.mtime_nsec()),
            xattrs,
        };
        self.set_xattrs(&dest, &meta)?;
        sysfs::lutimes(&dest, meta.atime, meta.mtime).map_err(|e| sys_err(&dest, e))?;
        Ok(dest)
    }

    /// Directory modes and times, deepest (latest created) first so that setting a child's
    /// times cannot disturb its parent's, and a read-only directory is closed only at the end.
    fn finish_dirs(&mut self) -> Result<(), UnpackError> {
        for d in self.dir_meta.iter().rev().flatten() {
            let dir = sysfs::open_dir_nofollow(&d.path).map_err(|e| sys_err(&d.path, e))?;
            dir.set_permissions(Permissions::from_mode(d.mode))
                .map_err(|e| io_err(&d.path, e))?;
            if let Some((atime, mtime)) = d.times {
                let times = FileTimes::new()
                    .set_accessed(system_time(atime))
                    .set_modified(system_time(mtime));
                dir.set_times(times).map_err(|e| io_err(&d.path, e))?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
