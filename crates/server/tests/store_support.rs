//! Fixtures shared by the store tests: a fresh backend of each kind, kept alive with whatever
//! it needs (temp dir, etcd process) until the test drops it.
#![allow(dead_code)]

use std::any::Any;
use std::sync::Arc;

use deckhand_server::store::{Backend, MemoryBackend, SqliteBackend};

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
