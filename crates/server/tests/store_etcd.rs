//! etcd-specific behaviour: several API servers (here, two `EtcdBackend`s) share one etcd and
//! see each other's writes, in their watches as in their reads.

mod store_support;

use std::time::Duration;

use deckhand_server::store::{Backend, EtcdBackend, Event};
use futures::StreamExt;
use store_support::Etcd;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_backends_see_each_others_writes() {
    let Some(etcd) = Etcd::start().await else {
        return;
    };
    let a = EtcdBackend::connect(&[etcd.endpoint.as_str()])
        .await
        .unwrap();
    let b = EtcdBackend::connect(&[etcd.endpoint.as_str()])
        .await
        .unwrap();
    let start = a.current_revision().await.unwrap();
    let mut watch_a = a.watch("/registry/pods/", start).await.unwrap();
    let mut watch_b = b.watch("/registry/pods/", start).await.unwrap();

    let r1 = a
        .create("/registry/pods/ns/from-a", b"a".to_vec())
        .await
        .unwrap();
    let r2 = b
        .create("/registry/pods/ns/from-b", b"b".to_vec())
        .await
        .unwrap();
    let r3 = b
        .update("/registry/pods/ns/from-a", b"a2".to_vec(), r1)
        .await
        .unwrap();

    for w in [&mut watch_a, &mut watch_b] {
        let mut revs = Vec::new();
        for _ in 0..3 {
            let ev = tokio::time::timeout(Duration::from_secs(10), w.next()).await;
            let ev = ev
                .expect("event within 10 s")
                .expect("stream open")
                .expect("event");
            revs.push(ev.revision());
            if ev.revision() == r3 {
                assert!(matches!(ev, Event::Put { prev: Some(ref p), .. } if p.value == b"a"));
            }
        }
        assert_eq!(revs, [r1, r2, r3]);
    }
    assert_eq!(
        a.get("/registry/pods/ns/from-b")
            .await
            .unwrap()
            .unwrap()
            .mod_revision,
        r2
    );
    // b's view of a's key reflects b's update; a's stale write now conflicts.
    assert!(a
        .update("/registry/pods/ns/from-a", b"x".to_vec(), r1)
        .await
        .is_err());
}

/// The same load as the SQLite bench, against a local etcd (which fsyncs every commit).
/// Ignored by default: `cargo test -p deckhand-server --test store_etcd -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn write_latency_at_200_per_second() {
    let Some(etcd) = Etcd::start().await else {
        return;
    };
    let store = EtcdBackend::connect(&[etcd.endpoint.as_str()])
        .await
        .unwrap();
    store_support::write_latency("etcd", std::sync::Arc::new(store)).await;
}
