//! Import tests. `stage` (everything up to `commit_image`) is tested against a bare content
//! store; the end-to-end tests through [`ImageStore::import`] also unpack snapshots and need
//! root.

use super::*;
use crate::store::testutil::{self as tu, *};
use crate::store::StoreConfig;
use std::sync::{Arc, Mutex};

fn content() -> (tempfile::TempDir, ContentStore) {
    let dir = tempfile::tempdir().unwrap();
    let cs = ContentStore::open(&dir.path().join("images")).unwrap();
    (dir, cs)
}

fn opts(name: Option<&str>) -> ImportOptions {
    ImportOptions {
        name: name.map(Into::into),
        platform: Platform::parse("linux/amd64").unwrap(),
        ..Default::default()
    }
}

fn write(dir: &Path, name: &str, data: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, data).unwrap();
    p
}

fn assert_import_err(r: Result<Vec<Staged>, StoreError>, fragment: &str) {
    match r {
        Err(e @ StoreError::Import { .. }) => {
            assert!(
                e.to_string().contains(fragment),
                "error {e:?} lacks {fragment:?}"
            )
        }
        other => panic!("expected an import error containing {fragment:?}, got {other:?}"),
    }
}

fn assert_has_blobs(cs: &ContentStore, image: &TestImage) {
    for blob in image.blobs() {
        assert_eq!(cs.read(&Digest::of(&blob)).unwrap(), blob);
    }
}

#[test]
fn oci_layout_directory() {
    let (tmp, cs) = content();
    let image = TestImage::simple("one");
    let layout = tmp.path().join("layout");
    let unrelated = b"not referenced by anything".to_vec();
    write_layout(
        &layout,
        &[&image],
        &[&unrelated],
        vec![entry(
            &image,
            &[(ANNOTATION_REF_NAME, "example.com/app:1.0")],
        )],
    );
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = events.clone();
    let options = ImportOptions {
        progress: Arc::new(move |e| sink.lock().unwrap().push(e)),
        ..opts(None)
    };
    let staged = stage(&cs, &layout, &options).unwrap();
    assert_eq!(
        staged,
        vec![Staged {
            name: "example.com/app:1.0".into(),
            target: entry(&image, &[(ANNOTATION_REF_NAME, "example.com/app:1.0")]),
            manifest: image.manifest_digest(),
        }]
    );
    assert_has_blobs(&cs, &image);
    // Only what the image needs is copied from a directory.
    assert!(!cs.contains(&Digest::of(&unrelated)));
    let downloaded = events
        .lock()
        .unwrap()
        .iter()
        .filter(|e| matches!(e, ProgressEvent::LayerDownloaded { .. }))
        .count();
    assert_eq!(downloaded, 3);
    // Importing again finds everything present.
    stage(&cs, &layout, &options).unwrap();
    assert!(events
        .lock()
        .unwrap()
        .iter()
        .any(|e| matches!(e, ProgressEvent::LayerExists { .. })));
}

#[test]
fn oci_archive_plain_gzip_and_zstd() {
    let image = TestImage::simple("two");
    let (tmp, _) = content();
    let layout = tmp.path().join("layout");
    write_layout(
        &layout,
        &[&image],
        &[],
        vec![entry(&image, &[(ANNOTATION_REF_NAME, "busybox:1.36")])],
    );
    let tar = tar_dir(&layout);
    let zst = zstd::encode_all(&tar[..], 3).unwrap();
    for (file, data) in [
        ("a.tar", tar.clone()),
        ("a.tar.gz", gzip(&tar)),
        ("a.tar.zst", zst),
    ] {
        let (_t, cs) = content();
        let path = write(tmp.path(), file, &data);
        let staged = stage(&cs, &path, &opts(None)).unwrap();
        assert_eq!(staged.len(), 1, "{file}");
        assert_eq!(staged[0].name, "docker.io/library/busybox:1.36", "{file}");
        assert_eq!(staged[0].manifest, image.manifest_digest());
        assert_has_blobs(&cs, &image);
        assert_eq!(
            std::fs::read_dir(cs.ingest_dir()).unwrap().count(),
            0,
            "{file}: ingest left clean"
        );
    }
}

