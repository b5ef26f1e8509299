//! The deckhand binary: parses flags, sets up logging, and hands each command to the crate
//! that owns it. No logic lives here beyond presentation (progress bars, tables).

mod cli;
mod image_cmd;
mod progress;
mod runtime_cmd;
mod server_cmd;

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = cli::Cli::parse();
    // A long-running server says what it serves and when it stops; one-shot commands stay quiet.
    let default_level = match cli.command {
        cli::Command::Runtime(_) | cli::Command::Oci(_) | cli::Command::Server(_) => "info",
        cli::Command::Image(_) => "warn",
    };
    init_tracing(cli.log_level.as_deref().unwrap_or(default_level));
    // libcontainer forks: container operations run before any async runtime starts threads.
    if let cli::Command::Oci(args) = &cli.command {
        let config = deckhand_runtime::cri::containers_config(&cli.data_dir);
        let code = deckhand_runtime::shim::oci::run(
            config,
            args.op,
            &args.id,
            args.console_socket.clone(),
        );
        return std::process::ExitCode::from(code as u8);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // `{:#}` prints the whole context chain on one line: what failed, on what, why.
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: cli::Cli) -> anyhow::Result<()> {
    match cli.command {
        cli::Command::Image(args) => image_cmd::run(&cli.data_dir, args).await,
        cli::Command::Runtime(args) => runtime_cmd::run(&cli.data_dir, args).await,
        cli::Command::Server(args) => server_cmd::run(&cli.data_dir, args).await,
        cli::Command::Oci(_) => unreachable!("oci runs before the async runtime starts"),
    }
}

/// Logs go to stderr so command output (tables, JSON) stays clean on stdout. `RUST_LOG` wins
/// over `--log-level`.
fn init_tracing(level: &str) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}
