//! The CNI caller: what libcni / containerd's go-cni do for a container runtime.
//!
//! The runtime owns a pod sandbox's network namespace; networking it is delegated to the
//! plugin chain of the node's network config (CNI spec 1.1, "Section 2: Execution Protocol" and
//! "Section 3: Execution of Network Configurations"). This module:
//!
//! - loads the network config afresh on every call (`config.rs`), so the conflist the node agent
//!   writes after startup is picked up without a restart;
//! - runs the chain for ADD (in order, chaining `prevResult`), DEL (reverse, with the cached
//!   result), CHECK, STATUS and GC (`exec.rs` runs one plugin);
//! - caches what an ADD did, with the config it used (`cache.rs`), so teardown is exact even if the
//!   conf dir changed in between;
//! - undoes a half-done ADD before reporting its failure: an error from [`CniCaller::add`] means
//!   nothing of the attachment is left (no IP reserved, no link), unless the rollback itself
//!   failed, which is logged and left to the runtime's teardown DEL.
//!
//! Operations on different attachments run concurrently (plugins lock their own state, e.g.
//! host-local's data dir); operations on the same attachment (container ID + interface) are
//! serialized, so a DEL racing an ADD sees either nothing or the whole ADD.

mod add;
mod cache;
mod check;
mod config;
mod del;
mod error;
mod exec;
mod gc;
mod result;
mod status;

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use serde_json::{Map, Value};

pub use config::{CniVersion, NetworkConfigList, PluginConfig};
pub use error::CniError;
pub use result::{AddResult, Dns, Interface, IpConfig, IpNet, PodIps, ResultError, Route};

/// Where the caller finds its network config, plugins and cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CniConfig {
    /// Holds the network config (`/etc/cni/net.d` on a stock node).
    pub conf_dir: PathBuf,
    /// Searched in order for plugin binaries, and passed to plugins as CNI_PATH so they find
    /// their delegates (bridge → host-local).
    pub bin_dirs: Vec<PathBuf>,
    /// Result cache (libcni's `/var/lib/cni`).
    pub cache_dir: PathBuf,
}

/// How long one plugin invocation may take before it is killed. Generous: a plugin may wait on
/// host-local's file lock behind many parallel ADDs, and the kubelet's own CRI deadline (2 min)
/// bounds the whole sandbox start anyway.
pub const DEFAULT_PLUGIN_TIMEOUT: Duration = Duration::from_secs(60);

/// Runs the node's CNI network for pod sandboxes. Cheap to share (`Arc`), safe to call
/// concurrently.
#[derive(Debug)]
pub struct CniCaller {
    config: CniConfig,
    plugin_timeout: Duration,
    locks: AttachmentLocks,
}

/// One network attachment of a pod sandbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    /// The sandbox ID (CNI_CONTAINERID, K8S_POD_INFRA_CONTAINER_ID).
    pub container_id: String,
    /// The sandbox's network namespace (a bind-mounted nsfs file).
    pub netns: PathBuf,
    /// Interface inside the pod; "eth0" by default.
    pub ifname: String,
    pub pod_namespace: String,
    pub pod_name: String,
    pub pod_uid: String,
    /// Only mappings with a host port are passed (as containerd does); portmap acts on them.
    pub port_mappings: Vec<PortMapping>,
    /// Pod bandwidth limits for plugins with the `bandwidth` capability.
    pub bandwidth: Option<Bandwidth>,
}

impl Default for Attachment {
    fn default() -> Self {
        Attachment {
            container_id: String::new(),
            netns: PathBuf::new(),
            ifname: "eth0".into(),
            pod_namespace: String::new(),
            pod_name: String::new(),
            pod_uid: String::new(),
            port_mappings: Vec::new(),
            bandwidth: None,
        }
    }
}

/// A `hostPort` of a pod container, in the `portMappings` capability's shape.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PortMapping {
    #[serde(rename = "hostPort")]
    pub host_port: u16,
    #[serde(rename = "containerPort")]
    pub container_port: u16,
    pub protocol: Protocol,
    /// Listen only on this host address; all addresses when `None`.
    #[serde(rename = "hostIP", skip_serializing_if = "Option::is_none")]
    pub host_ip: Option<IpAddr>,
}

/// CNI spells protocols in lower case (go-cni lowercases Kubernetes' "TCP").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Tcp,
    Udp,
    Sctp,
}

/// The `bandwidth` capability: rates in bits per second, bursts in bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Bandwidth {
    pub ingress_rate: u64,
    pub ingress_burst: u64,
    pub egress_rate: u64,
    pub egress_burst: u64,
}

/// An attachment that should exist, for [`CniCaller::gc`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct AttachmentKey {
    #[serde(rename = "containerID")]
    pub container_id: String,
    #[serde(rename = "ifname")]
    pub ifname: String,
}

impl CniCaller {
    pub fn new(config: CniConfig) -> CniCaller {
        CniCaller {
            config,
            plugin_timeout: DEFAULT_PLUGIN_TIMEOUT,
            locks: AttachmentLocks::default(),
        }
    }

    /// Limit for each plugin invocation (not for the whole chain).
    pub fn with_plugin_timeout(mut self, timeout: Duration) -> CniCaller {
        self.plugin_timeout = timeout;
        self
    }

