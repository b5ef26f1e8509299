//! The atomic writer on a real file system.

mod common;

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use common::{mode, read};
use deckhand_storage::{
    AtomicWriteError, AtomicWriter, FileProjection, FsGroup, Payload, WriteOutcome,
};

fn payload(files: &[(&str, &str, u32)]) -> Payload {
    files
        .iter()
        .map(|(p, d, m)| (p.to_string(), FileProjection::new(d.as_bytes(), *m)))
        .collect()
}

fn data_dirs(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with("..") && n != "..data")
        .collect();
    v.sort();
    v
}

#[test]
fn first_write_lays_out_data_dir_and_symlinks() {
    let tmp = tempfile::tempdir().unwrap();
    let w = AtomicWriter::new(tmp.path(), "test");
    let out = w
        .write(&payload(&[("a", "1", 0o644), ("sub/b", "2", 0o400)]), None)
        .unwrap();
    let WriteOutcome::Written { data_dir } = out else {
        panic!("expected a write")
    };
    assert!(data_dir.starts_with("..20"), "{data_dir}");
    assert_eq!(
        std::fs::read_link(tmp.path().join("..data"))
            .unwrap()
            .to_str()
            .unwrap(),
        data_dir
    );
    assert_eq!(
        std::fs::read_link(tmp.path().join("a"))
            .unwrap()
            .to_str()
            .unwrap(),
        "..data/a"
    );
    assert_eq!(
        std::fs::read_link(tmp.path().join("sub"))
            .unwrap()
            .to_str()
            .unwrap(),
        "..data/sub"
    );
    assert_eq!(read(&tmp.path().join("a")), "1");
    assert_eq!(read(&tmp.path().join("sub/b")), "2");
    assert_eq!(mode(&tmp.path().join("a")), 0o644);
    assert_eq!(mode(&tmp.path().join("sub/b")), 0o400);
    assert_eq!(data_dirs(tmp.path()), vec![data_dir]);
}

#[test]
fn update_and_removed_key() {
    let tmp = tempfile::tempdir().unwrap();
    let w = AtomicWriter::new(tmp.path(), "test");
    w.write(
        &payload(&[("a", "1", 0o644), ("b", "2", 0o644), ("d/x", "3", 0o644)]),
        None,
    )
    .unwrap();
    let first = data_dirs(tmp.path());
    let out = w.write(&payload(&[("a", "changed", 0o644)]), None).unwrap();
    assert!(matches!(out, WriteOutcome::Written { .. }));
    assert_eq!(read(&tmp.path().join("a")), "changed");
    assert!(
        std::fs::symlink_metadata(tmp.path().join("b")).is_err(),
        "removed key's symlink is gone"
    );
    assert!(
        std::fs::symlink_metadata(tmp.path().join("d")).is_err(),
        "removed dir's symlink is gone"
    );
    let second = data_dirs(tmp.path());
    assert_eq!(second.len(), 1, "old data dir removed: {second:?}");
    assert_ne!(first, second);
}

#[test]
fn unchanged_payload_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let w = AtomicWriter::new(tmp.path(), "test");
    let p = payload(&[("a", "1", 0o644)]);
    w.write(&p, None).unwrap();
    let before = data_dirs(tmp.path());
    assert_eq!(w.write(&p, None).unwrap(), WriteOutcome::Unchanged);
    assert_eq!(data_dirs(tmp.path()), before);
    // A mode change alone is a change.
    let out = w.write(&payload(&[("a", "1", 0o600)]), None).unwrap();
    assert!(matches!(out, WriteOutcome::Written { .. }));
    assert_eq!(mode(&tmp.path().join("a")), 0o600);
}

#[test]
fn invalid_paths_are_rejected() {
    let tmp = tempfile::tempdir().unwrap();
    let w = AtomicWriter::new(tmp.path(), "pod default/web volume \"cfg\"");
    for (bad, reason) in [
        ("/abs", "must be relative path"),
        ("a/../../etc", "must not contain '..'"),
        ("..data", "must not start with '..'"),
        ("..hidden", "must not start with '..'"),
    ] {
        let err = w.write(&payload(&[(bad, "x", 0o644)]), None).unwrap_err();
        assert!(
            matches!(err, AtomicWriteError::InvalidPath { .. }),
            "{bad}: {err}"
        );
        let msg = err.to_string();
        assert!(
            msg.contains(reason) && msg.contains("volume \"cfg\""),
            "{msg}"
        );
    }
    let err = w
        .write(&payload(&[("a", "x", 0o644), ("a/b", "y", 0o644)]), None)
        .unwrap_err();
    assert!(
        err.to_string().contains("both a file and a directory"),
        "{err}"
    );
    assert!(
        data_dirs(tmp.path()).is_empty(),
        "nothing written on invalid payloads"
    );
}

#[test]
fn fs_group_owns_files_and_adds_group_read() {
    common::require_root();
    let tmp = tempfile::tempdir().unwrap();
    let w = AtomicWriter::new(tmp.path(), "test");
    w.write(
        &payload(&[("a", "1", 0o400), ("d/b", "2", 0o644)]),
        Some(FsGroup(4242)),
    )
    .unwrap();
    let a = std::fs::metadata(tmp.path().join("a")).unwrap();
    assert_eq!(a.gid(), 4242);
    assert_eq!(a.mode() & 0o7777, 0o440);
    let d = std::fs::metadata(tmp.path().join("d")).unwrap();
    assert_eq!(d.gid(), 4242);
    assert_eq!(d.mode() & 0o2000, 0o2000, "directories are setgid");
    // Same payload and group: unchanged.
    assert_eq!(
        w.write(
            &payload(&[("a", "1", 0o400), ("d/b", "2", 0o644)]),
            Some(FsGroup(4242))
        )
        .unwrap(),
        WriteOutcome::Unchanged
    );
}

#[test]
fn concurrent_reader_sees_old_or_new_never_torn() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    let old = "old-".repeat(4096);
    let new = "new-".repeat(4096);
    let w = AtomicWriter::new(&dir, "test");
    w.write(&payload(&[("key", &old, 0o644)]), None).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let (stop, dir, old, new) = (stop.clone(), dir.clone(), old.clone(), new.clone());
        std::thread::spawn(move || {
            let (mut ok, mut vanished) = (0u64, 0u64);
            while !stop.load(Ordering::Relaxed) {
                match std::fs::read_to_string(dir.join("key")) {
                    Ok(s) => {
                        assert!(s == old || s == new, "torn read of {} bytes", s.len());
                        ok += 1;
                    }
                    // The reader resolved `..data` just before the old directory was removed
                    // (upstream has the same window): never a partial file.
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => vanished += 1,
                    Err(e) => panic!("read: {e}"),
                }
            }
            (ok, vanished)
        })
    };
    for i in 0..300 {
        let content = if i % 2 == 0 { &new } else { &old };
        w.write(&payload(&[("key", content, 0o644)]), None).unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    let (ok, vanished) = reader.join().unwrap();
    eprintln!("concurrent reader: {ok} reads, {vanished} found the file between generations");
    assert!(ok > 0);
    assert!(
        vanished * 10 <= ok,
        "reads failing too often: {vanished} of {}",
        ok + vanished
    );
    assert_eq!(data_dirs(&dir).len(), 1);
}
