//! Filter plugins: may a pod run on a node at all?
//!
//! Each follows the kube-scheduler plugin of the same name and returns the reason strings that
//! plugin reports (they feed the "0/N nodes are available" message): NodeUnschedulable,
//! TaintToleration, NodeAffinity (nodeSelector + required affinity), NodePorts and
//! NodeResourcesFit. Node readiness is checked first, as the legacy CheckNodeCondition predicate
//! did (upstream now relies on the `not-ready` taint, which the node lifecycle controller adds).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Node, NodeSelectorRequirement, NodeSelectorTerm, Pod, Taint, Toleration,
};

use super::resources::{node_allocatable, pod_requests, Resources};

pub const REASON_NOT_READY: &str = "node(s) were not ready";
pub const REASON_UNSCHEDULABLE: &str = "node(s) were unschedulable";
pub const REASON_AFFINITY: &str = "node(s) didn't match Pod's node affinity/selector";
pub const REASON_PORTS: &str = "node(s) didn't have free ports for the requested pod ports";
pub const REASON_TOO_MANY_PODS: &str = "Too many pods";
pub const TAINT_UNSCHEDULABLE: &str = "node.kubernetes.io/unschedulable";

/// Whether the node's `Ready` condition is `True`.
pub fn node_ready(node: &Node) -> bool {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .into_iter()
        .flatten()
        .any(|c| c.type_ == "Ready" && c.status == "True")
}

/// Whether the toleration tolerates the taint (upstream `Toleration.ToleratesTaint`).
pub fn tolerates(t: &Toleration, taint: &Taint) -> bool {
    if let Some(effect) = t.effect.as_deref().filter(|e| !e.is_empty()) {
        if effect != taint.effect {
            return false;
        }
    }
    let key = t.key.as_deref().unwrap_or("");
    if !key.is_empty() && key != taint.key {
        return false;
    }
    match t.operator.as_deref().unwrap_or("Equal") {
        "Exists" => true,
        "Equal" | "" => t.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or(""),
        _ => false,
    }
}

/// Whether any toleration in the list tolerates the taint.
pub fn tolerated_by(tolerations: &[Toleration], taint: &Taint) -> bool {
    tolerations.iter().any(|t| tolerates(t, taint))
}

pub(crate) fn pod_tolerations(pod: &Pod) -> &[Toleration] {
    pod.spec
        .as_ref()
        .and_then(|s| s.tolerations.as_deref())
        .unwrap_or(&[])
}

pub(crate) fn node_taints(node: &Node) -> &[Taint] {
    node.spec
        .as_ref()
        .and_then(|s| s.taints.as_deref())
        .unwrap_or(&[])
}

/// NodeUnschedulable: `spec.unschedulable` nodes only take pods tolerating the
/// `node.kubernetes.io/unschedulable:NoSchedule` taint.
pub fn check_unschedulable(pod: &Pod, node: &Node) -> Option<String> {
    let unschedulable = node.spec.as_ref().and_then(|s| s.unschedulable) == Some(true);
    let taint = Taint {
        key: TAINT_UNSCHEDULABLE.into(),
        effect: "NoSchedule".into(),
        ..Default::default()
    };
    (unschedulable && !tolerated_by(pod_tolerations(pod), &taint))
        .then(|| REASON_UNSCHEDULABLE.to_string())
}

/// TaintToleration: the first NoSchedule/NoExecute taint the pod does not tolerate.
pub fn check_taints(pod: &Pod, node: &Node) -> Option<String> {
    let tolerations = pod_tolerations(pod);
    node_taints(node)
        .iter()
        .filter(|t| t.effect == "NoSchedule" || t.effect == "NoExecute")
        .find(|t| !tolerated_by(tolerations, t))
        .map(|t| {
            format!(
                "node(s) had untolerated taint {{{}: {}}}",
                t.key,
                t.value.as_deref().unwrap_or("")
            )
        })
}

fn match_requirement(r: &NodeSelectorRequirement, value: Option<&str>) -> bool {
    let values = r.values.as_deref().unwrap_or(&[]);
    match r.operator.as_str() {
        "In" => value.is_some_and(|v| values.iter().any(|x| x == v)),
        "NotIn" => !value.is_some_and(|v| values.iter().any(|x| x == v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        "Gt" | "Lt" => {
            let (Some(v), [want]) = (value, values) else {
                return false;
            };
            let (Ok(v), Ok(want)) = (v.parse::<i64>(), want.parse::<i64>()) else {
                return false;
            };
            if r.operator == "Gt" {
                v > want
            } else {
                v < want
            }
        }
        _ => false,
    }
}

/// Whether a node selector term matches: all matchExpressions against labels and all
/// matchFields (only `metadata.name`) hold; a term with neither matches nothing.
pub fn term_matches(term: &NodeSelectorTerm, node: &Node) -> bool {
    let exprs = term.match_expressions.as_deref().unwrap_or(&[]);
    let fields = term.match_fields.as_deref().unwrap_or(&[]);
    if exprs.is_empty() && fields.is_empty() {
        return false;
    }
    let labels = node.metadata.labels.as_ref();
    let name = node.metadata.name.as_deref().unwrap_or("");
    exprs
        .iter()
        .all(|r| match_requirement(r, labels.and_then(|l| l.get(&r.key)).map(String::as_str)))
        && fields.iter().all(|r| {
            r.key == "metadata.name"
                && matches!(r.operator.as_str(), "In" | "NotIn")
                && match_requirement(r, Some(name))
        })
}

/// NodeAffinity: `spec.nodeSelector` labels and the required node affinity terms (ORed).
pub fn check_affinity(pod: &Pod, node: &Node) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    let empty = BTreeMap::new();
    let labels = node.metadata.labels.as_ref().unwrap_or(&empty);
    let selector_ok = spec
        .node_selector
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    let required = spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|na| {
            na.required_during_scheduling_ignored_during_execution
                .as_ref()
        });
    let affinity_ok =
        required.is_none_or(|r| r.node_selector_terms.iter().any(|t| term_matches(t, node)));
    (!(selector_ok && affinity_ok)).then(|| REASON_AFFINITY.to_string())
}

