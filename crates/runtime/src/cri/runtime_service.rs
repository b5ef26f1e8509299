//! CRI RuntimeService: pod sandboxes and containers on deckhand's shim and container layer.
//!
//! A sandbox is a directory of state plus pinned namespaces (network, IPC, UTS; no pause
//! process) and one shim process that parents the pod's containers. The runtime itself keeps
//! no process state: everything it knows is in records on disk ([`super::state`]) and in the
//! shims, so after a restart it reloads the records and reconnects to the shims, and nothing
//! running is touched.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use deckhand_image::ImageStore;
use deckhand_sys::mount::{LinuxMounter, Mounter};
use deckhand_sys::ns::NsKind;
use tonic::{Request, Response, Status};

use super::api;
use super::api::runtime_service_server::RuntimeService as RuntimeServiceApi;
use super::convert;
use super::network::PodNetwork;
use super::state::{self, ContainerRecord, Layout, SandboxRecord, SandboxState};
use crate::container::{ContainerError, ContainerState, ContainerStatus, Runtime, RuntimeConfig};
use crate::shim::protocol::{ErrorKind, FrameKind, Request as ShimRequest};
use crate::shim::{ShimClient, ShimClientError};
use crate::streaming::StreamingServer;

/// CRI API version this server speaks.
const API_VERSION: &str = "v1";
/// Version string CRI clients put in `VersionRequest`, answered as is by convention.
const KUBE_API_VERSION: &str = "0.1.0";
const RUNTIME_NAME: &str = "deckhand";
const RUNTIME_READY: &str = "RuntimeReady";
/// cgroup under which pods get their cgroup when the kubelet passes no `cgroup_parent`.
const DEFAULT_CGROUP_ROOT: &str = "/deckhand";
const NETWORK_READY: &str = "NetworkReady";

/// The container layer's config for a data dir (shared by the CRI server and the shims).
pub fn containers_config(data_dir: &Path) -> RuntimeConfig {
    RuntimeConfig::new(Layout::new(data_dir).oci_dir())
}

/// How the RuntimeService is set up.
pub struct RuntimeServiceConfig {
    pub data_dir: PathBuf,
    /// The per-pod shim executable (`deckhand-shim`).
    pub shim_binary: PathBuf,
    /// The `deckhand` executable the shims run as `deckhand oci` for container operations.
    pub helper_binary: PathBuf,
    /// Pod networking; `None`: only host-network pods can run.
    pub network: Option<Arc<dyn PodNetwork>>,
}

#[derive(Clone)]
pub struct RuntimeService {
    inner: Arc<Inner>,
    /// Serves the URLs Exec/Attach/PortForward return (set by [`RuntimeService::start_streaming`]).
    streaming: Option<Arc<StreamingServer>>,
}

