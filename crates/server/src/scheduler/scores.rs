//! Score plugins: among the nodes that fit, which is best?
//!
//! Each score is 0–100 (`framework.MaxNodeScore`) and weighted as in the default profile:
//! NodeResourcesFit LeastAllocated (cpu and memory, weight 1), NodeResourcesBalancedAllocation
//! (1), TaintToleration (PreferNoSchedule taints, 3), NodeAffinity (preferred terms, 2) and
//! replica spreading (2; upstream's default PodTopologySpread constraint on
//! `kubernetes.io/hostname`, computed like the older SelectorSpread over pods that share the
//! pod's controller ownerReference). Requests use the non-zero defaults, as upstream scoring does.

use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

use super::filters::{node_taints, pod_tolerations, term_matches, tolerated_by};
use super::resources::{node_allocatable, pod_requests_non_zero, Resources};

pub const MAX_NODE_SCORE: i64 = 100;
pub const WEIGHT_LEAST_ALLOCATED: i64 = 1;
pub const WEIGHT_BALANCED: i64 = 1;
pub const WEIGHT_TAINT: i64 = 3;
pub const WEIGHT_AFFINITY: i64 = 2;
pub const WEIGHT_SPREAD: i64 = 2;

/// The free share of cpu and memory after placing the pod, averaged (LeastAllocated).
pub fn least_allocated(pod: &Pod, node: &Node, node_pods: &[&Pod]) -> i64 {
    let (alloc, requested) = usage_with(pod, node, node_pods);
    let one = |req: i64, cap: i64| {
        if cap <= 0 || req > cap {
            0
        } else {
            (cap - req) * MAX_NODE_SCORE / cap
        }
    };
    (one(requested.milli_cpu, alloc.milli_cpu) + one(requested.memory, alloc.memory)) / 2
}

/// How evenly cpu and memory would be used after placing the pod (BalancedAllocation):
/// `(1 - std(fractions)) × 100`; with two resources the std is half their difference.
pub fn balanced_allocation(pod: &Pod, node: &Node, node_pods: &[&Pod]) -> i64 {
    let (alloc, requested) = usage_with(pod, node, node_pods);
    let frac = |req: i64, cap: i64| {
        if cap <= 0 {
            1.0
        } else {
            (req as f64 / cap as f64).min(1.0)
        }
    };
    let std = (frac(requested.milli_cpu, alloc.milli_cpu) - frac(requested.memory, alloc.memory))
        .abs()
        / 2.0;
    ((1.0 - std) * MAX_NODE_SCORE as f64) as i64
}

fn usage_with(pod: &Pod, node: &Node, node_pods: &[&Pod]) -> (Resources, Resources) {
    let (alloc, _) = node_allocatable(node).unwrap_or_default();
    let mut requested = pod_requests_non_zero(pod).unwrap_or_default();
    for p in node_pods {
        requested.add(&pod_requests_non_zero(p).unwrap_or_default());
    }
    (alloc, requested)
}

/// Raw TaintToleration score: the number of PreferNoSchedule taints the pod does not tolerate
/// (fewer is better; normalised in reverse).
pub fn intolerable_prefer_no_schedule(pod: &Pod, node: &Node) -> i64 {
    let tolerations = pod_tolerations(pod);
    node_taints(node)
        .iter()
        .filter(|t| t.effect == "PreferNoSchedule" && !tolerated_by(tolerations, t))
        .count() as i64
}

/// Raw NodeAffinity score: the sum of the weights of the preferred terms the node matches.
pub fn preferred_affinity(pod: &Pod, node: &Node) -> i64 {
    pod.spec
        .as_ref()
        .and_then(|s| s.affinity.as_ref())
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|na| {
            na.preferred_during_scheduling_ignored_during_execution
                .as_ref()
        })
        .into_iter()
        .flatten()
        .filter(|p| term_matches(&p.preference, node))
        .map(|p| i64::from(p.weight))
        .sum()
}

/// The pod's controller ownerReference, if any.
pub fn controller_ref(pod: &Pod) -> Option<&OwnerReference> {
    pod.metadata
        .owner_references
        .iter()
        .flatten()
        .find(|o| o.controller == Some(true))
}

/// Raw spreading count: pods on the node with the same namespace and controller as the pod.
pub fn same_owner_count(pod: &Pod, node_pods: &[&Pod]) -> i64 {
    let Some(owner) = controller_ref(pod) else {
        return 0;
    };
    node_pods
        .iter()
        .filter(|p| {
            p.metadata.namespace == pod.metadata.namespace
                && controller_ref(p).is_some_and(|o| o.uid == owner.uid)
        })
        .count() as i64
}

/// Normalises raw scores to 0–100 by the maximum; `reverse` makes the lowest raw score best.
/// All-zero raw scores give 0 (or 100 when reversed), as upstream's DefaultNormalizeScore.
pub fn normalize(raw: &[i64], reverse: bool) -> Vec<i64> {
    let max = raw.iter().copied().max().unwrap_or(0);
    raw.iter()
        .map(|&r| {
            let s = if max == 0 {
                0
            } else {
                r * MAX_NODE_SCORE / max
            };
            if reverse {
                MAX_NODE_SCORE - s
            } else {
                s
            }
        })
        .collect()
}

/// Weighted total per node (same order as `nodes`).
pub fn score_nodes(pod: &Pod, nodes: &[&Node], node_pods: &[Vec<&Pod>]) -> Vec<i64> {
    let taint = normalize(
        &nodes
            .iter()
            .map(|n| intolerable_prefer_no_schedule(pod, n))
            .collect::<Vec<_>>(),
        true,
    );
    let affinity = normalize(
        &nodes
            .iter()
            .map(|n| preferred_affinity(pod, n))
            .collect::<Vec<_>>(),
        false,
    );
    let spread = normalize(
        &node_pods
            .iter()
            .map(|ps| same_owner_count(pod, ps))
            .collect::<Vec<_>>(),
        true,
    );
    nodes
        .iter()
        .zip(node_pods)
        .enumerate()
        .map(|(i, (n, ps))| {
            least_allocated(pod, n, ps) * WEIGHT_LEAST_ALLOCATED
                + balanced_allocation(pod, n, ps) * WEIGHT_BALANCED
                + taint[i] * WEIGHT_TAINT
                + affinity[i] * WEIGHT_AFFINITY
                + spread[i] * WEIGHT_SPREAD
        })
        .collect()
}
