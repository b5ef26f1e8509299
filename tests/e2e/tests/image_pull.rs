//! `deckhand image pull` against a real docker-registry: every fixture's rootfs equals umoci's
//! unpack of the same layout; pull by digest; platform selection; mirrors; errors.

use std::fs;

use deckhand_e2e::check::{image_record, rootfs_matches_umoci};
use deckhand_e2e::deckhand::Deckhand;
use deckhand_e2e::fixtures::{host_arch, TAG};
use deckhand_e2e::registry::{free_port, Auth};
use deckhand_e2e::rootfs::hex_of;
use deckhand_e2e::{registry_with, setup};

fn pull_and_compare(name: &str, umoci_twin: &str) -> (Deckhand, serde_json::Value) {
    let fx = setup(env!("CARGO_TARGET_TMPDIR"));
    let reg = registry_with(&fx, Auth::None, &[name]);
    let dh = Deckhand::new();
    let r = reg.reference(name, TAG);
    dh.ok(&["image", "pull", &r]);
    let rec = image_record(&dh, &r, &r, &fx.info(name).images[0]);
    rootfs_matches_umoci(&dh, &r, &fx, umoci_twin);
    dh.assert_verify_ok();
    assert!(
        dh.files_under("ingest").is_empty(),
        "ingest/ must be empty after a pull: {:?}",
        dh.files_under("ingest")
    );
    (dh, rec)
}

#[test]
fn pull_busybox() {
    let (dh, rec) = pull_and_compare("busybox", "busybox");
    assert_eq!(rec["config"]["cmd"], serde_json::json!(["sh"]), "{rec}");
    assert_eq!(dh.image_names().len(), 1);
    // The table form lists it too (crictl-like columns).
    let ls = dh.ok(&["image", "ls"]);
    let header: Vec<&str> = ls
        .stdout
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    assert_eq!(header, ["IMAGE", "TAG", "IMAGE", "ID", "SIZE"], "{ls}");
    assert!(
        ls.stdout
            .lines()
            .nth(1)
            .is_some_and(|l| l.contains("/busybox") && l.contains(" 1 ")),
        "{ls}"
    );
    let q = dh.ok(&["image", "ls", "-q"]);
    assert_eq!(q.stdout.lines().count(), 1, "{q}");
}

#[test]
fn pull_multilayer() {
    let (_dh, rec) = pull_and_compare("multilayer", "multilayer");
    let c = &rec["config"];
    assert_eq!(c["working_dir"], "/data", "{rec}");
    assert_eq!(c["user"], "1000:1000", "{rec}");
    assert_eq!(c["stop_signal"], "SIGINT", "{rec}");
    assert_eq!(c["labels"]["org.deckhand.fixture"], "multilayer", "{rec}");
    assert!(
        c["env"]
            .as_array()
            .is_some_and(|e| e.iter().any(|v| v == "FIXTURE=multilayer")),
        "{rec}"
    );
}

#[test]
fn pull_zstd_busybox() {
    pull_and_compare("busybox-zstd", "busybox");
}

#[test]
fn pull_zstd_multilayer() {
    pull_and_compare("multilayer-zstd", "multilayer");
}

#[test]
fn pull_large() {
    pull_and_compare("large", "large");
}

#[test]
fn pull_httpd_config() {
    let (_dh, rec) = pull_and_compare("httpd", "httpd");
    let c = &rec["config"];
    let ports = serde_json::to_string(&c["exposed_ports"]).unwrap();
    assert!(
        ports.contains("80/tcp"),
        "exposed_ports must hold 80/tcp: {rec}"
    );
    assert_eq!(
        c["cmd"],
        serde_json::json!(["httpd", "-f", "-p", "80", "-h", "/www"]),
        "{rec}"
    );
}

#[test]
fn pull_by_digest() {
    let fx = setup(env!("CARGO_TARGET_TMPDIR"));
    let reg = registry_with(&fx, Auth::None, &["busybox"]);
    let dh = Deckhand::new();
    let info = fx.info("busybox");
    let r = format!("{}/busybox@{}", reg.host(), info.digest);
    dh.ok(&["image", "pull", &r]);
    let v = dh.inspect(&r);
    assert_eq!(
        hex_of(v["manifest"].as_str().unwrap()),
        hex_of(&info.digest),
        "{v}"
    );
    rootfs_matches_umoci(&dh, &r, &fx, "busybox");
    // A digest the registry does not have is an error naming it.
    let missing = format!("{}/busybox@sha256:{}", reg.host(), "0".repeat(64));
    let e = dh.fails(&["image", "pull", &missing]);
    assert!(
        e.stderr.contains(&"0".repeat(64)) || e.stderr.contains("busybox@"),
        "{e}"
    );
}

fn platform_marker(dh: &Deckhand, r: &str) -> String {
    let m = dh.mount_rootfs(r, &format!("plat-{}", dh.image_names().len()));
    fs::read_to_string(m.target.join("etc/platform")).expect("/etc/platform")
}