struct Inner {
    layout: Layout,
    data_dir: PathBuf,
    images: ImageStore,
    shim_binary: PathBuf,
    helper_binary: PathBuf,
    oci: Runtime,
    network: Option<Arc<dyn PodNetwork>>,
    sandboxes: Mutex<HashMap<String, SandboxRecord>>,
    containers: Mutex<HashMap<String, ContainerRecord>>,
    /// One async lock per sandbox or container id: operations on one object run one at a time.
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl RuntimeService {
    /// Load every sandbox and container record (re-adoption after a restart).
    pub fn new(config: RuntimeServiceConfig, images: ImageStore) -> Result<Self, String> {
        let layout = Layout::new(&config.data_dir);
        for dir in ["sandboxes", "containers", "shims", "rootfs", "oci"] {
            std::fs::create_dir_all(layout.root.join(dir))
                .map_err(|e| format!("{}: {e}", layout.root.join(dir).display()))?;
        }
        let oci = Runtime::open(containers_config(&config.data_dir)).map_err(|e| e.to_string())?;
        let sandboxes: HashMap<String, SandboxRecord> =
            state::load_all::<SandboxRecord>(&layout.root.join("sandboxes"), Some("sandbox.json"))
                .into_iter()
                .map(|r| (r.id.clone(), r))
                .collect();
        let containers: HashMap<String, ContainerRecord> =
            state::load_all::<ContainerRecord>(&layout.root.join("containers"), None)
                .into_iter()
                .map(|r| (r.id.clone(), r))
                .collect();
        tracing::info!(
            sandboxes = sandboxes.len(),
            containers = containers.len(),
            "re-adopted runtime state"
        );
        Ok(RuntimeService {
            inner: Arc::new(Inner {
                layout,
                data_dir: config.data_dir,
                images,
                shim_binary: config.shim_binary,
                helper_binary: config.helper_binary,
                oci,
                network: config.network,
                sandboxes: Mutex::new(sandboxes),
                containers: Mutex::new(containers),
                locks: Mutex::new(HashMap::new()),
            }),
            streaming: None,
        })
    }

    /// Start the streaming server (exec, attach, port-forward) on `config.addr`.
    pub async fn start_streaming(
        mut self,
        config: crate::streaming::Config,
    ) -> Result<RuntimeService, crate::streaming::ServerError> {
        let server =
            StreamingServer::start(config, super::streaming::ShimStreaming::new(self.clone()))
                .await?;
        self.streaming = Some(Arc::new(server));
        Ok(self)
    }

    /// The shim of a running container (exec and attach need one).
    pub(crate) fn running_container_shim(&self, id: &str) -> Result<(ShimClient, String), Status> {
        let r = self.inner.container(id)?;
        if self.inner.oci_state(id).map(|s| s.status) != Some(ContainerStatus::Running) {
            return Err(Status::failed_precondition(format!(
                "container {id} is not running"
            )));
        }
        Ok((self.inner.shim(&r.sandbox_id), r.sandbox_id))
    }

    /// The pinned network namespace of a sandbox (`None`: host network).
    pub(crate) fn sandbox_netns(&self, id: &str) -> Result<Option<PathBuf>, Status> {
        let s = self.inner.sandbox(id)?;
        if s.host_network {
            return Ok(None);
        }
        if s.state != SandboxState::Ready {
            return Err(Status::failed_precondition(format!(
                "pod sandbox {id} is not ready"
            )));
        }
        Ok(Some(self.inner.layout.sandbox_dir(id).join("ns/net")))
    }

    fn streaming(&self) -> Result<&StreamingServer, Status> {
        self.streaming.as_deref().ok_or_else(|| {
            Status::unavailable("the streaming server is not running (start the runtime with it)")
        })
    }
}

fn internal(what: impl std::fmt::Display) -> Status {
    Status::internal(what.to_string())
}

fn shim_status(e: ShimClientError) -> Status {
    match e {
        ShimClientError::Refused { kind, message } => match kind {
            ErrorKind::NotFound => Status::not_found(message),
            ErrorKind::AlreadyExists => Status::already_exists(message),
            ErrorKind::InvalidArgument => Status::invalid_argument(message),
            ErrorKind::FailedPrecondition => Status::failed_precondition(message),
            ErrorKind::Internal => Status::internal(message),
        },
        e => Status::unavailable(e.to_string()),
    }
}

fn sandbox_state_value(s: SandboxState) -> i32 {
    match s {
        SandboxState::Ready => api::PodSandboxState::SandboxReady as i32,
        SandboxState::NotReady => api::PodSandboxState::SandboxNotready as i32,
    }
}

fn labels_match(labels: &HashMap<String, String>, selector: &HashMap<String, String>) -> bool {
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// Parse a stop signal as images give it (`SIGQUIT`, `QUIT`, `3`).
fn parse_signal(s: &str) -> Option<i32> {
    if let Ok(n) = s.parse::<i32>() {
        return Some(n);
    }
    let name = s.to_ascii_uppercase();
    let name = if name.starts_with("SIG") {
        name
    } else {
        format!("SIG{name}")
    };
    name.parse::<nix::sys::signal::Signal>()
        .ok()
        .map(|s| s as i32)
}

impl Inner {
    fn lock_for(&self, id: &str) -> Arc<tokio::sync::Mutex<()>> {
        self.locks
            .lock()
            .unwrap()
            .entry(id.to_owned())
            .or_default()
            .clone()
    }

    fn sandbox(&self, id: &str) -> Result<SandboxRecord, Status> {
        self.sandboxes
            .lock()
            .unwrap()
            .get(id)
            .cloned()
            .ok_or_else(|| Status::not_found(format!("pod sandbox {id} not found")))
    }

    fn container(&self, id: &str) -> Result<ContainerRecord, Status> {
        self.containers
            .lock()
            .unwrap()
            .get(id)
            .cloned()
            .ok_or_else(|| Status::not_found(format!("container {id} not found")))
    }

    fn save_sandbox(&self, r: &SandboxRecord) -> Result<(), Status> {
        state::save_json(&self.layout.sandbox_file(&r.id), r).map_err(internal)?;
        self.sandboxes
            .lock()
            .unwrap()
            .insert(r.id.clone(), r.clone());
        Ok(())
    }

    fn shim(&self, sandbox_id: &str) -> ShimClient {
        ShimClient::new(self.layout.shim_socket(sandbox_id))
    }

    /// The container's state as recorded by its shim; `None` when there is no record (its
    /// shim died before creating it, or it was deleted underneath us).
    ///
    /// An init that has ended but whose exit the shim has not recorded yet (it reaps on its
    /// next loop turn) still shows as running: reporting "exited" without the exit code would
    /// make the kubelet act on a status that is about to change. If the shim itself is gone,
    /// the exit will never be recorded: the container is reported exited, reason `Unknown`.
    fn oci_state(&self, id: &str) -> Option<ContainerState> {
        let mut st = self.oci.state(id).ok()?;
        if st.status == ContainerStatus::Stopped && st.exit.is_none() {
            let shim_alive = self
                .containers
                .lock()
                .unwrap()
                .get(id)
                .and_then(|c| {
                    self.sandboxes
                        .lock()
                        .unwrap()
                        .get(&c.sandbox_id)
                        .map(|s| s.shim_pid)
                })
                .is_some_and(deckhand_sys::process::alive);
            if shim_alive {
                st.status = ContainerStatus::Running;
            } else {
                st.exit = Some(crate::container::ExitRecord {
                    exit_code: 255,
                    signal: None,
                    oom_killed: false,
                    reason: "Unknown".into(),
                    finished_at: chrono::Utc::now(),
                });
            }
        }
        Some(st)
    }

    fn network_ready(&self) -> bool {
        self.network.is_some()
    }

    // ---------------------------------------------------------------- sandboxes

    async fn run_sandbox(
        &self,
        config: api::PodSandboxConfig,
        runtime_handler: String,
    ) -> Result<String, Status> {
        let meta = config
            .metadata
            .clone()
            .ok_or_else(|| Status::invalid_argument("pod sandbox config has no metadata"))?;
        if meta.name.is_empty() || meta.namespace.is_empty() {
            return Err(Status::invalid_argument(
                "pod sandbox metadata needs a name and a namespace",
            ));
        }
        if !runtime_handler.is_empty()
            && runtime_handler != "runc"
            && runtime_handler != RUNTIME_NAME
        {
            return Err(Status::invalid_argument(format!(
                "runtime handler {runtime_handler:?} is not configured (deckhand has one handler: \
                 leave runtimeClassName unset)"
            )));
        }
        // One sandbox per name, namespace, uid and attempt (containerd reserves the name).
        if let Some(existing) = self.sandboxes.lock().unwrap().values().find(|s| {
            let m = s.metadata();
            m.name == meta.name
                && m.namespace == meta.namespace
                && m.uid == meta.uid
                && m.attempt == meta.attempt
        }) {
            return Err(Status::already_exists(format!(
                "pod sandbox {}/{} (uid {}, attempt {}) already exists as {}: remove it first",
                meta.namespace, meta.name, meta.uid, meta.attempt, existing.id
            )));
        }
        let linux = config.linux.clone().unwrap_or_default();
        let ns_opts = linux
            .security_context
            .as_ref()
            .and_then(|s| s.namespace_options.clone())
            .unwrap_or_default();
        let host_network = ns_opts.network == convert::NS_NODE;
        let host_ipc = ns_opts.ipc == convert::NS_NODE;
        let host_pid = ns_opts.pid == convert::NS_NODE;
        if !host_network {
            if let Some(net) = &self.network {
                net.status().await.map_err(|m| {
                    Status::failed_precondition(format!("pod network is not ready: {m}"))
                })?;
            } else {
                return Err(Status::failed_precondition(
                    "pod network is not configured (no CNI config): only hostNetwork pods can \
                     run; configure --cni-conf-dir",
                ));
            }
        }
        let id = state::new_id();
        let cgroup_parent = if linux.cgroup_parent.is_empty() {
            format!("{DEFAULT_CGROUP_ROOT}/{id}")
        } else {
            linux.cgroup_parent.clone()
        };
        let mut record = SandboxRecord {
            id: id.clone(),
            config: String::new(),
            runtime_handler,
            state: SandboxState::Ready,
            created_at: state::now_ns(),
            host_network,
            host_ipc,
            host_pid,
            cgroup_parent,
            ip: String::new(),
            additional_ips: Vec::new(),
            cni_attached: false,
            shim_pid: 0,
            pod_init_pid: 0,
        };
        record.set_config(&config);
        let lock = self.lock_for(&id);
        let _g = lock.lock().await;
        match self.setup_sandbox(&mut record, &config).await {
            Ok(()) => Ok(id),
            Err(e) => {
                // Never leave half a sandbox behind.
                let _ = self.shim(&id).call(&ShimRequest::Shutdown).await;
                let _ = std::fs::remove_file(self.layout.shim_socket(&id));
                self.teardown_sandbox(&record).await;
                let _ = std::fs::remove_dir_all(self.layout.sandbox_dir(&id));
                self.sandboxes.lock().unwrap().remove(&id);
                Err(e)
            }
        }
    }

    async fn setup_sandbox(
        &self,
        record: &mut SandboxRecord,
        config: &api::PodSandboxConfig,
    ) -> Result<(), Status> {
        let dir = self.layout.sandbox_dir(&record.id);
        std::fs::create_dir_all(&dir).map_err(internal)?;
        // Pin the pod's namespaces: they outlive every container and need no process.
        let mut kinds = Vec::new();
        if !record.host_network {
            kinds.push(NsKind::Net);
            kinds.push(NsKind::Uts);
        }
        if !record.host_ipc {
            kinds.push(NsKind::Ipc);
        }
        let hostname = if config.hostname.is_empty() {
            config
                .metadata
                .as_ref()
                .map(|m| m.name.clone())
                .unwrap_or_default()
        } else {
            config.hostname.clone()
        };
        if !kinds.is_empty() {
            let ns_dir = dir.join("ns");
            let kinds2 = kinds.clone();
            let host = (!record.host_network).then(|| hostname.clone());
            tokio::task::spawn_blocking(move || {
                deckhand_sys::ns::pin_namespaces_with_hostname(&ns_dir, &kinds2, host.as_deref())
            })
            .await
            .map_err(internal)?
            .map_err(|e| internal(format!("pinning the pod's namespaces: {e}")))?;
        }
        let host_name = if record.host_network {
            deckhand_sys::ns::hostname().unwrap_or_default()
        } else {
            hostname.clone()
        };
        std::fs::write(dir.join("hostname"), format!("{host_name}\n")).map_err(internal)?;
        std::fs::write(
            dir.join("resolv.conf"),
            convert::resolv_conf(config.dns_config.as_ref()),
        )
        .map_err(internal)?;
        if !record.host_network {
            let net = self.network.as_ref().expect("checked in run_sandbox");
            let addrs = net
                .setup(&record.id, &dir.join("ns/net"), config)
                .await
                .map_err(|m| Status::internal(format!("setting up the pod network failed: {m}")))?;
            record.cni_attached = true;
            record.ip = addrs.ip;
            record.additional_ips = addrs.additional_ips;
        }
        let hosts = if record.host_network {
            std::fs::read_to_string("/etc/hosts").unwrap_or_default()
        } else {
            convert::hosts_file(&host_name, &record.ip)
        };
        std::fs::write(dir.join("hosts"), hosts).map_err(internal)?;
        let (_, pid) = ShimClient::spawn(
            &crate::shim::client::ShimCommand {
                shim: &self.shim_binary,
                helper: &self.helper_binary,
                data_dir: &self.data_dir,
                status_dir: self.oci.status_dir(),
            },
            &record.id,
            &self.layout.shim_socket(&record.id),
            &dir.join("shim.log"),
        )
        .await
        .map_err(|e| internal(format!("starting the pod's shim: {e}")))?;
        record.shim_pid = pid;
        let pid_mode = config
            .linux
            .as_ref()
            .and_then(|l| l.security_context.as_ref())
            .and_then(|s| s.namespace_options.as_ref())
            .map_or(convert::NS_POD, |n| n.pid);
        if pid_mode == convert::NS_POD {
            // The pod shares one PID namespace (shareProcessNamespace): its init lives in the
            // shim, which reaps it; containers join it by /proc path.
            match self
                .shim(&record.id)
                .call(&ShimRequest::PodInit)
                .await
                .map_err(shim_status)?
            {
                crate::shim::protocol::Response::Created { pid } => record.pod_init_pid = pid,
                other => return Err(internal(format!("pod init: unexpected answer {other:?}"))),
            }
        }
        self.save_sandbox(record)
    }

    /// Undo the network and the namespace pins (idempotent, best effort, logs failures).
    async fn teardown_sandbox(&self, record: &SandboxRecord) {
        let dir = self.layout.sandbox_dir(&record.id);
        if record.pod_init_pid > 0 {
            let _ = deckhand_sys::process::signal_pid(record.pod_init_pid, libc::SIGKILL);
        }
        if record.cni_attached || !record.host_network {
            if let Some(net) = &self.network {
                if let Err(e) = net
                    .teardown(&record.id, &dir.join("ns/net"), &record.config())
                    .await
                {
                    tracing::warn!(sandbox = %record.id, error = %e, "pod network teardown");
                }
            }
        }
        let pins = deckhand_sys::ns::PinnedNamespaces::open(
            &dir.join("ns"),
            &[NsKind::Net, NsKind::Uts, NsKind::Ipc],
        );
        if let Err(e) = pins.release() {
            tracing::warn!(sandbox = %record.id, error = %e, "releasing namespaces");
        }
    }

    async fn stop_sandbox(&self, id: &str) -> Result<(), Status> {
        // An unknown id is NotFound, as containerd answers (the kubelet treats it as done).
        let mut record = self.sandbox(id)?;
        let lock = self.lock_for(id);
        let _g = lock.lock().await;
        let ids: Vec<String> = self
            .containers
            .lock()
            .unwrap()
            .values()
            .filter(|c| c.sandbox_id == id)
            .map(|c| c.id.clone())
            .collect();
        for cid in ids {
            self.stop_container(&cid, 0).await?;
        }
        if record.state == SandboxState::Ready {
            self.teardown_sandbox(&record).await;
            record.cni_attached = false;
            record.pod_init_pid = 0;
            record.state = SandboxState::NotReady;
            self.save_sandbox(&record)?;
        }
        Ok(())
    }

    async fn remove_sandbox(&self, id: &str) -> Result<(), Status> {
        if self.sandbox(id).is_err() {
            return Ok(());
        }
        self.stop_sandbox(id).await?;
        let lock = self.lock_for(id);
        let _g = lock.lock().await;
        let ids: Vec<String> = self
            .containers
            .lock()
            .unwrap()
            .values()
            .filter(|c| c.sandbox_id == id)
            .map(|c| c.id.clone())
            .collect();
        for cid in ids {
            self.remove_container(&cid).await?;
        }
        let shim = self.shim(id);
        if let Err(e) = shim.call(&ShimRequest::Shutdown).await {
            tracing::debug!(sandbox = id, error = %e, "shim shutdown (already gone?)");
        }
        let _ = std::fs::remove_file(self.layout.shim_socket(id));
        let dir = self.layout.sandbox_dir(id);
        std::fs::remove_dir_all(&dir)
            .or_else(|e| {
                if e.kind() == std::io::ErrorKind::NotFound {
                    Ok(())
                } else {
                    Err(e)
                }
            })
            .map_err(|e| internal(format!("removing {}: {e}", dir.display())))?;
        // The pod cgroup is ours only when the runtime chose it (no cgroup_parent from the
        // kubelet, which owns the ones it passes): remove it, and the shared root once empty.
        let default_parent = format!("{DEFAULT_CGROUP_ROOT}/{id}");
        let record = self.sandboxes.lock().unwrap().remove(id);
        if record.is_some_and(|r| r.cgroup_parent == default_parent) {
            let cgroups = self.oci.cgroups();
            if let Err(e) = cgroups.remove_tree(&default_parent) {
                tracing::warn!(sandbox = id, error = %e, "removing the pod cgroup");
            }
            for h in [
                "", "memory", "cpu", "cpuacct", "cpuset", "pids", "blkio", "devices", "freezer",
            ] {
                if let Ok(dir) = cgroups.dir(h, DEFAULT_CGROUP_ROOT) {
                    // Fails while other pods still use it: that is the point.
                    let _ = std::fs::remove_dir(dir);
                }
            }
        }
        self.locks.lock().unwrap().remove(id);
        Ok(())
    }

    fn sandbox_status(&self, id: &str) -> Result<api::PodSandboxStatus, Status> {
        let r = self.sandbox(id)?;
        let config = r.config();
        let ns_opts = config
            .linux
            .as_ref()
            .and_then(|l| l.security_context.as_ref())
            .and_then(|s| s.namespace_options.clone())
            .unwrap_or_default();
        Ok(api::PodSandboxStatus {
            id: r.id.clone(),
            metadata: config.metadata.clone(),
            state: sandbox_state_value(r.state),
            created_at: r.created_at,
            network: Some(api::PodSandboxNetworkStatus {
                ip: r.ip.clone(),
                additional_ips: r
                    .additional_ips
                    .iter()
                    .map(|ip| api::PodIp { ip: ip.clone() })
                    .collect(),
            }),
            linux: Some(api::LinuxPodSandboxStatus {
                namespaces: Some(api::Namespace {
                    options: Some(ns_opts),
                }),
            }),
            labels: config.labels.clone(),
            annotations: config.annotations.clone(),
            runtime_handler: r.runtime_handler.clone(),
        })
    }

    // ---------------------------------------------------------------- containers

    async fn create_container(
        &self,
        sandbox_id: &str,
        config: api::ContainerConfig,
    ) -> Result<String, Status> {
        let sandbox = self.sandbox(sandbox_id)?;
        if sandbox.state != SandboxState::Ready {
            return Err(Status::failed_precondition(format!(
                "pod sandbox {sandbox_id} is not ready: create a new sandbox"
            )));
        }
        let meta = config
            .metadata
            .clone()
            .ok_or_else(|| Status::invalid_argument("container config has no metadata"))?;
        if meta.name.is_empty() {
            return Err(Status::invalid_argument("container metadata needs a name"));
        }
        if let Some(existing) = self.containers.lock().unwrap().values().find(|c| {
            let m = c.metadata();
            c.sandbox_id == sandbox_id && m.name == meta.name && m.attempt == meta.attempt
        }) {
            return Err(Status::already_exists(format!(
                "container {} (attempt {}) already exists in sandbox {sandbox_id} as {}",
                meta.name, meta.attempt, existing.id
            )));
        }
        // A privileged container needs a privileged pod (the kubelet sets the sandbox's flag
        // when any container is privileged), as containerd enforces.
        let wants_privileged = config
            .linux
            .as_ref()
            .and_then(|l| l.security_context.as_ref())
            .is_some_and(|s| s.privileged);
        let pod_privileged = sandbox
            .config()
            .linux
            .and_then(|l| l.security_context)
            .is_some_and(|s| s.privileged);
        if wants_privileged && !pod_privileged {
            return Err(Status::invalid_argument(format!(
                "container {}: privileged containers need a privileged pod sandbox (set \
                 privileged in the sandbox's security context)",
                meta.name
            )));
        }
        let image_ref = config
            .image
            .as_ref()
            .map(|i| i.image.clone())
            .unwrap_or_default();
        if image_ref.is_empty() {
            return Err(Status::invalid_argument(format!(
                "container {}: no image given",
                meta.name
            )));
        }
        let images = self.images.clone();
        let lookup = image_ref.clone();
        let image = tokio::task::spawn_blocking(move || images.get(&lookup))
            .await
            .map_err(internal)?
            .map_err(|e| {
                Status::not_found(format!(
                    "container {}: image {image_ref:?} is not present on the node ({e}): pull it \
                     first",
                    meta.name
                ))
            })?;
        let id = state::new_id();
        let rootfs = self.layout.rootfs_dir(&id);
        let record = ContainerRecord {
            id: id.clone(),
            sandbox_id: sandbox_id.to_owned(),
            config: state::encode(&config),
            image: image_ref.clone(),
            image_id: image.id.to_string(),
            image_ref: format!(
                "{}@{}",
                image
                    .name
                    .split_once(':')
                    .map_or(image.name.as_str(), |(n, _)| {
                        // Keep the registry port, drop the tag.
                        if n.contains('/') || !image.name.contains('/') {
                            n
                        } else {
                            image.name.as_str()
                        }
                    }),
                image.digest
            ),
            stop_signal: image.config.stop_signal.clone(),
            log_path: {
                let dir = sandbox.config().log_directory;
                if dir.is_empty() || config.log_path.is_empty() {
                    String::new()
                } else {
                    Path::new(&dir).join(&config.log_path).display().to_string()
                }
            },
            created_at: state::now_ns(),
            rootfs: rootfs.clone(),
        };
        let lock = self.lock_for(&id);
        let _g = lock.lock().await;
        match self
            .create_container_inner(&sandbox, &record, &config, &image)
            .await
        {
            Ok(()) => Ok(id),
            Err(e) => {
                self.cleanup_container_files(&record).await;
                Err(e)
            }
        }
    }

    async fn create_container_inner(
        &self,
        sandbox: &SandboxRecord,
        record: &ContainerRecord,
        config: &api::ContainerConfig,
        image: &deckhand_image::Image,
    ) -> Result<(), Status> {
        let images = self.images.clone();
        let (id, img, rootfs) = (record.id.clone(), image.clone(), record.rootfs.clone());
        tokio::task::spawn_blocking(move || -> Result<(), Status> {
            let spec = images
                .prepare_rootfs(&id, &img)
                .map_err(|e| internal(format!("preparing the root file system: {e}")))?;
            std::fs::create_dir_all(&rootfs).map_err(internal)?;
            LinuxMounter
                .mount_overlay(&spec, &rootfs)
                .map_err(|e| internal(format!("mounting the root file system: {e}")))
        })
        .await
        .map_err(internal)??;
        let cc = convert::container_config(&self.layout, sandbox, config, image, &record.rootfs)?;
        let mut spec = cc
            .to_oci_spec(&record.id, self.oci.host())
            .map_err(|e| Status::invalid_argument(format!("container {}: {e}", record.id)))?;
        if cc.security.privileged {
            crate::spec::add_host_devices(&mut spec);
        }
        let spec = serde_json::to_value(&spec).map_err(internal)?;
        // The record first: if the runtime dies during the shim's create, the restarted one
        // still knows the container and can remove it.
        state::save_json(&self.layout.container_file(&record.id), record).map_err(internal)?;
        self.containers
            .lock()
            .unwrap()
            .insert(record.id.clone(), record.clone());
        let req = ShimRequest::Create {
            id: record.id.clone(),
            spec,
            log_path: (!record.log_path.is_empty()).then(|| PathBuf::from(&record.log_path)),
            stdin: config.stdin,
            stdin_once: config.stdin_once,
            tty: config.tty,
        };
        self.shim(&sandbox.id)
            .call(&req)
            .await
            .map_err(shim_status)?;
        Ok(())
    }

    /// Remove what a container owns besides its shim state: rootfs mount, snapshot, record.
    async fn cleanup_container_files(&self, record: &ContainerRecord) {
        let images = self.images.clone();
        let (id, rootfs) = (record.id.clone(), record.rootfs.clone());
        let _ = tokio::task::spawn_blocking(move || {
            if let Err(e) = LinuxMounter.unmount(&rootfs) {
                tracing::warn!(container = %id, error = %e, "unmounting rootfs");
            }
            let _ = std::fs::remove_dir(&rootfs);
            if let Err(e) = images.release_rootfs(&id) {
                tracing::debug!(container = %id, error = %e, "releasing rootfs snapshot");
            }
        })
        .await;
        let _ = std::fs::remove_file(self.layout.container_file(&record.id));
        self.containers.lock().unwrap().remove(&record.id);
    }

    async fn start_container(&self, id: &str) -> Result<(), Status> {
        self.container(id)?;
        let lock = self.lock_for(id);
        let _g = lock.lock().await;
        match self.oci_state(id).map(|s| s.status) {
            Some(ContainerStatus::Created) => {}
            Some(s) => {
                return Err(Status::failed_precondition(format!(
                    "container {id} is {s}: only a created container can be started"
                )))
            }
            None => {
                return Err(Status::failed_precondition(format!(
                    "container {id} has no runtime state (its shim is gone): remove it"
                )))
            }
        }
        // Start needs no parent: the runtime releases the init itself (a notify-socket write
        // and a state update), sparing the shim a helper run.
        self.oci.start(id).map_err(|e| match e {
            ContainerError::NotFound { .. } => Status::not_found(e.to_string()),
            ContainerError::InvalidState { .. } => Status::failed_precondition(e.to_string()),
            e => Status::internal(e.to_string()),
        })
    }

    /// Signal, wait up to `timeout` seconds, then SIGKILL. Stopping a stopped container
    /// succeeds.
    async fn stop_container(&self, id: &str, timeout: i64) -> Result<(), Status> {
        let r = match self.container(id) {
            Ok(r) => r,
            Err(_) => return Ok(()),
        };
        let state = self.oci_state(id);
        if state
            .as_ref()
            .is_none_or(|s| s.status == ContainerStatus::Stopped)
        {
            return Ok(());
        }
        let shim = self.shim(&r.sandbox_id);
        if timeout > 0 {
            let sig = r
                .stop_signal
                .as_deref()
                .and_then(parse_signal)
                .unwrap_or(libc::SIGTERM);
            shim.call(&ShimRequest::Kill {
                id: id.into(),
                signal: sig,
                all: false,
            })
            .await
            .map_err(shim_status)?;
            if shim
                .wait(id, Duration::from_secs(timeout as u64))
                .await
                .map_err(shim_status)?
                .is_some()
            {
                return Ok(());
            }
            tracing::info!(container = id, timeout, "did not stop in time: killing");
        }
        shim.call(&ShimRequest::Kill {
            id: id.into(),
            signal: libc::SIGKILL,
            all: true,
        })
        .await
        .map_err(shim_status)?;
        match shim
            .wait(id, Duration::from_secs(30))
            .await
            .map_err(shim_status)?
        {
            Some(_) => Ok(()),
            None => Err(Status::deadline_exceeded(format!(
                "container {id} did not exit 30 s after SIGKILL (process in uninterruptible \
                 sleep?)"
            ))),
        }
    }

    async fn remove_container(&self, id: &str) -> Result<(), Status> {
        let r = match self.container(id) {
            Ok(r) => r,
            Err(_) => return Ok(()),
        };
        let lock = self.lock_for(id);
        let _g = lock.lock().await;
        match self
            .shim(&r.sandbox_id)
            .call(&ShimRequest::Delete {
                id: id.into(),
                force: true,
            })
            .await
        {
            Ok(_) => {}
            Err(ShimClientError::Refused {
                kind: ErrorKind::NotFound,
                ..
            }) => {}
            Err(ShimClientError::Connect { .. }) => {
                // The shim is gone: its containers died with it. Clean up what is left.
                tracing::warn!(container = id, "shim unreachable; removing container state");
            }
            Err(e) => return Err(shim_status(e)),
        }
        // The shim has reaped the init and recorded its exit; the OCI state (libcontainer's,
        // the cgroup, the bundle, the status record) needs no parent to be removed.
        match self.oci.delete(id, false) {
            Ok(()) | Err(ContainerError::NotFound { .. }) => {}
            Err(e) => tracing::warn!(container = id, error = %e, "removing container OCI state"),
        }
        self.cleanup_container_files(&r).await;
        self.locks.lock().unwrap().remove(id);
        Ok(())
    }

    fn container_status(&self, id: &str) -> Result<api::ContainerStatus, Status> {
        let r = self.container(id)?;
        let config = r.config();
        let st = self.oci_state(id);
        let (state, started, finished, code, reason) = match &st {
            Some(s) => {
                let state = match s.status {
                    ContainerStatus::Created => api::ContainerState::ContainerCreated,
                    ContainerStatus::Running => api::ContainerState::ContainerRunning,
                    ContainerStatus::Stopped => api::ContainerState::ContainerExited,
                };
                let ns = |t: &chrono::DateTime<chrono::Utc>| t.timestamp_nanos_opt().unwrap_or(0);
                (
                    state,
                    s.started_at.as_ref().map(ns).unwrap_or(0),
                    s.exit.as_ref().map(|e| ns(&e.finished_at)).unwrap_or(0),
                    s.exit.as_ref().map(|e| e.exit_code).unwrap_or(0),
                    s.exit
                        .as_ref()
                        .map(|e| e.reason.clone())
                        .unwrap_or_default(),
                )
            }
            None => (
                api::ContainerState::ContainerUnknown,
                0,
                0,
                0,
                String::new(),
            ),
        };
        let linux_res = config.linux.as_ref().and_then(|l| l.resources.clone());
        Ok(api::ContainerStatus {
            id: r.id.clone(),
            metadata: config.metadata.clone(),
            state: state as i32,
            created_at: r.created_at,
            started_at: started,
            finished_at: finished,
            exit_code: code,
            image: Some(api::ImageSpec {
                image: r.image.clone(),
                ..Default::default()
            }),
            image_ref: r.image_ref.clone(),
            reason,
            message: String::new(),
            labels: config.labels.clone(),
            annotations: config.annotations.clone(),
            mounts: config.mounts.clone(),
            log_path: r.log_path.clone(),
            resources: linux_res.map(|l| api::ContainerResources {
                linux: Some(l),
                windows: None,
            }),
            image_id: r.image_id.clone(),
            user: None,
        })
    }

    fn container_state_value(&self, id: &str) -> i32 {
        (match self.oci_state(id).map(|s| s.status) {
            Some(ContainerStatus::Created) => api::ContainerState::ContainerCreated,
            Some(ContainerStatus::Running) => api::ContainerState::ContainerRunning,
            Some(ContainerStatus::Stopped) => api::ContainerState::ContainerExited,
            None => api::ContainerState::ContainerUnknown,
        }) as i32
    }

    async fn exec_sync(
        &self,
        id: &str,
        cmd: Vec<String>,
        timeout: i64,
    ) -> Result<api::ExecSyncResponse, Status> {
        let r = self.container(id)?;
        if cmd.is_empty() {
            return Err(Status::invalid_argument("exec: no command given"));
        }
        if self.oci_state(id).map(|s| s.status) != Some(ContainerStatus::Running) {
            return Err(Status::failed_precondition(format!(
                "container {id} is not running"
            )));
        }
        let mut stream = self
            .shim(&r.sandbox_id)
            .stream(&ShimRequest::Exec {
                id: id.into(),
                args: cmd.clone(),
                env: Vec::new(),
                stdin: false,
                tty: false,
            })
            .await
            .map_err(shim_status)?;
        let collect = async {
            let (mut out, mut err) = (Vec::new(), Vec::new());
            while let Some((kind, payload)) = stream.next_frame().await.map_err(internal)? {
                match kind {
                    FrameKind::Stdout => out.extend_from_slice(&payload),
                    FrameKind::Stderr => err.extend_from_slice(&payload),
                    FrameKind::Exit => {
                        let code = String::from_utf8_lossy(&payload).parse().unwrap_or(-1);
                        return Ok((out, err, code));
                    }
                    FrameKind::Stdin | FrameKind::Resize => {}
                }
            }
            Err(internal(format!(
                "exec in {id}: the shim closed the stream early"
            )))
        };
        let (stdout, stderr, exit_code) = if timeout > 0 {
            tokio::time::timeout(Duration::from_secs(timeout as u64), collect)
                .await
                .map_err(|_| {
                    Status::deadline_exceeded(format!(
                        "timeout {timeout}s exceeded: command {cmd:?} in container {id} was killed"
                    ))
                })??
        } else {
            collect.await?
        };
        Ok(api::ExecSyncResponse {
            stdout,
            stderr,
            exit_code,
        })
    }

    async fn update_resources(
        &self,
        id: &str,
        linux: Option<api::LinuxContainerResources>,
    ) -> Result<(), Status> {
        let mut r = self.container(id)?;
        let Some(res) = linux else {
            return Ok(());
        };
        let opt = |v: i64| (v > 0).then_some(v);
        let resources = crate::spec::Resources {
            cpu_shares: opt(res.cpu_shares).map(|v| v as u64),
            cpu_quota: opt(res.cpu_quota),
            cpu_period: opt(res.cpu_period).map(|v| v as u64),
            memory_limit: opt(res.memory_limit_in_bytes),
            pids_limit: None,
            cpuset_cpus: Some(res.cpuset_cpus.clone()).filter(|s| !s.is_empty()),
            cpuset_mems: Some(res.cpuset_mems.clone()).filter(|s| !s.is_empty()),
        };
        self.oci
            .update_resources(id, &resources)
            .map_err(|e| match e {
                crate::container::ContainerError::NotFound { .. } => {
                    Status::not_found(e.to_string())
                }
                crate::container::ContainerError::InvalidState { .. } => {
                    Status::failed_precondition(e.to_string())
                }
                e => internal(format!("updating resources: {e}")),
            })?;
        // Remember them: ContainerStatus reports the resources in force.
        let mut config = r.config();
        let mut linux_cfg = config.linux.unwrap_or_default();
        linux_cfg.resources = Some(res);
        config.linux = Some(linux_cfg);
        r.config = state::encode(&config);
        state::save_json(&self.layout.container_file(id), &r).map_err(internal)?;
        self.containers.lock().unwrap().insert(id.to_owned(), r);
        Ok(())
    }

    fn container_stats(&self, r: &ContainerRecord) -> api::ContainerStats {
        let config = r.config();
        let now = state::now_ns();
        let (cpu, memory) = match self.oci.stats(&r.id) {
            Ok(s) => (
                Some(api::CpuUsage {
                    timestamp: now,
                    usage_core_nano_seconds: Some(api::UInt64Value {
                        value: s.cpu.usage_ns,
                    }),
                    usage_nano_cores: None,
                }),
                Some(api::MemoryUsage {
                    timestamp: now,
                    working_set_bytes: Some(api::UInt64Value {
                        value: s.memory.working_set,
                    }),
                    available_bytes: None,
                    usage_bytes: Some(api::UInt64Value {
                        value: s.memory.usage,
                    }),
                    rss_bytes: Some(api::UInt64Value {
                        value: s.memory.rss,
                    }),
                    page_faults: Some(api::UInt64Value {
                        value: s.memory.page_faults,
                    }),
                    major_page_faults: Some(api::UInt64Value {
                        value: s.memory.major_page_faults,
                    }),
                }),
            ),
            Err(_) => (None, None),
        };
        api::ContainerStats {
            attributes: Some(api::ContainerAttributes {
                id: r.id.clone(),
                metadata: config.metadata.clone(),
                labels: config.labels.clone(),
                annotations: config.annotations.clone(),
            }),
            cpu,
            memory,
            writable_layer: Some(api::FilesystemUsage {
                timestamp: now,
                fs_id: Some(api::FilesystemIdentifier {
                    mountpoint: self.data_dir.join("images").display().to_string(),
                }),
                used_bytes: Some(api::UInt64Value {
                    value: dir_usage(&self.images.root().join("snapshots/active").join(&r.id)),
                }),
                inodes_used: None,
            }),
            swap: None,
        }
    }
}

/// Bytes used under `dir` (a container's writable layer), without following symlinks.
fn dir_usage(dir: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            if let Ok(m) = e.metadata() {
                if m.is_dir() {
                    stack.push(e.path());
                } else {
                    total += m.len();
                }
            }
        }
    }
    total
}

