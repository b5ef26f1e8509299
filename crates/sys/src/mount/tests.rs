//! Real mounts, as root, inside a private mount namespace of the test thread.

use super::*;
use std::fs;

fn setup() -> tempfile::TempDir {
    assert!(
        crate::privilege::is_root(),
        "mount tests need root (they mount overlays and binds in a private mount namespace): run them as root (make test)"
    );
    enter_private_mount_namespace().expect("private mount namespace");
    tempfile::tempdir().unwrap()
}

/// Unmounts on drop so a failing assertion never leaves a mount behind.
struct Mounted(PathBuf);
impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = LinuxMounter.unmount(&self.0);
    }
}

fn layer(root: &Path, name: &str, files: &[(&str, &str)]) -> PathBuf {
    let dir = root.join(name);
    fs::create_dir_all(&dir).unwrap();
    for (path, content) in files {
        let p = dir.join(path);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, content).unwrap();
    }
    dir
}

fn three_layers(root: &Path) -> OverlaySpec {
    let l0 = layer(root, "l0", &[("a", "0"), ("b", "0"), ("d/x", "0")]);
    let l1 = layer(root, "l1", &[("b", "1"), ("d/y", "1")]);
    let l2 = layer(root, "l2", &[("c", "2")]);
    fs::create_dir(root.join("upper")).unwrap();
    fs::create_dir(root.join("work")).unwrap();
    OverlaySpec {
        lower: vec![l2, l1, l0],
        upper: Some(root.join("upper")),
        work: Some(root.join("work")),
    }
}

fn check_merged_and_write(root: &Path, merged: &Path) {
    assert_eq!(fs::read_to_string(merged.join("a")).unwrap(), "0");
    assert_eq!(
        fs::read_to_string(merged.join("b")).unwrap(),
        "1",
        "upper-most layer wins"
    );
    assert_eq!(fs::read_to_string(merged.join("c")).unwrap(), "2");
    let mut d: Vec<String> = fs::read_dir(merged.join("d"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    d.sort();
    assert_eq!(d, ["x", "y"], "directories merge across layers");
    fs::write(merged.join("new"), "w").unwrap();
    fs::write(merged.join("a"), "changed").unwrap();
    assert_eq!(fs::read_to_string(root.join("upper/new")).unwrap(), "w");
    assert_eq!(
        fs::read_to_string(root.join("upper/a")).unwrap(),
        "changed",
        "copy-up lands in upper"
    );
    assert_eq!(
        fs::read_to_string(root.join("l0/a")).unwrap(),
        "0",
        "lower layers stay untouched"
    );
}

#[test]
fn three_layer_overlay_new_api() {
    let tmp = setup();
    let spec = three_layers(tmp.path());
    let merged = tmp.path().join("merged");
    fs::create_dir(&merged).unwrap();
    LinuxMounter.mount_overlay(&spec, &merged).unwrap();
    let guard = Mounted(merged.clone());
    check_merged_and_write(tmp.path(), &merged);
    drop(guard);
    assert!(
        !merged.join("a").exists(),
        "unmounted: the mount point is empty again"
    );
}

#[test]
fn three_layer_overlay_legacy_mount() {
    let tmp = setup();
    let spec = three_layers(tmp.path());
    let merged = tmp.path().join("merged");
    fs::create_dir(&merged).unwrap();
    mount_overlay_legacy(&spec, &merged).unwrap();
    let _guard = Mounted(merged.clone());
    check_merged_and_write(tmp.path(), &merged);
}

#[test]
fn paths_with_colons_and_commas_mount_both_ways() {
    let tmp = setup();
    let l0 = layer(tmp.path(), "low:0,x", &[("a", "0")]);
    let l1 = layer(tmp.path(), "low\\1", &[("b", "1")]);
    let spec = OverlaySpec {
        lower: vec![l1, l0],
        upper: None,
        work: None,
    };
    for legacy in [false, true] {
        let merged = tmp.path().join(format!("m{legacy}"));
        fs::create_dir(&merged).unwrap();
        if legacy {
            mount_overlay_legacy(&spec, &merged).unwrap();
        } else {
            LinuxMounter.mount_overlay(&spec, &merged).unwrap();
        }
        let _guard = Mounted(merged.clone());
        assert_eq!(fs::read_to_string(merged.join("a")).unwrap(), "0");
        assert_eq!(fs::read_to_string(merged.join("b")).unwrap(), "1");
    }
}

#[test]
fn overlay_without_upper_is_read_only() {
    let tmp = setup();
    let l0 = layer(tmp.path(), "l0", &[("a", "0")]);
    let l1 = layer(tmp.path(), "l1", &[("b", "1")]);
    let merged = tmp.path().join("merged");
    fs::create_dir(&merged).unwrap();
    let spec = OverlaySpec {
        lower: vec![l1, l0],
        upper: None,
        work: None,
    };
    LinuxMounter.mount_overlay(&spec, &merged).unwrap();
    let _guard = Mounted(merged.clone());
    assert_eq!(fs::read_to_string(merged.join("a")).unwrap(), "0");
    let e = fs::write(merged.join("x"), "x").unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EROFS));
}

#[test]
fn single_lower_without_upper_mounts_read_only() {
    let tmp = setup();
    let l0 = layer(tmp.path(), "l0", &[("a", "0")]);
    let merged = tmp.path().join("merged");
    fs::create_dir(&merged).unwrap();
    let spec = OverlaySpec {
        lower: vec![l0],
        upper: None,
        work: None,
    };
    LinuxMounter.mount_overlay(&spec, &merged).unwrap();
    let _guard = Mounted(merged.clone());
    assert_eq!(fs::read_to_string(merged.join("a")).unwrap(), "0");
    assert_eq!(
        fs::write(merged.join("x"), "x").unwrap_err().raw_os_error(),
        Some(libc::EROFS)
    );
}

