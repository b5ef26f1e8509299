//! DaemonSet controller decisions: on which nodes a daemon pod should run, which pods to create
//! and delete (including rolling updates), and the status.
//!
//! Follows upstream's `pkg/controller/daemon`:
//! - `nodeShouldRunDaemonPod`: the daemon pod (with the DaemonSet tolerations added) must match
//!   the node's name (if the template sets one), its nodeSelector/required node affinity, and
//!   tolerate its NoSchedule/NoExecute taints to be started; an existing pod keeps running as long
//!   as the name, affinity and NoExecute taints allow. Resources are left to the scheduler.
//! - created pods get generateName `<ds>-`, the `controller-revision-hash` and
//!   `pod-template-generation` labels, the controller ownerReference, a required node affinity
//!   `matchFields metadata.name In [<node>]` replacing the template's required terms (the
//!   default scheduler binds them), and the tolerations `AddOrUpdateDaemonPodTolerations` adds.
//! - per node: create when wanted and absent; delete failed pods and all but the oldest
//!   duplicate; delete pods on nodes that should no longer run them.
//! - RollingUpdate with maxSurge 0: over the nodes that have daemon pods (in name order), an
//!   old-revision pod that is not available is replaced at once; available ones only while fewer
//!   than `maxUnavailable` (int or percent of the desired number, rounded up; default 1) daemon
//!   pods are unavailable. OnDelete leaves old pods alone. maxSurge > 0 is treated as 0.
//! - the revision hash is this crate's template hash (see `deployment::pod_template_hash`);
//!   ControllerRevision objects (`kubectl rollout history/undo daemonset`) are not produced.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{DaemonSet, DaemonSetStatus};
use k8s_openapi::api::core::v1::{
    Affinity, Node, NodeAffinity, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, Pod,
    PodSpec, Toleration,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::chrono::{DateTime, Utc};

use super::deployment::{pod_template_hash, scaled_value};
use super::nodelifecycle::{
    TAINT_DISK_PRESSURE, TAINT_MEMORY_PRESSURE, TAINT_NETWORK_UNAVAILABLE, TAINT_NOT_READY,
    TAINT_PID_PRESSURE, TAINT_UNREACHABLE, TAINT_UNSCHEDULABLE,
};
use super::{
    controller_of, controller_ref, pod_available, pod_phase, pod_ready, selector_matches,
    SelectorError,
};
use crate::scheduler::filters::{check_affinity, tolerated_by};

pub const LABEL_REVISION_HASH: &str = "controller-revision-hash";
pub const LABEL_TEMPLATE_GENERATION: &str = "pod-template-generation";

/// A DaemonSet that cannot be reconciled as it is; the object must be fixed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DaemonSetError {
    #[error("daemonset {name}: {source}")]
    Selector {
        name: String,
        #[source]
        source: SelectorError,
    },
    #[error("daemonset {name}: invalid value {value:?} for spec.updateStrategy.rollingUpdate.maxUnavailable: must be an integer or a percentage")]
    MaxUnavailable { name: String, value: String },
}

/// What one sync of a DaemonSet should do.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DaemonSetPlan {
    /// Orphan pods (by name) to adopt.
    pub adopt: Vec<String>,
    /// Pods to create, one per node that needs one.
    pub create: Vec<Pod>,
    /// Pods (by name) to delete.
    pub delete: Vec<String>,
    /// The status to write.
    pub status: DaemonSetStatus,
}

fn toleration(key: &str, effect: &str) -> Toleration {
    Toleration {
        key: Some(key.into()),
        operator: Some("Exists".into()),
        effect: Some(effect.into()),
        ..Default::default()
    }
}