type CriResult<T> = Result<Response<T>, Status>;

#[tonic::async_trait]
impl RuntimeServiceApi for RuntimeService {
    async fn version(&self, _r: Request<api::VersionRequest>) -> CriResult<api::VersionResponse> {
        Ok(Response::new(api::VersionResponse {
            version: KUBE_API_VERSION.to_string(),
            runtime_name: RUNTIME_NAME.to_string(),
            runtime_version: env!("CARGO_PKG_VERSION").to_string(),
            runtime_api_version: API_VERSION.to_string(),
        }))
    }

    async fn status(&self, _r: Request<api::StatusRequest>) -> CriResult<api::StatusResponse> {
        let network = match &self.inner.network {
            None => {
                Err("no CNI configuration: pass --cni-conf-dir with a network config".to_string())
            }
            Some(n) => n.status().await,
        };
        let conditions = vec![
            api::RuntimeCondition {
                r#type: RUNTIME_READY.to_string(),
                status: true,
                reason: String::new(),
                message: String::new(),
            },
            api::RuntimeCondition {
                r#type: NETWORK_READY.to_string(),
                status: network.is_ok(),
                reason: if network.is_ok() {
                    String::new()
                } else {
                    "NetworkPluginNotReady".to_string()
                },
                message: network
                    .err()
                    .map(|m| format!("Network plugin returns error: {m}"))
                    .unwrap_or_default(),
            },
        ];
        let _ = self.inner.network_ready();
        Ok(Response::new(api::StatusResponse {
            status: Some(api::RuntimeStatus { conditions }),
            ..Default::default()
        }))
    }

