//! The CRI conformance suite against `deckhand runtime` (`$DECKHAND_BIN`), same scenarios and
//! assertions as `cri_containerd.rs`. Each test starts its own runtime with its own data dir
//! and socket in its own mount and network namespace (see `deckhand_e2e::cri_env`).

use deckhand_e2e::cri_env::Which;

deckhand_e2e::cri_scenarios!(
    Which::Deckhand,
    [];
    version_status,
    images,
    sandbox_lifecycle,
    container_lifecycle,
    logs,
    terminal,
    exec_sync,
    stop,
    resources,
    oom,
    security,
    environment,
    stats,
    errors,
);