    pub fn config(&self) -> &CniConfig {
        &self.config
    }

    /// The network the conf dir currently holds, validated (what the next ADD would use).
    pub fn network(&self) -> Result<NetworkConfigList, CniError> {
        NetworkConfigList::load_dir(&self.config.conf_dir)
    }

    fn cache_dir(&self) -> &Path {
        &self.config.cache_dir
    }
}

impl Attachment {
    fn validate(&self) -> Result<(), CniError> {
        let invalid = |reason: String| CniError::InvalidAttachment {
            container_id: self.container_id.clone(),
            reason,
        };
        if self.container_id.is_empty() {
            return Err(invalid("the container ID is empty".into()));
        }
        // The ID and ifname become part of cache file names and plugin state paths.
        if self.container_id.contains(['/', ';', '=']) || self.container_id.starts_with('.') {
            return Err(invalid(
                "the container ID may not contain '/', ';' or '=' or start with '.'".into(),
            ));
        }
        let ifname = &self.ifname;
        if ifname.is_empty()
            || ifname.len() > 15
            || ifname == "."
            || ifname == ".."
            || ifname.contains(|c: char| c == '/' || c == ':' || c.is_whitespace())
        {
            return Err(invalid(format!(
                "interface name {ifname:?} is not a Linux interface name (1-15 characters, no \
                 '/', ':' or spaces)"
            )));
        }
        for (what, value) in [
            ("pod namespace", &self.pod_namespace),
            ("pod name", &self.pod_name),
            ("pod UID", &self.pod_uid),
        ] {
            if value.contains([';', '=']) {
                return Err(invalid(format!(
                    "the {what} {value:?} contains ';' or '=', which CNI_ARGS cannot carry"
                )));
            }
        }
        Ok(())
    }

    /// CNI_ARGS as key/value pairs, in the order containerd sends them.
    fn cni_args(&self) -> Vec<[String; 2]> {
        let mut args = vec![["IgnoreUnknown".to_string(), "1".to_string()]];
        for (key, value) in [
            ("K8S_POD_NAMESPACE", &self.pod_namespace),
            ("K8S_POD_NAME", &self.pod_name),
            ("K8S_POD_INFRA_CONTAINER_ID", &self.container_id),
            ("K8S_POD_UID", &self.pod_uid),
        ] {
            if !value.is_empty() {
                args.push([key.to_string(), value.clone()]);
            }
        }
        args
    }

    /// The runtime's values for the capabilities plugins may declare.
    fn capability_args(&self) -> Map<String, Value> {
        let mut caps = Map::new();
        let mappings: Vec<&PortMapping> = self
            .port_mappings
            .iter()
            .filter(|m| m.host_port != 0)
            .collect();
        if !mappings.is_empty() {
            caps.insert(
                "portMappings".into(),
                serde_json::to_value(mappings).expect("port mappings serialize"),
            );
        }
        if let Some(bw) = &self.bandwidth {
            caps.insert(
                "bandwidth".into(),
                serde_json::to_value(bw).expect("bandwidth serializes"),
            );
        }
        caps
    }
}

fn format_cni_args(args: &[[String; 2]]) -> String {
    args.iter()
        .map(|[k, v]| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(";")
}

/// (container ID, interface name).
type AttachmentId = (String, String);

/// Per-attachment mutexes, dropped from the map when the last user lets go.
#[derive(Debug, Default)]
struct AttachmentLocks {
    map: Mutex<HashMap<AttachmentId, Arc<tokio::sync::Mutex<()>>>>,
}

struct AttachmentGuard<'a> {
    locks: &'a AttachmentLocks,
    key: AttachmentId,
    lock: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl AttachmentLocks {
    async fn lock(&self, container_id: &str, ifname: &str) -> AttachmentGuard<'_> {
        let key = (container_id.to_string(), ifname.to_string());
        let mutex = {
            let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
            map.entry(key.clone()).or_default().clone()
        };
        let guard = mutex.lock_owned().await;
        AttachmentGuard {
            locks: self,
            key,
            lock: Some(guard),
        }
    }
}

impl Drop for AttachmentGuard<'_> {
    fn drop(&mut self) {
        drop(self.lock.take());
        let mut map = self.locks.map.lock().unwrap_or_else(|e| e.into_inner());
        // Only the map holds it now: nobody waits, so the entry can go.
        if map
            .get(&self.key)
            .is_some_and(|m| Arc::strong_count(m) == 1)
        {
            map.remove(&self.key);
        }
    }
}

/// The cached attachments for (container, ifname): first under the current network's name
/// (the direct path), else by scanning the cache, which finds them even after the conf dir's
/// network was renamed or removed.
fn cached_attachments(
    cache_dir: &Path,
    current: Option<&NetworkConfigList>,
    container_id: &str,
    ifname: &str,
) -> Result<Vec<cache::Entry>, CniError> {
    if let Some(list) = current {
        let path = cache::path(cache_dir, &list.name, container_id, ifname);
        if let Some(entry) = cache::read(&path)? {
            return Ok(vec![entry]);
        }
    }
    cache::scan(cache_dir, None, Some((container_id, ifname)))
}

#[cfg(test)]
mod tests;
