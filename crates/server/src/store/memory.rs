//! `MemoryBackend`: the whole store in process memory, for unit tests of the layers above
//! the store (REST handlers, controllers) and as the reference the conformance suite is
//! written against.
//!
//! The current values live in a `BTreeMap` (bytewise key order, so prefix ranges are cheap);
//! every write also appends a record of (key, previous value, new value) to a bounded history.
//! That history serves three things: watch-from-revision, lists at an older revision (the old
//! state is the current one with the newer records undone), and compaction (dropping the
//! oldest records). Nothing survives the process: this backend is not durable.

use std::collections::{BTreeMap, VecDeque};
use std::ops::Bound;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::broadcast;

use super::live::history_then_live;
use super::{Backend, Event, EventStream, KeyValue, ListResult, Result, Revision, StoreError};

/// Tunables of [`MemoryBackend`].
#[derive(Debug, Clone)]
pub struct MemoryConfig {
    /// Most history records kept; older ones are compacted away automatically, so a watch or
    /// a list older than that gets `Compacted`.
    pub max_history: usize,
    /// Live events a slow watcher may lag behind before its stream ends with `Compacted`.
    pub watch_buffer: usize,
}

impl Default for MemoryConfig {
    fn default() -> Self {
        Self {
            max_history: 10_000,
            watch_buffer: 4096,
        }
    }
}

/// One write: enough to replay it as an event and to undo it for reads at older revisions.
#[derive(Debug, Clone)]
struct Record {
    revision: Revision,
    key: String,
    prev: Option<KeyValue>,
    /// `None` for a delete.
    new: Option<KeyValue>,
}

impl Record {
    fn event(&self) -> Event {
        match (&self.new, &self.prev) {
            (Some(kv), prev) => Event::Put {
                kv: kv.clone(),
                prev: prev.clone(),
            },
            (None, Some(prev)) => Event::Deleted {
                kv: KeyValue {
                    mod_revision: self.revision,
                    ..prev.clone()
                },
            },
            // A delete always has a previous value; an empty record is never stored.
            (None, None) => unreachable!("history record of {} without a value", self.key),
        }
    }
}

#[derive(Debug, Default)]
struct State {
    revision: Revision,
    /// History at and below this revision is gone.
    compacted: Revision,
    current: BTreeMap<String, KeyValue>,
    history: VecDeque<Record>,
}

/// An in-memory [`Backend`]. Cheap to create; every instance is its own store.
pub struct MemoryBackend {
    config: MemoryConfig,
    state: Mutex<State>,
    // Sent to while the state lock is held, so that a watcher that subscribes under the lock
    // sees exactly the writes after the history it copied.
    events: broadcast::Sender<Arc<Event>>,
}

impl Default for MemoryBackend {
    fn default() -> Self {
        Self::new(MemoryConfig::default())
    }
}

