//! Fixtures shared by the store tests: a fresh backend of each kind, kept alive with whatever
//! it needs (temp dir, etcd process) until the test drops it.
#![allow(dead_code)]

use std::any::Any;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use deckhand_server::store::{
    Backend, EtcdBackend, MemoryBackend, SqliteBackend, StoreError, WatchCache, WatchCacheConfig,
};

pub struct Fixture {
    pub backend: Arc<dyn Backend>,
    /// Dropped after the backend: temp dirs, child processes.
    pub _guard: Box<dyn Any + Send>,
}

pub async fn memory_fixture() -> Option<Fixture> {
    Some(Fixture {
        backend: Arc::new(MemoryBackend::default()),
        _guard: Box::new(()),
    })
}

pub async fn sqlite_fixture() -> Option<Fixture> {
    let dir = tempfile::tempdir().expect("temp dir");
    let backend = SqliteBackend::open(dir.path().join("state.db")).expect("open sqlite store");
    Some(Fixture {
        backend: Arc::new(backend),
        _guard: Box::new(dir),
    })
}

pub async fn etcd_fixture() -> Option<Fixture> {
    let etcd = Etcd::start().await?;
    let backend = EtcdBackend::connect(&[etcd.endpoint.as_str()])
        .await
        .expect("connect to etcd");
    Some(Fixture {
        backend: Arc::new(backend),
        _guard: Box::new(etcd),
    })
}

const ETCD: &str = "/usr/bin/etcd";

/// A throwaway single-member etcd on free local ports and a temp data dir; killed on drop.
pub struct Etcd {
    pub endpoint: String,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Etcd {
    /// `None` (after saying so) when etcd is not installed; CI installs it (etcd-server).
    pub async fn start() -> Option<Etcd> {
        if !Path::new(ETCD).exists() {
            eprintln!("SKIPPED: {ETCD} is absent (install the Debian package etcd-server)");
            return None;
        }
        let dir = tempfile::tempdir().expect("temp dir");
        let (client, peer) = (free_port(), free_port());
        let endpoint = format!("http://127.0.0.1:{client}");
        let peer_url = format!("http://127.0.0.1:{peer}");
        let log = std::fs::File::create(dir.path().join("etcd.log")).expect("etcd log");
        let child = Command::new(ETCD)
            .arg("--name=default")
            .arg(format!("--data-dir={}", dir.path().join("data").display()))
            .arg(format!("--listen-client-urls={endpoint}"))
            .arg(format!("--advertise-client-urls={endpoint}"))
            .arg(format!("--listen-peer-urls={peer_url}"))
            .arg(format!("--initial-advertise-peer-urls={peer_url}"))
            .arg(format!("--initial-cluster=default={peer_url}"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn etcd");
        let etcd = Etcd {
            endpoint,
            child,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(b) = EtcdBackend::connect(&[etcd.endpoint.as_str()]).await {
                if b.current_revision().await.is_ok() {
                    return Some(etcd);
                }
            }
            if Instant::now() > deadline {
                let log = std::fs::read_to_string(etcd._dir.path().join("etcd.log"));
                panic!(
                    "etcd did not start within 20 s; its log:\n{}",
                    log.unwrap_or_default()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    l.local_addr().expect("local addr").port()
}

/// The watch cache over a fresh backend from `inner`.
pub async fn cached(inner: Option<Fixture>) -> Option<Fixture> {
    let inner = inner?;
    let config = WatchCacheConfig::default();
    let cache = WatchCache::start(inner.backend.clone(), config)
        .await
        .expect("start watch cache");
    Some(Fixture {
        backend: Arc::new(cache),
        _guard: Box::new(inner),
    })
}

/// Drives `store` at 200 get+update/s for 10 s (100 objects of 2 kB, round-robin, retrying on
/// conflict like a client), prints p50/p99/max of the mutation latency and returns the p99.
pub async fn write_latency(what: &str, store: Arc<dyn Backend>) -> Duration {
    for i in 0..100 {
        let key = format!("/registry/pods/ns/p{i}");
        store.create(&key, vec![b'x'; 2000]).await.expect("create");
    }
    let mut tick = tokio::time::interval(Duration::from_millis(5));
    let mut tasks = Vec::new();
    for n in 0..2000usize {
        tick.tick().await;
        let store = store.clone();
        let key = format!("/registry/pods/ns/p{}", n % 100);
        tasks.push(tokio::spawn(async move {
            let start = Instant::now();
            let kv = store.get(&key).await.expect("get").expect("object");
            let mut expected = kv.mod_revision;
            loop {
                match store.update(&key, vec![b'y'; 2000], expected).await {
                    Ok(_) => break,
                    Err(StoreError::Conflict { current, .. }) => expected = current,
                    Err(e) => panic!("{e}"),
                }
            }
            start.elapsed()
        }));
    }
    let mut lat = Vec::new();
    for t in tasks {
        lat.push(t.await.expect("writer task"));
    }
    lat.sort();
    let p = |q: f64| lat[((lat.len() as f64 * q) as usize).min(lat.len() - 1)];
    println!(
        "{what}: get+update at 200/s: p50 {:?} p99 {:?} max {:?} ({} writes)",
        p(0.5),
        p(0.99),
        lat[lat.len() - 1],
        lat.len()
    );
    p(0.99)
}
