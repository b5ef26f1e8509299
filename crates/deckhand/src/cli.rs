//! Command-line interface (the contract in DESIGN.md: command names and flags are stable).

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "deckhand",
    version,
    about = "A Kubernetes worker node in one binary: kubelet, container runtime, service proxy, CNI, DNS and storage.",
    long_about = None
)]
pub struct Cli {
    /// Where deckhand keeps its state: images, containers, certificates, logs.
    #[arg(
        long,
        global = true,
        env = "DECKHAND_DATA_DIR",
        default_value = "/var/lib/deckhand"
    )]
    pub data_dir: PathBuf,

    /// Log filter for stderr (error, warn, info, debug, trace, or a tracing directive such as
    /// `deckhand_image=debug`). `RUST_LOG` overrides it.
    #[arg(long, global = true)]
    pub log_level: Option<String>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Manage the node's image store: pull, import, list, inspect, remove, prune, verify.
    #[command(subcommand)]
    Image(ImageCommand),
    /// Run the container runtime alone, serving CRI v1 gRPC (images, pod sandboxes, containers,
    /// exec, logs, stats) until SIGINT or SIGTERM. Containers keep running when it stops.
    Runtime(RuntimeArgs),
    /// Internal: one container operation (create, exec) run by a pod's shim,
    /// `deckhand-shim` (never run by hand).
    #[command(hide = true)]
    Oci(OciArgs),
    /// Run the control plane's Kubernetes API server (HTTPS) until SIGINT or SIGTERM. Writes
    /// an admin kubeconfig to `<data-dir>/kubeconfig.yaml` for kubectl.
    Server(ServerArgs),
}

#[derive(Debug, Args)]
pub struct ServerArgs {
    /// Address and port the API server listens on (HTTPS).
    #[arg(long, value_name = "ADDR", default_value = "0.0.0.0:6443")]
    pub listen: std::net::SocketAddr,
    /// Where objects are stored: `sqlite` (default: `<data-dir>/server/db/state.db`),
    /// `sqlite:///path/to/state.db`, `etcd://host:port[,host:port]` (etcd v3; several
    /// servers may share one cluster), or `memory` (nothing survives a restart; for tests).
    #[arg(long, value_name = "DATASTORE", default_value = "sqlite")]
    pub datastore: String,
    /// Extra names or IP addresses for the serving certificate (repeat or separate with ',').
    #[arg(long, value_name = "SAN", value_delimiter = ',')]
    pub tls_san: Vec<String>,
    /// Pod network; each node gets a /24 of it.
    #[arg(long, value_name = "CIDR", default_value = "10.42.0.0/16")]
    pub cluster_cidr: String,
    /// Service ClusterIP range.
    #[arg(long, value_name = "CIDR", default_value = "10.43.0.0/16")]
    pub service_cidr: String,
    /// Join token for agents; generated on first start and kept in `<data-dir>/token`.
    #[arg(long, env = "DECKHAND_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

#[derive(Debug, Args)]
pub struct OciArgs {
    /// create or exec.
    pub op: deckhand_runtime::shim::oci::Op,
    /// The container.
    pub id: String,
    /// Give the container (create) or the process (exec) a terminal and send its master to
    /// this unix socket.
    #[arg(long)]
    pub console_socket: Option<std::path::PathBuf>,
}

#[derive(Debug, Args)]
pub struct RuntimeArgs {
    /// CRI endpoint to serve: a unix socket, `unix:///path/to/cri.sock`.
    #[arg(
        long,
        value_name = "ENDPOINT",
        default_value = "unix:///run/deckhand/cri.sock"
    )]
    pub listen: String,
    /// Directory of CNI network configurations (the lexically first .conflist/.conf is used).
    #[arg(long, value_name = "DIR", default_value = "/etc/cni/net.d")]
    pub cni_conf_dir: std::path::PathBuf,
    /// Directories searched for CNI plugin binaries (repeat or separate with ':').
    #[arg(
        long,
        value_name = "DIR",
        value_delimiter = ':',
        default_value = "/opt/cni/bin:/usr/lib/cni"
    )]
    pub cni_bin_dir: Vec<std::path::PathBuf>,
    /// Address of the streaming server for exec, attach and port-forward URLs.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:0")]
    pub stream_address: std::net::SocketAddr,
}

#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// Pull an image from a registry (mirrors, TLS and credentials from
    /// `<data-dir>/registries.yaml`; credentials also from Docker's config.json).
    Pull(PullArgs),
    /// Import images from an OCI archive, a docker-archive (`docker save`), or an OCI layout
    /// directory; the file may be gzip-compressed.
    Import(ImportArgs),
    /// List images.
    #[command(visible_alias = "list")]
    Ls(LsArgs),
    /// Show an image's record and configuration as JSON.
    Inspect(InspectArgs),
    /// Remove images by name, ID or digest, then free blobs and snapshots nothing uses.
    #[command(visible_alias = "remove")]
    Rm(RmArgs),
    /// Delete blobs, snapshots and partial downloads that no image or container uses.
    Prune,
    /// Re-hash every blob and check every image's snapshots; exits non-zero on any problem.
    Verify,
}

#[derive(Debug, Args)]
pub struct PullArgs {
    /// Image reference, e.g. `busybox`, `127.0.0.1:5000/app:1`, `repo@sha256:…`.
    pub reference: String,
    /// Platform to pick from a multi-platform image, `os/arch[/variant]`. Defaults to this host.
    #[arg(long)]
    pub platform: Option<String>,
    /// Registry credentials `USER:PASSWORD` (overrides registries.yaml and config.json).
    #[arg(long, value_name = "USER:PASSWORD")]
    pub creds: Option<String>,
    /// Docker config.json to read credentials from (default `$DOCKER_CONFIG/config.json`,
    /// then `~/.docker/config.json`).
    #[arg(long, value_name = "PATH")]
    pub docker_config: Option<PathBuf>,
    /// Print only the image ID when done.
    #[arg(long, short)]
    pub quiet: bool,
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// Archive file or OCI layout directory.
    pub path: PathBuf,
    /// Name for the image when the archive carries none (or to rename a single image).
    #[arg(long)]
    pub name: Option<String>,
    /// Platform to pick from a multi-platform archive, `os/arch[/variant]`.
    #[arg(long)]
    pub platform: Option<String>,
}

#[derive(Debug, Args)]
pub struct LsArgs {
    /// Print image IDs only.
    #[arg(long, short)]
    pub quiet: bool,
    /// Show repo digests.
    #[arg(long)]
    pub digests: bool,
    /// Output format: `table` or `json`.
    #[arg(long, short, default_value = "table")]
    pub output: OutputFormat,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum OutputFormat {
    Table,
    Json,
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// Image name, ID (or unique prefix) or digest.
    pub reference: String,
}

#[derive(Debug, Args)]
pub struct RmArgs {
    /// Images to remove: names, IDs (or unique prefixes) or digests.
    #[arg(required = true)]
    pub references: Vec<String>,
    /// Remove even if a container's root file system still uses the image.
    #[arg(long, short)]
    pub force: bool,
}
