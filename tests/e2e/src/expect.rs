//! What the fixtures must look like once unpacked, stated independently of any unpacker. The
//! same checks run on umoci's rootfs (proving the fixture and the check) and on deckhand's.

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;

fn read(root: &Path, p: &str) -> String {
    fs::read_to_string(root.join(p)).unwrap_or_else(|e| panic!("read /{p}: {e}"))
}

fn absent(root: &Path, p: &str) {
    assert!(
        fs::symlink_metadata(root.join(p)).is_err(),
        "/{p} must not exist (deleted by a whiteout or hidden by an opaque dir)"
    );
}

/// The busybox base layer.
pub fn busybox(root: &Path) {
    let bb = fs::metadata(root.join("bin/busybox")).expect("/bin/busybox");
    assert!(
        bb.is_file() && bb.mode() & 0o111 != 0,
        "/bin/busybox must be an executable file"
    );
    assert_eq!(
        fs::read(root.join("bin/busybox")).expect("read busybox"),
        fs::read("/bin/busybox").expect("read host busybox"),
        "/bin/busybox content"
    );
    assert_eq!(
        fs::read_link(root.join("bin/sh"))
            .expect("/bin/sh link")
            .to_str(),
        Some("busybox")
    );
    assert!(read(root, "etc/passwd").contains("nobody:x:65534:65534"));
    let tmp = fs::metadata(root.join("tmp")).expect("/tmp");
    assert_eq!(tmp.permissions().mode() & 0o7777, 0o1777, "/tmp mode");
}

/// Every case of the `multilayer` fixture.
pub fn multilayer(root: &Path) {
    busybox(root);
    assert_eq!(read(root, "data/keep.txt"), "kept through all layers\n");
    assert_eq!(read(root, "data/remove-me.txt"), "recreated by layer 3\n");
    assert_eq!(
        read(root, "data/changed.txt"),
        "version 2, longer than version 1\n"
    );
    assert_eq!(
        fs::metadata(root.join("data/changed.txt")).unwrap().mode() & 0o7777,
        0o600
    );
    assert_eq!(read(root, "data/new-in-2.txt"), "added by layer 2\n");
    // Opaque dir: only layer 2's content.
    let mut opq: Vec<_> = fs::read_dir(root.join("opq"))
        .expect("/opq")
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    opq.sort();
    assert_eq!(
        opq,
        ["new.txt", "sub"],
        "/opq must hold only layer 2's entries"
    );
    let mut sub: Vec<_> = fs::read_dir(root.join("opq/sub"))
        .expect("/opq/sub")
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    sub.sort();
    assert_eq!(
        sub,
        ["new2.txt"],
        "/opq/sub must hold only layer 2's entries"
    );
    absent(root, "opq/old1.txt");
    assert_eq!(
        fs::metadata(root.join("opq")).unwrap().mode() & 0o7777,
        0o711,
        "/opq mode"
    );
    // Directory replaced by a file, file replaced by a directory, whole tree deleted.
    let rd = fs::symlink_metadata(root.join("replace-dir")).unwrap();
    assert!(rd.is_file(), "/replace-dir must be a regular file");
    assert_eq!(read(root, "replace-dir"), "now a regular file\n");
    assert!(
        fs::symlink_metadata(root.join("exec.sh")).unwrap().is_dir(),
        "/exec.sh must be a dir"
    );
    assert_eq!(
        read(root, "exec.sh/now-a-dir"),
        "file replaced by a directory\n"
    );
    absent(root, "gone");
    // No whiteout markers leak into the rootfs.
    for p in [
        "data/.wh.remove-me.txt",
        "opq/.wh..wh..opq",
        ".wh.gone",
        ".wh.exec.sh",
    ] {
        absent(root, p);
    }
    // Ownership and special modes.
    let owned = fs::metadata(root.join("owned")).unwrap();
    assert_eq!(
        (owned.uid(), owned.gid(), owned.mode() & 0o7777),
        (1000, 1000, 0o700),
        "/owned"
    );
    let f = fs::metadata(root.join("owned/file")).unwrap();
    assert_eq!(
        (f.uid(), f.gid(), f.mode() & 0o7777),
        (1000, 1000, 0o640),
        "/owned/file"
    );
    let e = fs::metadata(root.join("empty")).unwrap();
    assert_eq!(
        (e.uid(), e.gid(), e.mode() & 0o7777, e.len()),
        (1000, 1000, 0o644, 0),
        "/empty"
    );
    assert_eq!(
        fs::metadata(root.join("setuid-bin")).unwrap().mode() & 0o7777,
        0o4755,
        "setuid"
    );
    assert_eq!(
        fs::metadata(root.join("setgid-bin")).unwrap().mode() & 0o7777,
        0o2755,
        "setgid"
    );
    assert_eq!(
        fs::metadata(root.join("sticky")).unwrap().mode() & 0o7777,
        0o1777,
        "sticky"
    );
    // Links.
    let t = fs::metadata(root.join("links/target.txt")).unwrap();
    for h in ["links/hard1", "links/hard2"] {
        let m = fs::metadata(root.join(h)).unwrap();
        assert_eq!(
            (m.dev(), m.ino()),
            (t.dev(), t.ino()),
            "/{h} must be a hard link of /links/target.txt"
        );
    }
    assert_eq!(t.nlink(), 3, "/links/target.txt link count");
    let a = fs::metadata(root.join("links2/a")).unwrap();
    let b = fs::metadata(root.join("links2/b")).unwrap();
    assert_eq!(
        a.ino(),
        b.ino(),
        "/links2/b must be a hard link of /links2/a"
    );
    for (l, target) in [
        ("links/rel", "target.txt"),
        ("links/abs", "/links/target.txt"),
        ("links/updir", "../data/keep.txt"),
        ("links/dangling", "/nonexistent/file"),
        ("links/dirlink", "../data"),
        ("links2/to-layer1", "/links/target.txt"),
    ] {
        assert_eq!(
            fs::read_link(root.join(l))
                .unwrap_or_else(|e| panic!("/{l} must be a symlink: {e}"))
                .to_str(),
            Some(target),
            "/{l} target"
        );
    }
    assert_eq!(read(root, "links/rel"), "link target\n");
    // Special files.
    let fifo = fs::symlink_metadata(root.join("special/fifo")).unwrap();
    assert!(fifo.file_type().is_fifo(), "/special/fifo must be a fifo");
    let null = fs::symlink_metadata(root.join("special/null")).unwrap();
    assert!(
        null.file_type().is_char_device(),
        "/special/null must be a char device"
    );
    assert_eq!(
        (libc::major(null.rdev()), libc::minor(null.rdev())),
        (1, 3),
        "/special/null dev"
    );
    // PAX xattr.
    assert_eq!(
        xattr::get(root.join("xattr/file"), "user.test")
            .expect("getxattr")
            .as_deref(),
        Some(&b"hello-xattr"[..]),
        "/xattr/file user.test xattr"
    );
    assert_eq!(
        read(root, "bin/hello"),
        "#!/bin/sh\necho hello from layer 3\n"
    );
}
