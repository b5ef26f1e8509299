//! `deckhand-shim`: start a pod's shim daemon and print its pid once it answers on its socket.
//! Started by the runtime, never by hand. Flags are parsed by hand: a CLI parser would be most
//! of this small binary.

use std::path::PathBuf;
use std::process::ExitCode;

use deckhand_shim::ops::Helper;
use deckhand_shim::{start_daemon, ShimConfig};

const USAGE: &str = "usage: deckhand-shim --sandbox-id ID --socket PATH --status-dir DIR \
--helper DECKHAND --data-dir DIR [--cgroup-root DIR]

The per-pod supervisor of deckhand's container runtime. The runtime starts one for each pod
sandbox; it daemonizes, parents the pod's containers, writes their CRI logs and exit records,
and runs container operations through `DECKHAND --data-dir DIR oci …`.";

fn main() -> ExitCode {
    let config = match parse(std::env::args().skip(1)) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("deckhand-shim: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match start_daemon(config) {
        Ok(pid) => {
            println!("{pid}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn parse(mut args: impl Iterator<Item = String>) -> Result<ShimConfig, String> {
    let (mut sandbox, mut socket, mut status, mut helper, mut data) =
        (None, None, None, None, None);
    let mut cgroup_root = PathBuf::from(deckhand_sys::cgroup::DEFAULT_ROOT);
    while let Some(flag) = args.next() {
        if flag == "--help" || flag == "-h" {
            return Err("help requested".into());
        }
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--sandbox-id" => sandbox = Some(value),
            "--socket" => socket = Some(PathBuf::from(value)),
            "--status-dir" => status = Some(PathBuf::from(value)),
            "--helper" => helper = Some(PathBuf::from(value)),
            "--data-dir" => data = Some(PathBuf::from(value)),
            "--cgroup-root" => cgroup_root = PathBuf::from(value),
            _ => return Err(format!("unknown flag {flag}")),
        }
    }
    fn need<T>(v: Option<T>, name: &str) -> Result<T, String> {
        v.ok_or_else(|| format!("{name} is required"))
    }
    Ok(ShimConfig {
        sandbox_id: need(sandbox, "--sandbox-id")?,
        socket: need(socket, "--socket")?,
        status_dir: need(status, "--status-dir")?,
        cgroup_root,
        helper: Helper {
            program: need(helper, "--helper")?,
            data_dir: need(data, "--data-dir")?,
        },
    })
}
