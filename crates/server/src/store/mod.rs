//! The API server's storage: a revisioned key-value store in the shape of etcd v3.
//!
//! Objects are JSON values under `/registry/<resource>/<namespace>/<name>` (cluster-scoped:
//! `/registry/<resource>/<name>`). Every write bumps one global revision; an object's
//! `mod_revision` is its `metadata.resourceVersion`. Two backends implement [`Backend`]:
//! embedded SQLite (default) and etcd v3. The watch cache sits above a backend and serves
//! lists and watches from memory; the REST layer only ever talks to the watch cache.

pub mod cache;
pub mod etcd;
mod live;
pub mod memory;
pub mod sqlite;

pub use cache::{WatchCache, WatchCacheConfig};
pub use etcd::EtcdBackend;
pub use memory::{MemoryBackend, MemoryConfig};
pub use sqlite::{Durability, SqliteBackend, SqliteConfig};

use std::pin::Pin;

use futures::Stream;

/// A store revision: the resourceVersion of the object that a write produced.
pub type Revision = i64;

/// One stored object as the backend sees it: key, JSON bytes and the revisions that wrote it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    pub key: String,
    pub value: Vec<u8>,
    /// Revision of the write that created the key (unchanged by updates).
    pub create_revision: Revision,
    /// Revision of the last write to the key: the object's resourceVersion.
    pub mod_revision: Revision,
}

/// A change seen by a watch. `Deleted` carries the last value before the delete and the
/// delete's own revision in `kv.mod_revision`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Put {
        kv: KeyValue,
        prev: Option<KeyValue>,
    },
    Deleted {
        kv: KeyValue,
    },
}

impl Event {
    pub fn kv(&self) -> &KeyValue {
        match self {
            Event::Put { kv, .. } | Event::Deleted { kv } => kv,
        }
    }
    pub fn revision(&self) -> Revision {
        self.kv().mod_revision
    }
}

/// A page of a range read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListResult {
    pub items: Vec<KeyValue>,
    /// The store revision the list was read at (the list's resourceVersion).
    pub revision: Revision,
    /// More keys follow the last returned one (for `limit`/`continue`).
    pub more: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("key {0} not found")]
    NotFound(String),
    #[error("key {0} already exists")]
    AlreadyExists(String),
    /// Optimistic concurrency failed: the caller's revision is not the key's current one.
    #[error("key {key}: revision {expected} is stale (current {current})")]
    Conflict {
        key: String,
        expected: Revision,
        current: Revision,
    },
    /// The requested revision was compacted away: the client must relist (HTTP 410 Gone).
    #[error("revision {requested} has been compacted (oldest available {compacted})")]
    Compacted {
        requested: Revision,
        compacted: Revision,
    },
    /// The requested revision is newer than the store's: a client from the future (HTTP 504/500
    /// upstream: "Too large resource version").
    #[error("revision {requested} is newer than the store's current revision {current}")]
    FutureRevision {
        requested: Revision,
        current: Revision,
    },
    #[error("storage backend: {0}")]
    Backend(String),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// A stream of watch events, in revision order, without gaps for the watched prefix.
/// It ends with `Err(Compacted)` when the watcher fell too far behind to be served.
pub type EventStream = Pin<Box<dyn Stream<Item = Result<Event>> + Send>>;

/// A revisioned key-value store with etcd v3 semantics.
///
/// All writes are linearizable and durable when they return (a kill -9 right after loses
/// nothing acknowledged). Keys are compared bytewise; prefixes end with `/`.
#[async_trait::async_trait]
pub trait Backend: Send + Sync + 'static {
    /// The current store revision (0 for an empty store that was never written).
    async fn current_revision(&self) -> Result<Revision>;

    async fn get(&self, key: &str) -> Result<Option<KeyValue>>;

    /// Keys under `prefix` in key order, strictly after `start_after` when given, at most
    /// `limit` of them when given. `revision` reads at an older revision (for a `continue`
    /// token); `None` reads the latest. Errors with `Compacted` when that is gone.
    async fn list(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: Option<usize>,
        revision: Option<Revision>,
    ) -> Result<ListResult>;

    /// Create `key`; `AlreadyExists` when it is present. Returns the new revision.
    async fn create(&self, key: &str, value: Vec<u8>) -> Result<Revision>;

    /// Replace `key` if its `mod_revision` is still `expected`; `Conflict` otherwise,
    /// `NotFound` when absent. Returns the new revision.
    async fn update(&self, key: &str, value: Vec<u8>, expected: Revision) -> Result<Revision>;

    /// Delete `key`, only if its `mod_revision` equals `expected` when given. Returns the
    /// deleted value, whose `mod_revision` is the delete's revision.
    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<KeyValue>;

    /// Events for keys under `prefix` with revision > `after`, first the historical ones the
    /// store still has, then live ones. `Compacted` when `after` is older than the oldest
    /// retained revision.
    async fn watch(&self, prefix: &str, after: Revision) -> Result<EventStream>;

    /// Forget history at and below `revision` (the latest value of every key is kept).
    async fn compact(&self, revision: Revision) -> Result<()>;
}