#[test]
fn sixty_layers_with_long_paths() {
    let tmp = setup();
    // ~150-byte layer paths: 60 of them are ~9 KiB of options, twice what mount(2) accepts.
    let base = tmp.path().join("s".repeat(100));
    let mut lower = Vec::new();
    for i in 0..60 {
        let name = format!("{}-{i:02}", "snapshot-layer".repeat(3));
        lower.push(layer(
            &base,
            &name,
            &[(&format!("f{i}"), &i.to_string()), ("top", &i.to_string())],
        ));
    }
    lower.reverse(); // top-most (layer 59) first
    let upper = tmp.path().join("upper");
    let work = tmp.path().join("work");
    fs::create_dir(&upper).unwrap();
    fs::create_dir(&work).unwrap();
    let spec = OverlaySpec {
        lower,
        upper: Some(upper),
        work: Some(work),
    };
    assert!(
        legacy_options(&spec).len() > 4096,
        "the test must exceed one page"
    );

    let merged = tmp.path().join("merged");
    fs::create_dir(&merged).unwrap();
    LinuxMounter.mount_overlay(&spec, &merged).unwrap();
    let _guard = Mounted(merged.clone());
    for i in 0..60 {
        assert_eq!(
            fs::read_to_string(merged.join(format!("f{i}"))).unwrap(),
            i.to_string()
        );
    }
    assert_eq!(fs::read_to_string(merged.join("top")).unwrap(), "59");

    // Where only mount(2) is available, the failure says why and what to do.
    let other = tmp.path().join("other");
    fs::create_dir(&other).unwrap();
    let e = mount_overlay_legacy(&spec, &other).unwrap_err();
    assert!(matches!(e, MountError::Invalid { .. }), "{e}");
    assert!(e.to_string().contains("lowerdir+"), "{e}");
}

#[test]
fn errors_name_the_missing_layer() {
    let tmp = setup();
    let l0 = layer(tmp.path(), "l0", &[("a", "0")]);
    let missing = tmp.path().join("no-such-layer");
    let merged = tmp.path().join("merged");
    fs::create_dir(&merged).unwrap();
    let spec = OverlaySpec {
        lower: vec![missing, l0],
        upper: None,
        work: None,
    };
    let e = LinuxMounter.mount_overlay(&spec, &merged).unwrap_err();
    assert!(e.to_string().contains("no-such-layer"), "{e}");

    let bad = OverlaySpec {
        lower: vec![tmp.path().join("l0")],
        upper: Some(tmp.path().into()),
        work: None,
    };
    assert!(matches!(
        LinuxMounter.mount_overlay(&bad, &merged),
        Err(MountError::Invalid { .. })
    ));
    let empty = OverlaySpec {
        lower: vec![],
        upper: None,
        work: None,
    };
    assert!(matches!(
        LinuxMounter.mount_overlay(&empty, &merged),
        Err(MountError::Invalid { .. })
    ));
}

#[test]
fn bind_read_write_and_read_only() {
    let tmp = setup();
    let src = layer(tmp.path(), "src", &[("a", "0")]);
    let rw = tmp.path().join("rw");
    let ro = tmp.path().join("ro");
    fs::create_dir(&rw).unwrap();
    fs::create_dir(&ro).unwrap();
    LinuxMounter.bind(&src, &rw, false).unwrap();
    let _g1 = Mounted(rw.clone());
    LinuxMounter.bind(&src, &ro, true).unwrap();
    let _g2 = Mounted(ro.clone());
    fs::write(rw.join("b"), "1").unwrap();
    assert_eq!(fs::read_to_string(src.join("b")).unwrap(), "1");
    assert_eq!(fs::read_to_string(ro.join("b")).unwrap(), "1");
    assert_eq!(
        fs::write(ro.join("c"), "x").unwrap_err().raw_os_error(),
        Some(libc::EROFS)
    );
    // The source stays writable: read-only applies to the new mount only.
    fs::write(src.join("c"), "x").unwrap();

    let e = LinuxMounter
        .bind(&tmp.path().join("missing"), &rw, false)
        .unwrap_err();
    assert!(e.to_string().contains("missing"), "{e}");
}

#[test]
fn unmount_of_unmounted_or_missing_path_is_ok() {
    let tmp = setup();
    LinuxMounter.unmount(tmp.path()).unwrap();
    LinuxMounter.unmount(&tmp.path().join("missing")).unwrap();
    let src = layer(tmp.path(), "src", &[("a", "0")]);
    let dst = tmp.path().join("dst");
    fs::create_dir(&dst).unwrap();
    LinuxMounter.bind(&src, &dst, false).unwrap();
    LinuxMounter.unmount(&dst).unwrap();
    assert!(!dst.join("a").exists());
    LinuxMounter.unmount(&dst).unwrap();
}

#[test]
fn kernel_release_parsing() {
    assert_eq!(parse_kernel_release("6.18.44-fc-v857"), Some((6, 18)));
    assert_eq!(parse_kernel_release("5.10.0-28-amd64"), Some((5, 10)));
    assert_eq!(parse_kernel_release("6.8"), Some((6, 8)));
    assert_eq!(parse_kernel_release("garbage"), None);
    assert!(kernel_version().is_some());
}
