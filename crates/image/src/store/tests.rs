//! Store tests. Lookup and GC marking are tested on plain records and a content store; the
//! lifecycle tests (import, get, rootfs, remove, prune) run the real snapshotter and need root.

use super::testutil::*;
use super::*;
use crate::import::{ImportOptions, ANNOTATION_REF_NAME};
use crate::manifest::Index;
use crate::media;
use std::collections::BTreeMap;

fn digest(hex_prefix: &str) -> Digest {
    Digest::from_hex(&format!(
        "{hex_prefix}{}",
        "0".repeat(64 - hex_prefix.len())
    ))
    .unwrap()
}

fn record(name: &str, config: &Digest, target: &Digest) -> ImageRecord {
    ImageRecord {
        name: name.into(),
        target: Descriptor {
            media_type: media::OCI_MANIFEST.into(),
            digest: target.clone(),
            size: 1,
            platform: None,
            annotations: BTreeMap::new(),
            urls: vec![],
        },
        manifest: target.clone(),
        config: config.clone(),
        top_chain: digest("c4a1"),
        size: 1,
        platform: Platform::host(),
        created_at: "2024-01-01T00:00:00Z".into(),
    }
}

fn names(m: &Matched) -> Vec<&str> {
    m.records().iter().map(|r| r.name.as_str()).collect()
}