/// A host port a pod wants: (hostIP normalised to 0.0.0.0 when empty, protocol, port).
pub type HostPort = (String, String, i32);

/// The host ports of the pod's containers and native sidecars (upstream `GetHostPorts`).
pub fn host_ports(pod: &Pod) -> Vec<HostPort> {
    let Some(spec) = pod.spec.as_ref() else {
        return Vec::new();
    };
    let sidecars = spec
        .init_containers
        .iter()
        .flatten()
        .filter(|c| c.restart_policy.as_deref() == Some("Always"));
    spec.containers
        .iter()
        .chain(sidecars)
        .flat_map(|c| c.ports.iter().flatten())
        .filter_map(|p| {
            let port = p.host_port.filter(|hp| *hp > 0)?;
            let ip = p
                .host_ip
                .as_deref()
                .filter(|ip| !ip.is_empty())
                .unwrap_or("0.0.0.0");
            let proto = p
                .protocol
                .as_deref()
                .filter(|p| !p.is_empty())
                .unwrap_or("TCP");
            Some((ip.to_string(), proto.to_string(), port))
        })
        .collect()
}

fn ports_conflict(a: &HostPort, b: &HostPort) -> bool {
    a.1 == b.1 && a.2 == b.2 && (a.0 == b.0 || a.0 == "0.0.0.0" || b.0 == "0.0.0.0")
}

/// NodePorts: a wanted host port conflicts with one used by a pod already on the node when the
/// protocol and port match and the IPs are equal or either is the wildcard 0.0.0.0.
pub fn check_ports(pod: &Pod, node_pods: &[&Pod]) -> Option<String> {
    let wanted = host_ports(pod);
    if wanted.is_empty() {
        return None;
    }
    let used: Vec<HostPort> = node_pods.iter().flat_map(|p| host_ports(p)).collect();
    wanted
        .iter()
        .any(|w| used.iter().any(|u| ports_conflict(w, u)))
        .then(|| REASON_PORTS.to_string())
}

/// NodeResourcesFit: every requested resource must fit into allocatable minus what the node's
/// pods already request, and the node must have room for one more pod. All shortfalls are
/// reported, in upstream's order (pods, cpu, memory, ephemeral-storage, extended by name).
pub fn check_resources(pod: &Pod, node: &Node, node_pods: &[&Pod]) -> Vec<String> {
    let mut reasons = Vec::new();
    // Unparseable quantities should have been rejected by validation; treat them as zero.
    let (alloc, max_pods) = node_allocatable(node).unwrap_or_default();
    let mut used = Resources::default();
    for p in node_pods {
        used.add(&pod_requests(p).unwrap_or_default());
    }
    if node_pods.len() as i64 + 1 > max_pods {
        reasons.push(REASON_TOO_MANY_PODS.to_string());
    }
    let req = pod_requests(pod).unwrap_or_default();
    if req.is_zero() {
        return reasons;
    }
    let short = |want: i64, have: i64, used: i64| want > 0 && want > have - used;
    if short(req.milli_cpu, alloc.milli_cpu, used.milli_cpu) {
        reasons.push("Insufficient cpu".into());
    }
    if short(req.memory, alloc.memory, used.memory) {
        reasons.push("Insufficient memory".into());
    }
    if short(
        req.ephemeral_storage,
        alloc.ephemeral_storage,
        used.ephemeral_storage,
    ) {
        reasons.push("Insufficient ephemeral-storage".into());
    }
    for (name, want) in &req.scalar {
        let have = alloc.scalar.get(name).copied().unwrap_or(0);
        let in_use = used.scalar.get(name).copied().unwrap_or(0);
        if short(*want, have, in_use) {
            reasons.push(format!("Insufficient {name}"));
        }
    }
    reasons
}

/// Runs the filters in upstream's plugin order and stops at the first that fails, as the
/// framework does; returns that filter's reasons (empty = the node fits).
pub fn filter_node(pod: &Pod, node: &Node, node_pods: &[&Pod]) -> Vec<String> {
    if !node_ready(node) {
        return vec![REASON_NOT_READY.to_string()];
    }
    if let Some(r) = check_unschedulable(pod, node)
        .or_else(|| check_taints(pod, node))
        .or_else(|| check_affinity(pod, node))
        .or_else(|| check_ports(pod, node_pods))
    {
        return vec![r];
    }
    check_resources(pod, node, node_pods)
}
