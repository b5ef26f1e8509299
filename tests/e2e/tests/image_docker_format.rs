//! Images in Docker's own formats, as `docker push` leaves them in registries: a schema 2
//! manifest (`application/vnd.docker.distribution.manifest.v2+json`, docker layer and config
//! media types) and a manifest list. skopeo converts the OCI fixtures on push, so the content is
//! the same as the OCI fixtures' and the rootfs must still equal umoci's unpack.

use std::fs;
use std::process::Command;

use deckhand_e2e::check::rootfs_matches_umoci;
use deckhand_e2e::deckhand::Deckhand;
use deckhand_e2e::fixtures::TAG;
use deckhand_e2e::registry::{Auth, Registry};
use deckhand_e2e::setup;

/// Push an OCI layout converted to Docker schema 2 (`--all`: an index becomes a manifest list).
fn push_docker_format(reg: &Registry, layout: &std::path::Path, name: &str) {
    let out = Command::new("skopeo")
        .args([
            "copy",
            "--quiet",
            "--all",
            "--format",
            "v2s2",
            "--dest-tls-verify=false",
        ])
        .arg(format!("oci:{}:{TAG}", layout.display()))
        .arg(format!("docker://{}", reg.reference(name, TAG)))
        .output()
        .expect("run skopeo");
    assert!(
        out.status.success(),
        "skopeo copy --format v2s2: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The media type the registry serves for `name:1`, asked the way a Docker client asks (a
/// registry converts Docker manifests to schema 1 for clients that send no Accept header).
fn served_media_type(reg: &Registry, name: &str) -> String {
    let out = Command::new("curl")
        .args(["-sf", "-H"])
        .arg("Accept: application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json")
        .arg(format!("http://{}/v2/{name}/manifests/{TAG}", reg.host()))
        .output()
        .expect("run curl");
    assert!(out.status.success(), "GET manifest of {name}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("manifest JSON");
    v["mediaType"].as_str().unwrap_or_default().to_string()
}

#[test]
fn pull_docker_schema2_manifest() {
    let fx = setup(env!("CARGO_TARGET_TMPDIR"));
    let reg = Registry::start(Auth::None).expect("start registry");
    push_docker_format(&reg, &fx.layout("multilayer"), "multilayer-docker");
    assert_eq!(
        served_media_type(&reg, "multilayer-docker"),
        "application/vnd.docker.distribution.manifest.v2+json",
        "the fixture must really be in Docker format"
    );
    let dh = Deckhand::new();
    let r = reg.reference("multilayer-docker", TAG);
    dh.ok(&["image", "pull", &r]);
    rootfs_matches_umoci(&dh, &r, &fx, "multilayer");
    let rec = dh.inspect(&r);
    assert_eq!(
        rec["config"]["diff_ids"].as_array().map(|a| a.len()),
        Some(fx.info("multilayer").images[0].layers.len()),
        "{rec}"
    );
    dh.assert_verify_ok();
}

#[test]
fn pull_docker_manifest_list_picks_the_platform() {
    let fx = setup(env!("CARGO_TARGET_TMPDIR"));
    let reg = Registry::start(Auth::None).expect("start registry");
    push_docker_format(&reg, &fx.layout("multiarch"), "multiarch-docker");
    assert_eq!(
        served_media_type(&reg, "multiarch-docker"),
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "the fixture must really be a Docker manifest list"
    );
    let dh = Deckhand::new();
    let r = reg.reference("multiarch-docker", TAG);
    dh.ok(&["image", "pull", "--platform", "linux/arm64", &r]);
    let m = dh.mount_rootfs(&r, "docker-list");
    let marker =
        fs::read_to_string(m.target.join("etc/platform")).expect("/etc/platform in the rootfs");
    assert_eq!(
        marker, "linux/arm64/v8\n",
        "--platform linux/arm64 must pick the arm64 manifest"
    );
    let rec = dh.inspect(&r);
    assert_eq!(rec["platform"]["architecture"], "arm64", "{rec}");
    drop(m);

    // A platform the list does not have: the error names it and lists what there is.
    let dh2 = Deckhand::new();
    let e = dh2.fails(&["image", "pull", "--platform", "linux/s390x", &r]);
    assert!(
        e.stderr.contains("linux/s390x") && e.stderr.contains("linux/arm64"),
        "{e}"
    );
    assert!(dh2.image_names().is_empty());
}
