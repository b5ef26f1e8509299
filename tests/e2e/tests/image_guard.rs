//! Guards that protect users from themselves and from the machine: `image rm` refuses to pull
//! an image out from under a container, and a full disk fails a pull cleanly, with a message
//! that says so, leaving nothing half-stored.

use deckhand_e2e::deckhand::Deckhand;
use deckhand_e2e::fixtures::TAG;
use deckhand_e2e::registry::Auth;
use deckhand_e2e::{registry_with, setup};
use deckhand_image::{ImageStore, StoreConfig};

#[test]
fn rm_refuses_while_a_container_uses_the_image() {
    let fx = setup(env!("CARGO_TARGET_TMPDIR"));
    let reg = registry_with(&fx, Auth::None, &["busybox"]);
    let dh = Deckhand::new();
    let bb = reg.reference("busybox", TAG);
    dh.ok(&["image", "pull", &bb]);

    // A container rootfs, prepared the way the runtime does it.
    let store = ImageStore::open(StoreConfig::new(&dh.data_dir)).expect("open store");
    let image = store.get(&bb).expect("image present");
    let spec = store
        .prepare_rootfs("ctr-guard-1", &image)
        .expect("prepare rootfs");
    assert!(!spec.lower.is_empty() && spec.upper.is_some());

    let refused = dh.fails(&["image", "rm", &bb]);
    assert!(
        refused.stderr.contains("ctr-guard-1"),
        "the error must name the container:\n{refused}"
    );
    assert!(
        refused.stderr.contains("--force"),
        "the error must say how to override:\n{refused}"
    );
    assert_eq!(
        dh.image_names(),
        std::slice::from_ref(&bb),
        "a refused rm must change nothing"
    );

    // --force untags it; prune must still keep what the live container stands on.
    dh.ok(&["image", "rm", "--force", &bb]);
    assert!(dh.image_names().is_empty());
    dh.ok(&["image", "prune"]);
    for lower in &spec.lower {
        assert!(
            lower.exists(),
            "prune removed a lower dir in use: {}",
            lower.display()
        );
    }
    assert!(
        spec.lower.iter().any(|l| l.join("bin/busybox").exists()),
        "busybox must still be visible to the container"
    );

    // Once the container is gone, prune frees everything.
    store.release_rootfs("ctr-guard-1").expect("release rootfs");
    dh.ok(&["image", "prune"]);
    assert!(dh.blobs().is_empty(), "blobs left: {:?}", dh.blobs());
    assert!(
        !spec.lower.iter().any(|l| l.exists()),
        "snapshots left after the container was removed"
    );
    dh.assert_verify_ok();
}

#[test]
fn full_disk_fails_the_pull_cleanly() {
    let fx = setup(env!("CARGO_TARGET_TMPDIR"));
    let reg = registry_with(&fx, Auth::None, &["large", "busybox"]);
    let dh = Deckhand::new();
    // A 24 MiB file system for the whole data dir; the image is ~120 MiB. The mount lives in
    // this test's private mount namespace, which the deckhand processes inherit.
    let status = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=24m", "tmpfs"])
        .arg(&dh.data_dir)
        .status()
        .expect("run mount");
    assert!(status.success(), "mount tmpfs on {}", dh.data_dir.display());

    let large = reg.reference("large", TAG);
    let failed = dh.fails(&["image", "pull", &large]);
    assert!(
        failed.stderr.to_lowercase().contains("no space left"),
        "the error must say the disk is full:\n{failed}"
    );
    assert!(
        failed.stderr.contains("free space"),
        "the error must say what to do:\n{failed}"
    );
    assert!(dh.image_names().is_empty(), "no half image may be listed");
    dh.assert_verify_ok();

    // Prune gives the space back and a small image then fits.
    dh.ok(&["image", "prune"]);
    let bb = reg.reference("busybox", TAG);
    dh.ok(&["image", "pull", &bb]);
    assert_eq!(dh.image_names(), [bb]);
    dh.assert_verify_ok();

    let _ = std::process::Command::new("umount")
        .arg("-l")
        .arg(&dh.data_dir)
        .status();
}