#[test]
fn oci_names() {
    let image = TestImage::simple("names");
    let (tmp, _) = content();
    // (annotations, --name, expected name or error fragment)
    type Case<'a> = (
        Vec<(&'a str, &'a str)>,
        Option<&'a str>,
        Result<&'a str, &'a str>,
    );
    let cases: Vec<Case> = vec![
        (
            vec![(ANNOTATION_REF_NAME, "1.0")],
            Some("example.com/app"),
            Ok("example.com/app:1.0"),
        ),
        (
            vec![(ANNOTATION_REF_NAME, "1.0")],
            Some("example.com/app:2"),
            Ok("example.com/app:2"),
        ),
        (vec![(ANNOTATION_REF_NAME, "1.0")], None, Err("pass --name")),
        (vec![], None, Err("pass --name")),
        (vec![], Some("app"), Ok("docker.io/library/app:latest")),
        (
            vec![(ANNOTATION_REF_NAME, "quay.io/x/y:3")],
            None,
            Ok("quay.io/x/y:3"),
        ),
        (
            vec![(ANNOTATION_REF_NAME, "quay.io/x/y:3")],
            Some("mine:1"),
            Ok("docker.io/library/mine:1"),
        ),
        (
            vec![
                (ANNOTATION_REF_NAME, "latest"),
                (
                    ANNOTATION_CONTAINERD_NAME,
                    "docker.io/library/busybox:latest",
                ),
            ],
            None,
            Ok("docker.io/library/busybox:latest"),
        ),
        (vec![(ANNOTATION_REF_NAME, "Bad/Name:1")], None, Err("")),
    ];
    for (i, (annotations, name, want)) in cases.into_iter().enumerate() {
        let (_t, cs) = content();
        let layout = tmp.path().join(format!("l{i}"));
        write_layout(&layout, &[&image], &[], vec![entry(&image, &annotations)]);
        let got = stage(&cs, &layout, &opts(name));
        match want {
            Ok(n) => assert_eq!(got.unwrap()[0].name, n, "case {i}"),
            Err(fragment) => match got {
                Err(e) => assert!(e.to_string().contains(fragment), "case {i}: {e}"),
                Ok(s) => panic!("case {i}: expected an error, got {s:?}"),
            },
        }
    }
}

#[test]
fn multi_platform_index_with_partial_blobs() {
    let amd = TestImage::new(vec![layer_tar(&[("a", b"amd")])], true, "linux/amd64");
    let arm = TestImage::new(vec![layer_tar(&[("a", b"arm")])], true, "linux/arm64");
    let index = index_of(&[&arm, &amd]);
    let (tmp, cs) = content();
    let layout = tmp.path().join("layout");
    // Only the amd64 image's blobs are present, as after `docker save --platform`.
    let mut top = tu::descriptor(media::OCI_INDEX, &index);
    top.annotations
        .insert(ANNOTATION_REF_NAME.into(), "example.com/multi:1".into());
    write_layout(&layout, &[&amd], &[&index], vec![top.clone()]);
    let staged = stage(&cs, &layout, &opts(None)).unwrap();
    assert_eq!(staged[0].target, top);
    assert_eq!(staged[0].manifest, amd.manifest_digest());
    // Asking for arm64 names what is there.
    let arm_opts = ImportOptions {
        platform: Platform::parse("linux/arm64").unwrap(),
        ..opts(None)
    };
    let e = stage(&cs, &layout, &arm_opts).unwrap_err().to_string();
    assert!(
        e.contains("linux/arm64") && e.contains("available: linux/amd64"),
        "{e}"
    );
    // With both present, arm64 is selectable.
    for blob in arm.blobs() {
        write_blob(&layout, &blob);
    }
    let staged = stage(&cs, &layout, &arm_opts).unwrap();
    assert_eq!(staged[0].manifest, arm.manifest_digest());
}

#[test]
fn index_entries_for_other_platforms_are_skipped() {
    let amd = TestImage::simple("amd");
    let arm = TestImage::new(vec![layer_tar(&[("a", b"arm")])], true, "linux/arm64");
    let (tmp, cs) = content();
    let layout = tmp.path().join("layout");
    write_layout(
        &layout,
        &[&amd, &arm],
        &[],
        vec![
            entry(&arm, &[(ANNOTATION_REF_NAME, "x/y:1")]),
            entry(&amd, &[(ANNOTATION_REF_NAME, "x/y:1")]),
        ],
    );
    let staged = stage(&cs, &layout, &opts(None)).unwrap();
    assert_eq!(staged.len(), 1);
    assert_eq!(staged[0].manifest, amd.manifest_digest());
    let s390 = ImportOptions {
        platform: Platform::parse("linux/s390x").unwrap(),
        ..opts(None)
    };
    assert_import_err(
        stage(&cs, &layout, &s390),
        "no image for platform linux/s390x",
    );
}