    async fn run_pod_sandbox(
        &self,
        r: Request<api::RunPodSandboxRequest>,
    ) -> CriResult<api::RunPodSandboxResponse> {
        let r = r.into_inner();
        let config = r
            .config
            .ok_or_else(|| Status::invalid_argument("RunPodSandbox without a config"))?;
        let id = self.inner.run_sandbox(config, r.runtime_handler).await?;
        Ok(Response::new(api::RunPodSandboxResponse {
            pod_sandbox_id: id,
        }))
    }

    async fn stop_pod_sandbox(
        &self,
        r: Request<api::StopPodSandboxRequest>,
    ) -> CriResult<api::StopPodSandboxResponse> {
        self.inner
            .stop_sandbox(&r.into_inner().pod_sandbox_id)
            .await?;
        Ok(Response::new(api::StopPodSandboxResponse {}))
    }

    async fn remove_pod_sandbox(
        &self,
        r: Request<api::RemovePodSandboxRequest>,
    ) -> CriResult<api::RemovePodSandboxResponse> {
        self.inner
            .remove_sandbox(&r.into_inner().pod_sandbox_id)
            .await?;
        Ok(Response::new(api::RemovePodSandboxResponse {}))
    }

    async fn pod_sandbox_status(
        &self,
        r: Request<api::PodSandboxStatusRequest>,
    ) -> CriResult<api::PodSandboxStatusResponse> {
        let r = r.into_inner();
        let status = self.inner.sandbox_status(&r.pod_sandbox_id)?;
        // The pod's container statuses (as the evented PLEG reads them), with verbose only.
        let containers = if r.verbose {
            let ids: Vec<String> = self
                .inner
                .containers
                .lock()
                .unwrap()
                .values()
                .filter(|c| c.sandbox_id == r.pod_sandbox_id)
                .map(|c| c.id.clone())
                .collect();
            ids.iter()
                .filter_map(|id| self.inner.container_status(id).ok())
                .collect()
        } else {
            Vec::new()
        };
        Ok(Response::new(api::PodSandboxStatusResponse {
            status: Some(status),
            info: HashMap::new(),
            containers_statuses: containers,
            timestamp: state::now_ns(),
        }))
    }