impl MemoryBackend {
    pub fn new(config: MemoryConfig) -> Self {
        let (events, _) = broadcast::channel(config.watch_buffer.max(1));
        Self {
            config,
            state: Mutex::new(State::default()),
            events,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the map half-written (every mutation is
        // a single insert/remove plus a push), so a poisoned lock is still consistent.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Applies one write under the lock: bumps the revision, records history, notifies.
    fn commit(&self, st: &mut State, key: &str, new_value: Option<Vec<u8>>) -> KeyValue {
        st.revision += 1;
        let revision = st.revision;
        let prev = st.current.get(key).cloned();
        let new = new_value.map(|value| KeyValue {
            key: key.to_owned(),
            value,
            create_revision: prev.as_ref().map_or(revision, |p| p.create_revision),
            mod_revision: revision,
        });
        match &new {
            Some(kv) => st.current.insert(key.to_owned(), kv.clone()),
            None => st.current.remove(key),
        };
        let record = Record {
            revision,
            key: key.to_owned(),
            prev: prev.clone(),
            new: new.clone(),
        };
        let event = record.event();
        st.history.push_back(record);
        while st.history.len() > self.config.max_history {
            if let Some(old) = st.history.pop_front() {
                st.compacted = old.revision;
            }
        }
        // No receivers is fine: nobody is watching.
        let _ = self.events.send(Arc::new(event.clone()));
        event.kv().clone()
    }

    /// The state of the keys under `prefix` at `revision`, from the current state with the
    /// newer records undone. Only called with `compacted <= revision <= st.revision`.
    fn state_at(st: &State, prefix: &str, revision: Revision) -> BTreeMap<String, KeyValue> {
        let mut map: BTreeMap<String, KeyValue> = st
            .current
            .range::<str, _>((Bound::Included(prefix), Bound::Unbounded))
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        for rec in st
            .history
            .iter()
            .rev()
            .take_while(|r| r.revision > revision)
        {
            if !rec.key.starts_with(prefix) {
                continue;
            }
            match &rec.prev {
                Some(prev) => map.insert(rec.key.clone(), prev.clone()),
                None => map.remove(&rec.key),
            };
        }
        map
    }
}

fn page(
    map: &BTreeMap<String, KeyValue>,
    prefix: &str,
    start_after: Option<&str>,
    limit: Option<usize>,
) -> (Vec<KeyValue>, bool) {
    let lower = match start_after {
        Some(s) if s >= prefix => Bound::Excluded(s),
        _ => Bound::Included(prefix),
    };
    let mut iter = map
        .range::<str, _>((lower, Bound::Unbounded))
        .take_while(|(k, _)| k.starts_with(prefix))
        .map(|(_, v)| v.clone());
    let limit = limit.unwrap_or(usize::MAX);
    let items: Vec<KeyValue> = iter.by_ref().take(limit).collect();
    let more = iter.next().is_some();
    (items, more)
}

#[async_trait::async_trait]
impl Backend for MemoryBackend {
    async fn current_revision(&self) -> Result<Revision> {
        Ok(self.lock().revision)
    }

    async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        Ok(self.lock().current.get(key).cloned())
    }

    async fn list(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: Option<usize>,
        revision: Option<Revision>,
    ) -> Result<ListResult> {
        let st = self.lock();
        match revision {
            None => {
                let (items, more) = page(&st.current, prefix, start_after, limit);
                Ok(ListResult {
                    items,
                    revision: st.revision,
                    more,
                })
            }
            Some(rev) if rev > st.revision => Err(StoreError::FutureRevision {
                requested: rev,
                current: st.revision,
            }),
            Some(rev) if rev < st.compacted => Err(StoreError::Compacted {
                requested: rev,
                compacted: st.compacted,
            }),
            Some(rev) => {
                let map = Self::state_at(&st, prefix, rev);
                let (items, more) = page(&map, prefix, start_after, limit);
                Ok(ListResult {
                    items,
                    revision: rev,
                    more,
                })
            }
        }
    }

    async fn create(&self, key: &str, value: Vec<u8>) -> Result<Revision> {
        let mut st = self.lock();
        if st.current.contains_key(key) {
            return Err(StoreError::AlreadyExists(key.to_owned()));
        }
        Ok(self.commit(&mut st, key, Some(value)).mod_revision)
    }

    async fn update(&self, key: &str, value: Vec<u8>, expected: Revision) -> Result<Revision> {
        let mut st = self.lock();
        let current = match st.current.get(key) {
            None => return Err(StoreError::NotFound(key.to_owned())),
            Some(kv) => kv.mod_revision,
        };
        if current != expected {
            return Err(StoreError::Conflict {
                key: key.to_owned(),
                expected,
                current,
            });
        }
        Ok(self.commit(&mut st, key, Some(value)).mod_revision)
    }

    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<KeyValue> {
        let mut st = self.lock();
        let current = match st.current.get(key) {
            None => return Err(StoreError::NotFound(key.to_owned())),
            Some(kv) => kv.mod_revision,
        };
        if let Some(expected) = expected.filter(|e| *e != current) {
            return Err(StoreError::Conflict {
                key: key.to_owned(),
                expected,
                current,
            });
        }
        Ok(self.commit(&mut st, key, None))
    }

    async fn watch(&self, prefix: &str, after: Revision) -> Result<EventStream> {
        let st = self.lock();
        if after < st.compacted {
            return Err(StoreError::Compacted {
                requested: after,
                compacted: st.compacted,
            });
        }
        let rx = self.events.subscribe();
        let history: Vec<Event> = st
            .history
            .iter()
            .filter(|r| r.revision > after && r.key.starts_with(prefix))
            .map(Record::event)
            .collect();
        drop(st);
        Ok(history_then_live(prefix, after, history, rx))
    }

    async fn compact(&self, revision: Revision) -> Result<()> {
        let mut st = self.lock();
        if revision > st.revision {
            return Err(StoreError::FutureRevision {
                requested: revision,
                current: st.revision,
            });
        }
        while st.history.front().is_some_and(|r| r.revision <= revision) {
            st.history.pop_front();
        }
        st.compacted = st.compacted.max(revision);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use futures::StreamExt;

    use super::*;

    #[tokio::test]
    async fn old_revision_list_undoes_newer_writes() {
        let b = MemoryBackend::default();
        let r1 = b.create("/a/1", b"one".to_vec()).await.unwrap();
        let r2 = b.update("/a/1", b"uno".to_vec(), r1).await.unwrap();
        b.create("/a/2", b"two".to_vec()).await.unwrap();
        b.delete("/a/1", Some(r2)).await.unwrap();
        let at1 = b.list("/a/", None, None, Some(r1)).await.unwrap();
        assert_eq!(at1.items.len(), 1);
        assert_eq!(at1.items[0].value, b"one");
        let at2 = b.list("/a/", None, None, Some(r2)).await.unwrap();
        assert_eq!(at2.items[0].value, b"uno");
        assert_eq!(at2.items[0].create_revision, r1);
        let now = b.list("/a/", None, None, None).await.unwrap();
        assert_eq!(now.items.len(), 1);
        assert_eq!(now.items[0].key, "/a/2");
    }

    #[tokio::test]
    async fn bounded_history_compacts_itself() {
        let b = MemoryBackend::new(MemoryConfig {
            max_history: 3,
            watch_buffer: 16,
        });
        for i in 0..5 {
            b.create(&format!("/k/{i}"), vec![]).await.unwrap();
        }
        assert!(matches!(
            b.watch("/k/", 0).await,
            Err(StoreError::Compacted { .. })
        ));
        let mut w = b.watch("/k/", 2).await.unwrap();
        assert_eq!(w.next().await.unwrap().unwrap().revision(), 3);
    }
}
