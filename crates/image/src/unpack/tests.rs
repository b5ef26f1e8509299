//! Layer application tests on real files, as root (ownership, device nodes, trusted xattrs).

use super::*;
use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use tar::EntryType;

const MTIME: u64 = 1_600_000_000;

fn require_root() -> tempfile::TempDir {
    assert!(
        deckhand_sys::privilege::is_root(),
        "unpack tests need root (chown, mknod, trusted.* xattrs): run them as root (make test)"
    );
    tempfile::tempdir().unwrap()
}

/// Builds layer tars entry by entry, including entries `tar::Builder` would refuse to write.
struct Layer {
    b: tar::Builder<Vec<u8>>,
}

fn header(kind: EntryType, mode: u32, size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(MTIME);
    h.set_size(size);
    h
}

impl Layer {
    fn new() -> Self {
        Layer {
            b: tar::Builder::new(Vec::new()),
        }
    }
    fn dir(mut self, path: &str, mode: u32) -> Self {
        let mut h = header(EntryType::Directory, mode, 0);
        self.b.append_data(&mut h, path, &[][..]).unwrap();
        self
    }
    fn dir_at(mut self, path: &str, mode: u32, mtime: u64) -> Self {
        let mut h = header(EntryType::Directory, mode, 0);
        h.set_mtime(mtime);
        self.b.append_data(&mut h, path, &[][..]).unwrap();
        self
    }
    fn file(self, path: &str, data: &str) -> Self {
        self.file_owned(path, data, 0o644, 0, 0)
    }
    fn file_owned(mut self, path: &str, data: &str, mode: u32, uid: u64, gid: u64) -> Self {
        let mut h = header(EntryType::Regular, mode, data.len() as u64);
        h.set_uid(uid);
        h.set_gid(gid);
        self.b.append_data(&mut h, path, data.as_bytes()).unwrap();
        self
    }
    fn symlink(mut self, path: &str, target: &str) -> Self {
        let mut h = header(EntryType::Symlink, 0o777, 0);
        h.set_uid(5);
        h.set_gid(6);
        self.b.append_link(&mut h, path, target).unwrap();
        self
    }
    fn hardlink(mut self, path: &str, target: &str) -> Self {
        let mut h = header(EntryType::Link, 0o644, 0);
        self.b.append_link(&mut h, path, target).unwrap();
        self
    }
    fn node(mut self, path: &str, kind: EntryType, major: u32, minor: u32, mode: u32) -> Self {
        let mut h = header(kind, mode, 0);
        h.set_device_major(major).unwrap();
        h.set_device_minor(minor).unwrap();
        self.b.append_data(&mut h, path, &[][..]).unwrap();
        self
    }
    fn pax(mut self, exts: &[(&str, &[u8])]) -> Self {
        self.b.append_pax_extensions(exts.iter().copied()).unwrap();
        self
    }
    /// An entry with a name (and link name) written verbatim, bypassing the builder's checks.
    fn raw(mut self, kind: EntryType, name: &[u8], link: &[u8], data: &[u8]) -> Self {
        let mut h = header(kind, 0o644, data.len() as u64);
        h.as_old_mut().name[..name.len()].copy_from_slice(name);
        h.as_old_mut().linkname[..link.len()].copy_from_slice(link);
        h.set_cksum();
        self.b.append(&h, data).unwrap();
        self
    }
    fn finish(self) -> Vec<u8> {
        self.b.into_inner().unwrap()
    }
}

fn apply(
    tar: &[u8],
    target: &Path,
    parents: &[PathBuf],
) -> Result<(Digest, UnpackStats), UnpackError> {
    apply_layer(tar, Compression::None, target, parents)
}

fn new_target(tmp: &tempfile::TempDir, name: &str) -> PathBuf {
    let p = tmp.path().join(name);
    fs::create_dir(&p).unwrap();
    p
}

