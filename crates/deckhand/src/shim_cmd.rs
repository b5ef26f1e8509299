//! `deckhand shim`: start a pod's shim daemon and print its pid once it answers on its socket.

use crate::cli::ShimArgs;
use deckhand_runtime::shim::{start_daemon, ShimConfig};
use std::path::Path;
use std::process::ExitCode;

pub fn run(data_dir: &Path, args: &ShimArgs) -> ExitCode {
    let config = ShimConfig {
        sandbox_id: args.sandbox_id.clone(),
        socket: args.socket.clone(),
        runtime: deckhand_runtime::cri::containers_config(data_dir),
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
