//! The scheduler's decision: which node a pending pod goes to, or why none fits.
//!
//! Follows kube-scheduler's default profile without preemption: every node runs the filter
//! plugins ([`filters`]), the fitting nodes are scored ([`scores`]) and the highest total wins.
//! Upstream breaks ties at random; here ties go to the node whose name sorts first, so the
//! decision is deterministic. When nothing fits, [`Unschedulable`] carries each node's reasons
//! and the message kube-scheduler would put on the `PodScheduled=False` condition.
//! The function is pure: the caller (the informer-driven loop) supplies the nodes and the bound
//! pods and performs the binding.

pub mod filters;
pub mod resources;
pub mod scores;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Binding, Node, ObjectReference, Pod, PodCondition};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::chrono::{DateTime, Utc};

/// Why a pod cannot be scheduled now. Retrying helps once the cluster changes (a node joins,
/// becomes ready, a pod goes away), so the caller requeues the pod on such events.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Unschedulable {
    /// The reasons each node was filtered out, by node name.
    pub node_reasons: BTreeMap<String, Vec<String>>,
    /// kube-scheduler's `FitError` message: `0/3 nodes are available: 1 Insufficient cpu, …`.
    pub message: String,
    /// `true` when the pod already has `spec.nodeName` and is not this scheduler's to place.
    pub already_bound: bool,
}

/// The reason on the `PodScheduled=False` condition (`v1.PodReasonUnschedulable`).
pub const REASON_UNSCHEDULABLE: &str = "Unschedulable";

/// The scheduler name pods get by default; pods naming another scheduler are not ours.
pub const DEFAULT_SCHEDULER_NAME: &str = "default-scheduler";

/// Whether this scheduler should place the pod: no node yet, our scheduler name, not being
/// deleted, not finished.
pub fn needs_scheduling(pod: &Pod) -> bool {
    let spec = pod.spec.as_ref();
    spec.and_then(|s| s.node_name.as_deref())
        .is_none_or(str::is_empty)
        && spec
            .and_then(|s| s.scheduler_name.as_deref())
            .is_none_or(|n| n.is_empty() || n == DEFAULT_SCHEDULER_NAME)
        && pod.metadata.deletion_timestamp.is_none()
        && !is_terminal(pod)
}

/// The `pods/binding` body that assigns the pod to `node` (as the DefaultBinder posts it).
pub fn binding_for(pod: &Pod, node: &str) -> Binding {
    Binding {
        metadata: ObjectMeta {
            name: pod.metadata.name.clone(),
            namespace: pod.metadata.namespace.clone(),
            uid: pod.metadata.uid.clone(),
            ..Default::default()
        },
        target: ObjectReference {
            kind: Some("Node".into()),
            name: Some(node.into()),
            ..Default::default()
        },
    }
}

/// The `PodScheduled=False` condition to write on an unschedulable pod.
pub fn unschedulable_condition(err: &Unschedulable, now: DateTime<Utc>) -> PodCondition {
    PodCondition {
        type_: "PodScheduled".into(),
        status: "False".into(),
        reason: Some(REASON_UNSCHEDULABLE.into()),
        message: Some(err.message.clone()),
        last_transition_time: Some(Time(now)),
        last_probe_time: None,
    }
}

/// The event the scheduler records: (type, reason, message), as kube-scheduler words them.
pub fn scheduled_event(pod: &Pod, node: &str) -> (&'static str, &'static str, String) {
    (
        "Normal",
        "Scheduled",
        format!(
            "Successfully assigned {}/{} to {node}",
            pod.metadata.namespace.as_deref().unwrap_or(""),
            pod.metadata.name.as_deref().unwrap_or("")
        ),
    )
}

/// The warning event for a pod that could not be scheduled.
pub fn failed_scheduling_event(err: &Unschedulable) -> (&'static str, &'static str, String) {
    ("Warning", "FailedScheduling", err.message.clone())
}

/// Preemption outcome appended to the message. This scheduler never preempts; it says what
/// upstream says when preemption cannot help (filters that no eviction can fix) or found no
/// victims (resources and ports).
fn preemption_message(num_nodes: usize, node_reasons: &BTreeMap<String, Vec<String>>) -> String {
    let resolvable = node_reasons
        .values()
        .filter(|r| {
            r.iter().any(|r| {
                r.starts_with("Insufficient")
                    || r == filters::REASON_TOO_MANY_PODS
                    || r == filters::REASON_PORTS
            })
        })
        .count();
    let mut parts = Vec::new();
    if num_nodes - resolvable > 0 {
        parts.push(format!(
            "{} Preemption is not helpful for scheduling",
            num_nodes - resolvable
        ));
    }
    if resolvable > 0 {
        parts.push(format!(
            "{resolvable} No preemption victims found for incoming pod"
        ));
    }
    parts.sort();
    format!(
        "preemption: 0/{num_nodes} nodes are available: {}.",
        parts.join(", ")
    )
}

