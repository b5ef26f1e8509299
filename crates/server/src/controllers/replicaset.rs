//! ReplicaSet controller decisions: which pods to adopt, release, create and delete, and the
//! status to write.
//!
//! Follows upstream's `pkg/controller/replicaset`: only active pods count (not terminal, not being
//! deleted); pods are claimed as `ControllerRefManager.ClaimPods` does (keep owned pods that match
//! the selector, release owned pods that no longer match, adopt matching orphans — never while
//! the ReplicaSet itself is being deleted); at most `burstReplicas` (500) pods are created or
//! deleted per sync; the pods to delete are chosen by `controller.ActivePodsWithRanks`
//! (unassigned < assigned, Pending < Unknown < Running, not ready < ready, lower
//! `controller.kubernetes.io/pod-deletion-cost` first, more pods of the set on the same node
//! first, more recently ready first, more restarts first, newer first). The logarithmic
//! bucketing of upstream's `LogarithmicScaleDown` is not applied: timestamps compare exactly.
//! Expectations (not acting twice on writes the cache has not shown yet) are the caller's.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{ReplicaSet, ReplicaSetStatus};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::chrono::{DateTime, Utc};

use super::{
    controller_of, controller_ref, is_pod_active, pod_available, pod_phase, pod_ready,
    selector_matches, SelectorError,
};

/// Upstream's `BurstReplicas`: the most pods created or deleted in one sync.
pub const BURST_REPLICAS: usize = 500;
/// The annotation that biases which pods are deleted first on scale-down.
pub const POD_DELETION_COST: &str = "controller.kubernetes.io/pod-deletion-cost";

/// A ReplicaSet that cannot be reconciled; the object must be fixed, retrying will not help.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplicaSetError {
    #[error("replicaset {namespace}/{name}: {source}")]
    Selector {
        namespace: String,
        name: String,
        #[source]
        source: SelectorError,
    },
    #[error("replicaset {namespace}/{name}: spec.selector does not match template labels")]
    SelectorMismatch { namespace: String, name: String },
}

/// What one sync of a ReplicaSet should do.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReplicaSetPlan {
    /// Orphan pods (by name) to adopt: add the ReplicaSet's controller ownerReference.
    pub adopt: Vec<String>,
    /// Owned pods (by name) that no longer match the selector: remove our ownerReference.
    pub release: Vec<String>,
    /// Pods to create (generateName `<rs>-`, controller ownerReference set).
    pub create: Vec<Pod>,
    /// Pods (by name) to delete, in deletion order.
    pub delete: Vec<String>,
    /// The status to write (`conditions` carried over from the current status).
    pub status: ReplicaSetStatus,
    /// Sync again after this long: a Ready pod becomes available once minReadySeconds pass.
    pub requeue_after: Option<Duration>,
}

fn rs_error(rs: &ReplicaSet, source: SelectorError) -> ReplicaSetError {
    ReplicaSetError::Selector {
        namespace: rs.metadata.namespace.clone().unwrap_or_default(),
        name: rs.metadata.name.clone().unwrap_or_default(),
        source,
    }
}

/// A pod for the ReplicaSet's template (`controller.GetPodFromTemplate`).
pub fn pod_from_template(rs: &ReplicaSet) -> Pod {
    let template = rs.spec.as_ref().and_then(|s| s.template.as_ref());
    let tmeta = template.and_then(|t| t.metadata.as_ref());
    let name = rs.metadata.name.clone().unwrap_or_default();
    Pod {
        metadata: ObjectMeta {
            generate_name: Some(format!("{name}-")),
            namespace: rs.metadata.namespace.clone(),
            labels: tmeta.and_then(|m| m.labels.clone()),
            annotations: tmeta.and_then(|m| m.annotations.clone()),
            finalizers: tmeta.and_then(|m| m.finalizers.clone()),
            owner_references: Some(vec![controller_ref("apps/v1", "ReplicaSet", &rs.metadata)]),
            ..Default::default()
        },
        spec: template.and_then(|t| t.spec.clone()),
        status: None,
    }
}

fn deletion_cost(pod: &Pod) -> i32 {
    pod.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(POD_DELETION_COST))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn max_restarts(pod: &Pod) -> i32 {
    pod.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .into_iter()
        .flatten()
        .map(|c| c.restart_count)
        .max()
        .unwrap_or(0)
}

fn node_name(pod: &Pod) -> &str {
    pod.spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .unwrap_or("")
}

fn phase_ordinal(pod: &Pod) -> u8 {
    match pod_phase(pod) {
        "Unknown" => 1,
        "Running" => 2,
        _ => 0,
    }
}

