//! The watch stream every in-process backend hands out: replayed history, then live events
//! from a broadcast channel, with no gap and no duplicate between the two.
//!
//! The caller must subscribe to the broadcast *before* it reads the history (or atomically
//! with it): then every event after the history's end is in the channel, and the stream only
//! has to drop the live events the history already covered (revision ≤ the last replayed one).

use std::collections::VecDeque;
use std::sync::Arc;

use futures::StreamExt;
use tokio::sync::broadcast;

use super::{Event, EventStream, Revision, StoreError};

/// Where a watch stream is: replaying history, then following the broadcast, then finished.
enum State {
    Replay {
        history: VecDeque<Event>,
        rx: broadcast::Receiver<Arc<Event>>,
        last: Revision,
    },
    Live {
        rx: broadcast::Receiver<Arc<Event>>,
        last: Revision,
    },
    Done,
}

/// Builds the stream for `watch(prefix, after)`. `history` holds the retained events with
/// revision > `after` in revision order (all prefixes or only `prefix`'s: both work); `rx` was
/// subscribed before `history` was read.
pub(crate) fn history_then_live(
    prefix: &str,
    after: Revision,
    history: Vec<Event>,
    rx: broadcast::Receiver<Arc<Event>>,
) -> EventStream {
    let prefix = prefix.to_owned();
    let state = State::Replay {
        history: history.into(),
        rx,
        last: after,
    };
    futures::stream::unfold((state, prefix), |(state, prefix)| async move {
        let mut state = state;
        loop {
            match state {
                State::Replay {
                    mut history,
                    rx,
                    last,
                } => match history.pop_front() {
                    Some(ev) => {
                        let rev = ev.revision();
                        if rev <= last || !ev.kv().key.starts_with(&prefix) {
                            state = State::Replay { history, rx, last };
                            continue;
                        }
                        return Some((
                            Ok(ev),
                            (
                                State::Replay {
                                    history,
                                    rx,
                                    last: rev,
                                },
                                prefix,
                            ),
                        ));
                    }
                    None => state = State::Live { rx, last },
                },
                State::Live { mut rx, last } => match rx.recv().await {
                    Ok(ev) => {
                        let rev = ev.revision();
                        if rev <= last || !ev.kv().key.starts_with(&prefix) {
                            state = State::Live { rx, last };
                            continue;
                        }
                        return Some((Ok((*ev).clone()), (State::Live { rx, last: rev }, prefix)));
                    }
                    // The watcher could not keep up and the channel dropped events it never
                    // saw: it cannot be served without a gap, so it must relist (410 Gone),
                    // exactly as if its revision had been compacted.
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        let err = StoreError::Compacted {
                            requested: last,
                            compacted: last + 1,
                        };
                        return Some((Err(err), (State::Done, prefix)));
                    }
                    // The backend was dropped: the stream ends.
                    Err(broadcast::error::RecvError::Closed) => return None,
                },
                State::Done => return None,
            }
        }
    })
    .boxed()
}
