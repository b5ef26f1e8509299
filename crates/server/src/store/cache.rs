//! `WatchCache`: the API server's in-memory view of the store, in front of a backend.
//!
//! It owns a copy of every object under its prefix (`/registry/`) and a bounded ring of the
//! most recent events, fed by one backend watch (on all of deckhand's keys, so that its
//! revision keeps up with the store's; see [`WatchCacheConfig::follow_prefix`]). It implements
//! [`Backend`] itself, so the REST layer only ever holds an `Arc<dyn Backend>`:
//!
//! - `get` and `list` at the latest revision are answered from memory, *consistently*: first
//!   the backend's current revision is read (an atomic load for SQLite, one request for etcd),
//!   then the read waits until the cache has applied that revision (kube-apiserver's
//!   "consistent reads from cache"). A client thus reads its own writes. If the cache does not
//!   catch up within `consistent_wait`, the read falls back to the backend.
//! - `list` at an explicit revision (a `continue` token, or `resourceVersion` in the past) and
//!   anything outside the prefix go to the backend, which keeps the MVCC history.
//! - writes go to the backend; the cache learns of them through its watch like any change.
//! - `watch(prefix, after)` replays from the ring and follows a broadcast of `Arc`'d events: one
//!   change costs one allocation whatever the number of watchers. An `after` older than the
//!   ring is `Compacted` (HTTP 410: the client relists).
//!
//! The feed (`Feed`, with `Phase`) is an explicit state machine: `Listing → Watching`, and
//! back to `Listing` when the backend says the cache's revision was compacted (the cache then
//! ends every open watch, whose clients resume and get 410), or `Backoff → Watching` on a
//! backend error (etcd unreachable) to resume from the last applied revision.

use std::collections::{BTreeMap, VecDeque};
use std::ops::Bound;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;

use super::live::history_then_live;
use super::{Backend, Event, EventStream, KeyValue, ListResult, Result, Revision, StoreError};

/// Tunables of [`WatchCache`].
#[derive(Debug, Clone)]
pub struct WatchCacheConfig {
    /// The keys the cache holds; reads and watches elsewhere go to the backend.
    pub prefix: String,
    /// The keys the feed watches, a prefix of `prefix` that must cover every key written to
    /// the store. A consistent read waits for the backend's current revision, which any write
    /// advances: if the feed missed writes outside `prefix`, the cache's revision would lag
    /// behind it and reads would wait (then fall back) for nothing. Events outside `prefix`
    /// only advance the cache's revision.
    pub follow_prefix: String,
    /// Events kept for watches that resume from a past revision.
    pub history: usize,
    /// Live events a slow watcher may lag behind before its stream ends with `Compacted`.
    pub watch_buffer: usize,
    /// How long a consistent read waits for the cache to catch up before asking the backend.
    pub consistent_wait: Duration,
    /// Page size of the (re)list that fills the cache.
    pub list_page: usize,
    /// Pause before re-watching after a backend error.
    pub backoff: Duration,
}

impl Default for WatchCacheConfig {
    fn default() -> Self {
        Self {
            prefix: "/registry/".into(),
            // deckhand's keys are all paths.
            follow_prefix: "/".into(),
            history: 10_000,
            watch_buffer: 4096,
            consistent_wait: Duration::from_secs(3),
            list_page: 500,
            backoff: Duration::from_secs(1),
        }
    }
}

struct State {
    /// The last revision applied.
    revision: Revision,
    /// Watches may resume from this revision or later: the ring holds every event after it.
    oldest: Revision,
    objects: BTreeMap<String, KeyValue>,
    ring: VecDeque<Arc<Event>>,
    /// Replaced on relist, which ends the streams of every watcher of the old one.
    events: broadcast::Sender<Arc<Event>>,
}

/// The watch cache; see the module doc. Dropping it stops its feed.
pub struct WatchCache {
    backend: Arc<dyn Backend>,
    config: WatchCacheConfig,
    state: Arc<RwLock<State>>,
    /// The applied revision, for waiting on it without the state lock.
    applied: watch::Receiver<Revision>,
    feed: JoinHandle<()>,
}

impl Drop for WatchCache {
    fn drop(&mut self) {
        self.feed.abort();
    }
}