/// "Empty first, then later first" (upstream `afterOrZero`) as an ordering where Less deletes first.
fn later_or_empty_first(a: Option<DateTime<Utc>>, b: Option<DateTime<Utc>>) -> Ordering {
    match (a, b) {
        (None, None) => Ordering::Equal,
        (None, Some(_)) => Ordering::Less,
        (Some(_), None) => Ordering::Greater,
        (Some(a), Some(b)) => b.cmp(&a),
    }
}

/// Orders pods so that the ones to delete first come first (`ActivePodsWithRanks.Less`);
/// `rank` is the number of the set's pods sharing the pod's node. Ties keep the input order's
/// name order, so the result is deterministic.
pub fn deletion_order(a: (&Pod, usize), b: (&Pod, usize)) -> Ordering {
    let (pa, ra) = a;
    let (pb, rb) = b;
    let (na, nb) = (node_name(pa), node_name(pb));
    if na != nb && (na.is_empty() || nb.is_empty()) {
        return if na.is_empty() {
            Ordering::Less
        } else {
            Ordering::Greater
        };
    }
    let (ready_a, since_a) = pod_ready(pa);
    let (ready_b, since_b) = pod_ready(pb);
    phase_ordinal(pa)
        .cmp(&phase_ordinal(pb))
        .then(ready_a.cmp(&ready_b))
        .then(deletion_cost(pa).cmp(&deletion_cost(pb)))
        .then(rb.cmp(&ra))
        .then_with(|| {
            if ready_a && ready_b {
                later_or_empty_first(since_a, since_b)
            } else {
                Ordering::Equal
            }
        })
        .then(max_restarts(pb).cmp(&max_restarts(pa)))
        .then_with(|| {
            later_or_empty_first(
                pa.metadata.creation_timestamp.as_ref().map(|t| t.0),
                pb.metadata.creation_timestamp.as_ref().map(|t| t.0),
            )
        })
        .then_with(|| pa.metadata.name.cmp(&pb.metadata.name))
}

/// The `count` pods to delete among `pods`, deletion order first.
pub fn pods_to_delete<'a>(pods: &[&'a Pod], count: usize) -> Vec<&'a Pod> {
    let mut per_node: BTreeMap<&str, usize> = BTreeMap::new();
    for p in pods {
        *per_node.entry(node_name(p)).or_default() += 1;
    }
    let mut ranked: Vec<(&Pod, usize)> =
        pods.iter().map(|p| (*p, per_node[node_name(p)])).collect();
    ranked.sort_by(|a, b| deletion_order(*a, *b));
    ranked.into_iter().take(count).map(|(p, _)| p).collect()
}

/// The status for the ReplicaSet given the pods it owns (`calculateStatus`).
pub fn calculate_status(rs: &ReplicaSet, owned: &[&Pod], now: DateTime<Utc>) -> ReplicaSetStatus {
    let spec = rs.spec.as_ref();
    let min_ready = spec.and_then(|s| s.min_ready_seconds).unwrap_or(0);
    let template_labels = spec
        .and_then(|s| s.template.as_ref())
        .and_then(|t| t.metadata.as_ref())
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    let count = |f: &dyn Fn(&Pod) -> bool| owned.iter().filter(|p| f(p)).count() as i32;
    ReplicaSetStatus {
        replicas: owned.len() as i32,
        fully_labeled_replicas: Some(count(&|p| {
            let labels = p.metadata.labels.as_ref();
            template_labels
                .iter()
                .all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
        })),
        ready_replicas: Some(count(&|p| pod_ready(p).0)),
        available_replicas: Some(count(&|p| pod_available(p, min_ready, now))),
        observed_generation: rs.metadata.generation,
        conditions: rs.status.as_ref().and_then(|s| s.conditions.clone()),
    }
}

