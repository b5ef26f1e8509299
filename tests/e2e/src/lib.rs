//! Test support for deckhand's end-to-end tests: the fixture image builder (busybox-static into
//! OCI layouts), a real `docker-registry` harness, and helpers that run the `deckhand` binary.
//! Tests live in `tests/e2e/tests/`.

pub mod cgroups;
pub mod check;
pub mod containerd;
pub mod cri;
pub mod cri_env;
pub mod cri_suite;
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

/// One `#[tokio::test]` per CRI suite scenario against one runtime, each with its own
/// [`cri_env::CriEnv`] (nextest runs each test in its own process). Extra attributes (such as
/// `#[ignore = "..."]`) go in the brackets.
#[macro_export]
macro_rules! cri_scenarios {
    (@one $which:expr, [$(#[$m:meta])*], $name:ident) => {
        #[tokio::test]
        $(#[$m])*
        async fn $name() {
            let env = $crate::cri_env::CriEnv::start($which, env!("CARGO_TARGET_TMPDIR"))
                .await
                .expect("start the CRI test environment");
            // A hung runtime call fails the scenario (with the runtime's log) instead of
            // hanging until the harness kills the process, which would skip all cleanup.
            let r = tokio::time::timeout(
                $crate::cri_suite::SCENARIO_TIMEOUT,
                $crate::cri_suite::$name(&env.ctx),
            )
            .await
            .unwrap_or_else(|_| {
                Err(anyhow::anyhow!(
                    "timed out after {:?}",
                    $crate::cri_suite::SCENARIO_TIMEOUT
                ))
            });
            if let Err(e) = env.report(stringify!($name), r) {
                panic!("{e:#}");
            }
        }
    };
    (@list $which:expr, $attrs:tt;) => {};
    (@list $which:expr, $attrs:tt; $name:ident $(, $rest:ident)*) => {
        $crate::cri_scenarios!(@one $which, $attrs, $name);
        $crate::cri_scenarios!(@list $which, $attrs; $($rest),*);
    };
    ($which:expr, $attrs:tt; $($name:ident),* $(,)?) => {
        $crate::cri_scenarios!(@list $which, $attrs; $($name),*);
    };
}