impl WatchCache {
    /// Fills the cache from `backend` (a paged list at one revision) and starts following it.
    /// Returns once the cache holds that list, so its first reads need not wait.
    pub async fn start(backend: Arc<dyn Backend>, config: WatchCacheConfig) -> Result<Self> {
        if !config.prefix.starts_with(&config.follow_prefix) {
            return Err(StoreError::Backend(format!(
                "watch cache: follow_prefix {:?} must be a prefix of prefix {:?}",
                config.follow_prefix, config.prefix
            )));
        }
        let (objects, revision) = list_all(backend.as_ref(), &config).await?;
        let (events, _) = broadcast::channel(config.watch_buffer.max(1));
        let state = Arc::new(RwLock::new(State {
            revision,
            oldest: revision,
            objects,
            ring: VecDeque::new(),
            events,
        }));
        // Watch before returning: the cache must not miss what happens between its list and
        // the moment its task first runs (a compaction in that window would force a relist).
        let stream = backend.watch(&config.follow_prefix, revision).await?;
        let (applied_tx, applied) = watch::channel(revision);
        let feed = Feed {
            backend: backend.clone(),
            config: config.clone(),
            state: state.clone(),
            applied: applied_tx,
        };
        let feed = tokio::spawn(feed.run(revision, stream));
        Ok(Self {
            backend,
            config,
            state,
            applied,
            feed,
        })
    }

    /// The last revision the cache applied: cheap, for watch bookmarks.
    pub fn revision(&self) -> Revision {
        *self.applied.borrow()
    }

    fn read(&self) -> RwLockReadGuard<'_, State> {
        // Writers only insert/remove/push under the lock; a panic cannot leave it torn.
        self.state.read().unwrap_or_else(|p| p.into_inner())
    }

    fn covers(&self, prefix: &str) -> bool {
        prefix.starts_with(&self.config.prefix)
    }

    /// Waits until the cache has applied the backend's current revision. `false` when it did
    /// not within `consistent_wait` (the caller then reads from the backend).
    async fn catch_up(&self) -> Result<bool> {
        let target = self.backend.current_revision().await?;
        let mut applied = self.applied.clone();
        let wait = applied.wait_for(|r| *r >= target);
        let caught_up = matches!(
            tokio::time::timeout(self.config.consistent_wait, wait).await,
            Ok(Ok(_))
        );
        match caught_up {
            true => Ok(true),
            _ => {
                tracing::warn!(
                    target,
                    applied = self.revision(),
                    "watch cache is behind the store; serving the read from the store"
                );
                Ok(false)
            }
        }
    }
}

#[async_trait::async_trait]
impl Backend for WatchCache {
    async fn current_revision(&self) -> Result<Revision> {
        self.backend.current_revision().await
    }

    async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        if !self.covers(key) || !self.catch_up().await? {
            return self.backend.get(key).await;
        }
        Ok(self.read().objects.get(key).cloned())
    }

    async fn list(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: Option<usize>,
        revision: Option<Revision>,
    ) -> Result<ListResult> {
        if revision.is_some() || !self.covers(prefix) || !self.catch_up().await? {
            return self
                .backend
                .list(prefix, start_after, limit, revision)
                .await;
        }
        let st = self.read();
        let lower = match start_after {
            Some(s) if s >= prefix => Bound::Excluded(s),
            _ => Bound::Included(prefix),
        };
        let mut iter = st
            .objects
            .range::<str, _>((lower, Bound::Unbounded))
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(_, v)| v.clone());
        let items: Vec<KeyValue> = iter.by_ref().take(limit.unwrap_or(usize::MAX)).collect();
        let more = iter.next().is_some();
        Ok(ListResult {
            items,
            revision: st.revision,
            more,
        })
    }

    async fn create(&self, key: &str, value: Vec<u8>) -> Result<Revision> {
        self.backend.create(key, value).await
    }

    async fn update(&self, key: &str, value: Vec<u8>, expected: Revision) -> Result<Revision> {
        self.backend.update(key, value, expected).await
    }

    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<KeyValue> {
        self.backend.delete(key, expected).await
    }

    async fn watch(&self, prefix: &str, after: Revision) -> Result<EventStream> {
        if !self.covers(prefix) {
            return self.backend.watch(prefix, after).await;
        }
        let st = self.read();
        if after < st.oldest {
            return Err(StoreError::Compacted {
                requested: after,
                compacted: st.oldest,
            });
        }
        // Under the lock, which the feed holds while it applies and sends: the ring copy and
        // the subscription meet exactly.
        let rx = st.events.subscribe();
        let start = st.ring.partition_point(|ev| ev.revision() <= after);
        let history: Vec<Event> = st
            .ring
            .range(start..)
            .filter(|ev| ev.kv().key.starts_with(prefix))
            .map(|ev| (**ev).clone())
            .collect();
        drop(st);
        Ok(history_then_live(prefix, after, history, rx))
    }

    async fn compact(&self, revision: Revision) -> Result<()> {
        self.backend.compact(revision).await?;
        // The cache forgets the same history, so that every backend behaves alike.
        let mut st = self.state.write().unwrap_or_else(|p| p.into_inner());
        while st.ring.front().is_some_and(|ev| ev.revision() <= revision) {
            st.ring.pop_front();
        }
        // Even if the feed has not applied `revision` yet: no watch may start at or below it.
        st.oldest = st.oldest.max(revision);
        Ok(())
    }
}

