//! Node lifecycle decisions: when a silent node's conditions go Unknown, which condition taints
//! it carries, and when pods on a NoExecute-tainted node are evicted.
//!
//! Follows the node lifecycle controller (`pkg/controller/nodelifecycle`) and its taint-based
//! eviction (`pkg/controller/tainteviction`):
//! - a node is heard from through its Lease (`renewTime`) and its Ready condition's
//!   `lastHeartbeatTime`; if neither moved for `--node-monitor-grace-period` (40 s;
//!   `--node-startup-grace-period`, 60 s, while it has never posted Ready) its
//!   Ready, MemoryPressure, DiskPressure and PIDPressure conditions become Unknown with reason
//!   `NodeStatusUnknown` ("Kubelet stopped posting node status."), or `NodeStatusNeverUpdated`
//!   for a condition never posted. The Lease's leaseDurationSeconds is not consulted, as upstream.
//! - taints follow conditions: Ready=False → `node.kubernetes.io/not-ready`, Ready=Unknown →
//!   `node.kubernetes.io/unreachable`, both NoExecute and NoSchedule; memory/disk/PID pressure
//!   and NetworkUnavailable → their NoSchedule taints; `spec.unschedulable` →
//!   `node.kubernetes.io/unschedulable:NoSchedule`. Added taints carry `timeAdded`.
//! - a pod on a node with NoExecute taints is evicted at once if it does not tolerate one of
//!   them, otherwise after the smallest `tolerationSeconds` of the tolerations used (never, if
//!   none of them sets it), counted from the taint's `timeAdded` (upstream counts from when it
//!   noticed the taint, which is the same moment unless the controller restarted).
//! - `default_tolerations` is the DefaultTolerationSeconds admission plugin: not-ready and
//!   unreachable NoExecute tolerations for 300 s unless the pod already tolerates those taints.
//!
//! Not implemented: zone disruption states and eviction rate limiting.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, NodeCondition, Pod, Taint, Toleration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::chrono::{DateTime, Utc};

use crate::scheduler::filters::tolerates;

pub const TAINT_NOT_READY: &str = "node.kubernetes.io/not-ready";
pub const TAINT_UNREACHABLE: &str = "node.kubernetes.io/unreachable";
pub const TAINT_UNSCHEDULABLE: &str = "node.kubernetes.io/unschedulable";
pub const TAINT_MEMORY_PRESSURE: &str = "node.kubernetes.io/memory-pressure";
pub const TAINT_DISK_PRESSURE: &str = "node.kubernetes.io/disk-pressure";
pub const TAINT_PID_PRESSURE: &str = "node.kubernetes.io/pid-pressure";
pub const TAINT_NETWORK_UNAVAILABLE: &str = "node.kubernetes.io/network-unavailable";
/// The DefaultTolerationSeconds admission plugin's default.
pub const DEFAULT_TOLERATION_SECONDS: i64 = 300;

/// The taint keys this controller owns; others on the node are left alone.
const CONTROLLER_TAINTS: &[&str] = &[
    TAINT_NOT_READY,
    TAINT_UNREACHABLE,
    TAINT_UNSCHEDULABLE,
    TAINT_MEMORY_PRESSURE,
    TAINT_DISK_PRESSURE,
    TAINT_PID_PRESSURE,
    TAINT_NETWORK_UNAVAILABLE,
];

/// Node lifecycle settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LifecycleConfig {
    /// `--node-monitor-grace-period` (40 s as the control-plane issue asks; later upstream
    /// releases raised the default to 50 s).
    pub grace_period: Duration,
    /// `--node-startup-grace-period`: the allowance for a node that never posted Ready.
    pub startup_grace_period: Duration,
}

impl Default for LifecycleConfig {
    fn default() -> Self {
        Self {
            grace_period: Duration::from_secs(40),
            startup_grace_period: Duration::from_secs(60),
        }
    }
}

/// What to change on one node.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NodeDecision {
    /// The node stopped reporting: its conditions must be written as Unknown.
    pub became_unknown: bool,
    /// The full new `status.conditions` when they change (write via the status subresource).
    pub conditions: Option<Vec<NodeCondition>>,
    /// Taints to add (with `timeAdded` set).
    pub add_taints: Vec<Taint>,
    /// Taints (by key and effect) to remove.
    pub remove_taints: Vec<Taint>,
    /// When to look at this node again if nothing else happens (its grace period ends).
    pub recheck_at: Option<DateTime<Utc>>,
}