    async fn list_pod_sandbox(
        &self,
        r: Request<api::ListPodSandboxRequest>,
    ) -> CriResult<api::ListPodSandboxResponse> {
        let filter = r.into_inner().filter.unwrap_or_default();
        let items = self
            .inner
            .sandboxes
            .lock()
            .unwrap()
            .values()
            .filter(|s| filter.id.is_empty() || s.id.starts_with(&filter.id))
            .filter(|s| {
                filter
                    .state
                    .as_ref()
                    .is_none_or(|v| v.state == sandbox_state_value(s.state))
            })
            .map(|s| {
                let c = s.config();
                api::PodSandbox {
                    id: s.id.clone(),
                    metadata: c.metadata.clone(),
                    state: sandbox_state_value(s.state),
                    created_at: s.created_at,
                    labels: c.labels.clone(),
                    annotations: c.annotations.clone(),
                    runtime_handler: s.runtime_handler.clone(),
                }
            })
            .filter(|p| labels_match(&p.labels, &filter.label_selector))
            .collect();
        Ok(Response::new(api::ListPodSandboxResponse { items }))
    }

    async fn create_container(
        &self,
        r: Request<api::CreateContainerRequest>,
    ) -> CriResult<api::CreateContainerResponse> {
        let r = r.into_inner();
        let config = r
            .config
            .ok_or_else(|| Status::invalid_argument("CreateContainer without a config"))?;
        let id = self
            .inner
            .create_container(&r.pod_sandbox_id, config)
            .await?;
        Ok(Response::new(api::CreateContainerResponse {
            container_id: id,
        }))
    }

