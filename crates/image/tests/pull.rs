//! `ImageStore::pull` end to end: a real `docker-registry` (or the fake server where a registry
//! has to misbehave), a real store in a temp dir, snapshots unpacked for real. Needs root
//! (snapshots keep ownership and create whiteout devices).

mod support;

use deckhand_image::digest::Digest;
use deckhand_image::manifest::Platform;
use deckhand_image::media;
use deckhand_image::progress::{ProgressEvent, ProgressSink};
use deckhand_image::pull::PullOptions;
use deckhand_image::snapshot::chain_ids;
use deckhand_image::{ImageStore, StoreConfig, StoreError};
use std::os::unix::fs::MetadataExt as _;
use std::sync::{Arc, Mutex};
use support::*;

fn require_root() {
    let uid = std::fs::metadata("/proc/self")
        .expect("/proc is mounted")
        .uid();
    assert_eq!(
        uid, 0,
        "this test unpacks snapshots and must run as root (make test runs it as root)"
    );
}

fn open_store(dir: &std::path::Path, max_concurrent_downloads: usize) -> ImageStore {
    let mut config = StoreConfig::new(dir.join("data"));
    config.registries = Some(Default::default());
    config.docker_config = Some(dir.join("no-docker-config.json"));
    config.max_concurrent_downloads = max_concurrent_downloads;
    ImageStore::open(config).unwrap()
}

fn recorder() -> (ProgressSink, Arc<Mutex<Vec<ProgressEvent>>>) {
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink_events = events.clone();
    (
        Arc::new(move |e| sink_events.lock().unwrap().push(e)),
        events,
    )
}

fn options(progress: ProgressSink) -> PullOptions {
    PullOptions {
        platform: Platform::host(),
        credentials: None,
        progress,
    }
}

