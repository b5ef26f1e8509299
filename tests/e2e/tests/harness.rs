//! Proves the harness itself, with tools the project did not write: the fixtures are valid OCI
//! layouts that umoci unpacks to exactly what `expect` states, the registry (open, basic and
//! token auth) serves them to skopeo and containerd, and containerd's overlay unpack compares
//! equal to umoci's through the same [`Tree`] diff the deckhand tests use. None of these need
//! the deckhand binary.

use std::fs;
use std::io::Read;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::Ordering;

use base64::Engine as _;
use deckhand_e2e::containerd::Containerd;
use deckhand_e2e::fixtures::{self, Fixtures, TAG};
use deckhand_e2e::registry::{http_get, Auth, Registry, PASS, USER};
use deckhand_e2e::rootfs::{umoci_unpack, Tree};
use deckhand_e2e::util::run_checked;
use deckhand_e2e::{expect, setup};
use serde_json::Value;
use sha2::{Digest as _, Sha256};

fn blob(layout: &Path, digest: &str) -> Vec<u8> {
    fs::read(
        layout
            .join("blobs/sha256")
            .join(digest.trim_start_matches("sha256:")),
    )
    .expect("blob")
}

/// Every blob hashes to its name; every layer decompresses to its config diff_id.
fn check_layout(fx: &Fixtures, name: &str) {
    let info = fx.info(name);
    let layout = fx.layout(name);
    for e in fs::read_dir(layout.join("blobs/sha256")).unwrap() {
        let e = e.unwrap();
        let data = fs::read(e.path()).unwrap();
        assert_eq!(
            hex::encode(Sha256::digest(&data)),
            e.file_name().to_str().unwrap(),
            "{name}: blob digest"
        );
    }
    for img in &info.images {
        let manifest: Value = serde_json::from_slice(&blob(&layout, &img.manifest_digest)).unwrap();
        let config: Value = serde_json::from_slice(&blob(&layout, &img.config_digest)).unwrap();
        assert_eq!(manifest["config"]["digest"], img.config_digest.as_str());
        let layers = manifest["layers"].as_array().unwrap();
        let diff_ids = config["rootfs"]["diff_ids"].as_array().unwrap();
        assert_eq!(
            layers.len(),
            diff_ids.len(),
            "{name}: one diff_id per layer"
        );
        for (l, d) in layers.iter().zip(diff_ids) {
            let data = blob(&layout, l["digest"].as_str().unwrap());
            assert_eq!(
                l["size"].as_u64().unwrap(),
                data.len() as u64,
                "{name}: layer size"
            );
            let mut raw = Vec::new();
            match l["mediaType"].as_str().unwrap() {
                fixtures::MT_LAYER_GZIP => {
                    flate2::read::GzDecoder::new(&data[..])
                        .read_to_end(&mut raw)
                        .unwrap();
                }
                fixtures::MT_LAYER_ZSTD => raw = zstd::decode_all(&data[..]).unwrap(),
                other => panic!("{name}: unexpected layer media type {other}"),
            }
            assert_eq!(
                format!("sha256:{}", hex::encode(Sha256::digest(&raw))),
                d.as_str().unwrap(),
                "{name}: diff_id"
            );
        }
        assert_eq!(config["architecture"], img.architecture.as_str());
    }
}

#[test]
fn fixtures_are_valid_layouts_and_unpack_as_specified() {
    let fx = setup(env!("CARGO_TARGET_TMPDIR"));
    for name in fixtures::ALL {
        check_layout(&fx, name);
    }
    // zstd twins carry the same uncompressed layers as the gzip originals.
    for (g, z) in [
        ("busybox", "busybox-zstd"),
        ("multilayer", "multilayer-zstd"),
    ] {
        assert_eq!(fx.info(g).images[0].diff_ids, fx.info(z).images[0].diff_ids);
        assert_ne!(fx.info(g).images[0].layers, fx.info(z).images[0].layers);
    }
    let large = fx.info("large");
    assert!(
        large.images[0].file_bytes >= 100 << 20,
        "large must hold >= 100 MiB"
    );
    assert!(large.images[0].layers.len() >= 2);
    let compressed: u64 = large.images[0].layer_sizes.iter().sum();
    assert!(
        compressed >= 100 << 20,
        "large must be incompressible, got {compressed} bytes compressed"
    );

    let tmp = tempfile::tempdir().unwrap();
    let rootfs = umoci_unpack(&fx.layout("multilayer"), TAG, &tmp.path().join("ml")).unwrap();
    expect::multilayer(&rootfs);
    let rootfs = umoci_unpack(&fx.layout("busybox"), TAG, &tmp.path().join("bb")).unwrap();
    expect::busybox(&rootfs);
    // The busybox rootfs really runs.
    let out = run_checked(Command::new("chroot").arg(&rootfs).args([
        "/bin/sh",
        "-c",
        "echo hi from $(id -u)",
    ]))
    .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hi from 0\n");
    let rootfs = umoci_unpack(&fx.layout("httpd"), TAG, &tmp.path().join("httpd")).unwrap();
    assert_eq!(
        fs::read_to_string(rootfs.join("www/index.html")).unwrap(),
        "hello from deckhand httpd\n"
    );
}