    async fn start_container(
        &self,
        r: Request<api::StartContainerRequest>,
    ) -> CriResult<api::StartContainerResponse> {
        self.inner
            .start_container(&r.into_inner().container_id)
            .await?;
        Ok(Response::new(api::StartContainerResponse {}))
    }

    async fn stop_container(
        &self,
        r: Request<api::StopContainerRequest>,
    ) -> CriResult<api::StopContainerResponse> {
        let r = r.into_inner();
        // An unknown id is NotFound here (containerd does the same); a known, stopped one is Ok.
        self.inner.container(&r.container_id)?;
        self.inner
            .stop_container(&r.container_id, r.timeout)
            .await?;
        Ok(Response::new(api::StopContainerResponse {}))
    }

    async fn remove_container(
        &self,
        r: Request<api::RemoveContainerRequest>,
    ) -> CriResult<api::RemoveContainerResponse> {
        self.inner
            .remove_container(&r.into_inner().container_id)
            .await?;
        Ok(Response::new(api::RemoveContainerResponse {}))
    }

    async fn list_containers(
        &self,
        r: Request<api::ListContainersRequest>,
    ) -> CriResult<api::ListContainersResponse> {
        let filter = r.into_inner().filter.unwrap_or_default();
        let records: Vec<ContainerRecord> = self
            .inner
            .containers
            .lock()
            .unwrap()
            .values()
            .cloned()
            .collect();
        let containers = records
            .into_iter()
            .filter(|c| filter.id.is_empty() || c.id.starts_with(&filter.id))
            .filter(|c| {
                filter.pod_sandbox_id.is_empty() || c.sandbox_id.starts_with(&filter.pod_sandbox_id)
            })
            .filter_map(|c| {
                let state = self.inner.container_state_value(&c.id);
                if filter.state.as_ref().is_some_and(|v| v.state != state) {
                    return None;
                }
                let config = c.config();
                if !labels_match(&config.labels, &filter.label_selector) {
                    return None;
                }
                Some(api::Container {
                    id: c.id.clone(),
                    pod_sandbox_id: c.sandbox_id.clone(),
                    metadata: config.metadata.clone(),
                    image: Some(api::ImageSpec {
                        image: c.image.clone(),
                        ..Default::default()
                    }),
                    image_ref: c.image_ref.clone(),
                    state,
                    created_at: c.created_at,
                    labels: config.labels.clone(),
                    annotations: config.annotations.clone(),
                    image_id: c.image_id.clone(),
                })
            })
            .collect();
        Ok(Response::new(api::ListContainersResponse { containers }))
    }

