//! Snapshot store tests on real directories, and one real overlay mount, as root.

use super::*;
use deckhand_sys::mount::{LinuxMounter, Mounter};
use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

fn require_root() -> tempfile::TempDir {
    assert!(
        deckhand_sys::privilege::is_root(),
        "snapshot tests need root (layer ownership, device nodes, overlay mounts): run them as root (make test)"
    );
    tempfile::tempdir().unwrap()
}

fn tar_of(entries: &[(&str, &str)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (path, data) in entries {
        let mut h = tar::Header::new_gnu();
        if path.ends_with('/') {
            h.set_entry_type(tar::EntryType::Directory);
            h.set_mode(0o755);
        } else {
            h.set_entry_type(tar::EntryType::Regular);
            h.set_mode(0o644);
        }
        h.set_size(data.len() as u64);
        h.set_mtime(1_600_000_000);
        b.append_data(&mut h, path, data.as_bytes()).unwrap();
    }
    b.into_inner().unwrap()
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// A reader that must not be read.
struct Untouchable;
impl Read for Untouchable {
    fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
        panic!("a committed snapshot's layer must not be read again")
    }
}

fn leftovers(s: &Snapshotter) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(s.root().join(SNAPSHOTS))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| !is_chain_hex(n))
        .collect();
    names.sort();
    names
}

#[test]
fn chain_ids_follow_the_oci_spec() {
    assert!(chain_ids(&[]).is_empty());
    let a = Digest::of(b"a");
    let b = Digest::of(b"b");
    let c = Digest::of(b"c");
    let ids = chain_ids(&[a.clone(), b.clone(), c.clone()]);
    assert_eq!(ids[0], a);
    let ab = Digest::of(format!("sha256:{} sha256:{}", a.hex(), b.hex()).as_bytes());
    assert_eq!(ids[1], ab);
    assert_eq!(ids[2], Digest::of(format!("{ab} {c}").as_bytes()));
    // A known value: the chain ID of two layers whose diff IDs are the digests of "" and "x".
    let known = chain_ids(&[Digest::of(b""), Digest::of(b"x")]);
    assert_eq!(
        known[1].to_string(),
        format!(
            "sha256:{}",
            hex::encode(<sha2::Sha256 as sha2::Digest>::digest(
                b"sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855 sha256:2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881"
            ))
        )
    );
}

#[test]
fn apply_commits_once_and_links_parents() {
    let tmp = require_root();
    let s = Snapshotter::open(tmp.path()).unwrap();
    let l0 = tar_of(&[("etc/", ""), ("etc/os-release", "base")]);
    let l1 = tar_of(&[("etc/app", "app")]);
    let diffs = [Digest::of(&l0), Digest::of(&l1)];
    let chain = chain_ids(&diffs);

    assert!(!s.exists(&chain[0]));
    s.apply(
        None,
        &chain[0],
        &diffs[0],
        &gzip(&l0)[..],
        Compression::Gzip,
    )
    .unwrap();
    s.apply(
        Some(&chain[0]),
        &chain[1],
        &diffs[1],
        &l1[..],
        Compression::None,
    )
    .unwrap();
    assert!(s.exists(&chain[0]) && s.exists(&chain[1]));
    assert_eq!(
        fs::read_to_string(s.fs_path(&chain[1]).join("etc/app")).unwrap(),
        "app"
    );
    assert_eq!(
        fs::read_to_string(s.snapshot_dir(&chain[1]).join("parent")).unwrap(),
        chain[0].to_string()
    );
    assert_eq!(
        s.lower_dirs(&chain[1]).unwrap(),
        vec![s.fs_path(&chain[1]), s.fs_path(&chain[0])]
    );
    assert_eq!(s.lower_dirs(&chain[0]).unwrap(), vec![s.fs_path(&chain[0])]);
    let mut want = chain.clone();
    want.sort();
    assert_eq!(s.list().unwrap(), want);
    assert!(
        leftovers(&s).is_empty(),
        "no temp dirs or lock files remain: {:?}",
        leftovers(&s)
    );

    // Committed: the layer is not read again.
    s.apply(
        Some(&chain[0]),
        &chain[1],
        &diffs[1],
        Untouchable,
        Compression::None,
    )
    .unwrap();

    let missing = Digest::of(b"missing");
    assert!(matches!(
        s.lower_dirs(&missing),
        Err(SnapshotError::NotFound(_))
    ));
    match s.apply(
        Some(&missing),
        &Digest::of(b"x"),
        &diffs[1],
        &l1[..],
        Compression::None,
    ) {
        Err(SnapshotError::MissingParent { parent, .. }) => assert_eq!(parent, missing),
        other => panic!("expected MissingParent, got {other:?}"),
    }

    s.remove(&chain[1]).unwrap();
    assert!(!s.exists(&chain[1]));
    s.remove(&chain[1]).unwrap();
    assert_eq!(s.list().unwrap(), vec![chain[0].clone()]);
    assert!(leftovers(&s).is_empty(), "{:?}", leftovers(&s));
}