fn chrono_duration(d: Duration) -> k8s_openapi::chrono::Duration {
    k8s_openapi::chrono::Duration::from_std(d).unwrap_or(k8s_openapi::chrono::Duration::MAX)
}

/// The last time the node was heard from: its Lease renewal, its Ready heartbeat, or (never
/// heard from) its creation.
pub fn last_heard(node: &Node, lease: Option<&Lease>) -> Option<DateTime<Utc>> {
    let ready_heartbeat = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .into_iter()
        .flatten()
        .find(|c| c.type_ == "Ready")
        .and_then(|c| c.last_heartbeat_time.as_ref().map(|t| t.0));
    let renew = lease
        .and_then(|l| l.spec.as_ref())
        .and_then(|s| s.renew_time.as_ref())
        .map(|t| t.0);
    let created = node.metadata.creation_timestamp.as_ref().map(|t| t.0);
    [ready_heartbeat, renew, created]
        .into_iter()
        .flatten()
        .max()
}

fn condition_status<'a>(conds: &'a [NodeCondition], type_: &str) -> Option<&'a str> {
    conds
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| c.status.as_str())
}

fn taint(key: &str, effect: &str, now: DateTime<Utc>) -> Taint {
    Taint {
        key: key.into(),
        effect: effect.into(),
        value: None,
        time_added: Some(Time(now)),
    }
}

/// The controller taints the node should carry given its conditions and spec.
pub fn desired_taints(node: &Node, conditions: &[NodeCondition], now: DateTime<Utc>) -> Vec<Taint> {
    let mut out = Vec::new();
    match condition_status(conditions, "Ready") {
        Some("True") => {}
        Some("False") => {
            out.push(taint(TAINT_NOT_READY, "NoExecute", now));
            out.push(taint(TAINT_NOT_READY, "NoSchedule", now));
        }
        Some("Unknown") => {
            out.push(taint(TAINT_UNREACHABLE, "NoExecute", now));
            out.push(taint(TAINT_UNREACHABLE, "NoSchedule", now));
        }
        // Not reported yet: the kubelet registers with its own not-ready taint.
        _ => {}
    }
    for (cond, key) in [
        ("MemoryPressure", TAINT_MEMORY_PRESSURE),
        ("DiskPressure", TAINT_DISK_PRESSURE),
        ("PIDPressure", TAINT_PID_PRESSURE),
        ("NetworkUnavailable", TAINT_NETWORK_UNAVAILABLE),
    ] {
        if condition_status(conditions, cond) == Some("True") {
            out.push(taint(key, "NoSchedule", now));
        }
    }
    if node.spec.as_ref().and_then(|s| s.unschedulable) == Some(true) {
        out.push(taint(TAINT_UNSCHEDULABLE, "NoSchedule", now));
    }
    out
}

/// Evaluates one node at `now`: conditions to mark Unknown and taints to add/remove.
pub fn evaluate_node(
    node: &Node,
    lease: Option<&Lease>,
    now: DateTime<Utc>,
    cfg: &LifecycleConfig,
) -> NodeDecision {
    let mut d = NodeDecision::default();
    let mut conditions: Vec<NodeCondition> = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default();
    let heard = last_heard(node, lease);
    let never_ready = condition_status(&conditions, "Ready").is_none();
    let grace = chrono_duration(if never_ready {
        cfg.startup_grace_period
    } else {
        cfg.grace_period
    });
    let deadline = heard.and_then(|h| h.checked_add_signed(grace));
    let stale = deadline.is_none_or(|dl| now > dl);
    if stale {
        for type_ in ["Ready", "MemoryPressure", "DiskPressure", "PIDPressure"] {
            match conditions.iter_mut().find(|c| c.type_ == type_) {
                Some(c) if c.status == "Unknown" => {}
                Some(c) => {
                    c.status = "Unknown".into();
                    c.reason = Some("NodeStatusUnknown".into());
                    c.message = Some("Kubelet stopped posting node status.".into());
                    c.last_transition_time = Some(Time(now));
                    d.became_unknown = true;
                }
                None => {
                    conditions.push(NodeCondition {
                        type_: type_.into(),
                        status: "Unknown".into(),
                        reason: Some("NodeStatusNeverUpdated".into()),
                        message: Some("Kubelet never posted node status.".into()),
                        last_heartbeat_time: node.metadata.creation_timestamp.clone(),
                        last_transition_time: Some(Time(now)),
                    });
                    d.became_unknown = true;
                }
            }
        }
        if d.became_unknown {
            d.conditions = Some(conditions.clone());
        }
    } else {
        d.recheck_at = deadline;
    }

    let current: Vec<&Taint> = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.as_ref())
        .into_iter()
        .flatten()
        .collect();
    let desired = desired_taints(node, &conditions, now);
    let same = |a: &Taint, b: &Taint| a.key == b.key && a.effect == b.effect;
    d.add_taints = desired
        .iter()
        .filter(|t| !current.iter().any(|c| same(c, t)))
        .cloned()
        .collect();
    d.remove_taints = current
        .iter()
        .filter(|c| CONTROLLER_TAINTS.contains(&c.key.as_str()))
        .filter(|c| !desired.iter().any(|t| same(c, t)))
        .map(|c| (*c).clone())
        .collect();
    d
}

