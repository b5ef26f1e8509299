//! `EtcdBackend`: the store on an etcd v3 cluster, for control planes with several API
//! servers. Every operation maps onto one etcd request, so etcd's own linearizability,
//! revisions and compaction are the store's: a key's `mod_revision` is etcd's.
//!
//! Conditional writes are single transactions: create = `create_revision == 0 → put`, update =
//! `mod_revision == expected ∧ version > 0 → put, else get` (the `else` branch tells a conflict
//! from a missing key without a second round trip), delete likewise. Watches are etcd watches
//! from `after + 1` with `prev_kv`, so a delete event still carries the last value.
//!
//! One difference from the embedded store: a fresh etcd is at revision 1, not 0.

use std::collections::VecDeque;

use etcd_client::{
    Client, CompactionOptions, Compare, CompareOp, DeleteOptions, EventType, GetOptions, KvClient,
    Txn, TxnOp, TxnOpResponse, WatchClient, WatchOptions, WatchResponse, WatchStream, Watcher,
};
use futures::StreamExt;

use super::{Backend, Event, EventStream, KeyValue, ListResult, Result, Revision, StoreError};

/// An etcd v3 [`Backend`]. Cheap to share: etcd clients multiplex one HTTP/2 connection.
#[derive(Clone)]
pub struct EtcdBackend {
    /// Holds the connection's endpoint list open; requests go through the two clients below.
    _client: Client,
    kv: KvClient,
    watches: WatchClient,
    /// For error messages: which etcd failed.
    endpoints: String,
}

impl EtcdBackend {
    /// Connects to the etcd cluster at `endpoints` (`http://host:port`, or `host:port`).
    pub async fn connect<S: AsRef<str>>(endpoints: &[S]) -> Result<Self> {
        let names = endpoints
            .iter()
            .map(|e| e.as_ref())
            .collect::<Vec<_>>()
            .join(",");
        let client = Client::connect(endpoints, None)
            .await
            .map_err(|e| StoreError::Backend(format!("etcd {names}: cannot connect: {e}")))?;
        // No response size limit (tonic's default is 4 MiB): a list page of large objects or
        // a watch response with many events must not fail; etcd bounds each object itself.
        let kv = client.kv_client().max_decoding_message_size(usize::MAX);
        let watches = client.watch_client().max_decoding_message_size(usize::MAX);
        Ok(Self {
            _client: client,
            kv,
            watches,
            endpoints: names,
        })
    }

    fn err(&self, what: &str) -> impl Fn(etcd_client::Error) -> StoreError + '_ {
        let what = what.to_owned();
        move |e| StoreError::Backend(format!("etcd {}: {what}: {e}", self.endpoints))
    }

    /// etcd answers a read or compaction at an unusable revision with `OutOfRange`, both for
    /// "compacted" and "in the future"; the current revision tells which (no message parsing).
    async fn out_of_range(
        &self,
        e: etcd_client::Error,
        requested: Revision,
        what: &str,
    ) -> StoreError {
        let is_range =
            matches!(&e, etcd_client::Error::GRpcStatus(s) if s.code() == tonic::Code::OutOfRange);
        if !is_range {
            return self.err(what)(e);
        }
        match self.current_revision().await {
            Ok(current) if requested > current => StoreError::FutureRevision { requested, current },
            // etcd does not say how far it compacted; `requested + 1` is the least it can be.
            Ok(_) => StoreError::Compacted {
                requested,
                compacted: requested + 1,
            },
            Err(other) => other,
        }
    }
}

fn kv_of(kv: &etcd_client::KeyValue) -> Result<KeyValue> {
    let key = kv
        .key_str()
        .map_err(|e| StoreError::Backend(format!("etcd: key is not UTF-8: {e}")))?
        .to_owned();
    Ok(KeyValue {
        key,
        value: kv.value().to_vec(),
        create_revision: kv.create_revision(),
        mod_revision: kv.mod_revision(),
    })
}

/// The first key of a `get` inside a transaction's else branch.
fn else_get(resp: &etcd_client::TxnResponse) -> Option<etcd_client::KeyValue> {
    resp.op_responses().into_iter().find_map(|op| match op {
        TxnOpResponse::Get(g) => g.kvs().first().cloned(),
        _ => None,
    })
}

