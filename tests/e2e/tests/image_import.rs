//! `deckhand image import`: OCI archives and docker-archives written by skopeo (a tool the
//! project did not write), and OCI layout dirs; the rootfs matches umoci's unpack.

use std::process::Command;

use deckhand_e2e::check::rootfs_matches_umoci;
use deckhand_e2e::deckhand::Deckhand;
use deckhand_e2e::fixtures::TAG;
use deckhand_e2e::rootfs::{chain_ids, hex_of};
use deckhand_e2e::setup;
use deckhand_e2e::util::run_checked;

fn skopeo_copy(src: String, dest: String) {
    run_checked(
        Command::new("skopeo")
            .args(["copy", "--quiet"])
            .arg(src)
            .arg(dest),
    )
    .unwrap();
}

fn assert_imported(
    dh: &Deckhand,
    name: &str,
    fixture: &str,
    fx: &deckhand_e2e::fixtures::Fixtures,
) {
    assert_eq!(
        dh.image_names(),
        [name.to_string()],
        "`image ls` after import"
    );
    let img = &fx.info(fixture).images[0];
    let v = dh.inspect(name);
    assert_eq!(
        hex_of(v["id"].as_str().unwrap()),
        hex_of(&img.config_digest),
        "{v}"
    );
    assert_eq!(
        hex_of(v["top_chain"].as_str().unwrap()),
        hex_of(chain_ids(&img.diff_ids).last().unwrap()),
        "{v}"
    );
    let twin = fixture.trim_end_matches("-zstd");
    rootfs_matches_umoci(dh, name, fx, twin);
    dh.assert_verify_ok();
}

#[test]
fn import_oci_archive() {
    let fx = setup(env!("CARGO_TARGET_TMPDIR"));
    let dh = Deckhand::new();
    let archive = dh.tmp.path().join("multilayer.oci.tar");
    skopeo_copy(
        format!("oci:{}:{TAG}", fx.layout("multilayer").display()),
        format!("oci-archive:{}:{TAG}", archive.display()),
    );
    let name = "example.com/import/oci-archive:1";
    dh.ok(&["image", "import", archive.to_str().unwrap(), "--name", name]);
    assert_imported(&dh, name, "multilayer", &fx);
}

#[test]
fn import_docker_archive() {
    let fx = setup(env!("CARGO_TARGET_TMPDIR"));
    let dh = Deckhand::new();
    let archive = dh.tmp.path().join("multilayer.docker.tar");
    let name = "example.com/import/docker-archive:1";
    skopeo_copy(
        format!("oci:{}:{TAG}", fx.layout("multilayer").display()),
        format!("docker-archive:{}:{name}", archive.display()),
    );
    // The name comes from the archive's RepoTags.
    dh.ok(&["image", "import", archive.to_str().unwrap()]);
    assert_imported(&dh, name, "multilayer", &fx);
}

#[test]
fn import_oci_layout_dir() {
    let fx = setup(env!("CARGO_TARGET_TMPDIR"));
    let dh = Deckhand::new();
    let name = "example.com/import/layout:1";
    dh.ok(&[
        "image",
        "import",
        fx.layout("busybox").to_str().unwrap(),
        "--name",
        name,
    ]);
    assert_imported(&dh, name, "busybox", &fx);
    let v = dh.inspect(name);
    assert_eq!(
        hex_of(v["manifest"].as_str().unwrap()),
        hex_of(&fx.info("busybox").digest),
        "{v}"
    );
}

#[test]
fn import_zstd_layout_dir() {
    let fx = setup(env!("CARGO_TARGET_TMPDIR"));
    let dh = Deckhand::new();
    let name = "example.com/import/zstd:1";
    dh.ok(&[
        "image",
        "import",
        fx.layout("multilayer-zstd").to_str().unwrap(),
        "--name",
        name,
    ]);
    assert_imported(&dh, name, "multilayer-zstd", &fx);
}

#[test]
fn import_garbage_fails() {
    setup(env!("CARGO_TARGET_TMPDIR"));
    let dh = Deckhand::new();
    let f = dh.tmp.path().join("garbage.tar");
    std::fs::write(&f, b"this is not an image archive").unwrap();
    let e = dh.fails(&[
        "image",
        "import",
        f.to_str().unwrap(),
        "--name",
        "example.com/x:1",
    ]);
    assert!(
        e.stderr.contains("garbage.tar"),
        "error must name the file:\n{e}"
    );
    assert!(dh.image_names().is_empty());
    dh.assert_verify_ok();
}