fn lmeta(p: &Path) -> fs::Metadata {
    fs::symlink_metadata(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn assert_whiteout(p: &Path) {
    let m = lmeta(p);
    assert!(
        m.file_type().is_char_device() && m.rdev() == 0,
        "{} is not a whiteout",
        p.display()
    );
}

fn opaque(p: &Path) -> bool {
    deckhand_sys::fs::lgetxattr(p, "trusted.overlay.opaque")
        .unwrap()
        .as_deref()
        == Some(&b"y"[..])
}

fn kitchen_sink() -> Vec<u8> {
    Layer::new()
        .dir("./", 0o755)
        .dir("bin/", 0o755)
        .file_owned("bin/su", "#!su", 0o4755, 1000, 1001)
        .file_owned("bin/wall", "#!wall", 0o2755, 0, 5)
        .dir("tmp/", 0o1777)
        .dir("home/", 0o755)
        .file_owned("home/u/notes", "hello", 0o600, 1000, 1000)
        .symlink("bin/sh", "su")
        .symlink("abs", "/etc/passwd")
        .hardlink("bin/su-again", "bin/su")
        .node("dev/null", EntryType::Char, 1, 3, 0o666)
        .node("dev/loop0", EntryType::Block, 7, 0, 0o660)
        .node("run/fifo", EntryType::Fifo, 0, 0, 0o620)
        .dir_at("home/u/", 0o700, 1_500_000_000)
        .finish()
}

fn check_kitchen_sink(t: &Path) {
    let su = lmeta(&t.join("bin/su"));
    assert_eq!(su.mode() & 0o7777, 0o4755, "setuid survives chown");
    assert_eq!((su.uid(), su.gid()), (1000, 1001));
    assert_eq!(su.mtime(), MTIME as i64);
    assert_eq!(fs::read_to_string(t.join("bin/su")).unwrap(), "#!su");
    let wall = lmeta(&t.join("bin/wall"));
    assert_eq!(wall.mode() & 0o7777, 0o2755, "setgid survives chown");
    assert_eq!(wall.gid(), 5);
    assert_eq!(lmeta(&t.join("tmp")).mode() & 0o7777, 0o1777, "sticky bit");
    let sh = lmeta(&t.join("bin/sh"));
    assert!(sh.file_type().is_symlink());
    assert_eq!((sh.uid(), sh.gid()), (5, 6), "symlink ownership via lchown");
    assert_eq!(sh.mtime(), MTIME as i64, "symlink mtime via lutimes");
    assert_eq!(
        fs::read_link(t.join("abs")).unwrap(),
        Path::new("/etc/passwd")
    );
    assert_eq!(
        lmeta(&t.join("bin/su-again")).ino(),
        su.ino(),
        "hard link in the layer"
    );
    let null = lmeta(&t.join("dev/null"));
    assert!(null.file_type().is_char_device());
    assert_eq!(deckhand_sys::fs::split_dev(null.rdev()), (1, 3));
    assert_eq!(null.mode() & 0o777, 0o666, "the umask does not apply");
    let lp = lmeta(&t.join("dev/loop0"));
    assert!(lp.file_type().is_block_device());
    assert_eq!(deckhand_sys::fs::split_dev(lp.rdev()), (7, 0));
    let fifo = lmeta(&t.join("run/fifo"));
    assert!(fifo.file_type().is_fifo());
    assert_eq!(fifo.mode() & 0o777, 0o620);
    // The directory entry came after its child: its mode and time are still the entry's.
    let u = lmeta(&t.join("home/u"));
    assert_eq!(u.mode() & 0o7777, 0o700);
    assert_eq!(u.mtime(), 1_500_000_000);
    assert_eq!(
        lmeta(&t.join("bin")).mtime(),
        MTIME as i64,
        "children do not bump a dir's mtime"
    );
    assert_eq!(fs::read_to_string(t.join("home/u/notes")).unwrap(), "hello");
}

#[test]
fn every_entry_kind_with_metadata_and_diff_id() {
    let tmp = require_root();
    let t = new_target(&tmp, "t");
    let tar = kitchen_sink();
    let (diff, stats) = apply(&tar, &t, &[]).unwrap();
    assert_eq!(diff, Digest::of(&tar));
    assert_eq!(stats.tar_bytes, tar.len() as u64);
    assert_eq!(stats.entries, 14);
    check_kitchen_sink(&t);
}

#[test]
fn gzip_multi_member_and_zstd_layers() {
    let tmp = require_root();
    let tar = kitchen_sink();
    // Two gzip members, as pigz or a concatenating writer produces them.
    let (a, b) = tar.split_at(tar.len() / 2);
    let mut gz = Vec::new();
    for part in [a, b] {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(part).unwrap();
        gz.extend(e.finish().unwrap());
    }
    let zst = zstd::encode_all(&tar[..], 3).unwrap();
    for (name, blob, c) in [
        ("gz", gz, Compression::Gzip),
        ("zst", zst, Compression::Zstd),
    ] {
        let t = new_target(&tmp, name);
        let (diff, stats) = apply_layer(&blob[..], c, &t, &[]).unwrap();
        assert_eq!(
            diff,
            Digest::of(&tar),
            "{name}: the diff ID is the digest of the uncompressed tar"
        );
        assert_eq!(stats.tar_bytes, tar.len() as u64);
        check_kitchen_sink(&t);
    }
}

#[test]
fn diff_id_covers_padding_after_the_end_of_archive() {
    let tmp = require_root();
    let mut tar = Layer::new().file("a", "x").finish();
    tar.extend(std::iter::repeat_n(0u8, 10 * 1024 * 1024));
    let t = new_target(&tmp, "t");
    let (diff, stats) = apply(&tar, &t, &[]).unwrap();
    assert_eq!(diff, Digest::of(&tar));
    assert_eq!(stats.tar_bytes, tar.len() as u64);
}

#[test]
fn large_file_contents_are_exact() {
    let tmp = require_root();
    let data: Vec<u8> = (0..5_000_000u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    let mut b = tar::Builder::new(Vec::new());
    let mut h = header(EntryType::Regular, 0o644, data.len() as u64);
    b.append_data(&mut h, "big", &data[..]).unwrap();
    let tar = b.into_inner().unwrap();
    let gz = {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(&tar).unwrap();
        e.finish().unwrap()
    };
    let t = new_target(&tmp, "t");
    let (diff, _) = apply_layer(&gz[..], Compression::Gzip, &t, &[]).unwrap();
    assert_eq!(diff, Digest::of(&tar));
    assert!(fs::read(t.join("big")).unwrap() == data);
}

#[test]
fn whiteouts_become_overlay_form() {
    let tmp = require_root();
    let t = new_target(&tmp, "t");
    let tar = Layer::new()
        .dir("etc/", 0o755)
        .file("etc/gone-later", "x")
        .file("etc/.wh.passwd", "")
        .file("etc/.wh.gone-later", "")
        .file("var/.wh.cache", "")
        .dir("opt/", 0o755)
        .file("opt/new", "n")
        .file("opt/.wh..wh..opq", "")
        .dir("opt/sub/", 0o755)
        .file("lib/.wh..wh..opq", "")
        .file(".wh..wh.plnk", "")
        .file("usr/.wh..wh.aufs", "")
        .finish();
    apply(&tar, &t, &[]).unwrap();
    assert_whiteout(&t.join("etc/passwd"));
    assert_whiteout(&t.join("etc/gone-later"));
    assert_whiteout(&t.join("var/cache"));
    assert!(!t.join("etc/.wh.passwd").exists());
    assert!(
        opaque(&t.join("opt")),
        "opaque marker after the dir's own entries"
    );
    assert_eq!(
        fs::read_to_string(t.join("opt/new")).unwrap(),
        "n",
        "entries of the same layer stay"
    );
    assert!(t.join("opt/sub").is_dir());
    assert!(
        opaque(&t.join("lib")),
        "opaque marker for a dir without its own entry"
    );
    assert!(!opaque(&t.join("etc")));
    assert!(
        !t.join(".wh..wh.plnk").exists() && !t.join("usr/.wh..wh.aufs").exists(),
        "AUFS metadata is dropped"
    );
}

#[test]
fn deleted_then_recreated_directory_is_opaque() {
    let tmp = require_root();
    let t = new_target(&tmp, "t");
    let tar = Layer::new()
        .file(".wh.data", "")
        .file("data/fresh", "f")
        .file(".wh.conf", "")
        .dir("conf/", 0o750)
        .finish();
    apply(&tar, &t, &[]).unwrap();
    assert!(t.join("data").is_dir() && opaque(&t.join("data")));
    assert_eq!(fs::read_to_string(t.join("data/fresh")).unwrap(), "f");
    assert!(t.join("conf").is_dir() && opaque(&t.join("conf")));
}

#[test]
fn pax_xattrs_times_and_ids() {
    let tmp = require_root();
    let t = new_target(&tmp, "t");
    let tar = Layer::new()
        .pax(&[
            ("SCHILY.xattr.user.mime", b"text/plain"),
            ("SCHILY.xattr.trusted.deckhand", b"\x00\x01bin"),
            ("SCHILY.xattr.trusted.overlay.redirect", b"/etc"),
            ("mtime", b"1234567890.5"),
            ("uid", b"3000000"),
        ])
        .file_owned("f", "data", 0o4750, 7, 8)
        .pax(&[("SCHILY.xattr.trusted.dirattr", b"d")])
        .dir("d/", 0o755)
        .finish();
    apply(&tar, &t, &[]).unwrap();
    let f = t.join("f");
    let get = |p: &Path, n: &str| deckhand_sys::fs::lgetxattr(p, n).unwrap();
    assert_eq!(get(&f, "user.mime").as_deref(), Some(&b"text/plain"[..]));
    assert_eq!(
        get(&f, "trusted.deckhand").as_deref(),
        Some(&b"\x00\x01bin"[..])
    );
    assert_eq!(
        get(&f, "trusted.overlay.redirect"),
        None,
        "layers cannot steer overlayfs"
    );
    assert_eq!(
        get(&t.join("d"), "trusted.dirattr").as_deref(),
        Some(&b"d"[..])
    );
    let m = lmeta(&f);
    assert_eq!((m.mtime(), m.mtime_nsec()), (1234567890, 500_000_000));
    assert_eq!(
        (m.uid(), m.gid()),
        (3_000_000, 8),
        "PAX uid overrides the header"
    );
    assert_eq!(m.mode() & 0o7777, 0o4750);
}

#[test]
fn unsupported_xattr_namespace_is_skipped_with_a_warning() {
    let tmp = require_root();
    let t = new_target(&tmp, "t");
    // user.* xattrs are refused on symlinks (EPERM): the entry still unpacks.
    let tar = Layer::new()
        .pax(&[("SCHILY.xattr.user.x", b"1")])
        .symlink("l", "target")
        .finish();
    apply(&tar, &t, &[]).unwrap();
    assert!(lmeta(&t.join("l")).file_type().is_symlink());
}

#[test]
fn hard_links_to_parent_layers_are_copied_up() {
    let tmp = require_root();
    let p0 = new_target(&tmp, "p0");
    let base = Layer::new()
        .dir("bin/", 0o755)
        .file_owned("bin/busybox", "BB", 0o4755, 0, 0)
        .file("old", "o")
        .file("gone", "g")
        .dir("opaque/", 0o755)
        .file("opaque/hidden", "h")
        .file("keep/x", "kx")
        .finish();
    apply(&base, &p0, &[]).unwrap();
    deckhand_sys::fs::lsetxattr(&p0.join("bin/busybox"), "trusted.cap", b"c").unwrap();
    let p1 = new_target(&tmp, "p1");
    apply(
        &Layer::new()
            .file(".wh.gone", "")
            .file("opaque/.wh..wh..opq", "")
            .finish(),
        &p1,
        std::slice::from_ref(&p0),
    )
    .unwrap();
    let parents = vec![p1.clone(), p0.clone()];

    let t = new_target(&tmp, "t");
    let tar = Layer::new()
        .hardlink("bin/sh", "bin/busybox")
        .hardlink("keep/y", "keep/x")
        .finish();
    apply(&tar, &t, &parents).unwrap();
    let bb = lmeta(&t.join("bin/busybox"));
    assert_eq!(lmeta(&t.join("bin/sh")).ino(), bb.ino());
    assert_eq!(fs::read_to_string(t.join("bin/sh")).unwrap(), "BB");
    assert_eq!(bb.mode() & 0o7777, 0o4755);
    assert_eq!(bb.mtime(), MTIME as i64);
    assert_eq!(
        deckhand_sys::fs::lgetxattr(&t.join("bin/busybox"), "trusted.cap")
            .unwrap()
            .as_deref(),
        Some(&b"c"[..])
    );
    assert_ne!(
        bb.ino(),
        lmeta(&p0.join("bin/busybox")).ino(),
        "the parent layer is only read"
    );
    assert_eq!(lmeta(&t.join("keep")).mode() & 0o7777, 0o755);

    for (name, layer) in [
        (
            "whited-out-below",
            Layer::new().hardlink("x", "gone").finish(),
        ),
        (
            "hidden-by-opaque",
            Layer::new().hardlink("x", "opaque/hidden").finish(),
        ),
        (
            "whited-out-here",
            Layer::new()
                .file(".wh.old", "")
                .hardlink("x", "old")
                .finish(),
        ),
        ("nowhere", Layer::new().hardlink("x", "missing").finish()),
    ] {
        let t = new_target(&tmp, name);
        match apply(&layer, &t, &parents) {
            Err(UnpackError::DanglingHardlink { entry, .. }) => assert_eq!(entry, "x"),
            other => panic!("{name}: expected a dangling hard link, got {other:?}"),
        }
    }
}

#[test]
fn replacing_entries_within_a_layer() {
    let tmp = require_root();
    let t = new_target(&tmp, "t");
    let tar = Layer::new()
        .file("a", "first")
        .hardlink("a-link", "a")
        .file("a", "second")
        .file("f-then-d", "x")
        .dir("f-then-d/", 0o700)
        .file("d-then-f/child", "c")
        .file("d-then-f", "now a file")
        .file("f-then-l", "x")
        .symlink("f-then-l", "a")
        .dir("again/", 0o755)
        .dir_at("again/", 0o711, 42)
        .finish();
    apply(&tar, &t, &[]).unwrap();
    assert_eq!(fs::read_to_string(t.join("a")).unwrap(), "second");
    assert_eq!(
        fs::read_to_string(t.join("a-link")).unwrap(),
        "first",
        "a replaced file never writes through a hard link"
    );
    assert!(lmeta(&t.join("f-then-d")).is_dir());
    assert_eq!(
        fs::read_to_string(t.join("d-then-f")).unwrap(),
        "now a file"
    );
    assert!(lmeta(&t.join("f-then-l")).file_type().is_symlink());
    let again = lmeta(&t.join("again"));
    assert_eq!(
        (again.mode() & 0o7777, again.mtime()),
        (0o711, 42),
        "a repeated directory takes the later metadata"
    );
}

#[test]
fn implicit_directories_inherit_the_parent_layers_metadata() {
    let tmp = require_root();
    let p0 = new_target(&tmp, "p0");
    apply(&Layer::new().dir_at("tmp/", 0o1777, 77).finish(), &p0, &[]).unwrap();
    let t = new_target(&tmp, "t");
    apply(
        &Layer::new()
            .file("tmp/f", "x")
            .file("new/dir/g", "y")
            .finish(),
        &t,
        &[p0],
    )
    .unwrap();
    let m = lmeta(&t.join("tmp"));
    assert_eq!((m.mode() & 0o7777, m.mtime()), (0o1777, 77));
    assert_eq!(lmeta(&t.join("new/dir")).mode() & 0o7777, 0o755);
}

#[test]
fn paths_are_normalised_and_escapes_refused() {
    let tmp = require_root();
    let t = new_target(&tmp, "t");
    let tar = Layer::new()
        .raw(EntryType::Regular, b"/abs-file", b"", b"a")
        .raw(EntryType::Regular, b"./dot/./file", b"", b"d")
        .raw(EntryType::Regular, b"//double//slash", b"", b"s")
        .finish();
    apply(&tar, &t, &[]).unwrap();
    assert_eq!(fs::read_to_string(t.join("abs-file")).unwrap(), "a");
    assert_eq!(fs::read_to_string(t.join("dot/file")).unwrap(), "d");
    assert_eq!(fs::read_to_string(t.join("double/slash")).unwrap(), "s");

    let outside = new_target(&tmp, "outside");
    let out = outside.to_str().unwrap().as_bytes().to_vec();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "dotdot",
            Layer::new()
                .raw(EntryType::Regular, b"../evil", b"", b"x")
                .finish(),
        ),
        (
            "inner-dotdot",
            Layer::new()
                .raw(EntryType::Regular, b"a/../../evil", b"", b"x")
                .finish(),
        ),
        (
            "whiteout-dotdot",
            Layer::new()
                .raw(EntryType::Regular, b"a/.wh...", b"", b"")
                .finish(),
        ),
        (
            "symlink-parent",
            Layer::new()
                .raw(EntryType::Symlink, b"esc", &out, b"")
                .raw(EntryType::Regular, b"esc/evil", b"", b"x")
                .finish(),
        ),
        (
            "symlink-parent-dir",
            Layer::new()
                .raw(EntryType::Symlink, b"esc", &out, b"")
                .raw(EntryType::Directory, b"esc/evil/", b"", b"")
                .finish(),
        ),
        (
            "symlink-parent-whiteout",
            Layer::new()
                .raw(EntryType::Symlink, b"esc", &out, b"")
                .raw(EntryType::Regular, b"esc/.wh.evil", b"", b"")
                .finish(),
        ),
        (
            "symlink-parent-opaque",
            Layer::new()
                .raw(EntryType::Symlink, b"esc", &out, b"")
                .raw(EntryType::Regular, b"esc/sub/.wh..wh..opq", b"", b"")
                .finish(),
        ),
        (
            "hardlink-dotdot",
            Layer::new()
                .raw(EntryType::Link, b"h", b"../../etc/passwd", b"")
                .finish(),
        ),
        (
            "hardlink-through-symlink",
            Layer::new()
                .raw(EntryType::Symlink, b"esc", &out, b"")
                .raw(EntryType::Link, b"h", b"esc/evil", b"")
                .finish(),
        ),
    ];
    fs::write(outside.join("evil"), "untouched").unwrap();
    for (name, tar) in cases {
        let t = new_target(&tmp, &format!("t-{name}"));
        match apply(&tar, &t, &[]) {
            Err(UnpackError::Escape { .. }) => {}
            other => panic!("{name}: expected Escape, got {other:?}"),
        }
        assert_eq!(
            fs::read_to_string(outside.join("evil")).unwrap(),
            "untouched",
            "{name}"
        );
        assert_eq!(
            fs::read_dir(&outside).unwrap().count(),
            1,
            "{name}: nothing created outside"
        );
        assert!(!t.join("h").exists(), "{name}");
    }
}

#[test]
fn corrupt_streams_are_reported() {
    let tmp = require_root();
    let tar = kitchen_sink();
    let mut gz = {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(&tar).unwrap();
        e.finish().unwrap()
    };
    let len = gz.len();
    gz[len / 2] ^= 0xff;
    gz[len / 2 + 1] ^= 0xff;
    let t = new_target(&tmp, "gz");
    assert!(matches!(
        apply_layer(&gz[..], Compression::Gzip, &t, &[]),
        Err(UnpackError::Decompress(_))
    ));

    let t = new_target(&tmp, "zst");
    let zst = zstd::encode_all(&tar[..], 3).unwrap();
    assert!(matches!(
        apply_layer(&zst[..zst.len() / 2], Compression::Zstd, &t, &[]),
        Err(UnpackError::Decompress(_))
    ));

    let t = new_target(&tmp, "tar");
    let mut bad = tar.clone();
    bad[148] ^= 0x11; // the first header's checksum
    assert!(matches!(apply(&bad, &t, &[]), Err(UnpackError::Tar(_))));

    let t = new_target(&tmp, "truncated");
    let cut = Layer::new().file("big", &"x".repeat(100_000)).finish();
    assert!(matches!(
        apply(&cut[..50_000], &t, &[]),
        Err(UnpackError::Tar(_))
    ));
}

#[test]
fn empty_layer() {
    let tmp = require_root();
    let t = new_target(&tmp, "t");
    let (diff, stats) = apply(&[], &t, &[]).unwrap();
    assert_eq!(diff, Digest::of(b""));
    assert_eq!(stats, UnpackStats::default());
    let tar = Layer::new().finish();
    let (diff, _) = apply(&tar, &t, &[]).unwrap();
    assert_eq!(diff, Digest::of(&tar));
}

/// Unmounts on drop so a failing assertion never leaves a mount behind.
struct Mounted(PathBuf);
impl Drop for Mounted {
    fn drop(&mut self) {
        use deckhand_sys::mount::Mounter;
        let _ = deckhand_sys::mount::LinuxMounter.unmount(&self.0);
    }
}

#[test]
fn full_disk_is_no_space() {
    let tmp = require_root();
    deckhand_sys::mount::enter_private_mount_namespace().unwrap();
    let t = new_target(&tmp, "small");
    let status = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=256k", "tmpfs"])
        .arg(&t)
        .status()
        .expect("run mount(8)");
    assert!(status.success());
    let _guard = Mounted(t.clone());
    let tar = Layer::new()
        .file("big", &"x".repeat(2 * 1024 * 1024))
        .finish();
    match apply(&tar, &t, &[]) {
        Err(UnpackError::NoSpace(p)) => assert!(p.starts_with(&t), "{}", p.display()),
        other => panic!("expected NoSpace, got {other:?}"),
    }
}

#[test]
fn single_cpu_path_matches_the_pipeline() {
    let tmp = require_root();
    let tar = kitchen_sink();
    let t = new_target(&tmp, "inline");
    let (diff, stats) = apply_inline(Box::new(&tar[..]), &t, &[]).unwrap();
    assert_eq!(diff, Digest::of(&tar));
    assert_eq!(stats.tar_bytes, tar.len() as u64);
    check_kitchen_sink(&t);

    let mut gz = {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(&tar).unwrap();
        e.finish().unwrap()
    };
    let len = gz.len();
    gz.truncate(len - 100);
    let t = new_target(&tmp, "inline-bad");
    let decoder = Box::new(flate2::read::MultiGzDecoder::new(&gz[..]));
    assert!(matches!(
        apply_inline(decoder, &t, &[]),
        Err(UnpackError::Decompress(_))
    ));
}

#[test]
fn multi_frame_zstd_with_skippable_frame() {
    // zstd:chunked layers are many frames plus skippable metadata frames.
    let tmp = require_root();
    let tar = kitchen_sink();
    let (a, b) = tar.split_at(tar.len() / 3);
    let mut blob = zstd::encode_all(a, 1).unwrap();
    // A skippable frame: magic 0x184D2A50, 4-byte little-endian length, payload.
    blob.extend_from_slice(&0x184D_2A50u32.to_le_bytes());
    blob.extend_from_slice(&5u32.to_le_bytes());
    blob.extend_from_slice(b"hello");
    blob.extend(zstd::encode_all(b, 19).unwrap());
    let t = new_target(&tmp, "t");
    let (diff, _) = apply_layer(&blob[..], Compression::Zstd, &t, &[]).unwrap();
    assert_eq!(diff, Digest::of(&tar));
    check_kitchen_sink(&t);
}