fn txn_revision(resp: &etcd_client::TxnResponse) -> Revision {
    resp.header().map_or(0, |h| h.revision())
}

#[async_trait::async_trait]
impl Backend for EtcdBackend {
    async fn current_revision(&self) -> Result<Revision> {
        // Any read carries the store revision in its header; a count-only read of one key
        // is the cheapest.
        let opts = GetOptions::new().with_count_only();
        let resp = self
            .kv
            .clone()
            .get("/", Some(opts))
            .await
            .map_err(self.err("read revision"))?;
        Ok(resp.header().map_or(0, |h| h.revision()))
    }

    async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        let resp = self
            .kv
            .clone()
            .get(key, None)
            .await
            .map_err(self.err(key))?;
        resp.kvs().first().map(kv_of).transpose()
    }

    async fn list(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: Option<usize>,
        revision: Option<Revision>,
    ) -> Result<ListResult> {
        // The range [from, end of prefix): `start_after` + NUL is the first key after it.
        let from = match start_after {
            Some(s) if s >= prefix => format!("{s}\0"),
            _ => prefix.to_owned(),
        };
        let mut opts = GetOptions::new().with_range(prefix_end(prefix));
        if let Some(l) = limit {
            opts = opts.with_limit(l as i64);
        }
        if let Some(r) = revision {
            opts = opts.with_revision(r);
        }
        let resp = match self.kv.clone().get(from, Some(opts)).await {
            Ok(resp) => resp,
            Err(e) => return Err(self.out_of_range(e, revision.unwrap_or(0), prefix).await),
        };
        let items = resp.kvs().iter().map(kv_of).collect::<Result<Vec<_>>>()?;
        let header_rev = resp.header().map_or(0, |h| h.revision());
        Ok(ListResult {
            items,
            revision: revision.unwrap_or(header_rev),
            more: resp.more(),
        })
    }

    async fn create(&self, key: &str, value: Vec<u8>) -> Result<Revision> {
        let txn = Txn::new()
            .when([Compare::create_revision(key, CompareOp::Equal, 0)])
            .and_then([TxnOp::put(key, value, None)]);
        let resp = self.kv.clone().txn(txn).await.map_err(self.err(key))?;
        if !resp.succeeded() {
            return Err(StoreError::AlreadyExists(key.to_owned()));
        }
        Ok(txn_revision(&resp))
    }

    async fn update(&self, key: &str, value: Vec<u8>, expected: Revision) -> Result<Revision> {
        // `version > 0`: a missing key has mod_revision 0, which must not pass for expected 0.
        let txn = Txn::new()
            .when([
                Compare::mod_revision(key, CompareOp::Equal, expected),
                Compare::version(key, CompareOp::Greater, 0),
            ])
            .and_then([TxnOp::put(key, value, None)])
            .or_else([TxnOp::get(key, None)]);
        let resp = self.kv.clone().txn(txn).await.map_err(self.err(key))?;
        if resp.succeeded() {
            return Ok(txn_revision(&resp));
        }
        Err(match else_get(&resp) {
            None => StoreError::NotFound(key.to_owned()),
            Some(kv) => StoreError::Conflict {
                key: key.to_owned(),
                expected,
                current: kv.mod_revision(),
            },
        })
    }

    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<KeyValue> {
        let mut when = vec![Compare::version(key, CompareOp::Greater, 0)];
        if let Some(expected) = expected {
            when.push(Compare::mod_revision(key, CompareOp::Equal, expected));
        }
        let txn = Txn::new()
            .when(when)
            .and_then([TxnOp::delete(
                key,
                Some(DeleteOptions::new().with_prev_key()),
            )])
            .or_else([TxnOp::get(key, None)]);
        let resp = self.kv.clone().txn(txn).await.map_err(self.err(key))?;
        if !resp.succeeded() {
            return Err(match (else_get(&resp), expected) {
                (Some(kv), Some(expected)) => StoreError::Conflict {
                    key: key.to_owned(),
                    expected,
                    current: kv.mod_revision(),
                },
                _ => StoreError::NotFound(key.to_owned()),
            });
        }
        let prev = resp.op_responses().into_iter().find_map(|op| match op {
            TxnOpResponse::Delete(d) => d.prev_kvs().first().cloned(),
            _ => None,
        });
        let prev = prev.ok_or_else(|| {
            StoreError::Backend(format!(
                "etcd {}: delete of {key} returned no value",
                self.endpoints
            ))
        })?;
        Ok(KeyValue {
            mod_revision: txn_revision(&resp),
            ..kv_of(&prev)?
        })
    }

    async fn watch(&self, prefix: &str, after: Revision) -> Result<EventStream> {
        let opts = WatchOptions::new()
            .with_range(prefix_end(prefix))
            .with_start_revision(after + 1)
            .with_prev_key();
        let (watcher, stream) = self
            .watches
            .clone()
            .watch(prefix, Some(opts))
            .await
            .map_err(self.err(prefix))?;
        let state = WatchState {
            watcher,
            stream,
            pending: VecDeque::new(),
            after,
            endpoints: self.endpoints.clone(),
            done: false,
        };
        Ok(futures::stream::unfold(state, WatchState::next).boxed())
    }

    async fn compact(&self, revision: Revision) -> Result<()> {
        // Physical: return only once the history is really gone, so a watch or list at a
        // compacted revision fails right after (what the contract and the tests expect).
        let opts = CompactionOptions::new().with_physical();
        match self.kv.clone().compact(revision, Some(opts)).await {
            Ok(_) => Ok(()),
            // Compacting at or below the last compaction is a no-op, as in the other backends.
            Err(e) => match self.out_of_range(e, revision, "compact").await {
                StoreError::Compacted { .. } => Ok(()),
                other => Err(other),
            },
        }
    }
}