/// Incompressible bytes (xorshift), so the gzip layer stays big enough to report progress.
fn pseudo_random(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

fn three_layer_image() -> TestImage {
    let big = pseudo_random(1_000_000);
    image(
        vec![
            layer(
                &[
                    ("etc/hello.txt", b"hello\n"),
                    ("etc/os-release", b"ID=test\n"),
                ],
                true,
            ),
            layer(&[("usr/share/big.bin", &big)], true),
            layer(&[("etc/hello.txt", b"hello again\n")], false),
        ],
        &Platform::host(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_stores_blobs_snapshots_and_record() {
    require_root();
    let registry = Registry::start().await;
    let img = three_layer_image();
    let manifest_digest = registry.push_image("team/app", "v1", &img).await;
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path(), 2);
    let (sink, events) = recorder();

    let reference = reference(&registry.host, "team/app", Some("v1"), None);
    let image = store.pull(&reference, options(sink)).await.unwrap();
    assert_eq!(image.name, format!("{}/team/app:v1", registry.host));
    assert_eq!(image.id, img.config_digest);
    assert_eq!(image.manifest, manifest_digest);
    assert_eq!(image.digest, manifest_digest);
    let chains = chain_ids(
        &img.layers
            .iter()
            .map(|l| l.diff_id.clone())
            .collect::<Vec<_>>(),
    );
    assert_eq!(image.top_chain, *chains.last().unwrap());
    for layer in &img.layers {
        assert!(
            store.content().contains(&layer.digest),
            "layer {} stored",
            layer.digest
        );
    }
    assert!(store.content().contains(&img.config_digest));
    assert!(store.content().contains(&manifest_digest));
    let snapshots = store.snapshotter();
    assert_eq!(
        std::fs::read(snapshots.fs_path(&chains[0]).join("etc/hello.txt")).unwrap(),
        b"hello\n"
    );
    assert_eq!(
        std::fs::read(snapshots.fs_path(&chains[2]).join("etc/hello.txt")).unwrap(),
        b"hello again\n"
    );
    assert_eq!(
        std::fs::metadata(snapshots.fs_path(&chains[1]).join("usr/share/big.bin"))
            .unwrap()
            .len(),
        1_000_000
    );
    assert_eq!(store.get(&image.name).unwrap(), image);

    let events = events.lock().unwrap().clone();
    assert!(
        matches!(&events[0], ProgressEvent::Resolved { manifest, layers, .. }
        if *manifest == manifest_digest && layers.len() == 3)
    );
    assert!(
        matches!(events.last().unwrap(), ProgressEvent::Done { manifest, .. } if *manifest == manifest_digest)
    );
    let downloaded = events
        .iter()
        .filter(|e| matches!(e, ProgressEvent::LayerDownloaded { .. }))
        .count();
    assert_eq!(downloaded, 3);
    let unpacked: Vec<Digest> = events
        .iter()
        .filter_map(|e| match e {
            ProgressEvent::LayerUnpacked { chain, .. } => Some(chain.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(unpacked, chains, "snapshots are applied bottom first");
    assert!(events
        .iter()
        .any(|e| matches!(e, ProgressEvent::LayerProgress { .. })));

    // Pulling again downloads nothing.
    let (sink, events) = recorder();
    let again = store.pull(&reference, options(sink)).await.unwrap();
    assert_eq!(again.id, image.id);
    let events = events.lock().unwrap().clone();
    assert_eq!(
        events
            .iter()
            .filter(|e| matches!(e, ProgressEvent::LayerExists { .. }))
            .count(),
        3
    );
    assert!(!events
        .iter()
        .any(|e| matches!(e, ProgressEvent::LayerStarted { .. })));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_from_an_index_picks_the_host_platform() {
    require_root();
    let registry = Registry::start().await;
    let host = Platform::host();
    let other = if host.architecture == "arm64" {
        platform("linux", "amd64")
    } else {
        platform("linux", "arm64")
    };
    let mine = image(vec![layer(&[("mine", b"host platform")], true)], &host);
    let theirs = image(vec![layer(&[("theirs", b"other platform")], true)], &other);
    registry.push_image("multi", "host", &mine).await;
    registry.push_image("multi", "other", &theirs).await;
    let index = index(&[(&theirs.manifest, other), (&mine.manifest, host.clone())]);
    let index_digest = registry
        .push_manifest("multi", "latest", media::OCI_INDEX, &index)
        .await;

    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path(), 3);
    let image = store
        .pull(
            &reference(&registry.host, "multi", Some("latest"), None),
            PullOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(image.digest, index_digest);
    assert_eq!(image.manifest, mine.manifest_digest);
    assert_eq!(image.id, mine.config_digest);
    assert!(!store.content().contains(&theirs.layers[0].digest));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_by_digest_is_recorded_under_the_digest_name() {
    require_root();
    let registry = Registry::start().await;
    let img = image(vec![layer(&[("a", b"a")], true)], &Platform::host());
    let digest = registry.push_image("bydigest", "v1", &img).await;
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path(), 3);
    let image = store
        .pull(
            &reference(&registry.host, "bydigest", None, Some(&digest)),
            PullOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(image.name, format!("{}/bydigest@{digest}", registry.host));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_resumes_an_interrupted_download() {
    require_root();
    let registry = Registry::start().await;
    let img = three_layer_image();
    registry.push_image("resume", "v1", &img).await;
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path(), 3);
    // What an interrupted pull leaves behind: half the big layer in ingest/.
    let big = &img.layers[1];
    let half = big.blob.len() / 2;
    {
        let mut ingest = store
            .content()
            .begin(&big.digest, big.blob.len() as u64)
            .unwrap()
            .unwrap();
        ingest.write(&big.blob[..half]).unwrap();
    }
    let (sink, events) = recorder();
    store
        .pull(
            &reference(&registry.host, "resume", Some("v1"), None),
            options(sink),
        )
        .await
        .unwrap();
    let events = events.lock().unwrap().clone();
    assert!(
        events.iter().any(
            |e| matches!(e, ProgressEvent::LayerStarted { digest, offset, .. }
            if *digest == big.digest && *offset == half as u64)
        ),
        "{events:#?}"
    );
    assert!(store.content().contains(&big.digest));
}

/// Serves `img` like a registry; the first GET of `cut_layer` stops half-way.
async fn flaky_registry(
    img: &TestImage,
    cut: Option<Digest>,
    corrupt: Option<Digest>,
) -> FakeServer {
    let manifest = img.manifest.clone();
    let mut blobs = std::collections::HashMap::new();
    blobs.insert(img.config_digest.to_string(), img.config.clone());
    for layer in &img.layers {
        let mut blob = layer.blob.clone();
        if corrupt.as_ref() == Some(&layer.digest) {
            let middle = blob.len() / 2;
            blob[middle] ^= 0xff;
        }
        blobs.insert(layer.digest.to_string(), blob);
    }
    let cut_done = Arc::new(Mutex::new(false));
    FakeServer::start(move |req| {
        if req.path().contains("/manifests/") {
            return Response::new(200, manifest.clone())
                .header("content-type", media::OCI_MANIFEST);
        }
        let digest = req.path().rsplit('/').next().unwrap();
        let Some(blob) = blobs.get(digest) else {
            return Response::new(404, "");
        };
        if cut.as_ref().is_some_and(|c| c.to_string() == digest)
            && !std::mem::replace(&mut *cut_done.lock().unwrap(), true)
        {
            let mut response = Response::new(200, blob.clone());
            response.truncate_at = Some(blob.len() / 2);
            return response;
        }
        ranged(req, blob)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_retries_a_cut_connection_from_where_it_stopped() {
    require_root();
    let img = three_layer_image();
    let big = img.layers[1].digest.clone();
    let server = flaky_registry(&img, Some(big.clone()), None).await;
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path(), 3);
    let (sink, events) = recorder();
    let image = store
        .pull(
            &reference(&server.addr, "flaky", Some("v1"), None),
            options(sink),
        )
        .await
        .unwrap();
    assert_eq!(image.id, img.config_digest);
    let events = events.lock().unwrap().clone();
    assert!(events.iter().any(
        |e| matches!(e, ProgressEvent::LayerRetry { digest, attempt: 1, .. } if *digest == big)
    ));
    let resumed = server
        .requests()
        .into_iter()
        .filter(|r| r.path().ends_with(&big.to_string()))
        .filter_map(|r| r.header("range").map(str::to_string))
        .collect::<Vec<_>>();
    assert_eq!(resumed.len(), 1, "one resumed request");
    let offset: usize = resumed[0]
        .trim_start_matches("bytes=")
        .trim_end_matches('-')
        .parse()
        .unwrap();
    assert!(
        offset > 0 && offset <= img.layers[1].blob.len() / 2,
        "resumed from {offset}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_of_a_corrupt_layer_fails_and_stores_no_image() {
    require_root();
    let img = three_layer_image();
    let bad = img.layers[1].digest.clone();
    let server = flaky_registry(&img, None, Some(bad.clone())).await;
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path(), 3);
    let reference = reference(&server.addr, "corrupt", Some("v1"), None);
    let err = store
        .pull(&reference, PullOptions::default())
        .await
        .unwrap_err();
    match &err {
        StoreError::Layer { digest, .. } => assert_eq!(*digest, bad),
        other => panic!("{other:?}"),
    }
    let text = err.to_string();
    assert!(
        text.contains(&bad.to_string()) && text.contains(&reference.to_string()),
        "{text}"
    );
    assert!(text.contains("nothing was stored"), "{text}");
    assert!(!store.content().contains(&bad));
    assert!(store.list().unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_pulls_of_one_image_both_succeed() {
    require_root();
    let registry = Registry::start().await;
    let img = three_layer_image();
    registry.push_image("twice", "v1", &img).await;
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path(), 3);
    let reference = reference(&registry.host, "twice", Some("v1"), None);
    let (a, b) = tokio::join!(
        store.pull(&reference, PullOptions::default()),
        store.pull(&reference, PullOptions::default())
    );
    assert_eq!(a.unwrap().id, b.unwrap().id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_of_a_missing_blob_fails_at_once_without_retries() {
    require_root();
    let img = three_layer_image();
    let missing = img.layers[2].digest.clone();
    // The server knows the manifest but not the last layer.
    let served = TestImage {
        layers: img.layers.iter().take(2).map(layer_copy).collect(),
        config: img.config.clone(),
        config_digest: img.config_digest.clone(),
        manifest: img.manifest.clone(),
        manifest_digest: img.manifest_digest.clone(),
    };
    let server = flaky_registry(&served, None, None).await;
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path(), 3);
    let (sink, events) = recorder();
    let started = std::time::Instant::now();
    let err = store
        .pull(
            &reference(&server.addr, "missing", Some("v1"), None),
            options(sink),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&err, StoreError::Registry(deckhand_image::registry::RegistryError::BlobNotFound { digest, .. }) if *digest == missing),
        "{err:?}"
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "no backoff for a 404"
    );
    assert!(!events
        .lock()
        .unwrap()
        .iter()
        .any(|e| matches!(e, ProgressEvent::LayerRetry { .. })));
    assert!(store.list().unwrap().is_empty());
}

fn layer_copy(l: &TestLayer) -> TestLayer {
    TestLayer {
        tar: l.tar.clone(),
        blob: l.blob.clone(),
        media_type: l.media_type,
        diff_id: l.diff_id.clone(),
        digest: l.digest.clone(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_pull_leaves_no_image_and_the_next_one_resumes() {
    require_root();
    let big = pseudo_random(2_000_000);
    let img = image(vec![layer(&[("big.bin", &big)], false)], &Platform::host());
    let layer = layer_copy(&img.layers[0]);
    let (manifest, config, config_digest) = (
        img.manifest.clone(),
        img.config.clone(),
        img.config_digest.clone(),
    );
    let stall = 1_200_000;
    let first_blob_request = Arc::new(Mutex::new(true));
    let server = FakeServer::start(move |req| {
        if req.path().contains("/manifests/") {
            return Response::new(200, manifest.clone())
                .header("content-type", media::OCI_MANIFEST);
        }
        if req.path().ends_with(&config_digest.to_string()) {
            return Response::new(200, config.clone());
        }
        if std::mem::replace(&mut *first_blob_request.lock().unwrap(), false) {
            // The first download stalls half-way: the pull is cancelled meanwhile.
            let mut response = Response::new(200, layer.blob.clone());
            response.stall_at = Some(stall);
            return response;
        }
        ranged(req, &layer.blob)
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path(), 3);
    let reference = reference(&server.addr, "cancel", Some("v1"), None);

    let progressed = Arc::new(tokio::sync::Notify::new());
    let notify = progressed.clone();
    let sink: ProgressSink = Arc::new(move |e| {
        if matches!(e, ProgressEvent::LayerProgress { downloaded, .. } if downloaded >= 1_000_000) {
            notify.notify_one();
        }
    });
    tokio::select! {
        result = store.pull(&reference, options(sink)) => panic!("the pull should stall, not finish: {result:?}"),
        _ = progressed.notified() => {}
    }
    assert!(
        store.list().unwrap().is_empty(),
        "a cancelled pull records nothing"
    );

    let (sink, events) = recorder();
    let image = store.pull(&reference, options(sink)).await.unwrap();
    assert_eq!(image.id, img.config_digest);
    let events = events.lock().unwrap().clone();
    let offset = events
        .iter()
        .find_map(|e| match e {
            ProgressEvent::LayerStarted { offset, .. } => Some(*offset),
            _ => None,
        })
        .expect("the layer was downloaded");
    assert!(
        offset >= 512 << 10 && offset <= stall as u64,
        "resumed from {offset}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_partial_download_is_downloaded_again_from_scratch() {
    require_root();
    let registry = Registry::start().await;
    let img = three_layer_image();
    registry.push_image("badpartial", "v1", &img).await;
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path(), 3);
    // What a crash can leave: the first half of the layer, with pages that never reached the
    // disk read back as zeros.
    let big = &img.layers[1];
    let half = big.blob.len() / 2;
    {
        let mut ingest = store
            .content()
            .begin(&big.digest, big.blob.len() as u64)
            .unwrap()
            .unwrap();
        ingest.write(&big.blob[..half / 2]).unwrap();
        ingest.write(&vec![0u8; half - half / 2]).unwrap();
    }
    let (sink, events) = recorder();
    let image = store
        .pull(
            &reference(&registry.host, "badpartial", Some("v1"), None),
            options(sink),
        )
        .await
        .unwrap();
    assert_eq!(image.id, img.config_digest);
    assert!(store.content().contains(&big.digest));
    let events = events.lock().unwrap().clone();
    let starts: Vec<u64> = events
        .iter()
        .filter_map(|e| match e {
            ProgressEvent::LayerStarted { digest, offset, .. } if *digest == big.digest => {
                Some(*offset)
            }
            _ => None,
        })
        .collect();
    assert_eq!(starts, [half as u64, 0], "resumed, then started over");
    assert!(events
        .iter()
        .any(|e| matches!(e, ProgressEvent::LayerRetry { digest, .. } if *digest == big.digest)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_registry_errors_during_resolve_are_retried() {
    require_root();
    let img = image(vec![layer(&[("a", b"a")], true)], &Platform::host());
    // The registry answers 503 to the first two manifest requests.
    let (manifest, config, config_digest, blob) = (
        img.manifest.clone(),
        img.config.clone(),
        img.config_digest.clone(),
        img.layers[0].blob.clone(),
    );
    let failures = Arc::new(Mutex::new(2));
    let server = FakeServer::start(move |req| {
        if req.path().contains("/manifests/") {
            let mut left = failures.lock().unwrap();
            if *left > 0 {
                *left -= 1;
                return Response::new(503, "");
            }
            return Response::new(200, manifest.clone())
                .header("content-type", media::OCI_MANIFEST);
        }
        if req.path().ends_with(&config_digest.to_string()) {
            return Response::new(200, config.clone());
        }
        ranged(req, &blob)
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path(), 3);
    let image = store
        .pull(
            &reference(&server.addr, "retry", Some("v1"), None),
            PullOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(image.id, img.config_digest);
    let manifest_requests = server
        .requests()
        .iter()
        .filter(|r| r.path().contains("/manifests/"))
        .count();
    assert_eq!(manifest_requests, 3);
}