#[test]
fn diff_id_mismatch_stores_nothing() {
    let tmp = require_root();
    let s = Snapshotter::open(tmp.path()).unwrap();
    let l0 = tar_of(&[("a", "a")]);
    let wrong = Digest::of(b"not the layer");
    let chain = Digest::of(b"chain");
    match s.apply(None, &chain, &wrong, &l0[..], Compression::None) {
        Err(SnapshotError::DiffIdMismatch {
            expected, actual, ..
        }) => {
            assert_eq!(expected, wrong);
            assert_eq!(actual, Digest::of(&l0));
        }
        other => panic!("expected DiffIdMismatch, got {other:?}"),
    }
    assert!(!s.exists(&chain));
    assert!(s.list().unwrap().is_empty());
    assert!(leftovers(&s).is_empty(), "{:?}", leftovers(&s));

    // A broken layer fails the same way: nothing stays behind.
    let err = s.apply(
        None,
        &chain,
        &wrong,
        &b"garbage that is not gzip"[..],
        Compression::Gzip,
    );
    assert!(matches!(err, Err(SnapshotError::Unpack(_))), "{err:?}");
    assert!(leftovers(&s).is_empty(), "{:?}", leftovers(&s));
}

/// Counts reads and dawdles on the first one, so concurrent appliers overlap.
struct SlowCounted {
    data: std::io::Cursor<Vec<u8>>,
    started: bool,
    unpacks: Arc<AtomicUsize>,
}
impl Read for SlowCounted {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if !self.started {
            self.started = true;
            self.unpacks.fetch_add(1, Ordering::SeqCst);
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
        self.data.read(buf)
    }
}

#[test]
fn concurrent_applies_of_one_chain_unpack_once() {
    let tmp = require_root();
    let s = Snapshotter::open(tmp.path()).unwrap();
    let layer = tar_of(&[("f", "data")]);
    let diff = Digest::of(&layer);
    let unpacks = Arc::new(AtomicUsize::new(0));
    std::thread::scope(|scope| {
        for _ in 0..4 {
            let s = s.clone();
            let reader = SlowCounted {
                data: std::io::Cursor::new(layer.clone()),
                started: false,
                unpacks: unpacks.clone(),
            };
            let diff = diff.clone();
            scope.spawn(move || {
                // A second Snapshotter on the same root, as another store instance would be.
                let s = Snapshotter::open(s.root()).unwrap();
                s.apply(None, &diff, &diff, reader, Compression::None)
                    .unwrap();
            });
        }
    });
    assert_eq!(
        unpacks.load(Ordering::SeqCst),
        1,
        "one unpack, the others waited and found it committed"
    );
    assert_eq!(
        fs::read_to_string(s.fs_path(&diff).join("f")).unwrap(),
        "data"
    );
    assert!(leftovers(&s).is_empty(), "{:?}", leftovers(&s));
}