/// An etcd watch being turned into [`Event`]s.
struct WatchState {
    /// Kept so the watch is not cancelled: dropping it closes the request side.
    #[allow(dead_code)]
    watcher: Watcher,
    stream: WatchStream,
    /// Events of the last response not yet handed out.
    pending: VecDeque<Result<Event>>,
    after: Revision,
    endpoints: String,
    done: bool,
}

impl WatchState {
    async fn next(mut self) -> Option<(Result<Event>, Self)> {
        loop {
            if let Some(item) = self.pending.pop_front() {
                if let Ok(ev) = &item {
                    self.after = ev.revision();
                }
                return Some((item, self));
            }
            if self.done {
                return None;
            }
            match self.stream.message().await {
                Ok(Some(resp)) => self.absorb(resp),
                // The server closed the stream: end it; the caller re-watches from its revision.
                Ok(None) => return None,
                Err(e) => {
                    self.done = true;
                    let msg = format!("etcd {}: watch: {e}", self.endpoints);
                    self.pending.push_back(Err(StoreError::Backend(msg)));
                }
            }
        }
    }

    fn absorb(&mut self, resp: WatchResponse) {
        if resp.compact_revision() > 0 {
            self.done = true;
            let err = StoreError::Compacted {
                requested: self.after,
                compacted: resp.compact_revision(),
            };
            self.pending.push_back(Err(err));
            return;
        }
        for ev in resp.events() {
            self.pending.push_back(convert(ev));
        }
        if resp.canceled() {
            self.done = true;
            let msg = format!(
                "etcd {}: watch cancelled: {}",
                self.endpoints,
                resp.cancel_reason()
            );
            self.pending.push_back(Err(StoreError::Backend(msg)));
        }
    }
}

fn convert(ev: &etcd_client::Event) -> Result<Event> {
    let kv = ev
        .kv()
        .ok_or_else(|| StoreError::Backend("etcd: watch event without a key".into()))?;
    let prev = ev.prev_kv().map(kv_of).transpose()?;
    match ev.event_type() {
        EventType::Put => Ok(Event::Put {
            kv: kv_of(kv)?,
            prev,
        }),
        EventType::Delete => {
            // etcd's delete event has only the key and the delete's revision; the value and
            // create_revision come from prev_kv.
            let mut deleted = kv_of(kv)?;
            if let Some(prev) = prev {
                deleted.value = prev.value;
                deleted.create_revision = prev.create_revision;
            }
            Ok(Event::Deleted { kv: deleted })
        }
    }
}

/// The exclusive end of the keys under `prefix` (etcd's own prefix-end rule).
fn prefix_end(prefix: &str) -> Vec<u8> {
    let mut end = prefix.as_bytes().to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    // An empty prefix: "\0" as range end means "to the end of the keyspace" in etcd.
    vec![0]
}