/// Every object under the cache's prefix, read page by page at one revision.
async fn list_all(
    backend: &dyn Backend,
    config: &WatchCacheConfig,
) -> Result<(BTreeMap<String, KeyValue>, Revision)> {
    let mut objects = BTreeMap::new();
    let mut at = None;
    let mut after: Option<String> = None;
    loop {
        let page = backend
            .list(
                &config.prefix,
                after.as_deref(),
                Some(config.list_page.max(1)),
                at,
            )
            .await?;
        at = Some(page.revision);
        after = page.items.last().map(|kv| kv.key.clone());
        for kv in page.items {
            objects.insert(kv.key.clone(), kv);
        }
        if !page.more {
            return Ok((objects, page.revision));
        }
    }
}

/// Where the feed is; see the module doc for the transitions.
enum Phase {
    /// Fill the cache again from a list (start, or after the backend compacted our revision).
    Listing,
    /// Follow the backend from this revision.
    Watching(Revision),
    /// The backend failed; resume watching from this revision after a pause.
    Backoff(Revision),
}

/// The task that keeps the cache in step with the backend.
struct Feed {
    backend: Arc<dyn Backend>,
    config: WatchCacheConfig,
    state: Arc<RwLock<State>>,
    applied: watch::Sender<Revision>,
}

impl Feed {
    fn write(&self) -> RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|p| p.into_inner())
    }

    async fn run(self, from: Revision, stream: EventStream) {
        let mut phase = self.follow(from, Some(stream)).await;
        loop {
            phase = match phase {
                Phase::Listing => match list_all(self.backend.as_ref(), &self.config).await {
                    Ok((objects, revision)) => {
                        self.replace(objects, revision);
                        Phase::Watching(revision)
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "watch cache: relist failed; retrying");
                        tokio::time::sleep(self.config.backoff).await;
                        Phase::Listing
                    }
                },
                Phase::Watching(from) => self.follow(from, None).await,
                Phase::Backoff(from) => {
                    tokio::time::sleep(self.config.backoff).await;
                    Phase::Watching(from)
                }
            }
        }
    }

    /// Applies the backend's events until its stream breaks; says what to do next.
    async fn follow(&self, from: Revision, stream: Option<EventStream>) -> Phase {
        let stream = match stream {
            Some(s) => Ok(s),
            None => self.backend.watch(&self.config.follow_prefix, from).await,
        };
        let mut stream = match stream {
            Ok(s) => s,
            Err(StoreError::Compacted { .. }) => return Phase::Listing,
            Err(e) => {
                tracing::warn!(error = %e, from, "watch cache: cannot watch the store; retrying");
                return Phase::Backoff(from);
            }
        };
        let mut last = from;
        loop {
            match stream.next().await {
                Some(Ok(ev)) => {
                    last = ev.revision();
                    self.apply(ev);
                }
                Some(Err(StoreError::Compacted { .. })) => {
                    tracing::warn!(
                        last,
                        "watch cache fell behind the store's history; relisting"
                    );
                    return Phase::Listing;
                }
                Some(Err(e)) => {
                    tracing::warn!(error = %e, last, "watch cache: store watch failed; resuming");
                    return Phase::Backoff(last);
                }
                None => return Phase::Backoff(last),
            }
        }
    }

    fn apply(&self, ev: Event) {
        let revision = {
            let mut st = self.write();
            st.revision = st.revision.max(ev.revision());
            if !ev.kv().key.starts_with(&self.config.prefix) {
                let revision = st.revision;
                drop(st);
                self.applied.send_replace(revision);
                return;
            }
            match &ev {
                Event::Put { kv, .. } => {
                    st.objects.insert(kv.key.clone(), kv.clone());
                }
                Event::Deleted { kv } => {
                    st.objects.remove(&kv.key);
                }
            }
            let ev = Arc::new(ev);
            st.ring.push_back(ev.clone());
            while st.ring.len() > self.config.history {
                if let Some(old) = st.ring.pop_front() {
                    st.oldest = old.revision();
                }
            }
            // No receivers is fine: nobody is watching.
            let _ = st.events.send(ev);
            st.revision
        };
        self.applied.send_replace(revision);
    }

    fn replace(&self, objects: BTreeMap<String, KeyValue>, revision: Revision) {
        {
            let mut st = self.write();
            st.objects = objects;
            st.revision = revision;
            st.oldest = revision;
            st.ring.clear();
            // The events between the old revision and this one are unknown: end every open
            // watch (its client resumes from its revision and is told 410 Gone).
            let (events, _) = broadcast::channel(self.config.watch_buffer.max(1));
            st.events = events;
        }
        self.applied.send_replace(revision);
    }
}