#[test]
fn lookup_by_name_id_prefix_and_digest() {
    let (ca, cc) = (digest("abcd1"), digest("abcd2"));
    let (ta, tc) = (digest("7a"), digest("7c"));
    let by_digest_name = format!("127.0.0.1:5000/app@{tc}");
    let records = vec![
        record("docker.io/library/busybox:1.0", &ca, &ta),
        record("docker.io/library/busybox:latest", &ca, &ta),
        record("quay.io/x/y:1", &cc, &tc),
        record(&by_digest_name, &cc, &tc),
    ];
    let ok = |s: &str| lookup(&records, s).unwrap_or_else(|e| panic!("{s}: {e}"));

    assert!(matches!(ok("busybox"), Matched::Name(_)));
    assert_eq!(names(&ok("busybox")), ["docker.io/library/busybox:latest"]);
    assert_eq!(
        names(&ok("docker.io/library/busybox:1.0")),
        ["docker.io/library/busybox:1.0"]
    );
    assert_eq!(
        names(&ok("index.docker.io/library/busybox:1.0")),
        ["docker.io/library/busybox:1.0"]
    );
    assert_eq!(names(&ok(&by_digest_name)), [by_digest_name.as_str()]);

    // IDs: full, prefixed, bare prefix; every name of the image.
    for s in [
        ca.to_string(),
        format!("sha256:{}", &ca.hex()[..5]),
        ca.hex()[..5].to_string(),
        ca.hex().to_string(),
    ] {
        let m = ok(&s);
        assert!(matches!(m, Matched::Id(_)), "{s}");
        assert_eq!(
            names(&m),
            [
                "docker.io/library/busybox:1.0",
                "docker.io/library/busybox:latest"
            ],
            "{s}"
        );
    }
    // Repo digest of an image pulled by tag.
    assert_eq!(
        names(&ok(&format!("busybox@{ta}"))),
        [
            "docker.io/library/busybox:1.0",
            "docker.io/library/busybox:latest"
        ]
    );
    assert_eq!(names(&ok(&format!("quay.io/x/y@{tc}"))), ["quay.io/x/y:1"]);

    // Ambiguous prefix, too short, absent, invalid.
    for s in ["abcd", "sha256:abcd"] {
        match lookup(&records, s) {
            Err(e @ StoreError::AmbiguousId { .. }) => {
                let msg = e.to_string();
                assert!(
                    msg.contains(&ca.hex()[..12]) && msg.contains(&cc.hex()[..12]),
                    "{msg}"
                );
            }
            other => panic!("{s}: {other:?}"),
        }
    }
    for s in [
        "abc",
        "sha256:ab",
        "ffff",
        "sha256:ffff",
        "nothere",
        &format!("busybox@{tc}"),
    ] {
        assert!(
            matches!(lookup(&records, s), Err(StoreError::ImageNotFound(_))),
            "{s}"
        );
    }
    match lookup(&records, "Busybox") {
        Err(e @ StoreError::Reference(_)) => assert!(e.to_string().contains("lowercase"), "{e}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn lookup_prefers_name_over_id_prefix() {
    // `beef` is both a valid repository name and an ID prefix: a name that exists wins, as in
    // Docker.
    let records = vec![
        record(
            "docker.io/library/beef:latest",
            &digest("1111"),
            &digest("22"),
        ),
        record("x/y:1", &digest("beef"), &digest("33")),
    ];
    assert_eq!(
        names(&lookup(&records, "beef").unwrap()),
        ["docker.io/library/beef:latest"]
    );
    assert_eq!(names(&lookup(&records, "beef0").unwrap()), ["x/y:1"]);
}

#[test]
fn marking_follows_index_manifest_config_layers() {
    let dir = tempfile::tempdir().unwrap();
    let cs = ContentStore::open(dir.path()).unwrap();
    let amd = TestImage::new(
        vec![layer_tar(&[("a", b"1")]), layer_tar(&[("b", b"2")])],
        true,
        "linux/amd64",
    );
    let arm = TestImage::new(vec![layer_tar(&[("a", b"arm")])], true, "linux/arm64");
    let absent = TestImage::new(vec![layer_tar(&[("a", b"s390")])], true, "linux/s390x");
    let index = index_of(&[&amd, &arm, &absent]);
    for blob in amd
        .blobs()
        .into_iter()
        .chain(arm.blobs())
        .chain([index.clone(), b"garbage".to_vec()])
    {
        cs.write_all(&Digest::of(&blob), &blob).unwrap();
    }
    let mut rec = record("x/y:1", &amd.config_digest(), &Digest::of(&index));
    rec.target.media_type = media::OCI_INDEX.into();
    rec.manifest = amd.manifest_digest();
    let (mut blobs, mut snaps) = (HashSet::new(), HashSet::new());
    mark_record(&cs, &rec, &mut blobs, &mut snaps).unwrap();

    let mut want: HashSet<Digest> = amd
        .blobs()
        .iter()
        .chain(arm.blobs().iter())
        .map(|b| Digest::of(b))
        .collect();
    want.insert(Digest::of(&index));
    // The absent platform's manifest is not in content; marking it would not matter, but
    // its config and layers are unknown.
    blobs.remove(&absent.manifest_digest());
    assert_eq!(blobs, want);
    assert!(!blobs.contains(&Digest::of(b"garbage")));
    let chains: HashSet<Digest> = crate::snapshot::chain_ids(&amd.diff_ids())
        .into_iter()
        .collect();
    assert!(chains.is_subset(&snaps));
}

#[test]
fn marking_survives_missing_and_damaged_documents() {
    let dir = tempfile::tempdir().unwrap();
    let cs = ContentStore::open(dir.path()).unwrap();
    let img = TestImage::simple("x");
    let bad_manifest = b"{ not json".to_vec();
    cs.write_all(&Digest::of(&bad_manifest), &bad_manifest)
        .unwrap();
    let rec = record("x/y:1", &img.config_digest(), &Digest::of(&bad_manifest));
    let (mut blobs, mut snaps) = (HashSet::new(), HashSet::new());
    mark_record(&cs, &rec, &mut blobs, &mut snaps).unwrap();
    assert!(blobs.contains(&Digest::of(&bad_manifest)));
    assert!(blobs.contains(&img.config_digest()));
}

#[test]
fn dir_size_counts_files_not_symlinks() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("a/b")).unwrap();
    std::fs::write(dir.path().join("a/b/f"), vec![0u8; 1000]).unwrap();
    std::fs::write(dir.path().join("g"), vec![0u8; 24]).unwrap();
    std::os::unix::fs::symlink("/usr", dir.path().join("link")).unwrap();
    assert_eq!(dir_size(dir.path()), 1024);
}

// ---- lifecycle through the real snapshotter (root) ----

