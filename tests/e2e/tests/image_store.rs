//! The store's life cycle: rm and prune, `image verify` catching corruption, a pull killed
//! with SIGKILL half-way, and two processes pulling the same image at once.

use std::fs;
use std::process::Stdio;
use std::time::{Duration, Instant};

use deckhand_e2e::check::{image_record, rootfs_matches_umoci};
use deckhand_e2e::deckhand::{is_ok_line, Deckhand};
use deckhand_e2e::expect;
use deckhand_e2e::fixtures::TAG;
use deckhand_e2e::registry::Auth;
use deckhand_e2e::rootfs::{hex_of, OverlayMount};
use deckhand_e2e::util::{run_with_timeout, ChildGuard};
use deckhand_e2e::{registry_with, setup};
use deckhand_image::{ImageStore, StoreConfig};

fn dirs_under(dh: &Deckhand, sub: &str) -> Vec<String> {
    match fs::read_dir(dh.images_dir().join(sub)) {
        Ok(rd) => rd
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => vec![],
    }
}

/// Size of the largest regular file under `dir` (partial downloads may sit in sub-dirs).
fn largest_file(dir: &std::path::Path) -> u64 {
    let Ok(rd) = fs::read_dir(dir) else { return 0 };
    rd.flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => largest_file(&e.path()),
            Ok(m) if m.is_file() => m.len(),
            _ => 0,
        })
        .max()
        .unwrap_or(0)
}

#[test]
fn rm_and_prune() {
    let fx = setup(env!("CARGO_TARGET_TMPDIR"));
    let reg = registry_with(&fx, Auth::None, &["busybox", "httpd"]);
    let dh = Deckhand::new();
    let (bb, httpd) = (reg.reference("busybox", TAG), reg.reference("httpd", TAG));
    dh.ok(&["image", "pull", &bb]);
    dh.ok(&["image", "pull", &httpd]);
    let bbi = &fx.info("busybox").images[0];
    let hi = &fx.info("httpd").images[0];
    // httpd shares busybox's base layer.
    assert_eq!(bbi.layers[0], hi.layers[0]);
    assert_eq!(dh.image_names().len(), 2);

    dh.ok(&["image", "rm", &httpd]);
    assert_eq!(dh.image_names(), std::slice::from_ref(&bb));
    let blobs = dh.blobs();
    assert!(blobs.contains(&bbi.layers[0]), "the shared layer must stay");
    assert!(
        !blobs.contains(&hi.layers[1]),
        "httpd's own layer must be pruned by rm: {blobs:?}"
    );
    assert!(
        !blobs.contains(&hi.config_digest),
        "httpd's config must be pruned by rm"
    );
    assert_eq!(
        dirs_under(&dh, "snapshots").len(),
        1,
        "only busybox's snapshot remains"
    );
    image_record(&dh, &bb, &bb, bbi);
    rootfs_matches_umoci(&dh, &bb, &fx, "busybox");
    dh.assert_verify_ok();

    // Unknown image: an error naming it; nothing changes.
    let e = dh.fails(&["image", "rm", &reg.reference("nope", TAG)]);
    assert!(e.stderr.contains("nope"), "{e}");
    assert_eq!(dh.image_names(), std::slice::from_ref(&bb));

    dh.ok(&["image", "rm", &bb]);
    dh.ok(&["image", "prune"]);
    assert!(dh.image_names().is_empty());
    assert!(
        dh.blobs().is_empty(),
        "blobs left after rm + prune: {:?}",
        dh.blobs()
    );
    assert!(
        dirs_under(&dh, "snapshots").is_empty(),
        "snapshots left: {:?}",
        dirs_under(&dh, "snapshots")
    );
    assert!(dh.files_under("ingest").is_empty());
    dh.assert_verify_ok();
}

#[test]
fn verify_reports_corrupt_blob() {
    let fx = setup(env!("CARGO_TARGET_TMPDIR"));
    let reg = registry_with(&fx, Auth::None, &["busybox"]);
    let dh = Deckhand::new();
    dh.ok(&["image", "pull", &reg.reference("busybox", TAG)]);
    dh.assert_verify_ok();
    let layer = &fx.info("busybox").images[0].layers[0];
    let path = dh.images_dir().join("blobs/sha256").join(hex_of(layer));
    let mut data = fs::read(&path).expect("layer blob stored under blobs/sha256/<hex>");
    data[100] ^= 0x55;
    fs::write(&path, &data).unwrap();
    let r = dh.run(&["image", "verify"]);
    assert!(!r.success(), "verify must fail on a corrupt blob:\n{r}");
    let all = format!("{}{}", r.stdout, r.stderr);
    assert!(
        all.contains(hex_of(layer)),
        "verify must name the corrupt blob {layer}:\n{r}"
    );
    assert!(
        !r.stdout.lines().any(is_ok_line),
        "verify must not print ok:\n{r}"
    );
}

