//! One conformance suite for every storage backend: the in-memory one, embedded SQLite, a real
//! etcd started by the test, and the watch cache over each of them. Every backend must behave
//! the same way here, because the REST layer above cannot tell them apart.
//!
//! The etcd tests start `/usr/bin/etcd` themselves (one per test, on free ports and a temp data
//! dir) and are skipped, with a message, only when that binary is absent.

mod store_support;

use std::sync::Arc;
use std::time::Duration;

use deckhand_server::store::{Backend, Event, EventStream, ListResult, Revision, StoreError};
use futures::StreamExt;

pub use store_support::*;

/// The suite proper: each function takes a fresh, empty store.
mod suite {
    use super::*;

    pub async fn create_get(b: Arc<dyn Backend>) {
        assert_eq!(b.get("/registry/pods/default/a").await.unwrap(), None);
        let r = b
            .create("/registry/pods/default/a", b"{\"v\":1}".to_vec())
            .await
            .unwrap();
        assert!(r > 0);
        let kv = b
            .get("/registry/pods/default/a")
            .await
            .unwrap()
            .expect("created key");
        assert_eq!(kv.value, b"{\"v\":1}");
        assert_eq!(kv.create_revision, r);
        assert_eq!(kv.mod_revision, r);
        match b.create("/registry/pods/default/a", b"x".to_vec()).await {
            Err(StoreError::AlreadyExists(k)) => assert_eq!(k, "/registry/pods/default/a"),
            other => panic!("second create: {other:?}"),
        }
        assert_eq!(b.current_revision().await.unwrap(), r);
    }

    pub async fn update_conflict(b: Arc<dyn Backend>) {
        let key = "/registry/pods/default/u";
        match b.update(key, b"x".to_vec(), 1).await {
            Err(StoreError::NotFound(_)) => {}
            other => panic!("update of a missing key: {other:?}"),
        }
        let r1 = b.create(key, b"1".to_vec()).await.unwrap();
        let r2 = b.update(key, b"2".to_vec(), r1).await.unwrap();
        assert!(r2 > r1);
        match b.update(key, b"3".to_vec(), r1).await {
            Err(StoreError::Conflict {
                expected, current, ..
            }) => {
                assert_eq!((expected, current), (r1, r2));
            }
            other => panic!("stale update: {other:?}"),
        }
        let kv = b.get(key).await.unwrap().unwrap();
        assert_eq!(
            (kv.value.as_slice(), kv.create_revision, kv.mod_revision),
            (&b"2"[..], r1, r2)
        );
    }

    pub async fn delete_expected(b: Arc<dyn Backend>) {
        let key = "/registry/pods/default/d";
        let r1 = b.create(key, b"1".to_vec()).await.unwrap();
        let r2 = b.update(key, b"2".to_vec(), r1).await.unwrap();
        match b.delete(key, Some(r1)).await {
            Err(StoreError::Conflict {
                expected, current, ..
            }) => {
                assert_eq!((expected, current), (r1, r2))
            }
            other => panic!("stale delete: {other:?}"),
        }
        let gone = b.delete(key, Some(r2)).await.unwrap();
        assert_eq!(gone.value, b"2");
        assert_eq!(gone.create_revision, r1);
        assert!(gone.mod_revision > r2, "the delete has its own revision");
        assert_eq!(b.current_revision().await.unwrap(), gone.mod_revision);
        assert_eq!(b.get(key).await.unwrap(), None);
        assert!(matches!(
            b.delete(key, None).await,
            Err(StoreError::NotFound(_))
        ));
        // Unconditional delete.
        b.create(key, b"3".to_vec()).await.unwrap();
        assert_eq!(b.delete(key, None).await.unwrap().value, b"3");
        // Re-creating starts a new life: a new create_revision.
        let r5 = b.create(key, b"4".to_vec()).await.unwrap();
        assert_eq!(b.get(key).await.unwrap().unwrap().create_revision, r5);
    }

    pub async fn revisions_shared_and_increasing(b: Arc<dyn Backend>) {
        let mut last = b.current_revision().await.unwrap();
        for i in 0..10u8 {
            let key = format!("/registry/configmaps/ns{}/k{i}", i % 3);
            let r = b.create(&key, vec![i]).await.unwrap();
            assert!(r > last, "revision {r} after {last}");
            last = r;
            let r = b.update(&key, vec![i, 1], r).await.unwrap();
            assert!(r > last);
            last = r;
        }
        assert_eq!(b.current_revision().await.unwrap(), last);
        let list = b
            .list("/registry/configmaps/", None, None, None)
            .await
            .unwrap();
        assert_eq!(list.revision, last);
        assert_eq!(list.items.len(), 10);
    }