fn open_store(data: &Path) -> ImageStore {
    let mut config = StoreConfig::new(data);
    config.registries = Some(Default::default());
    config.docker_config = Some(data.join("no-docker-config.json"));
    ImageStore::open(config).unwrap()
}

fn layout_with(dir: &Path, image: &TestImage, name: &str) -> PathBuf {
    let layout = dir.join(format!("layout-{}", &image.manifest_digest().hex()[..8]));
    write_layout(
        &layout,
        &[image],
        &[],
        vec![entry(image, &[(ANNOTATION_REF_NAME, name)])],
    );
    layout
}

#[test]
fn open_creates_layout_and_reads_registries_yaml() {
    require_root();
    let tmp = tempfile::tempdir().unwrap();
    let store = open_store(tmp.path());
    for d in ["blobs/sha256", "ingest", "refs"] {
        assert!(tmp.path().join("images").join(d).is_dir(), "{d}");
    }
    assert!(store.list().unwrap().is_empty());
    // registries.yaml is read when no config is given: a broken one is reported, by name.
    std::fs::write(
        tmp.path().join("registries.yaml"),
        "mirrors: [not, a, map]\n",
    )
    .unwrap();
    let mut config = StoreConfig::new(tmp.path());
    config.docker_config = Some(tmp.path().join("none.json"));
    let err = ImageStore::open(config)
        .err()
        .expect("invalid registries.yaml must fail");
    assert!(err.to_string().contains("registries.yaml"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lifecycle_get_rootfs_remove_prune() {
    require_root();
    let tmp = tempfile::tempdir().unwrap();
    let store = open_store(&tmp.path().join("data"));
    let base = layer_tar(&[("etc/base", b"base")]);
    let a = TestImage::new(
        vec![base.clone(), layer_tar(&[("a", b"a")])],
        true,
        "linux/amd64",
    );
    let b = TestImage::new(vec![base, layer_tar(&[("b", b"b")])], true, "linux/amd64");
    let opts = || ImportOptions {
        platform: Platform::parse("linux/amd64").unwrap(),
        ..Default::default()
    };
    let ia = store
        .import(&layout_with(tmp.path(), &a, "example.com/a:1"), opts())
        .await
        .unwrap()
        .remove(0);
    store
        .import(&layout_with(tmp.path(), &a, "example.com/a:2"), opts())
        .await
        .unwrap();
    let ib = store
        .import(&layout_with(tmp.path(), &b, "example.com/b:1"), opts())
        .await
        .unwrap()
        .remove(0);
    let a_chains = crate::snapshot::chain_ids(&a.diff_ids());
    let b_chains = crate::snapshot::chain_ids(&b.diff_ids());
    assert_eq!(a_chains[0], b_chains[0], "shared base snapshot");

    // get: by name, ID, prefix, repo digest.
    assert_eq!(store.get("example.com/a:1").unwrap(), ia);
    assert_eq!(store.get(&ia.id.to_string()).unwrap().id, ia.id);
    assert_eq!(store.get(&ia.id.hex()[..8]).unwrap().id, ia.id);
    assert_eq!(
        store
            .get(&format!("example.com/a@{}", ia.digest))
            .unwrap()
            .id,
        ia.id
    );
    assert!(matches!(
        store.get("example.com/nope:1"),
        Err(StoreError::ImageNotFound(_))
    ));
    assert_eq!(store.list().unwrap().len(), 3);
    assert_eq!(
        ia.size,
        a.config.len() as u64 + a.layers.iter().map(|l| l.1.len() as u64).sum::<u64>()
    );

    // A container on a: untagging one of its names is fine, removing the last is not.
    let spec = store.prepare_rootfs("ctr-a", &ia).unwrap();
    assert_eq!(spec.lower.len(), 2);
    assert_eq!(
        store.remove("example.com/a:1", false).unwrap().untagged,
        ["example.com/a:1"]
    );
    match store.remove(&ia.id.hex()[..12], false) {
        Err(e @ StoreError::InUse { .. }) => assert!(e.to_string().contains("ctr-a"), "{e}"),
        other => panic!("{other:?}"),
    }
    assert!(store.get("example.com/a:2").is_ok());

    // Prune while a is only held by the container: a's snapshots stay, its blobs go.
    let r = store.remove("example.com/a:2", true).unwrap();
    assert_eq!(r.untagged, ["example.com/a:2"]);
    let report = store.prune().unwrap();
    assert!(
        report.snapshots.is_empty(),
        "active snapshot chain must be kept: {report:?}"
    );
    assert!(report.blobs.contains(&a.manifest_digest()));
    assert!(report.blobs.contains(&Digest::of(&a.layers[1].1)));
    assert!(
        !report.blobs.contains(&Digest::of(&a.layers[0].1)),
        "shared base layer blob is b's too"
    );
    assert!(report.bytes_freed > 0);
    assert!(store.snapshotter().exists(&a_chains[1]));

    // Release: a's top snapshot goes, the shared base stays for b.
    store.release_rootfs("ctr-a").unwrap();
    // A stale partial download goes too.
    let stale = Digest::of(b"stale partial");
    let mut ing = store.content().begin(&stale, 13).unwrap().unwrap();
    ing.write(b"stale").unwrap();
    drop(ing);
    let report = store.prune().unwrap();
    assert_eq!(report.snapshots, vec![a_chains[1].clone()]);
    assert!(!store.snapshotter().exists(&a_chains[1]));
    assert!(store.snapshotter().exists(&b_chains[0]) && store.snapshotter().exists(&b_chains[1]));
    assert!(!store.content().ingest_dir().join(stale.hex()).exists());
    assert_eq!(store.get("example.com/b:1").unwrap(), ib);
    for blob in b.blobs() {
        assert!(store.content().contains(&Digest::of(&blob)));
    }
    // Nothing left to do.
    assert_eq!(store.prune().unwrap(), PruneReport::default());

    // Removing by ID removes every name.
    store
        .import(&layout_with(tmp.path(), &b, "example.com/b:2"), opts())
        .await
        .unwrap();
    let mut untagged = store.remove(&ib.id.to_string(), false).unwrap().untagged;
    untagged.sort();
    assert_eq!(untagged, ["example.com/b:1", "example.com/b:2"]);
    let report = store.prune().unwrap();
    assert_eq!(report.snapshots.len(), 2);
    assert!(store.content().list().unwrap().is_empty());
    assert!(store.snapshotter().list().unwrap().is_empty());
}

#[test]
fn commit_image_checks_before_recording() {
    require_root();
    let tmp = tempfile::tempdir().unwrap();
    let store = open_store(tmp.path());
    let put = |data: &[u8]| store.content().write_all(&Digest::of(data), data).unwrap();
    let platform = Platform::parse("linux/amd64").unwrap();

    // Config lists two diff IDs for one layer.
    let img = TestImage::simple("count");
    let mut two = img.clone();
    two.config = String::from_utf8(img.config.clone())
        .unwrap()
        .replace(
            r#""diff_ids":["#,
            &format!(r#""diff_ids":["{}","#, Digest::of(b"extra")),
        )
        .into_bytes();
    let m: crate::manifest::Manifest = serde_json::from_slice(&img.manifest).unwrap();
    let m2 = crate::manifest::Manifest {
        config: descriptor(media::OCI_CONFIG, &two.config),
        ..m
    };
    let m2 = serde_json::to_vec(&m2).unwrap();
    for blob in img.blobs().iter().chain([&two.config, &m2]) {
        put(blob);
    }
    let target = descriptor(media::OCI_MANIFEST, &m2);
    let e = store
        .commit_image("x/y:1", &target, &target.digest, &platform)
        .unwrap_err();
    assert!(
        matches!(
            e,
            StoreError::Config(crate::config::ConfigError::LayerCountMismatch { .. })
        ),
        "{e}"
    );

    // A layer that does not unpack to its diff ID.
    let liar = TestImage::new(vec![layer_tar(&[("x", b"x")])], true, "linux/amd64");
    let mut tampered = liar.clone();
    tampered.layers[0].1 = gzip(&layer_tar(&[("x", b"evil")]));
    let m: crate::manifest::Manifest = serde_json::from_slice(&liar.manifest).unwrap();
    let layer_desc = descriptor(media::OCI_LAYER_GZIP, &tampered.layers[0].1);
    let m3 = serde_json::to_vec(&crate::manifest::Manifest {
        layers: vec![layer_desc.clone()],
        ..m
    })
    .unwrap();
    put(&m3);
    put(&liar.config);
    put(&tampered.layers[0].1);
    let target = descriptor(media::OCI_MANIFEST, &m3);
    match store.commit_image("x/liar:1", &target, &target.digest, &platform) {
        Err(StoreError::Layer {
            digest, reference, ..
        }) => {
            assert_eq!(digest, layer_desc.digest);
            assert_eq!(reference, "x/liar:1");
        }
        other => panic!("{other:?}"),
    }
    // A missing layer blob.
    let missing = TestImage::simple("missing");
    put(&missing.manifest);
    put(&missing.config);
    let target = missing.manifest_descriptor();
    assert!(matches!(
        store.commit_image("x/missing:1", &target, &target.digest, &platform),
        Err(StoreError::Content(ContentError::NotFound(_)))
    ));
    // An index given as the platform manifest.
    let index = serde_json::to_vec(&Index {
        schema_version: 2,
        media_type: None,
        manifests: vec![],
        annotations: BTreeMap::new(),
    })
    .unwrap();
    put(&index);
    let target = descriptor(media::OCI_INDEX, &index);
    assert!(matches!(
        store.commit_image("x/idx:1", &target, &target.digest, &platform),
        Err(StoreError::InvalidImage { .. })
    ));
    // None of these left a record.
    assert!(store.list().unwrap().is_empty());
}

#[test]
fn commit_image_detects_compression_when_media_type_is_unknown() {
    require_root();
    let tmp = tempfile::tempdir().unwrap();
    let store = open_store(tmp.path());
    let img = TestImage::new(
        vec![
            layer_tar(&[("z", b"zipped")]),
            layer_tar(&[("p", b"plain")]),
        ],
        false,
        "linux/amd64",
    );
    let gz = gzip(&img.layers[0].0);
    let m = crate::manifest::Manifest {
        schema_version: 2,
        media_type: None,
        config: descriptor(media::OCI_CONFIG, &img.config),
        layers: vec![
            descriptor("", &gz),
            descriptor("application/octet-stream", &img.layers[1].0),
        ],
        annotations: BTreeMap::new(),
    };
    let m = serde_json::to_vec(&m).unwrap();
    for blob in [&m, &img.config, &gz, &img.layers[1].0] {
        store.content().write_all(&Digest::of(blob), blob).unwrap();
    }
    let target = descriptor("", &m);
    let image = store
        .commit_image("x/sniff:1", &target, &target.digest, &Platform::host())
        .unwrap();
    let top = store.snapshotter().fs_path(&image.top_chain);
    assert_eq!(std::fs::read(top.join("p")).unwrap(), b"plain");
}

#[test]
fn prune_waits_for_writers_holding_a_gc_guard() {
    require_root();
    let tmp = tempfile::tempdir().unwrap();
    let store = open_store(tmp.path());
    // A blob written by a "pull" that has no record yet.
    let guard = store.gc_guard().unwrap();
    let second = store.gc_guard().unwrap(); // guards are shared
    store
        .content()
        .write_all(&Digest::of(b"in flight"), b"in flight")
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let pruner = {
        let store = store.clone();
        std::thread::spawn(move || {
            let report = store.prune().unwrap();
            tx.send(()).unwrap();
            report
        })
    };
    assert!(
        rx.recv_timeout(std::time::Duration::from_millis(300))
            .is_err(),
        "prune must wait for the guard"
    );
    assert!(store.content().contains(&Digest::of(b"in flight")));
    drop(guard);
    drop(second);
    rx.recv_timeout(std::time::Duration::from_secs(10)).unwrap();
    // Without a record the blob is garbage once the writer is gone.
    assert_eq!(pruner.join().unwrap().blobs, vec![Digest::of(b"in flight")]);
}
