//! The CRI conformance suite against containerd 1.6 (Debian's, runc v2 shims, CNI bridge):
//! containerd's behaviour is the reference deckhand's runtime is matched to. Each test starts
//! its own containerd in its own mount and network namespace (see `deckhand_e2e::cri_env`).

use deckhand_e2e::cri_env::Which;

deckhand_e2e::cri_scenarios!(Which::Containerd, [];
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
