//! Test support for deckhand's end-to-end tests: the fixture image builder (busybox-static into
//! OCI layouts), a real `docker-registry` harness, and helpers that run the `deckhand` binary.
//! Tests live in `tests/e2e/tests/`.

pub mod check;
pub mod containerd;
pub mod deckhand;
pub mod expect;
pub mod fixtures;
pub mod registry;
pub mod rootfs;
pub mod util;

use std::path::Path;

/// Common start of every e2e test: root check (loud failure), a private mount namespace for
/// this test's thread, and the shared fixture set (built once under `cache_root`, normally
/// `env!("CARGO_TARGET_TMPDIR")`).
pub fn setup(cache_root: &str) -> fixtures::Fixtures {
    util::require_root();
    util::private_mount_namespace();
    fixtures::shared(Path::new(cache_root))
}

/// Starts a registry with `auth` and pushes each named fixture as `<name>:1`.
pub fn registry_with(
    fx: &fixtures::Fixtures,
    auth: registry::Auth,
    names: &[&str],
) -> registry::Registry {
    let reg = registry::Registry::start(auth).expect("start docker-registry");
    for n in names {
        reg.push(&fx.layout(n), fixtures::TAG, n)
            .unwrap_or_else(|e| panic!("push {n}: {e:#}"));
    }
    reg
}