/// One sync of `rs` given all pods in its namespace at `now`.
pub fn reconcile(
    rs: &ReplicaSet,
    pods: &[Pod],
    now: DateTime<Utc>,
) -> Result<ReplicaSetPlan, ReplicaSetError> {
    let spec = rs.spec.as_ref();
    let default_selector = Default::default();
    let selector = spec.map(|s| &s.selector).unwrap_or(&default_selector);
    let uid = rs.metadata.uid.as_deref().unwrap_or("");
    let deleting = rs.metadata.deletion_timestamp.is_some();
    let template_labels = spec
        .and_then(|s| s.template.as_ref())
        .and_then(|t| t.metadata.as_ref())
        .and_then(|m| m.labels.as_ref());
    if !selector_matches(selector, template_labels).map_err(|e| rs_error(rs, e))? {
        return Err(ReplicaSetError::SelectorMismatch {
            namespace: rs.metadata.namespace.clone().unwrap_or_default(),
            name: rs.metadata.name.clone().unwrap_or_default(),
        });
    }
    let mut plan = ReplicaSetPlan::default();
    let mut owned: Vec<&Pod> = Vec::new();
    for pod in pods
        .iter()
        .filter(|p| p.metadata.namespace == rs.metadata.namespace && is_pod_active(p))
    {
        let matches = selector_matches(selector, pod.metadata.labels.as_ref())
            .map_err(|e| rs_error(rs, e))?;
        let name = pod.metadata.name.clone().unwrap_or_default();
        match controller_of(&pod.metadata) {
            Some(c) if c.uid == uid => {
                if matches {
                    owned.push(pod);
                } else if !deleting {
                    plan.release.push(name);
                }
            }
            Some(_) => {}
            None if matches && !deleting => {
                plan.adopt.push(name);
                owned.push(pod);
            }
            None => {}
        }
    }
    plan.status = calculate_status(rs, &owned, now);

    if !deleting {
        let want = spec.and_then(|s| s.replicas).unwrap_or(1).max(0) as usize;
        if owned.len() < want {
            let n = (want - owned.len()).min(BURST_REPLICAS);
            plan.create = (0..n).map(|_| pod_from_template(rs)).collect();
        } else if owned.len() > want {
            let n = (owned.len() - want).min(BURST_REPLICAS);
            plan.delete = pods_to_delete(&owned, n)
                .into_iter()
                .map(|p| p.metadata.name.clone().unwrap_or_default())
                .collect();
        }
    }

    // Wake up when the next Ready pod crosses minReadySeconds.
    let min_ready = spec.and_then(|s| s.min_ready_seconds).unwrap_or(0);
    if min_ready > 0 {
        plan.requeue_after = owned
            .iter()
            .filter_map(|p| match pod_ready(p) {
                (true, Some(since)) => {
                    let at = since + k8s_openapi::chrono::Duration::seconds(i64::from(min_ready));
                    (at > now).then(|| (at - now).to_std().unwrap_or_default())
                }
                _ => None,
            })
            .min();
    }
    Ok(plan)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controllers::testutil::{labels, pod, t};
    use k8s_openapi::api::apps::v1::ReplicaSetSpec;
    use k8s_openapi::api::core::v1::{ContainerStatus, PodSpec, PodTemplateSpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, Time};

    fn rs(replicas: i32) -> ReplicaSet {
        ReplicaSet {
            metadata: ObjectMeta {
                name: Some("web".into()),
                namespace: Some("default".into()),
                uid: Some("rs-uid".into()),
                generation: Some(3),
                ..Default::default()
            },
            spec: Some(ReplicaSetSpec {
                replicas: Some(replicas),
                selector: LabelSelector {
                    match_labels: Some(labels(&[("app", "web")])),
                    ..Default::default()
                },
                template: Some(PodTemplateSpec {
                    metadata: Some(ObjectMeta {
                        labels: Some(labels(&[("app", "web"), ("tier", "fe")])),
                        ..Default::default()
                    }),
                    spec: Some(PodSpec::default()),
                }),
                ..Default::default()
            }),
            status: None,
        }
    }

    fn owned(mut p: Pod, set: &ReplicaSet) -> Pod {
        p.metadata.owner_references =
            Some(vec![controller_ref("apps/v1", "ReplicaSet", &set.metadata)]);
        p
    }

    fn web(name: &str, ready_since: Option<i64>) -> Pod {
        owned(
            pod(name, &[("app", "web"), ("tier", "fe")], ready_since),
            &rs(0),
        )
    }

    #[test]
    fn creates_missing_pods_from_template() {
        let set = rs(3);
        let plan = reconcile(&set, &[web("a", Some(0))], t(100)).unwrap();
        assert_eq!(plan.create.len(), 2);
        let p = &plan.create[0];
        assert_eq!(p.metadata.generate_name.as_deref(), Some("web-"));
        assert_eq!(p.metadata.name, None);
        let oref = &p.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (
                oref.kind.as_str(),
                oref.uid.as_str(),
                oref.controller,
                oref.block_owner_deletion
            ),
            ("ReplicaSet", "rs-uid", Some(true), Some(true))
        );
        assert_eq!(
            p.metadata.labels,
            Some(labels(&[("app", "web"), ("tier", "fe")]))
        );
        assert!(plan.delete.is_empty());
    }

    #[test]
    fn adopts_orphans_releases_mismatches_ignores_others() {
        let set = rs(2);
        let orphan = pod("orphan", &[("app", "web")], Some(0));
        let mut moved = web("moved", Some(0));
        moved.metadata.labels = Some(labels(&[("app", "other")]));
        let mut foreign = pod("foreign", &[("app", "web")], Some(0));
        foreign.metadata.owner_references = Some(vec![controller_ref(
            "apps/v1",
            "ReplicaSet",
            &ObjectMeta {
                uid: Some("other".into()),
                ..Default::default()
            },
        )]);
        let mut dying_orphan = pod("dying", &[("app", "web")], Some(0));
        dying_orphan.metadata.deletion_timestamp = Some(Time(t(0)));
        let plan = reconcile(
            &set,
            &[web("a", Some(0)), orphan, moved, foreign, dying_orphan],
            t(100),
        )
        .unwrap();
        assert_eq!(plan.adopt, vec!["orphan"]);
        assert_eq!(plan.release, vec!["moved"]);
        assert!(plan.create.is_empty() && plan.delete.is_empty());
        assert_eq!(plan.status.replicas, 2);
        assert_eq!(plan.status.fully_labeled_replicas, Some(1)); // the orphan lacks tier=fe
    }

    #[test]
    fn terminal_and_terminating_pods_do_not_count() {
        let mut failed = web("failed", None);
        failed.status.as_mut().unwrap().phase = Some("Failed".into());
        let mut terminating = web("terminating", Some(0));
        terminating.metadata.deletion_timestamp = Some(Time(t(0)));
        let plan = reconcile(&rs(1), &[failed, terminating], t(100)).unwrap();
        assert_eq!(plan.create.len(), 1);
        assert_eq!(plan.status.replicas, 0);
    }

    #[test]
    fn deletes_by_upstream_rank() {
        let mut unassigned = web("unassigned", None);
        unassigned.spec.as_mut().unwrap().node_name = None;
        unassigned.status.as_mut().unwrap().phase = Some("Pending".into());
        let mut pending = web("pending", None);
        pending.status.as_mut().unwrap().phase = Some("Pending".into());
        let not_ready = web("not-ready", None);
        let ready_old = web("ready-old", Some(10));
        let ready_new = web("ready-new", Some(50));
        let mut restarts = web("restarts", Some(10));
        restarts.status.as_mut().unwrap().container_statuses = Some(vec![ContainerStatus {
            restart_count: 5,
            ..Default::default()
        }]);
        let pods = [
            ready_old.clone(),
            restarts,
            ready_new,
            not_ready,
            pending,
            unassigned,
        ];
        let refs: Vec<&Pod> = pods.iter().collect();
        let order: Vec<_> = pods_to_delete(&refs, 6)
            .into_iter()
            .map(|p| p.metadata.name.clone().unwrap())
            .collect();
        assert_eq!(
            order,
            [
                "unassigned",
                "pending",
                "not-ready",
                "ready-new",
                "restarts",
                "ready-old"
            ]
        );
        let plan = reconcile(&rs(4), &pods, t(100)).unwrap();
        assert_eq!(plan.delete, vec!["unassigned", "pending"]);
    }

    #[test]
    fn deletion_cost_and_doubled_up_nodes() {
        let mut cheap = web("cheap", Some(10));
        cheap.metadata.annotations = Some(labels(&[(POD_DELETION_COST, "-10")]));
        let alone = {
            let mut p = web("alone", Some(10));
            p.spec.as_mut().unwrap().node_name = Some("node-b".into());
            p
        };
        let pods = [alone, web("twin1", Some(10)), web("twin2", Some(10)), cheap];
        let refs: Vec<&Pod> = pods.iter().collect();
        let order: Vec<_> = pods_to_delete(&refs, 4)
            .into_iter()
            .map(|p| p.metadata.name.clone().unwrap())
            .collect();
        // cheap first (lowest cost), then the node-a pods (3 on node-a), node-b last.
        assert_eq!(order, ["cheap", "twin1", "twin2", "alone"]);
    }

    #[test]
    fn status_with_min_ready_seconds() {
        let mut set = rs(3);
        set.spec.as_mut().unwrap().min_ready_seconds = Some(30);
        let pods = [web("a", Some(0)), web("b", Some(90)), web("c", None)];
        let plan = reconcile(&set, &pods, t(100)).unwrap();
        assert_eq!(plan.status.replicas, 3);
        assert_eq!(plan.status.ready_replicas, Some(2));
        assert_eq!(plan.status.available_replicas, Some(1));
        assert_eq!(plan.status.fully_labeled_replicas, Some(3));
        assert_eq!(plan.status.observed_generation, Some(3));
        assert_eq!(plan.requeue_after, Some(Duration::from_secs(20)));
    }

    #[test]
    fn deleting_replicaset_neither_adopts_nor_scales() {
        let mut set = rs(3);
        set.metadata.deletion_timestamp = Some(Time(t(0)));
        let plan = reconcile(&set, &[pod("orphan", &[("app", "web")], None)], t(1)).unwrap();
        assert!(plan.adopt.is_empty() && plan.create.is_empty());
    }

    #[test]
    fn selector_must_match_template() {
        let mut set = rs(1);
        set.spec.as_mut().unwrap().selector.match_labels = Some(labels(&[("app", "db")]));
        assert!(matches!(
            reconcile(&set, &[], t(0)),
            Err(ReplicaSetError::SelectorMismatch { .. })
        ));
    }
}