#[test]
fn corrupt_blob_in_archive_is_refused() {
    let image = TestImage::simple("corrupt");
    let (tmp, cs) = content();
    let layout = tmp.path().join("layout");
    write_layout(
        &layout,
        &[&image],
        &[],
        vec![entry(&image, &[(ANNOTATION_REF_NAME, "x/y:1")])],
    );
    // Flip the layer's content but keep its name.
    let layer = Digest::of(&image.layers[0].1);
    let path = layout.join("blobs/sha256").join(layer.hex());
    let mut bytes = std::fs::read(&path).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&path, &bytes).unwrap();
    let archive = write(tmp.path(), "bad.tar", &tar_dir(&layout));
    assert_import_err(stage(&cs, &archive, &opts(None)), "failed verification");
    assert!(!cs.contains(&layer));
    assert_eq!(std::fs::read_dir(cs.ingest_dir()).unwrap().count(), 0);
    // Same for a directory.
    assert_import_err(stage(&cs, &layout, &opts(None)), "failed verification");
    assert!(!cs.contains(&layer));
}

#[test]
fn missing_blob_is_named() {
    let image = TestImage::simple("missing");
    let (tmp, cs) = content();
    let layout = tmp.path().join("layout");
    write_layout(
        &layout,
        &[&image],
        &[],
        vec![entry(&image, &[(ANNOTATION_REF_NAME, "x/y:1")])],
    );
    let layer = Digest::of(&image.layers[0].1);
    std::fs::remove_file(layout.join("blobs/sha256").join(layer.hex())).unwrap();
    assert_import_err(
        stage(&cs, &layout, &opts(None)),
        &format!("lacks blob {layer} (layer)"),
    );
}

#[test]
fn docker_archive_legacy_layout() {
    // Two images sharing a base layer; uncompressed layers, as `docker save` writes them.
    let base = layer_tar(&[("bin/sh", b"#!shell")]);
    let a = TestImage::new(
        vec![base.clone(), layer_tar(&[("a", b"a")])],
        false,
        "linux/amd64",
    );
    let b = TestImage::new(vec![base, layer_tar(&[("b", b"b")])], false, "linux/amd64");
    let (tmp, cs) = content();
    let archive = docker_archive(&[
        (&a, vec!["app:1", "app:latest"]),
        (&b, vec!["quay.io/x/b:2"]),
    ]);
    for (file, data) in [("d.tar", archive.clone()), ("d.tar.gz", gzip(&archive))] {
        let path = write(tmp.path(), file, &data);
        let staged = stage(&cs, &path, &opts(None)).unwrap();
        let names: Vec<&str> = staged.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "docker.io/library/app:1",
                "docker.io/library/app:latest",
                "quay.io/x/b:2"
            ],
            "{file}"
        );
        assert_eq!(staged[0].manifest, staged[1].manifest);
        // The synthesised manifest: OCI, config as stored, layers = blob digests = diff IDs.
        let m = match ManifestDocument::parse(
            &staged[0].target.media_type,
            &staged[0].manifest,
            &cs.read(&staged[0].manifest).unwrap(),
        )
        .unwrap()
        {
            ManifestDocument::Manifest(m) => m,
            other => panic!("{other:?}"),
        };
        assert_eq!(staged[0].target.media_type, media::OCI_MANIFEST);
        assert_eq!(m.config.digest, a.config_digest());
        assert_eq!(m.config.size, a.config.len() as u64);
        assert_eq!(
            m.layers
                .iter()
                .map(|l| l.digest.clone())
                .collect::<Vec<_>>(),
            a.diff_ids()
        );
        assert!(m.layers.iter().all(|l| l.media_type == media::OCI_LAYER));
        assert_eq!(cs.read(&m.layers[1].digest).unwrap(), a.layers[1].0);
        // The shared layer was stored once and resolved through the symlink for image b.
        let mb = cs.read(&staged[2].manifest).unwrap();
        assert!(String::from_utf8_lossy(&mb).contains(&b.diff_ids()[0].to_string()));
    }
}