    pub async fn prefix_isolation(b: Arc<dyn Backend>) {
        let start = b.current_revision().await.unwrap();
        b.create("/registry/pods/default/a", b"pod".to_vec())
            .await
            .unwrap();
        b.create("/registry/podsecurity/default/a", b"psp".to_vec())
            .await
            .unwrap();
        b.create("/registry/pods", b"bare".to_vec()).await.unwrap();
        let list = b.list("/registry/pods/", None, None, None).await.unwrap();
        let keys: Vec<_> = list.items.iter().map(|kv| kv.key.as_str()).collect();
        assert_eq!(keys, ["/registry/pods/default/a"]);
        let mut w = b.watch("/registry/pods/", start).await.unwrap();
        let ev = next(&mut w).await;
        assert_eq!(ev.kv().key, "/registry/pods/default/a");
        b.create("/registry/podsecurity/default/b", b"psp".to_vec())
            .await
            .unwrap();
        b.create("/registry/pods/default/b", b"pod".to_vec())
            .await
            .unwrap();
        assert_eq!(next(&mut w).await.kv().key, "/registry/pods/default/b");
    }

    fn names(l: &ListResult) -> Vec<String> {
        l.items
            .iter()
            .map(|kv| kv.key.rsplit('/').next().unwrap_or_default().to_owned())
            .collect()
    }

    pub async fn list_paging(b: Arc<dyn Backend>) {
        for i in 0..10 {
            let key = format!("/registry/secrets/ns/s{i}");
            b.create(&key, format!("v{i}").into_bytes()).await.unwrap();
        }
        b.create("/registry/secretz/ns/other", vec![])
            .await
            .unwrap();
        let prefix = "/registry/secrets/";
        let first = b.list(prefix, None, Some(3), None).await.unwrap();
        assert_eq!(names(&first), ["s0", "s1", "s2"]);
        assert!(first.more);
        let at = first.revision;

        // Writes after the first page must not show in the continuation at the list's revision.
        let s4 = b.get("/registry/secrets/ns/s4").await.unwrap().unwrap();
        b.update(
            "/registry/secrets/ns/s4",
            b"changed".to_vec(),
            s4.mod_revision,
        )
        .await
        .unwrap();
        b.delete("/registry/secrets/ns/s5", None).await.unwrap();
        b.create("/registry/secrets/ns/s3a", vec![]).await.unwrap();

        let second = b
            .list(prefix, Some("/registry/secrets/ns/s2"), Some(3), Some(at))
            .await
            .unwrap();
        assert_eq!(second.revision, at);
        assert_eq!(names(&second), ["s3", "s4", "s5"]);
        assert_eq!(second.items[1].value, b"v4");
        assert!(second.more);
        let third = b
            .list(prefix, Some("/registry/secrets/ns/s5"), Some(10), Some(at))
            .await
            .unwrap();
        assert_eq!(names(&third), ["s6", "s7", "s8", "s9"]);
        assert!(!third.more);

        // The latest state has the changes.
        let now = b.list(prefix, None, None, None).await.unwrap();
        assert_eq!(now.items.len(), 10);
        assert!(now.revision > at);
        assert!(!now.more);
        let s4 = now.items.iter().find(|kv| kv.key.ends_with("/s4")).unwrap();
        assert_eq!(s4.value, b"changed");
        // Exactly `limit` items left: no more.
        let tail = b
            .list(prefix, Some("/registry/secrets/ns/s6"), Some(3), None)
            .await
            .unwrap();
        assert_eq!(names(&tail), ["s7", "s8", "s9"]);
        assert!(!tail.more);

        match b.list(prefix, None, None, Some(now.revision + 100)).await {
            Err(StoreError::FutureRevision { .. }) => {}
            other => panic!("list in the future: {other:?}"),
        }
    }

    pub async fn watch_history_then_live(b: Arc<dyn Backend>) {
        let k = |i: i32| format!("/registry/pods/ns/p{i}");
        let r0 = b.create(&k(0), b"0".to_vec()).await.unwrap();
        let r1 = b.create(&k(1), b"1".to_vec()).await.unwrap();
        let r2 = b.update(&k(0), b"0b".to_vec(), r0).await.unwrap();
        let r3 = b.delete(&k(1), None).await.unwrap().mod_revision;
        let mut w = b.watch("/registry/pods/", r0).await.unwrap();
        // Live writes race with the replay of the history.
        let writer = {
            let b = b.clone();
            tokio::spawn(async move {
                let mut revs = Vec::new();
                for i in 10..40 {
                    revs.push(
                        b.create(&format!("/registry/pods/ns/p{i}"), vec![])
                            .await
                            .unwrap(),
                    );
                }
                revs
            })
        };
        let mut seen = Vec::new();
        for _ in 0..33 {
            seen.push(next(&mut w).await);
        }
        let live = writer.await.unwrap();
        let revs: Vec<Revision> = seen.iter().map(Event::revision).collect();
        let mut want = vec![r1, r2, r3];
        want.extend(live);
        assert_eq!(revs, want, "no gaps, no duplicates, in order");
        match &seen[1] {
            Event::Put {
                kv,
                prev: Some(prev),
            } => {
                assert_eq!(kv.value, b"0b");
                assert_eq!(prev.value, b"0");
                assert_eq!(prev.mod_revision, r0);
            }
            other => panic!("update event: {other:?}"),
        }
        match &seen[2] {
            Event::Deleted { kv } => {
                assert_eq!(kv.key, k(1));
                assert_eq!(kv.value, b"1");
                assert_eq!(kv.mod_revision, r3);
            }
            other => panic!("delete event: {other:?}"),
        }
        assert!(matches!(&seen[3], Event::Put { prev: None, .. }));
        // Nothing more.
        assert!(tokio::time::timeout(Duration::from_millis(200), w.next())
            .await
            .is_err());
    }