#[test]
fn fixtures_are_deterministic() {
    let fx = setup(env!("CARGO_TARGET_TMPDIR"));
    let tmp = tempfile::tempdir().unwrap();
    let again = fixtures::build(tmp.path(), &["busybox", "multilayer-zstd", "multiarch"]).unwrap();
    for name in ["busybox", "multilayer-zstd", "multiarch"] {
        assert_eq!(
            fx.info(name).digest,
            again.info(name).digest,
            "{name} digest must not change between builds"
        );
    }
}

#[test]
fn tree_diff_detects_differences() {
    // The comparison the rootfs tests rely on must fail on every kind of difference.
    let fx = setup(env!("CARGO_TARGET_TMPDIR"));
    let tmp = tempfile::tempdir().unwrap();
    let a = umoci_unpack(&fx.layout("multilayer"), TAG, &tmp.path().join("a")).unwrap();
    let b = umoci_unpack(&fx.layout("multilayer"), TAG, &tmp.path().join("b")).unwrap();
    let ta = Tree::scan(&a).unwrap();
    assert!(Tree::diff(&ta, &Tree::scan(&b).unwrap()).is_empty());
    type Mutation = Box<dyn Fn(&Path)>;
    let mutations: Vec<(&str, Mutation)> = vec![
        (
            "content",
            Box::new(|r: &Path| fs::write(r.join("data/keep.txt"), "other\n").unwrap()),
        ),
        (
            "mode",
            Box::new(|r: &Path| {
                use std::os::unix::fs::PermissionsExt;
                fs::set_permissions(r.join("setuid-bin"), fs::Permissions::from_mode(0o755))
                    .unwrap()
            }),
        ),
        (
            "owner",
            Box::new(|r: &Path| {
                std::os::unix::fs::lchown(r.join("owned/file"), Some(0), Some(0)).unwrap()
            }),
        ),
        (
            "symlink",
            Box::new(|r: &Path| {
                fs::remove_file(r.join("links/abs")).unwrap();
                std::os::unix::fs::symlink("target.txt", r.join("links/abs")).unwrap()
            }),
        ),
        (
            "hardlink",
            Box::new(|r: &Path| {
                fs::remove_file(r.join("links/hard2")).unwrap();
                fs::copy(r.join("links/target.txt"), r.join("links/hard2")).unwrap();
            }),
        ),
        (
            "xattr",
            Box::new(|r: &Path| xattr::remove(r.join("xattr/file"), "user.test").unwrap()),
        ),
        (
            "extra",
            Box::new(|r: &Path| fs::write(r.join("opq/old1.txt"), "").unwrap()),
        ),
        (
            "missing",
            Box::new(|r: &Path| fs::remove_file(r.join("special/fifo")).unwrap()),
        ),
    ];
    for (i, (what, mutate)) in mutations.iter().enumerate() {
        let c = umoci_unpack(
            &fx.layout("multilayer"),
            TAG,
            &tmp.path().join(format!("m{i}")),
        )
        .unwrap();
        mutate(&c);
        let d = Tree::diff(&ta, &Tree::scan(&c).unwrap());
        assert!(!d.is_empty(), "a {what} difference went unnoticed");
    }
}

fn manifest_digest_in_registry(reg: &Registry, name: &str, creds: Option<&str>) -> String {
    let mut c = Command::new("skopeo");
    c.args(["inspect", "--raw", "--tls-verify=false"]);
    if let Some(u) = creds {
        c.arg("--creds").arg(u);
    }
    c.arg(format!("docker://{}", reg.reference(name, TAG)));
    let raw = run_checked(&mut c).unwrap().stdout;
    format!("sha256:{}", hex::encode(Sha256::digest(&raw)))
}

