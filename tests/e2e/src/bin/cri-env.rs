//! `cri-env containerd|deckhand [--cache DIR]`: starts one CRI runtime exactly as the CRI suite
//! does (private mount and network namespace, test registry with the CRI fixtures, CNI bridge,
//! own cgroup subtree; see `deckhand_e2e::cri_env`), pulls busybox through CRI, prints
//!
//! ```text
//! ENDPOINT=unix:///…      CRI socket
//! IMAGE=127.0.0.1:…/busybox:1
//! CGROUP_PARENT=/deckhand-cri-…   put pods under it so they are cleaned up with the env
//! RUNTIME_PID=…
//! SHIM_MATCH=…            a string in the command line of every shim of this runtime
//! READY
//! ```
//!
//! (busybox and the sandbox image are pulled through CRI first) and keeps everything up until
//! stdin closes, then tears it all down. Used by
//! `scripts/bench/cri.sh` and `scripts/bench/footprint.sh`. The runtime for `deckhand` is
//! `$DECKHAND_BIN`.

use std::io::{Read, Write};
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use deckhand_e2e::cri_env::{CriEnv, Which};
use deckhand_e2e::{fixtures, util};

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let which = match args.next().as_deref() {
        Some("containerd") => Which::Containerd,
        Some("deckhand") => Which::Deckhand,
        _ => bail!("usage: cri-env containerd|deckhand [--cache DIR]"),
    };
    let mut cache = std::env::temp_dir().join("deckhand-cri-fixtures");
    while let Some(a) = args.next() {
        match a.as_str() {
            "--cache" => cache = PathBuf::from(args.next().context("--cache needs a dir")?),
            other => bail!("unknown argument {other}"),
        }
    }
    util::require_root();
    // Still single-threaded here, so these move the whole process; the runtime's threads and
    // every child inherit them.
    util::private_mount_namespace();
    util::private_network_namespace();
    util::tmpfs_over(std::path::Path::new("/run/containerd"))?;
    util::tmpfs_over(std::path::Path::new("/var/lib/cni"))?;
    let fx = fixtures::shared_cri(&cache);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let env = CriEnv::start_in_namespaces(which, &fx).await?;
        // Both images up front, so no timed RunPodSandbox includes the sandbox image's pull.
        env.ctx.cri.pull(&env.ctx.busybox).await?;
        env.ctx.cri.pull(&env.ctx.pause).await?;
        let mut out = std::io::stdout().lock();
        writeln!(out, "ENDPOINT={}", env.ctx.cri.endpoint)?;
        writeln!(out, "IMAGE={}", env.ctx.busybox)?;
        writeln!(out, "CGROUP_PARENT={}", env.ctx.cgroup_parent)?;
        writeln!(out, "RUNTIME_PID={}", env.runtime_pid())?;
        writeln!(out, "SHIM_MATCH={}", env.shim_match())?;
        writeln!(out, "READY")?;
        out.flush()?;
        drop(out);
        let _ = tokio::task::spawn_blocking(|| {
            let mut sink = Vec::new();
            std::io::stdin().read_to_end(&mut sink)
        })
        .await;
        drop(env);
        Ok(())
    })
}