#[test]
fn pull_killed_midway_leaves_store_consistent() {
    let fx = setup(env!("CARGO_TARGET_TMPDIR"));
    let reg = registry_with(&fx, Auth::None, &["large"]);
    let r = reg.reference("large", TAG);
    let info = fx.info("large");
    // Kill as soon as a partial download of a few MB exists. Loopback is fast, so poll
    // without sleeping; retry with a fresh store if the pull got through first.
    let mut caught = None;
    for _attempt in 0..5 {
        let dh = Deckhand::new();
        let mut cmd = dh.command();
        cmd.args(["image", "pull", &r])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let mut child = ChildGuard::new(cmd.spawn().expect("spawn deckhand pull"));
        let ingest = dh.images_dir().join("ingest");
        let start = Instant::now();
        let mut killed = false;
        while start.elapsed() < Duration::from_secs(120) {
            if child.0.try_wait().unwrap().is_some() {
                break;
            }
            let partial = largest_file(&ingest) >= 4 << 20;
            if partial {
                child.0.kill().unwrap();
                child.0.wait().unwrap();
                killed = true;
                break;
            }
            std::thread::yield_now();
        }
        if killed {
            caught = Some(dh);
            break;
        }
    }
    let dh =
        caught.expect("never saw a partial download (>= 4 MiB in ingest/) to kill the pull at");
    assert!(
        !dh.image_names().contains(&r),
        "a killed pull must not show the image"
    );
    dh.assert_verify_ok();
    // The next pull completes (resuming or restarting) and the result is right.
    dh.ok(&["image", "pull", &r]);
    image_record(&dh, &r, &r, &info.images[0]);
    rootfs_matches_umoci(&dh, &r, &fx, "large");
    dh.assert_verify_ok();
    assert!(
        dh.files_under("ingest").is_empty(),
        "ingest/ not cleaned: {:?}",
        dh.files_under("ingest")
    );
}

#[test]
fn concurrent_pulls_store_layers_once() {
    let fx = setup(env!("CARGO_TARGET_TMPDIR"));
    let reg = registry_with(&fx, Auth::None, &["large"]);
    let r = reg.reference("large", TAG);
    let info = fx.info("large");
    let img = &info.images[0];
    let dh = Deckhand::new();
    let threads: Vec<_> = (0..2)
        .map(|_| {
            let mut cmd = dh.command();
            cmd.args(["image", "pull", &r]);
            std::thread::spawn(move || run_with_timeout(&mut cmd, Duration::from_secs(300)))
        })
        .collect();
    for t in threads {
        let run = t.join().unwrap();
        assert!(run.success(), "both concurrent pulls must succeed:\n{run}");
    }
    assert_eq!(dh.image_names(), std::slice::from_ref(&r));
    let blobs = dh.blobs();
    let mut allowed: Vec<String> = img.layers.clone();
    allowed.push(img.config_digest.clone());
    allowed.push(img.manifest_digest.clone());
    for l in img.layers.iter().chain([&img.config_digest]) {
        assert!(blobs.contains(l), "{l} must be stored: {blobs:?}");
    }
    for b in &blobs {
        assert!(allowed.contains(b), "unexpected blob {b}");
    }
    assert_eq!(
        dirs_under(&dh, "snapshots").len(),
        img.layers.len(),
        "one snapshot per layer"
    );
    assert!(dh.files_under("ingest").is_empty());
    image_record(&dh, &r, &r, img);
    rootfs_matches_umoci(&dh, &r, &fx, "large");
    dh.assert_verify_ok();
}

/// A container rootfs prepared through the library (the CLI has no container commands yet),
/// mounted writable the way the runtime mounts it.
fn container_rootfs(dh: &Deckhand, store: &ImageStore, reference: &str, id: &str) -> OverlayMount {
    let img = store.get(reference).expect("image in store");
    let spec = store.prepare_rootfs(id, &img).expect("prepare_rootfs");
    let upper = spec.upper.as_deref().zip(spec.work.as_deref());
    assert!(
        upper.is_some(),
        "a container rootfs needs an upper and a work dir: {spec:?}"
    );
    let target = dh.tmp.path().join(format!("container-{id}"));
    OverlayMount::mount_with(&spec.lower, upper, &target).expect("mount container rootfs")
}

#[test]
fn rm_and_prune_spare_a_mounted_container_rootfs() {
    let fx = setup(env!("CARGO_TARGET_TMPDIR"));
    let reg = registry_with(&fx, Auth::None, &["busybox", "httpd"]);
    let dh = Deckhand::new();
    let (bb, httpd) = (reg.reference("busybox", TAG), reg.reference("httpd", TAG));
    dh.ok(&["image", "pull", &bb]);
    dh.ok(&["image", "pull", &httpd]);
    let store = ImageStore::open(StoreConfig::new(&dh.data_dir)).expect("open store");

    let web = container_rootfs(&dh, &store, &bb, "web-1");
    fs::write(web.target.join("tmp/written"), "container data\n")
        .expect("container rootfs is writable");
    expect::busybox(&web.target);

    let e = dh.fails(&["image", "rm", &bb]);
    assert!(
        e.stderr.contains("web-1"),
        "the refusal must name the container:\n{e}"
    );
    assert_eq!(dh.image_names(), [bb.clone(), httpd.clone()]);
    dh.ok(&["image", "prune"]);
    expect::busybox(&web.target);
    dh.assert_verify_ok();

    // --force removes the name, but what the running container uses stays on disk.
    let srv = container_rootfs(&dh, &store, &httpd, "srv-1");
    dh.ok(&["image", "rm", "--force", &httpd]);
    dh.ok(&["image", "prune"]);
    assert_eq!(dh.image_names(), std::slice::from_ref(&bb));
    assert_eq!(
        fs::read_to_string(srv.target.join("www/index.html")).unwrap(),
        "hello from deckhand httpd\n"
    );
    expect::busybox(&srv.target);

    drop(web);
    drop(srv);
    store.release_rootfs("web-1").expect("release web-1");
    store.release_rootfs("srv-1").expect("release srv-1");
    dh.ok(&["image", "rm", &bb]);
    dh.ok(&["image", "prune"]);
    assert!(dh.image_names().is_empty());
    assert!(dh.blobs().is_empty(), "blobs left: {:?}", dh.blobs());
    assert!(
        dirs_under(&dh, "snapshots").is_empty(),
        "snapshots left: {:?}",
        dirs_under(&dh, "snapshots")
    );
    dh.assert_verify_ok();
}