#[test]
fn registry_serves_pushed_fixtures_unchanged() {
    let fx = setup(env!("CARGO_TARGET_TMPDIR"));
    let reg = Registry::start(Auth::None).unwrap();
    assert_eq!(reg.get_status("/v2/").unwrap(), 200);
    for name in ["busybox", "multilayer-zstd", "multiarch"] {
        reg.push(&fx.layout(name), TAG, name).unwrap();
        assert_eq!(
            manifest_digest_in_registry(&reg, name, None),
            fx.info(name).digest,
            "{name}: digest kept by push"
        );
    }
    // Layers stay zstd in the registry.
    let info = fx.info("multilayer-zstd");
    for l in &info.images[0].layers {
        assert!(
            reg.blob_path(l).is_file(),
            "blob {l} stored at the expected path"
        );
    }
    // Round trip: copy back out of the registry and unpack; same tree as the original.
    let tmp = tempfile::tempdir().unwrap();
    let back = tmp.path().join("back");
    run_checked(
        Command::new("skopeo")
            .args(["copy", "--quiet", "--src-tls-verify=false"])
            .arg(format!("docker://{}", reg.reference("busybox", TAG)))
            .arg(format!("oci:{}:{TAG}", back.display())),
    )
    .unwrap();
    let a = umoci_unpack(&fx.layout("busybox"), TAG, &tmp.path().join("a")).unwrap();
    let b = umoci_unpack(&back, TAG, &tmp.path().join("b")).unwrap();
    Tree::assert_same(
        &Tree::scan(&a).unwrap(),
        &Tree::scan(&b).unwrap(),
        "registry round trip",
    );
    // Unknown tag: 404.
    assert_eq!(reg.get_status("/v2/busybox/manifests/nope").unwrap(), 404);
}

#[test]
fn registry_basic_auth() {
    let fx = setup(env!("CARGO_TARGET_TMPDIR"));
    let reg = Registry::start(Auth::Basic).unwrap();
    assert_eq!(reg.get_status("/v2/").unwrap(), 401);
    reg.push(&fx.layout("busybox"), TAG, "busybox").unwrap();
    let creds = reg.creds().unwrap();
    assert_eq!(
        manifest_digest_in_registry(&reg, "busybox", Some(&creds)),
        fx.info("busybox").digest
    );
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(&creds)
    );
    let (st, _) = http_get(reg.port, "/v2/busybox/tags/list", Some(&basic)).unwrap();
    assert_eq!(st, 200);
    let wrong = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{USER}:nope"))
    );
    assert_eq!(
        http_get(reg.port, "/v2/busybox/tags/list", Some(&wrong))
            .unwrap()
            .0,
        401
    );
    let anon = Command::new("skopeo")
        .args(["inspect", "--raw", "--tls-verify=false", "--no-creds"])
        .arg(format!("docker://{}", reg.reference("busybox", TAG)))
        .output()
        .unwrap();
    assert!(!anon.status.success(), "anonymous pull must be refused");
}

#[test]
fn registry_token_auth() {
    let fx = setup(env!("CARGO_TARGET_TMPDIR"));
    let reg = Registry::start(Auth::Token).unwrap();
    let ts = reg.token_server.as_ref().unwrap();
    // The registry challenges with a Bearer realm pointing at our token server.
    let out = run_checked(
        Command::new("curl")
            .args(["-s", "-i"])
            .arg(format!("http://{}/v2/", reg.host())),
    )
    .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("HTTP/1.1 401"), "{text}");
    assert!(
        text.contains(&format!("Bearer realm=\"{}\"", ts.realm())),
        "{text}"
    );
    reg.push(&fx.layout("multilayer"), TAG, "multilayer")
        .unwrap();
    assert!(
        ts.issued.load(Ordering::Relaxed) > 0,
        "skopeo push must have used the token server"
    );
    let creds = reg.creds().unwrap();
    assert_eq!(
        manifest_digest_in_registry(&reg, "multilayer", Some(&creds)),
        fx.info("multilayer").digest
    );
    // A token for the repository opens the manifest; a token without that scope does not.
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(&creds)
    );
    let q = "/token?service=deckhand-test-registry&scope=repository%3Amultilayer%3Apull";
    let (st, body) = http_get(ts.port, q, Some(&basic)).unwrap();
    assert_eq!(st, 200);
    let token = serde_json::from_slice::<Value>(&body).unwrap()["token"]
        .as_str()
        .unwrap()
        .to_string();
    let path = "/v2/multilayer/tags/list";
    assert_eq!(
        http_get(reg.port, path, Some(&format!("Bearer {token}")))
            .unwrap()
            .0,
        200
    );
    let (_, body) = http_get(
        ts.port,
        "/token?service=deckhand-test-registry&scope=repository%3Aother%3Apull",
        Some(&basic),
    )
    .unwrap();
    let other = serde_json::from_slice::<Value>(&body).unwrap()["token"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        http_get(reg.port, path, Some(&format!("Bearer {other}")))
            .unwrap()
            .0,
        401
    );
    // Wrong or missing credentials get no token.
    let wrong = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{USER}:x{PASS}"))
    );
    assert_eq!(http_get(ts.port, q, Some(&wrong)).unwrap().0, 401);
    assert_eq!(http_get(ts.port, q, None).unwrap().0, 401);
    assert!(ts.refused.load(Ordering::Relaxed) >= 2);
}