#[test]
fn docker_archive_compressed_layers_and_blobs_paths() {
    // Docker ≥ 25 and skopeo may store compressed layers and `blobs/sha256/<hex>` paths.
    let image = TestImage::new(
        vec![layer_tar(&[("x", b"x")]), layer_tar(&[("y", b"y")])],
        true,
        "linux/amd64",
    );
    let (tmp, cs) = content();
    let mut b = tar::Builder::new(Vec::new());
    let mut add = |name: &str, data: &[u8]| {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        b.append_data(&mut h, name, data).unwrap();
    };
    let config_path = format!("blobs/sha256/{}", image.config_digest().hex());
    add(&config_path, &image.config);
    let mut layers = Vec::new();
    for (_, blob, _) in &image.layers {
        let p = format!("blobs/sha256/{}", Digest::of(blob).hex());
        add(&p, blob);
        layers.push(p);
    }
    let manifest = serde_json::json!([{"Config": config_path, "RepoTags": null, "Layers": layers}]);
    add("manifest.json", &serde_json::to_vec(&manifest).unwrap());
    let path = write(tmp.path(), "d.tar", &b.into_inner().unwrap());
    assert_import_err(stage(&cs, &path, &opts(None)), "no RepoTags: pass --name");
    let staged = stage(&cs, &path, &opts(Some("example.com/z"))).unwrap();
    assert_eq!(staged[0].name, "example.com/z:latest");
    let m: Manifest = serde_json::from_slice(&cs.read(&staged[0].manifest).unwrap()).unwrap();
    assert!(m
        .layers
        .iter()
        .all(|l| l.media_type == media::OCI_LAYER_GZIP));
    assert_eq!(m.layers[0].digest, Digest::of(&image.layers[0].1));
}

#[test]
fn docker_archive_damaged_layer() {
    let image = TestImage::new(vec![layer_tar(&[("x", b"x")])], false, "linux/amd64");
    let mut other = image.clone();
    other.layers[0].1 = layer_tar(&[("x", b"not x")]);
    let mut tampered = docker_archive(&[(&other, vec!["a:1"])]);
    // Keep `image`'s config (and its diff ID) with `other`'s layer: rebuild the archive.
    let (tmp, cs) = content();
    let mut b = tar::Builder::new(Vec::new());
    let mut a = tar::Archive::new(&tampered[..]);
    for e in a.entries().unwrap() {
        let mut e = e.unwrap();
        let mut h = e.header().clone();
        let name = e.path().unwrap().to_string_lossy().into_owned();
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut e, &mut data).unwrap();
        if name.ends_with(".json") && name != "manifest.json" {
            h.set_size(image.config.len() as u64);
            b.append_data(
                &mut h,
                format!("{}.json", image.config_digest().hex()),
                &image.config[..],
            )
            .unwrap();
        } else if name == "manifest.json" {
            let fixed = String::from_utf8(data).unwrap().replace(
                &other.config_digest().hex().to_string(),
                image.config_digest().hex(),
            );
            h.set_size(fixed.len() as u64);
            b.append_data(&mut h, name, fixed.as_bytes()).unwrap();
        } else {
            b.append_data(&mut h, name, &data[..]).unwrap();
        }
    }
    tampered = b.into_inner().unwrap();
    let path = write(tmp.path(), "d.tar", &tampered);
    assert_import_err(stage(&cs, &path, &opts(None)), "lists diff ID");
}

#[test]
fn docker_archive_config_name_is_checked() {
    let image = TestImage::simple("cfg");
    let (tmp, cs) = content();
    let mut b = tar::Builder::new(Vec::new());
    let mut add = |name: &str, data: &[u8]| {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        b.append_data(&mut h, name, data).unwrap();
    };
    let wrong = format!("{}.json", "0".repeat(64));
    add(&wrong, &image.config);
    add("l/layer.tar", &image.layers[0].1);
    add(
        "manifest.json",
        &serde_json::to_vec(
            &serde_json::json!([{"Config": wrong, "RepoTags": ["a:1"], "Layers": ["l/layer.tar"]}]),
        )
        .unwrap(),
    );
    let path = write(tmp.path(), "d.tar", &b.into_inner().unwrap());
    assert_import_err(stage(&cs, &path, &opts(None)), "damaged");
}

