//! Test support for deckhand's end-to-end tests: the fixture image builder (busybox-static into
//! OCI layouts), a real `docker-registry` harness, and helpers that run the `deckhand` binary.
//! Tests live in `tests/e2e/tests/`.

pub mod deckhand;
pub mod expect;
pub mod fixtures;
pub mod registry;
pub mod rootfs;
pub mod util;