/// Formats the `0/N nodes are available: …` summary: each distinct reason with the number of
/// nodes that reported it, the `"<count> <reason>"` strings sorted (upstream `sortReasonsHistogram`).
pub fn fit_error_message(num_nodes: usize, node_reasons: &BTreeMap<String, Vec<String>>) -> String {
    if num_nodes == 0 {
        return "no nodes available to schedule pods".to_string();
    }
    let mut histogram: BTreeMap<&str, usize> = BTreeMap::new();
    for reasons in node_reasons.values() {
        for r in reasons {
            *histogram.entry(r.as_str()).or_default() += 1;
        }
    }
    let mut parts: Vec<String> = histogram
        .into_iter()
        .map(|(reason, count)| format!("{count} {reason}"))
        .collect();
    parts.sort();
    format!(
        "0/{num_nodes} nodes are available: {}. {}",
        parts.join(", "),
        preemption_message(num_nodes, node_reasons)
    )
}

fn is_terminal(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded") | Some("Failed")
    )
}

fn same_pod(a: &Pod, b: &Pod) -> bool {
    match (&a.metadata.uid, &b.metadata.uid) {
        (Some(x), Some(y)) => x == y,
        _ => a.metadata.namespace == b.metadata.namespace && a.metadata.name == b.metadata.name,
    }
}

/// The non-terminal pods bound to `node_name` (what occupies the node), excluding `pod` itself.
pub fn pods_on_node<'a>(node_name: &str, pods: &'a [Pod], pod: &Pod) -> Vec<&'a Pod> {
    pods.iter()
        .filter(|p| p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(node_name))
        .filter(|p| !is_terminal(p) && !same_pod(p, pod))
        .collect()
}

/// Picks the node for `pod` among `nodes`, given all pods already bound (`pods`).
pub fn schedule(pod: &Pod, nodes: &[Node], pods: &[Pod]) -> Result<String, Unschedulable> {
    if let Some(name) = pod
        .spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .filter(|n| !n.is_empty())
    {
        return Err(Unschedulable {
            node_reasons: BTreeMap::new(),
            message: format!("pod is already bound to node {name}"),
            already_bound: true,
        });
    }
    let mut node_reasons = BTreeMap::new();
    let mut feasible: Vec<(&Node, Vec<&Pod>)> = Vec::new();
    // One pass over the pods, grouped by node (same filter as `pods_on_node`).
    let mut by_node: BTreeMap<&str, Vec<&Pod>> = BTreeMap::new();
    for p in pods {
        if let Some(n) = p.spec.as_ref().and_then(|s| s.node_name.as_deref()) {
            if !is_terminal(p) && !same_pod(p, pod) {
                by_node.entry(n).or_default().push(p);
            }
        }
    }
    for node in nodes {
        let name = node.metadata.name.as_deref().unwrap_or("");
        let on_node = by_node.get(name).cloned().unwrap_or_default();
        let reasons = filters::filter_node(pod, node, &on_node);
        if reasons.is_empty() {
            feasible.push((node, on_node));
        } else {
            node_reasons.insert(name.to_string(), reasons);
        }
    }
    if feasible.is_empty() {
        return Err(Unschedulable {
            message: fit_error_message(nodes.len(), &node_reasons),
            node_reasons,
            already_bound: false,
        });
    }
    let (fnodes, fpods): (Vec<&Node>, Vec<Vec<&Pod>>) = feasible.into_iter().unzip();
    let totals = scores::score_nodes(pod, &fnodes, &fpods);
    let best = fnodes
        .iter()
        .zip(totals)
        .map(|(n, s)| (s, n.metadata.name.as_deref().unwrap_or("")))
        // Highest score; among equal scores the smallest name.
        .max_by(|a, b| a.0.cmp(&b.0).then_with(|| b.1.cmp(a.1)))
        .map(|(_, n)| n.to_string())
        .unwrap_or_default();
    Ok(best)
}