    async fn container_status(
        &self,
        r: Request<api::ContainerStatusRequest>,
    ) -> CriResult<api::ContainerStatusResponse> {
        let status = self.inner.container_status(&r.into_inner().container_id)?;
        Ok(Response::new(api::ContainerStatusResponse {
            status: Some(status),
            info: HashMap::new(),
        }))
    }

    async fn update_container_resources(
        &self,
        r: Request<api::UpdateContainerResourcesRequest>,
    ) -> CriResult<api::UpdateContainerResourcesResponse> {
        let r = r.into_inner();
        self.inner
            .update_resources(&r.container_id, r.linux)
            .await?;
        Ok(Response::new(api::UpdateContainerResourcesResponse {}))
    }

    async fn reopen_container_log(
        &self,
        r: Request<api::ReopenContainerLogRequest>,
    ) -> CriResult<api::ReopenContainerLogResponse> {
        let id = r.into_inner().container_id;
        let c = self.inner.container(&id)?;
        if self.inner.oci_state(&id).map(|s| s.status) != Some(ContainerStatus::Running) {
            return Err(Status::failed_precondition(format!(
                "container {id} is not running: its log cannot be reopened"
            )));
        }
        self.inner
            .shim(&c.sandbox_id)
            .call(&ShimRequest::ReopenLog { id })
            .await
            .map_err(shim_status)?;
        Ok(Response::new(api::ReopenContainerLogResponse {}))
    }

    async fn exec_sync(
        &self,
        r: Request<api::ExecSyncRequest>,
    ) -> CriResult<api::ExecSyncResponse> {
        let r = r.into_inner();
        let resp = self
            .inner
            .exec_sync(&r.container_id, r.cmd, r.timeout)
            .await?;
        Ok(Response::new(resp))
    }

    async fn exec(&self, r: Request<api::ExecRequest>) -> CriResult<api::ExecResponse> {
        let r = r.into_inner();
        self.running_container_shim(&r.container_id)?;
        Ok(Response::new(self.streaming()?.get_exec(&r)?))
    }

    async fn attach(&self, r: Request<api::AttachRequest>) -> CriResult<api::AttachResponse> {
        let r = r.into_inner();
        self.running_container_shim(&r.container_id)?;
        Ok(Response::new(self.streaming()?.get_attach(&r)?))
    }

    async fn port_forward(
        &self,
        r: Request<api::PortForwardRequest>,
    ) -> CriResult<api::PortForwardResponse> {
        let r = r.into_inner();
        self.sandbox_netns(&r.pod_sandbox_id)?;
        Ok(Response::new(self.streaming()?.get_port_forward(&r)?))
    }