/// The tolerations every daemon pod gets (`AddOrUpdateDaemonPodTolerations`): it survives
/// not-ready/unreachable nodes indefinitely and ignores pressure and cordoning; host-network
/// pods also tolerate network-unavailable.
pub fn daemon_tolerations(spec: &PodSpec) -> Vec<Toleration> {
    let mut tolerations = spec.tolerations.clone().unwrap_or_default();
    let mut wanted = vec![
        toleration(TAINT_NOT_READY, "NoExecute"),
        toleration(TAINT_UNREACHABLE, "NoExecute"),
        toleration(TAINT_DISK_PRESSURE, "NoSchedule"),
        toleration(TAINT_MEMORY_PRESSURE, "NoSchedule"),
        toleration(TAINT_PID_PRESSURE, "NoSchedule"),
        toleration(TAINT_UNSCHEDULABLE, "NoSchedule"),
    ];
    if spec.host_network == Some(true) {
        wanted.push(toleration(TAINT_NETWORK_UNAVAILABLE, "NoSchedule"));
    }
    for w in wanted {
        // AddOrUpdateTolerationInPodSpec: replace a toleration with the same key/effect.
        tolerations.retain(|t| !(t.key == w.key && t.effect == w.effect));
        tolerations.push(w);
    }
    tolerations
}

/// (should run, should continue running) for the DaemonSet's pods on `node`.
pub fn node_should_run(ds: &DaemonSet, node: &Node) -> (bool, bool) {
    let template = ds.spec.as_ref().map(|s| &s.template);
    let spec = template.and_then(|t| t.spec.clone()).unwrap_or_default();
    let node_name = node.metadata.name.as_deref().unwrap_or("");
    let fits_name = spec
        .node_name
        .as_deref()
        .is_none_or(|n| n.is_empty() || n == node_name);
    let pod = Pod {
        spec: Some(spec.clone()),
        ..Default::default()
    };
    let fits_affinity = check_affinity(&pod, node).is_none();
    let tolerations = daemon_tolerations(&spec);
    let taints = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.as_deref())
        .unwrap_or(&[]);
    let untolerated = |effects: &[&str]| {
        taints
            .iter()
            .any(|t| effects.contains(&t.effect.as_str()) && !tolerated_by(&tolerations, t))
    };
    let should_run = fits_name && fits_affinity && !untolerated(&["NoSchedule", "NoExecute"]);
    let should_continue = fits_name && fits_affinity && !untolerated(&["NoExecute"]);
    (should_run, should_continue)
}

/// The revision hash of the DaemonSet's current template.
pub fn revision_hash(ds: &DaemonSet) -> String {
    let template = ds
        .spec
        .as_ref()
        .map(|s| s.template.clone())
        .unwrap_or_default();
    pod_template_hash(
        &template,
        ds.status.as_ref().and_then(|s| s.collision_count),
    )
}

/// The daemon pod for `node` (`NewPod` + `GetPodFromTemplate`).
pub fn pod_for_node(ds: &DaemonSet, node: &str, hash: &str) -> Pod {
    let template = ds
        .spec
        .as_ref()
        .map(|s| s.template.clone())
        .unwrap_or_default();
    let tmeta = template.metadata.unwrap_or_default();
    let mut spec = template.spec.unwrap_or_default();
    let mut labels = tmeta.labels.unwrap_or_default();
    labels.insert(LABEL_REVISION_HASH.into(), hash.into());
    if let Some(g) = ds.metadata.generation {
        labels.insert(LABEL_TEMPLATE_GENERATION.into(), g.to_string());
    }
    spec.tolerations = Some(daemon_tolerations(&spec));
    let affinity = spec.affinity.get_or_insert_with(Affinity::default);
    let na = affinity
        .node_affinity
        .get_or_insert_with(NodeAffinity::default);
    na.required_during_scheduling_ignored_during_execution = Some(NodeSelector {
        node_selector_terms: vec![NodeSelectorTerm {
            match_expressions: None,
            match_fields: Some(vec![NodeSelectorRequirement {
                key: "metadata.name".into(),
                operator: "In".into(),
                values: Some(vec![node.into()]),
            }]),
        }],
    });
    Pod {
        metadata: ObjectMeta {
            generate_name: Some(format!("{}-", ds.metadata.name.as_deref().unwrap_or(""))),
            namespace: ds.metadata.namespace.clone(),
            labels: Some(labels),
            annotations: tmeta.annotations,
            finalizers: tmeta.finalizers,
            owner_references: Some(vec![controller_ref("apps/v1", "DaemonSet", &ds.metadata)]),
            ..Default::default()
        },
        spec: Some(spec),
        status: None,
    }
}