/// The node's taints after applying a decision (convenience for the caller's patch).
pub fn apply_taints(node: &Node, d: &NodeDecision) -> Vec<Taint> {
    let mut taints: Vec<Taint> = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.clone())
        .unwrap_or_default();
    taints.retain(|t| {
        !d.remove_taints
            .iter()
            .any(|r| r.key == t.key && r.effect == t.effect)
    });
    taints.extend(d.add_taints.iter().cloned());
    taints
}

/// When a pod on `node` must be evicted because of the node's NoExecute taints: `None` when
/// never (no such taint, or all tolerated forever), otherwise the time (possibly `now`).
pub fn eviction_time(pod: &Pod, node: &Node, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let taints: Vec<&Taint> = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.as_ref())
        .into_iter()
        .flatten()
        .filter(|t| t.effect == "NoExecute")
        .collect();
    if taints.is_empty() {
        return None;
    }
    let tolerations: &[Toleration] = pod
        .spec
        .as_ref()
        .and_then(|s| s.tolerations.as_deref())
        .unwrap_or(&[]);
    let mut used: Vec<&Toleration> = Vec::new();
    for t in &taints {
        let matching: Vec<&Toleration> =
            tolerations.iter().filter(|tol| tolerates(tol, t)).collect();
        if matching.is_empty() {
            return Some(now);
        }
        used.extend(matching);
    }
    // getMinTolerationTime: the smallest tolerationSeconds (negative → 0); none set → forever.
    let min = used
        .iter()
        .filter_map(|t| t.toleration_seconds)
        .map(|s| s.max(0))
        .min()?;
    let start = taints
        .iter()
        .filter_map(|t| t.time_added.as_ref().map(|t| t.0))
        .min()
        .unwrap_or(now);
    Some(start + k8s_openapi::chrono::Duration::seconds(min))
}

/// Pods on a node whose Ready condition is no longer True that still claim to be Ready; the
/// controller sets their Ready condition to False (`MarkPodsNotReady`).
pub fn pods_to_mark_not_ready<'a>(node: &Node, pods: &'a [Pod]) -> Vec<&'a Pod> {
    let node_ready = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_deref())
        .and_then(|c| condition_status(c, "Ready"))
        == Some("True");
    if node_ready {
        return Vec::new();
    }
    let name = node.metadata.name.as_deref();
    pods.iter()
        .filter(|p| p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == name)
        .filter(|p| super::pod_ready(p).0)
        .collect()
}

/// The pod's tolerations with the DefaultTolerationSeconds admission defaults added.
pub fn default_tolerations(pod: &Pod) -> Vec<Toleration> {
    let mut tolerations: Vec<Toleration> = pod
        .spec
        .as_ref()
        .and_then(|s| s.tolerations.clone())
        .unwrap_or_default();
    let covers = |key: &str| {
        tolerations.iter().any(|t| {
            let k = t.key.as_deref().unwrap_or("");
            let e = t.effect.as_deref().unwrap_or("");
            (k == key || k.is_empty()) && (e == "NoExecute" || e.is_empty())
        })
    };
    let (not_ready, unreachable) = (covers(TAINT_NOT_READY), covers(TAINT_UNREACHABLE));
    for (key, covered) in [
        (TAINT_NOT_READY, not_ready),
        (TAINT_UNREACHABLE, unreachable),
    ] {
        if !covered {
            tolerations.push(Toleration {
                key: Some(key.into()),
                operator: Some("Exists".into()),
                effect: Some("NoExecute".into()),
                toleration_seconds: Some(DEFAULT_TOLERATION_SECONDS),
                value: None,
            });
        }
    }
    tolerations
}

#[cfg(test)]
mod tests;