    async fn container_stats(
        &self,
        r: Request<api::ContainerStatsRequest>,
    ) -> CriResult<api::ContainerStatsResponse> {
        let c = self.inner.container(&r.into_inner().container_id)?;
        Ok(Response::new(api::ContainerStatsResponse {
            stats: Some(self.inner.container_stats(&c)),
        }))
    }

    async fn list_container_stats(
        &self,
        r: Request<api::ListContainerStatsRequest>,
    ) -> CriResult<api::ListContainerStatsResponse> {
        let filter = r.into_inner().filter.unwrap_or_default();
        let records: Vec<ContainerRecord> = self
            .inner
            .containers
            .lock()
            .unwrap()
            .values()
            .cloned()
            .collect();
        let stats = records
            .iter()
            .filter(|c| filter.id.is_empty() || c.id.starts_with(&filter.id))
            .filter(|c| {
                filter.pod_sandbox_id.is_empty() || c.sandbox_id.starts_with(&filter.pod_sandbox_id)
            })
            .filter(|c| labels_match(&c.config().labels, &filter.label_selector))
            // Only running containers have usage (as containerd lists them).
            .filter(|c| {
                self.inner.container_state_value(&c.id)
                    == api::ContainerState::ContainerRunning as i32
            })
            .map(|c| self.inner.container_stats(c))
            .collect();
        Ok(Response::new(api::ListContainerStatsResponse { stats }))
    }

    async fn pod_sandbox_stats(
        &self,
        r: Request<api::PodSandboxStatsRequest>,
    ) -> CriResult<api::PodSandboxStatsResponse> {
        let id = r.into_inner().pod_sandbox_id;
        let stats = self.sandbox_stats(&id)?;
        Ok(Response::new(api::PodSandboxStatsResponse {
            stats: Some(stats),
        }))
    }

    async fn list_pod_sandbox_stats(
        &self,
        r: Request<api::ListPodSandboxStatsRequest>,
    ) -> CriResult<api::ListPodSandboxStatsResponse> {
        let filter = r.into_inner().filter.unwrap_or_default();
        let ids: Vec<String> = self
            .inner
            .sandboxes
            .lock()
            .unwrap()
            .values()
            .filter(|s| filter.id.is_empty() || s.id.starts_with(&filter.id))
            .filter(|s| labels_match(&s.config().labels, &filter.label_selector))
            .filter(|s| s.state == SandboxState::Ready)
            .map(|s| s.id.clone())
            .collect();
        let stats = ids
            .iter()
            .filter_map(|id| self.sandbox_stats(id).ok())
            .collect();
        Ok(Response::new(api::ListPodSandboxStatsResponse { stats }))
    }

    async fn checkpoint_container(
        &self,
        _r: Request<api::CheckpointContainerRequest>,
    ) -> CriResult<api::CheckpointContainerResponse> {
        Err(Status::unimplemented(
            "checkpointing containers is not supported by deckhand",
        ))
    }

    type GetContainerEventsStream =
        tokio_stream::Empty<Result<api::ContainerEventResponse, Status>>;

    async fn get_container_events(
        &self,
        _r: Request<api::GetEventsRequest>,
    ) -> CriResult<Self::GetContainerEventsStream> {
        Err(Status::unimplemented(
            "container events are not served: use relisting (the kubelet's default PLEG)",
        ))
    }

    async fn list_metric_descriptors(
        &self,
        _r: Request<api::ListMetricDescriptorsRequest>,
    ) -> CriResult<api::ListMetricDescriptorsResponse> {
        Ok(Response::new(api::ListMetricDescriptorsResponse {
            descriptors: Vec::new(),
        }))
    }

    async fn list_pod_sandbox_metrics(
        &self,
        _r: Request<api::ListPodSandboxMetricsRequest>,
    ) -> CriResult<api::ListPodSandboxMetricsResponse> {
        Ok(Response::new(api::ListPodSandboxMetricsResponse {
            pod_metrics: Vec::new(),
        }))
    }

    async fn runtime_config(
        &self,
        _r: Request<api::RuntimeConfigRequest>,
    ) -> CriResult<api::RuntimeConfigResponse> {
        Ok(Response::new(api::RuntimeConfigResponse {
            linux: Some(api::LinuxRuntimeConfiguration {
                cgroup_driver: api::CgroupDriver::Cgroupfs as i32,
            }),
        }))
    }

    async fn update_runtime_config(
        &self,
        _r: Request<api::UpdateRuntimeConfigRequest>,
    ) -> CriResult<api::UpdateRuntimeConfigResponse> {
        // The pod CIDR reaches the CNI config through the agent; nothing to do here.
        Ok(Response::new(api::UpdateRuntimeConfigResponse {}))
    }
}

impl RuntimeService {
    fn sandbox_stats(&self, id: &str) -> Result<api::PodSandboxStats, Status> {
        let s = self.inner.sandbox(id)?;
        let config = s.config();
        let records: Vec<ContainerRecord> = self
            .inner
            .containers
            .lock()
            .unwrap()
            .values()
            .filter(|c| c.sandbox_id == id)
            .cloned()
            .collect();
        let containers: Vec<api::ContainerStats> = records
            .iter()
            .filter(|c| {
                self.inner.container_state_value(&c.id)
                    == api::ContainerState::ContainerRunning as i32
            })
            .map(|c| self.inner.container_stats(c))
            .collect();
        let now = state::now_ns();
        let sum = |f: &dyn Fn(&api::ContainerStats) -> Option<u64>| -> u64 {
            containers.iter().filter_map(f).sum()
        };
        let cpu = sum(&|c| {
            c.cpu
                .as_ref()?
                .usage_core_nano_seconds
                .as_ref()
                .map(|v| v.value)
        });
        let ws = sum(&|c| {
            c.memory
                .as_ref()?
                .working_set_bytes
                .as_ref()
                .map(|v| v.value)
        });
        let usage = sum(&|c| c.memory.as_ref()?.usage_bytes.as_ref().map(|v| v.value));
        let rss = sum(&|c| c.memory.as_ref()?.rss_bytes.as_ref().map(|v| v.value));
        Ok(api::PodSandboxStats {
            attributes: Some(api::PodSandboxAttributes {
                id: s.id.clone(),
                metadata: config.metadata.clone(),
                labels: config.labels.clone(),
                annotations: config.annotations.clone(),
            }),
            linux: Some(api::LinuxPodSandboxStats {
                cpu: Some(api::CpuUsage {
                    timestamp: now,
                    usage_core_nano_seconds: Some(api::UInt64Value { value: cpu }),
                    usage_nano_cores: None,
                }),
                memory: Some(api::MemoryUsage {
                    timestamp: now,
                    working_set_bytes: Some(api::UInt64Value { value: ws }),
                    available_bytes: None,
                    usage_bytes: Some(api::UInt64Value { value: usage }),
                    rss_bytes: Some(api::UInt64Value { value: rss }),
                    page_faults: None,
                    major_page_faults: None,
                }),
                network: None,
                process: Some(api::ProcessUsage {
                    timestamp: now,
                    process_count: Some(api::UInt64Value {
                        value: containers.len() as u64,
                    }),
                }),
                containers,
            }),
            windows: None,
        })
    }
}