    pub async fn watch_after_compaction(b: Arc<dyn Backend>) {
        let key = "/registry/leases/ns/l";
        let mut rev = b.create(key, b"0".to_vec()).await.unwrap();
        let first = rev;
        for i in 1..10 {
            rev = b.update(key, vec![i], rev).await.unwrap();
        }
        let quiet = b
            .create("/registry/leases/ns/quiet", b"q".to_vec())
            .await
            .unwrap();
        b.compact(quiet).await.unwrap();
        match b.watch("/registry/leases/", first).await {
            Err(StoreError::Compacted { .. }) => {}
            Ok(mut s) => match tokio::time::timeout(Duration::from_secs(5), s.next()).await {
                // A backend may only learn of the compaction once the stream starts.
                Ok(Some(Err(StoreError::Compacted { .. }))) => {}
                other => panic!("watch from a compacted revision yielded {other:?}"),
            },
            Err(e) => panic!("watch from a compacted revision: {e}"),
        }
        match b.list("/registry/leases/", None, None, Some(first)).await {
            Err(StoreError::Compacted { .. }) => {}
            other => panic!("list at a compacted revision: {other:?}"),
        }
        // The latest values survive compaction, including ones written before it.
        let kv = b.get(key).await.unwrap().unwrap();
        assert_eq!((kv.value.as_slice(), kv.mod_revision), (&[9u8][..], rev));
        assert!(b.get("/registry/leases/ns/quiet").await.unwrap().is_some());
        // Watching and listing from the compaction point still work.
        let mut w = b.watch("/registry/leases/", quiet).await.unwrap();
        let r = b.update(key, vec![10], rev).await.unwrap();
        assert_eq!(next(&mut w).await.revision(), r);
        let list = b
            .list("/registry/leases/", None, None, Some(quiet))
            .await
            .unwrap();
        assert_eq!(list.items.len(), 2);
        assert_eq!(list.items[0].value, [9]);
    }

    pub async fn concurrent_writers(b: Arc<dyn Backend>) {
        const TASKS: u32 = 50;
        const EACH: u32 = 4;
        let key = "/registry/counters/ns/c";
        b.create(key, b"0".to_vec()).await.unwrap();
        let mut tasks = Vec::new();
        for _ in 0..TASKS {
            let b = b.clone();
            tasks.push(tokio::spawn(async move {
                let mut conflicts = 0u32;
                for _ in 0..EACH {
                    loop {
                        let kv = b.get(key).await.unwrap().unwrap();
                        let n: u32 = String::from_utf8(kv.value).unwrap().parse().unwrap();
                        let value = (n + 1).to_string().into_bytes();
                        match b.update(key, value, kv.mod_revision).await {
                            Ok(_) => break,
                            Err(StoreError::Conflict { .. }) => conflicts += 1,
                            Err(e) => panic!("update: {e}"),
                        }
                    }
                }
                conflicts
            }));
        }
        let mut conflicts = 0;
        for t in tasks {
            conflicts += t.await.unwrap();
        }
        let kv = b.get(key).await.unwrap().unwrap();
        assert_eq!(
            String::from_utf8(kv.value).unwrap(),
            (TASKS * EACH).to_string()
        );
        println!("{} increments, {conflicts} conflicts retried", TASKS * EACH);
    }
}

async fn next(w: &mut EventStream) -> Event {
    match tokio::time::timeout(Duration::from_secs(10), w.next()).await {
        Ok(Some(Ok(ev))) => ev,
        other => panic!("expected a watch event, got {other:?}"),
    }
}

/// Instantiates every suite function as a `#[tokio::test]` against the backend that `$make`
/// builds (an async expression yielding `Option<Fixture>`; `None` skips the test).
macro_rules! conformance {
    ($name:ident, $make:expr) => {
        mod $name {
            use super::*;
            conformance!(@tests $make; create_get, update_conflict, delete_expected,
                revisions_shared_and_increasing, prefix_isolation, list_paging,
                watch_history_then_live, watch_after_compaction, concurrent_writers);
        }
    };
    (@tests $make:expr; $($test:ident),*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $test() {
                let Some(fixture) = $make.await else { return };
                suite::$test(fixture.backend.clone()).await;
            }
        )*
    };
}

conformance!(memory, memory_fixture());
conformance!(sqlite, sqlite_fixture());
conformance!(etcd, etcd_fixture());
conformance!(cache_memory, cached(memory_fixture().await));
conformance!(cache_sqlite, cached(sqlite_fixture().await));
conformance!(cache_etcd, cached(etcd_fixture().await));