#[test]
fn pull_platform_from_index() {
    let fx = setup(env!("CARGO_TARGET_TMPDIR"));
    let reg = registry_with(&fx, Auth::None, &["multiarch"]);
    let info = fx.info("multiarch");
    let r = reg.reference("multiarch", TAG);
    for (platform, idx, marker) in [
        ("linux/arm64", 1, "linux/arm64/v8\n"),
        ("linux/arm/v7", 2, "linux/arm/v7\n"),
    ] {
        let dh = Deckhand::new();
        dh.ok(&["image", "pull", &r, "--platform", platform]);
        let img = &info.images[idx];
        image_record(&dh, &r, &r, img);
        assert_eq!(platform_marker(&dh, &r), marker, "--platform {platform}");
        // Only the selected platform's layers were fetched.
        let blobs = dh.blobs();
        for other in info
            .images
            .iter()
            .filter(|o| o.manifest_digest != img.manifest_digest)
        {
            let only_other = other.layers.last().unwrap();
            assert!(
                !blobs.contains(only_other),
                "{platform}: fetched {only_other} of {}",
                other.architecture
            );
        }
    }
    // Default: the host's platform.
    let dh = Deckhand::new();
    dh.ok(&["image", "pull", &r]);
    let host = info
        .images
        .iter()
        .position(|i| i.architecture == host_arch())
        .expect("host platform in index");
    image_record(&dh, &r, &r, &info.images[host]);
    assert_eq!(platform_marker(&dh, &r), format!("linux/{}\n", host_arch()));
    // A platform the index lacks is a clear error.
    let dh = Deckhand::new();
    let e = dh.fails(&["image", "pull", &r, "--platform", "linux/s390x"]);
    assert!(
        e.stderr.contains("s390x"),
        "error must name the missing platform:\n{e}"
    );
    assert!(dh.image_names().is_empty());
}

#[test]
fn pull_through_registries_yaml_mirror() {
    let fx = setup(env!("CARGO_TARGET_TMPDIR"));
    let reg = registry_with(&fx, Auth::None, &["busybox"]);
    let dh = Deckhand::new();
    dh.write_registries_yaml(&format!(
        "mirrors:\n  \"mirror.invalid\":\n    endpoint:\n      - \"http://{}\"\n",
        reg.host()
    ));
    let r = format!("mirror.invalid/busybox:{TAG}");
    dh.ok(&["image", "pull", &r]);
    assert_eq!(dh.image_names(), std::slice::from_ref(&r));
    rootfs_matches_umoci(&dh, &r, &fx, "busybox");
}

#[test]
fn pull_missing_tag_names_the_reference() {
    let fx = setup(env!("CARGO_TARGET_TMPDIR"));
    let reg = registry_with(&fx, Auth::None, &["busybox"]);
    let dh = Deckhand::new();
    for r in [
        reg.reference("busybox", "nope"),
        reg.reference("no-such-repo", TAG),
    ] {
        let e = dh.fails(&["image", "pull", &r]);
        assert!(e.stderr.contains(&r), "error must name {r}:\n{e}");
        assert!(
            e.stderr.to_lowercase().contains("not found") || e.stderr.contains("404"),
            "error must say not found:\n{e}"
        );
    }
    assert!(dh.image_names().is_empty());
}

#[test]
fn pull_malformed_reference() {
    setup(env!("CARGO_TARGET_TMPDIR"));
    let dh = Deckhand::new();
    for r in [
        "Busybox:UPPER/x",
        "busybox:bad tag",
        "127.0.0.1:5000/busybox@sha256:xyz",
        "",
        "a//b:1",
    ] {
        let e = dh.fails(&["image", "pull", r]);
        if !r.is_empty() {
            assert!(
                e.stderr.contains(r),
                "error must quote the reference {r:?}:\n{e}"
            );
        }
    }
}

#[test]
fn pull_unreachable_registry() {
    setup(env!("CARGO_TARGET_TMPDIR"));
    let dh = Deckhand::new();
    let e = dh.fails(&["image", "pull", "no-such-host.invalid/busybox:1"]);
    assert!(
        e.stderr.contains("no-such-host.invalid"),
        "error must name the host:\n{e}"
    );
    let port = free_port().unwrap();
    let r = format!("127.0.0.1:{port}/busybox:1");
    let e = dh.fails(&["image", "pull", &r]);
    assert!(
        e.stderr.contains(&format!("127.0.0.1:{port}")),
        "error must name the registry:\n{e}"
    );
}

#[test]
fn pull_tampered_blob_fails_verification() {
    let fx = setup(env!("CARGO_TARGET_TMPDIR"));
    let reg = registry_with(&fx, Auth::None, &["multilayer"]);
    let info = fx.info("multilayer");
    // Flip bytes in the middle of the last layer, keeping its size: the registry serves it.
    let bad = info.images[0].layers.last().unwrap().clone();
    let path = reg.blob_path(&bad);
    let mut data = fs::read(&path).unwrap();
    let mid = data.len() / 2;
    for b in &mut data[mid..mid + 16] {
        *b ^= 0xff;
    }
    fs::write(&path, &data).unwrap();
    let dh = Deckhand::new();
    let r = reg.reference("multilayer", TAG);
    let e = dh.fails(&["image", "pull", &r]);
    assert!(e.stderr.contains("failed verification"), "{e}");
    assert!(
        e.stderr.contains(hex_of(&bad)),
        "error must name the bad blob {bad}:\n{e}"
    );
    assert!(
        dh.image_names().is_empty(),
        "a failed pull must not leave an image"
    );
    assert!(
        !dh.blobs().contains(&bad),
        "the tampered blob must not be committed"
    );
    dh.assert_verify_ok();
}