#[test]
fn cleanup_temp_removes_leftovers_but_not_work_in_progress() {
    let tmp = require_root();
    let s = Snapshotter::open(tmp.path()).unwrap();
    let layer = tar_of(&[("f", "x")]);
    let diff = Digest::of(&layer);
    s.apply(None, &diff, &diff, &layer[..], Compression::None)
        .unwrap();

    let snaps = tmp.path().join(SNAPSHOTS);
    let crashed = snaps.join(format!("tmp-{}-abc", Digest::of(b"crashed").hex()));
    fs::create_dir_all(crashed.join("fs/locked/deeper")).unwrap();
    fs::set_permissions(crashed.join("fs/locked"), Permissions::from_mode(0o000)).unwrap();
    let busy_chain = Digest::of(b"busy");
    let busy = snaps.join(format!("tmp-{}-xyz", busy_chain.hex()));
    fs::create_dir_all(busy.join("fs")).unwrap();
    let stale_lock = snaps.join(format!("{}.lock", Digest::of(b"stale").hex()));
    fs::write(&stale_lock, "").unwrap();
    let active_tmp = tmp.path().join(ACTIVE).join(".tmp-c1-123");
    fs::create_dir_all(active_tmp.join("upper")).unwrap();

    let held = s.lock_chain(busy_chain.hex(), true).unwrap().unwrap();
    s.cleanup_temp().unwrap();
    assert!(!crashed.exists());
    assert!(busy.exists(), "an unpack in progress keeps its temp dir");
    assert!(!stale_lock.exists());
    assert!(!active_tmp.exists());
    assert!(s.exists(&diff), "committed snapshots stay");
    drop(held);
    s.cleanup_temp().unwrap();
    assert!(!busy.exists());
    assert!(leftovers(&s).is_empty(), "{:?}", leftovers(&s));
}

#[test]
fn active_snapshots_lifecycle() {
    let tmp = require_root();
    let s = Snapshotter::open(tmp.path()).unwrap();
    let layer = tar_of(&[("./", ""), ("bin/", ""), ("bin/sh", "sh")]);
    let diff = Digest::of(&layer);
    s.apply(None, &diff, &diff, &layer[..], Compression::None)
        .unwrap();
    let image = Digest::of(b"manifest");

    let spec = s.prepare("c1", &image, &diff).unwrap();
    assert_eq!(spec.lower, vec![s.fs_path(&diff)]);
    let upper = spec.upper.clone().unwrap();
    assert!(upper.is_dir() && spec.work.as_ref().unwrap().is_dir());
    assert_eq!(
        fs::metadata(&upper).unwrap().mode() & 0o7777,
        0o755,
        "upper root mirrors the image root"
    );
    assert!(matches!(
        s.prepare("c1", &image, &diff),
        Err(SnapshotError::ActiveExists(_))
    ));
    assert!(matches!(
        s.prepare("c2", &image, &Digest::of(b"nope")),
        Err(SnapshotError::NotFound(_))
    ));
    for bad in ["", "../x", "a/b", ".hidden", &"x".repeat(129)] {
        assert!(
            matches!(
                s.prepare(bad, &image, &diff),
                Err(SnapshotError::InvalidKey(_))
            ),
            "{bad:?}"
        );
    }
    s.prepare("c2", &image, &diff).unwrap();
    assert_eq!(s.active_spec("c1").unwrap(), spec);
    assert!(matches!(
        s.active_spec("zz"),
        Err(SnapshotError::ActiveNotFound(_))
    ));
    let keys: Vec<String> = s
        .list_active()
        .unwrap()
        .into_iter()
        .map(|a| a.key)
        .collect();
    assert_eq!(keys, ["c1", "c2"]);
    assert_eq!(
        s.list_active().unwrap()[0],
        ActiveSnapshot {
            key: "c1".into(),
            image: image.clone(),
            top: diff.clone()
        }
    );

    // What overlayfs and a container leave behind: work/work at mode 000, root-owned files,
    // an immutable file.
    let ww = spec.work.as_ref().unwrap().join("work");
    fs::create_dir(&ww).unwrap();
    fs::write(ww.join("x"), "x").unwrap();
    fs::set_permissions(&ww, Permissions::from_mode(0o000)).unwrap();
    fs::write(upper.join("immutable"), "i").unwrap();
    let chattr = std::process::Command::new("chattr")
        .arg("+i")
        .arg(upper.join("immutable"))
        .status();
    let immutable = chattr.is_ok_and(|s| s.success());
    s.remove_active("c1").unwrap();
    assert!(
        !tmp.path().join(ACTIVE).join("c1").exists(),
        "immutable file set: {immutable}"
    );
    s.remove_active("c1").unwrap();
    let keys: Vec<String> = s
        .list_active()
        .unwrap()
        .into_iter()
        .map(|a| a.key)
        .collect();
    assert_eq!(keys, ["c2"]);
    let names: Vec<String> = fs::read_dir(tmp.path().join(ACTIVE))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n != ".lock")
        .collect();
    assert_eq!(names, ["c2"], "no temp dirs remain");
}