#[test]
fn containerd_unpacks_fixtures_like_umoci() {
    // containerd (overlayfs snapshots) and umoci agree on every fixture case, through the
    // same registry, auth and comparison the deckhand tests use.
    let fx = setup(env!("CARGO_TARGET_TMPDIR"));
    let reg = Registry::start(Auth::Token).unwrap();
    reg.push(&fx.layout("multilayer"), TAG, "multilayer")
        .unwrap();
    reg.push(&fx.layout("multiarch"), TAG, "multiarch").unwrap();
    let ctrd = Containerd::start().unwrap();
    let creds = reg.creds().unwrap();
    let r = reg.reference("multilayer", TAG);
    ctrd.pull("t", &r, Some(&creds), None).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let reference = umoci_unpack(&fx.layout("multilayer"), TAG, &tmp.path().join("umoci")).unwrap();
    let m = ctrd.mount("t", &r, &tmp.path().join("ctr")).unwrap();
    expect::multilayer(&m.target);
    Tree::assert_same(
        &Tree::scan(&reference).unwrap(),
        &Tree::scan(&m.target).unwrap(),
        "containerd vs umoci",
    );
    drop(m);
    // Without credentials containerd is refused.
    assert!(ctrd.pull("t2", &r, None, None).is_err());
    // Platform selection from the index.
    ctrd.pull(
        "t3",
        &reg.reference("multiarch", TAG),
        Some(&creds),
        Some("linux/arm64"),
    )
    .unwrap();
    let out = run_checked(ctrd.ctr("t3").args(["content", "ls", "-q"])).unwrap();
    let content = String::from_utf8_lossy(&out.stdout);
    let arm = &fx.info("multiarch").images[1];
    assert_eq!(arm.architecture, "arm64");
    for l in &arm.layers {
        assert!(content.contains(l.as_str()), "arm64 layer {l} fetched");
    }
}

#[test]
fn httpd_fixture_serves_its_page() {
    // The httpd image is what later probe/service tests run: prove its config really serves
    // /www/index.html (run from umoci's rootfs, on a loopback port instead of 80).
    let fx = setup(env!("CARGO_TARGET_TMPDIR"));
    let tmp = tempfile::tempdir().unwrap();
    let rootfs = umoci_unpack(&fx.layout("httpd"), TAG, &tmp.path().join("httpd")).unwrap();
    let config: Value = serde_json::from_slice(&blob(
        &fx.layout("httpd"),
        &fx.info("httpd").images[0].config_digest,
    ))
    .unwrap();
    let mut cmd: Vec<String> = config["config"]["Cmd"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    assert_eq!(cmd[..4], ["httpd", "-f", "-p", "80"]);
    assert!(config["config"]["ExposedPorts"]["80/tcp"].is_object());
    let port = deckhand_e2e::registry::free_port().unwrap();
    cmd[3] = format!("127.0.0.1:{port}");
    let child = Command::new("chroot")
        .arg(&rootfs)
        .arg(format!("/bin/{}", cmd[0]))
        .args(&cmd[1..])
        .spawn()
        .unwrap();
    let _guard = deckhand_e2e::util::ChildGuard::new(child);
    let body = deckhand_e2e::util::wait_for(std::time::Duration::from_secs(10), || {
        http_get(port, "/index.html", None)
            .ok()
            .filter(|(st, _)| *st == 200)
            .map(|(_, b)| b)
    })
    .expect("busybox httpd answers");
    assert_eq!(
        String::from_utf8_lossy(&body),
        "hello from deckhand httpd\n"
    );
}
