//! The one-shot request cache behind the streaming URLs.
//!
//! `GetExec` and friends store the validated CRI request under a random token and return a URL
//! naming it; the first HTTP request for that URL consumes it. Tokens are unguessable (the URL
//! is the only credential a streaming client presents), used at most once, and expire after a
//! minute, and the cache is bounded so a caller that never connects cannot grow it without
//! limit — the same contract as the kubelet's request cache.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use base64::Engine as _;
use tokio::time::Instant;

use crate::cri::api;

/// What a token stands for.
#[derive(Debug, Clone)]
pub(crate) enum CachedRequest {
    Exec(api::ExecRequest),
    Attach(api::AttachRequest),
    PortForward(api::PortForwardRequest),
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum CacheError {
    /// Every slot holds an unexpired token; a retry after some expire or are used can succeed.
    #[error("too many streaming requests in flight ({0}); retry once some are used or expire")]
    Full(usize),
    #[error("cannot generate a streaming token: {0}")]
    Random(String),
}

pub(crate) struct RequestCache {
    ttl: Duration,
    max: usize,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    entries: HashMap<String, (CachedRequest, Instant)>,
    /// Insertion order with deadlines, oldest first, so expiry is a pop from the front.
    order: VecDeque<(Instant, String)>,
}

/// 8 random bytes, as the kubelet uses: 64 bits are plenty for a one-minute, one-shot secret.
const TOKEN_BYTES: usize = 8;

impl RequestCache {
    pub(crate) fn new(ttl: Duration, max: usize) -> Self {
        RequestCache {
            ttl,
            max,
            inner: Mutex::new(Inner::default()),
        }
    }

    pub(crate) fn insert(&self, req: CachedRequest) -> Result<String, CacheError> {
        self.insert_at(req, Instant::now())
    }

    fn insert_at(&self, req: CachedRequest, now: Instant) -> Result<String, CacheError> {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.expire(now);
        if inner.entries.len() >= self.max {
            return Err(CacheError::Full(self.max));
        }
        let token = loop {
            let mut raw = [0u8; TOKEN_BYTES];
            getrandom::getrandom(&mut raw).map_err(|e| CacheError::Random(e.to_string()))?;
            let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw);
            if !inner.entries.contains_key(&token) {
                break token;
            }
        };
        let deadline = now + self.ttl;
        inner.entries.insert(token.clone(), (req, deadline));
        inner.order.push_back((deadline, token.clone()));
        Ok(token)
    }

    /// Takes the request for `token` if it exists and has not expired.
    pub(crate) fn consume(&self, token: &str) -> Option<CachedRequest> {
        self.consume_at(token, Instant::now())
    }

    fn consume_at(&self, token: &str, now: Instant) -> Option<CachedRequest> {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.expire(now);
        let (req, deadline) = inner.entries.remove(token)?;
        // The order queue entry stays until it expires; `expire` skips tokens already gone.
        (deadline > now).then_some(req)
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.inner.lock().unwrap().entries.len()
    }
}

impl Inner {
    fn expire(&mut self, now: Instant) {
        while let Some((deadline, _)) = self.order.front() {
            if *deadline > now {
                break;
            }
            let (_, token) = self.order.pop_front().expect("front exists");
            self.entries.remove(&token);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exec() -> CachedRequest {
        CachedRequest::Exec(api::ExecRequest {
            container_id: "c".into(),
            ..Default::default()
        })
    }

    #[test]
    fn tokens_are_one_shot_and_expire() {
        let cache = RequestCache::new(Duration::from_secs(60), 10);
        let t0 = Instant::now();
        let a = cache.insert_at(exec(), t0).unwrap();
        let b = cache.insert_at(exec(), t0).unwrap();
        assert_ne!(a, b);
        assert_eq!(a.len(), 11, "8 bytes, unpadded URL-safe base64");
        assert!(cache.consume_at(&a, t0).is_some());
        assert!(cache.consume_at(&a, t0).is_none(), "second use");
        assert!(cache.consume_at("nope", t0).is_none());
        assert!(
            cache.consume_at(&b, t0 + Duration::from_secs(61)).is_none(),
            "expired"
        );
        assert_eq!(cache.len(), 0);
    }

    #[test]
    fn bounded_until_entries_expire() {
        let cache = RequestCache::new(Duration::from_secs(60), 2);
        let t0 = Instant::now();
        cache.insert_at(exec(), t0).unwrap();
        cache.insert_at(exec(), t0).unwrap();
        assert!(matches!(
            cache.insert_at(exec(), t0),
            Err(CacheError::Full(2))
        ));
        cache
            .insert_at(exec(), t0 + Duration::from_secs(61))
            .unwrap();
    }
}