/// The node a daemon pod belongs to: its nodeName, or the node its affinity targets.
pub fn target_node(pod: &Pod) -> Option<&str> {
    let spec = pod.spec.as_ref()?;
    if let Some(n) = spec.node_name.as_deref().filter(|n| !n.is_empty()) {
        return Some(n);
    }
    spec.affinity
        .as_ref()?
        .node_affinity
        .as_ref()?
        .required_during_scheduling_ignored_during_execution
        .as_ref()?
        .node_selector_terms
        .iter()
        .flat_map(|t| t.match_fields.iter().flatten())
        .find(|r| r.key == "metadata.name" && r.operator == "In")
        .and_then(|r| r.values.as_ref())
        .and_then(|v| match v.as_slice() {
            [one] => Some(one.as_str()),
            _ => None,
        })
}

fn pod_hash(pod: &Pod) -> Option<&str> {
    pod.metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(LABEL_REVISION_HASH))
        .map(String::as_str)
}

/// One sync of `ds` given all nodes and the pods in its namespace, at `now`.
pub fn reconcile(
    ds: &DaemonSet,
    nodes: &[Node],
    pods: &[Pod],
    now: DateTime<Utc>,
) -> Result<DaemonSetPlan, DaemonSetError> {
    let name = ds.metadata.name.clone().unwrap_or_default();
    let spec = ds.spec.as_ref();
    let default_selector = Default::default();
    let selector = spec.map(|s| &s.selector).unwrap_or(&default_selector);
    let uid = ds.metadata.uid.as_deref().unwrap_or("");
    let deleting = ds.metadata.deletion_timestamp.is_some();
    let min_ready = spec.and_then(|s| s.min_ready_seconds).unwrap_or(0);
    let hash = revision_hash(ds);
    let mut plan = DaemonSetPlan::default();

    // Claim pods and group them by node.
    let mut by_node: BTreeMap<&str, Vec<&Pod>> = BTreeMap::new();
    for pod in pods
        .iter()
        .filter(|p| p.metadata.namespace == ds.metadata.namespace)
    {
        let matches =
            selector_matches(selector, pod.metadata.labels.as_ref()).map_err(|source| {
                DaemonSetError::Selector {
                    name: name.clone(),
                    source,
                }
            })?;
        let owned = match controller_of(&pod.metadata) {
            Some(c) => c.uid == uid && matches,
            None if matches && !deleting && pod.metadata.deletion_timestamp.is_none() => {
                plan.adopt
                    .push(pod.metadata.name.clone().unwrap_or_default());
                true
            }
            None => false,
        };
        if owned {
            if let Some(n) = target_node(pod) {
                by_node.entry(n).or_default().push(pod);
            }
        }
    }
    for v in by_node.values_mut() {
        v.sort_by_key(|p| {
            (
                p.metadata.creation_timestamp.as_ref().map(|t| t.0),
                p.metadata.name.clone(),
            )
        });
    }

    let mut sorted_nodes: Vec<&Node> = nodes.iter().collect();
    sorted_nodes.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    let mut status = DaemonSetStatus {
        observed_generation: ds.metadata.generation,
        collision_count: ds.status.as_ref().and_then(|s| s.collision_count),
        conditions: ds.status.as_ref().and_then(|s| s.conditions.clone()),
        ..Default::default()
    };
    let (mut available, mut updated) = (0, 0);
    for node in &sorted_nodes {
        let node_name = node.metadata.name.as_deref().unwrap_or("");
        let (should_run, should_continue) = node_should_run(ds, node);
        let daemon_pods = by_node.get(node_name).cloned().unwrap_or_default();
        let live: Vec<&Pod> = daemon_pods
            .iter()
            .copied()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .collect();
        if should_run {
            status.desired_number_scheduled += 1;
            if !daemon_pods.is_empty() {
                status.current_number_scheduled += 1;
            }
            if let Some(first) = live.first() {
                if pod_ready(first).0 {
                    status.number_ready += 1;
                }
                if pod_available(first, min_ready, now) {
                    available += 1;
                }
                if pod_hash(first) == Some(hash.as_str()) {
                    updated += 1;
                }
            }
        } else if !daemon_pods.is_empty() {
            status.number_misscheduled += 1;
        }
        if deleting {
            continue;
        }
        if should_run && daemon_pods.is_empty() {
            plan.create.push(pod_for_node(ds, node_name, &hash));
        } else if should_continue {
            let mut running = Vec::new();
            for p in &live {
                if pod_phase(p) == "Failed" {
                    plan.delete
                        .push(p.metadata.name.clone().unwrap_or_default());
                } else {
                    running.push(*p);
                }
            }
            for extra in running.iter().skip(1) {
                plan.delete
                    .push(extra.metadata.name.clone().unwrap_or_default());
            }
        } else {
            plan.delete.extend(
                live.iter()
                    .map(|p| p.metadata.name.clone().unwrap_or_default()),
            );
        }
    }
    status.number_available = Some(available);
    status.number_unavailable = Some(status.desired_number_scheduled - available);
    status.updated_number_scheduled = Some(updated);

    // RollingUpdate (maxSurge 0).
    let strategy = spec.and_then(|s| s.update_strategy.as_ref());
    if !deleting && strategy.and_then(|s| s.type_.as_deref()) != Some("OnDelete") {
        let max_unavailable = strategy
            .and_then(|s| s.rolling_update.as_ref())
            .and_then(|r| r.max_unavailable.clone())
            .unwrap_or(IntOrString::Int(1));
        let mut budget = scaled_value(&max_unavailable, status.desired_number_scheduled, true)
            .ok_or_else(|| DaemonSetError::MaxUnavailable {
                name: name.clone(),
                value: match &max_unavailable {
                    IntOrString::Int(i) => i.to_string(),
                    IntOrString::String(s) => s.clone(),
                },
            })?;
        if budget == 0 {
            budget = 1;
        }
        // rollingUpdate (maxSurge 0) over the nodes that have daemon pods, in name order.
        let mut unavailable = 0;
        let mut replacements = Vec::new();
        let mut candidates = Vec::new();
        for pods_on_node in by_node.values() {
            // findUpdatedPodsOnNode
            let (mut new_pod, mut old_pod, mut ok) = (None, None, true);
            for p in pods_on_node
                .iter()
                .filter(|p| p.metadata.deletion_timestamp.is_none())
            {
                let slot = if pod_hash(p) == Some(hash.as_str()) {
                    &mut new_pod
                } else {
                    &mut old_pod
                };
                if slot.is_some() {
                    ok = false;
                }
                *slot = Some(*p);
            }
            match (ok, new_pod, old_pod) {
                (false, _, _) | (true, None, None) | (true, Some(_), Some(_)) => unavailable += 1,
                (true, Some(n), None) => {
                    if !pod_available(n, min_ready, now) {
                        unavailable += 1;
                    }
                }
                (true, None, Some(o)) => {
                    if !pod_available(o, min_ready, now) {
                        replacements.push(o.metadata.name.clone().unwrap_or_default());
                        unavailable += 1;
                    } else if unavailable < budget {
                        candidates.push(o.metadata.name.clone().unwrap_or_default());
                    }
                }
            }
        }
        let remaining = (budget - unavailable).clamp(0, candidates.len() as i32) as usize;
        for pname in replacements
            .into_iter()
            .chain(candidates.into_iter().take(remaining))
        {
            if !plan.delete.contains(&pname) {
                plan.delete.push(pname);
            }
        }
    }
    plan.status = status;
    Ok(plan)
}

#[cfg(test)]
mod tests;