/// Unmounts on drop so a failing assertion never leaves a mount behind.
struct Mounted(PathBuf);
impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = LinuxMounter.unmount(&self.0);
    }
}

#[test]
fn two_layers_with_whiteout_and_opaque_dir_mount_as_expected() {
    let tmp = require_root();
    deckhand_sys::mount::enter_private_mount_namespace().unwrap();
    let s = Snapshotter::open(tmp.path()).unwrap();
    let l0 = tar_of(&[
        ("etc/", ""),
        ("etc/passwd", "root:x:0:0"),
        ("etc/hosts", "127.0.0.1 localhost"),
        ("opt/", ""),
        ("opt/old", "old"),
        ("opt/sub/", ""),
        ("opt/sub/deep", "deep"),
    ]);
    let l1 = tar_of(&[
        ("etc/.wh.passwd", ""),
        ("opt/", ""),
        ("opt/.wh..wh..opq", ""),
        ("opt/new", "new"),
        ("etc/motd", "hi"),
    ]);
    let diffs = [Digest::of(&l0), Digest::of(&l1)];
    let chain = chain_ids(&diffs);
    s.apply(
        None,
        &chain[0],
        &diffs[0],
        &zstd::encode_all(&l0[..], 3).unwrap()[..],
        Compression::Zstd,
    )
    .unwrap();
    s.apply(
        Some(&chain[0]),
        &chain[1],
        &diffs[1],
        &gzip(&l1)[..],
        Compression::Gzip,
    )
    .unwrap();

    let spec = s.prepare("ctr", &Digest::of(b"img"), &chain[1]).unwrap();
    let merged = tmp.path().join("merged");
    fs::create_dir(&merged).unwrap();
    LinuxMounter.mount_overlay(&spec, &merged).unwrap();
    let guard = Mounted(merged.clone());

    assert!(
        !merged.join("etc/passwd").exists(),
        "whited-out file is gone"
    );
    assert_eq!(
        fs::read_to_string(merged.join("etc/hosts")).unwrap(),
        "127.0.0.1 localhost"
    );
    assert_eq!(fs::read_to_string(merged.join("etc/motd")).unwrap(), "hi");
    let mut opt: Vec<String> = fs::read_dir(merged.join("opt"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    opt.sort();
    assert_eq!(
        opt,
        ["new"],
        "opaque dir shows only the upper layer's entries"
    );
    fs::write(merged.join("etc/written"), "w").unwrap();
    fs::remove_file(merged.join("etc/hosts")).unwrap();
    assert_eq!(
        fs::read_to_string(spec.upper.as_ref().unwrap().join("etc/written")).unwrap(),
        "w"
    );
    assert!(
        s.fs_path(&chain[0]).join("etc/hosts").exists(),
        "snapshots stay untouched"
    );

    // After a restart the same spec comes back.
    assert_eq!(s.active_spec("ctr").unwrap(), spec);
    drop(guard);
    assert!(!merged.join("etc").exists());
    s.remove_active("ctr").unwrap();
    s.remove(&chain[1]).unwrap();
    s.remove(&chain[0]).unwrap();
    assert!(s.list().unwrap().is_empty());
    assert!(s.list_active().unwrap().is_empty());
}

#[test]
fn broken_parent_chains_are_reported() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Snapshotter::open(tmp.path()).unwrap();
    let (a, b, gone) = (Digest::of(b"a"), Digest::of(b"b"), Digest::of(b"gone"));
    for (chain, parent) in [(&a, &b), (&b, &a)] {
        fs::create_dir_all(s.fs_path(chain)).unwrap();
        fs::write(s.snapshot_dir(chain).join("parent"), parent.to_string()).unwrap();
    }
    match s.lower_dirs(&a) {
        Err(SnapshotError::Io { source, .. }) => assert_eq!(source.kind(), ErrorKind::InvalidData),
        other => panic!("a parent cycle must be an error, got {other:?}"),
    }
    let c = Digest::of(b"c");
    fs::create_dir_all(s.fs_path(&c)).unwrap();
    fs::write(s.snapshot_dir(&c).join("parent"), gone.to_string()).unwrap();
    match s.lower_dirs(&c) {
        Err(SnapshotError::MissingParent { chain, parent }) => {
            assert_eq!((chain, parent), (c, gone))
        }
        other => panic!("expected MissingParent, got {other:?}"),
    }
}