#[test]
fn large_layers_stream_to_the_store() {
    // Bigger than SMALL_FILE and not under blobs/: goes through ingest_unknown.
    let big: Vec<u8> = (0..3_000_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    let image = TestImage::new(vec![layer_tar(&[("big.bin", &big)])], false, "linux/amd64");
    let (tmp, cs) = content();
    let path = write(
        tmp.path(),
        "d.tar",
        &docker_archive(&[(&image, vec!["big:1"])]),
    );
    let staged = stage(&cs, &path, &opts(None)).unwrap();
    assert_eq!(staged[0].name, "docker.io/library/big:1");
    assert_eq!(cs.read(&image.diff_ids()[0]).unwrap(), image.layers[0].0);
}

#[test]
fn not_an_image_archive() {
    let (tmp, cs) = content();
    let plain = write(tmp.path(), "x.tar", &layer_tar(&[("hello", b"world")]));
    assert_import_err(stage(&cs, &plain, &opts(None)), "neither an OCI archive");
    let garbage = write(
        tmp.path(),
        "x.bin",
        b"this is not a tar file at all, not even close......",
    );
    assert!(stage(&cs, &garbage, &opts(None)).is_err());
    assert_import_err(
        stage(&cs, &tmp.path().join("absent.tar"), &opts(None)),
        "cannot read",
    );
    assert_import_err(
        stage(&cs, tmp.path(), &opts(None)),
        "not an OCI layout directory",
    );
}

#[test]
fn duplicate_names_for_different_images() {
    let a = TestImage::simple("a");
    let b = TestImage::simple("b");
    let (tmp, cs) = content();
    let path = write(
        tmp.path(),
        "d.tar",
        &docker_archive(&[(&a, vec!["x:1"]), (&b, vec!["x:1"])]),
    );
    assert_import_err(
        stage(&cs, &path, &opts(None)),
        "several images would be named docker.io/library/x:1",
    );
}

/// Cross-check with skopeo, a tool we did not write: it converts our OCI layout into an
/// OCI archive and a docker-archive, which must import to the same image.
#[test]
fn skopeo_archives_import() {
    let skopeo = std::process::Command::new("skopeo")
        .arg("--version")
        .output();
    assert!(
        skopeo.is_ok_and(|o| o.status.success()),
        "skopeo is required for this test (apt-get install skopeo)"
    );
    let image = TestImage::new(
        vec![layer_tar(&[("etc/a", b"a")]), layer_tar(&[("etc/b", b"b")])],
        true,
        "linux/amd64",
    );
    let (tmp, _) = content();
    let layout = tmp.path().join("layout");
    write_layout(
        &layout,
        &[&image],
        &[],
        vec![entry(&image, &[(ANNOTATION_REF_NAME, "latest")])],
    );
    let run = |dst: String| {
        let out = std::process::Command::new("skopeo")
            .args([
                "--insecure-policy",
                "copy",
                &format!("oci:{}:latest", layout.display()),
                &dst,
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "skopeo copy to {dst}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let oci_archive = tmp.path().join("oci.tar");
    run(format!(
        "oci-archive:{}:example.com/s/oci:1",
        oci_archive.display()
    ));
    let docker = tmp.path().join("docker.tar");
    run(format!(
        "docker-archive:{}:example.com/s/docker:2",
        docker.display()
    ));

    let (_t, cs) = content();
    let staged = stage(&cs, &oci_archive, &opts(None)).unwrap();
    assert_eq!(staged[0].name, "example.com/s/oci:1");
    let staged = stage(&cs, &docker, &opts(None)).unwrap();
    assert_eq!(staged[0].name, "example.com/s/docker:2");
    let m: Manifest = serde_json::from_slice(&cs.read(&staged[0].manifest).unwrap()).unwrap();
    assert_eq!(m.layers.len(), 2);
    // skopeo stores the config as-is and layers decompressed or not; either way the diff IDs
    // must come out of the content.
    let config =
        crate::config::ImageConfig::parse(&m.config.digest, &cs.read(&m.config.digest).unwrap())
            .unwrap();
    assert_eq!(config.diff_ids, image.diff_ids());
}

// ---- end to end through ImageStore (needs root and the snapshotter) ----

fn store(dir: &Path) -> ImageStore {
    let mut config = StoreConfig::new(dir);
    config.registries = Some(Default::default());
    config.docker_config = Some(dir.join("no-docker-config.json"));
    ImageStore::open(config).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_oci_archive_end_to_end() {
    require_root();
    let tmp = tempfile::tempdir().unwrap();
    let image = TestImage::new(
        vec![
            layer_tar(&[("etc/os-release", b"deckhand test\n")]),
            layer_tar(&[("app/hello", b"hi")]),
        ],
        true,
        "linux/amd64",
    );
    let layout = tmp.path().join("layout");
    write_layout(
        &layout,
        &[&image],
        &[],
        vec![entry(&image, &[(ANNOTATION_REF_NAME, "example.com/e2e:1")])],
    );
    let archive = write(tmp.path(), "e2e.tar.gz", &gzip(&tar_dir(&layout)));
    let s = store(&tmp.path().join("data"));
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = events.clone();
    let options = ImportOptions {
        progress: Arc::new(move |e| sink.lock().unwrap().push(e)),
        ..opts(None)
    };
    let images = s.import(&archive, options).await.unwrap();
    assert_eq!(images.len(), 1);
    let img = &images[0];
    assert_eq!(img.name, "example.com/e2e:1");
    assert_eq!(img.id, image.config_digest());
    assert_eq!(img.manifest, image.manifest_digest());
    assert_eq!(img.config.cmd, ["/bin/sh"]);
    let chains = crate::snapshot::chain_ids(&image.diff_ids());
    assert_eq!(img.top_chain, chains[1]);
    assert_eq!(
        std::fs::read(s.snapshotter().fs_path(&chains[0]).join("etc/os-release")).unwrap(),
        b"deckhand test\n"
    );
    assert_eq!(
        std::fs::read(s.snapshotter().fs_path(&chains[1]).join("app/hello")).unwrap(),
        b"hi"
    );
    assert_eq!(s.get("example.com/e2e:1").unwrap(), *img);
    assert!(events
        .lock()
        .unwrap()
        .iter()
        .any(|e| matches!(e, ProgressEvent::Done { .. })));
    let unpacked = |events: &[ProgressEvent]| -> Vec<(Digest, u64)> {
        events
            .iter()
            .filter_map(|e| match e {
                ProgressEvent::LayerUnpacked { chain, bytes, .. } => Some((chain.clone(), *bytes)),
                _ => None,
            })
            .collect()
    };
    let sizes: Vec<u64> = image.layers.iter().map(|l| l.1.len() as u64).collect();
    assert_eq!(
        unpacked(&events.lock().unwrap()),
        vec![(chains[0].clone(), sizes[0]), (chains[1].clone(), sizes[1])]
    );
    // A second import finds both snapshots present.
    events.lock().unwrap().clear();
    let sink = events.clone();
    let options = ImportOptions {
        progress: Arc::new(move |e| sink.lock().unwrap().push(e)),
        ..opts(None)
    };
    s.import(&archive, options).await.unwrap();
    assert_eq!(
        unpacked(&events.lock().unwrap()),
        vec![(chains[0].clone(), 0), (chains[1].clone(), 0)]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_docker_archive_end_to_end() {
    require_root();
    let tmp = tempfile::tempdir().unwrap();
    let image = TestImage::new(
        vec![layer_tar(&[("bin/tool", b"tool")])],
        false,
        "linux/amd64",
    );
    let archive = write(
        tmp.path(),
        "d.tar",
        &docker_archive(&[(&image, vec!["tool:1", "tool:latest"])]),
    );
    let s = store(&tmp.path().join("data"));
    let images = s.import(&archive, opts(None)).await.unwrap();
    let names: Vec<&str> = images.iter().map(|i| i.name.as_str()).collect();
    assert_eq!(
        names,
        ["docker.io/library/tool:1", "docker.io/library/tool:latest"]
    );
    assert_eq!(images[0].id, images[1].id);
    assert_eq!(s.list().unwrap().len(), 2);
    let chain = crate::snapshot::chain_ids(&image.diff_ids())[0].clone();
    assert_eq!(
        std::fs::read(s.snapshotter().fs_path(&chain).join("bin/tool")).unwrap(),
        b"tool"
    );
}

#[test]
fn several_tagged_images_share_the_given_name() {
    let one = TestImage::simple("1");
    let two = TestImage::simple("2");
    let (tmp, cs) = content();
    let layout = tmp.path().join("layout");
    write_layout(
        &layout,
        &[&one, &two],
        &[],
        vec![
            entry(&one, &[(ANNOTATION_REF_NAME, "1.0")]),
            entry(&two, &[(ANNOTATION_REF_NAME, "2.0")]),
        ],
    );
    let staged = stage(&cs, &layout, &opts(Some("example.com/app"))).unwrap();
    let names: Vec<(&str, &Digest)> = staged
        .iter()
        .map(|s| (s.name.as_str(), &s.manifest))
        .collect();
    assert_eq!(
        names,
        [
            ("example.com/app:1.0", &one.manifest_digest()),
            ("example.com/app:2.0", &two.manifest_digest())
        ]
    );
    // One fixed name for two different images is refused rather than letting one shadow the other.
    assert_import_err(
        stage(&cs, &layout, &opts(Some("example.com/app:3"))),
        "several images would be named",
    );
}
