use super::*;
use crate::controllers::testutil::{labels, pod, t};
use k8s_openapi::api::apps::v1::{DaemonSetSpec, DaemonSetUpdateStrategy, RollingUpdateDaemonSet};
use k8s_openapi::api::core::v1::{Container, NodeSpec, PodTemplateSpec, Taint};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, Time};

fn ds(image: &str) -> DaemonSet {
    DaemonSet {
        metadata: ObjectMeta {
            name: Some("agent".into()),
            namespace: Some("default".into()),
            uid: Some("ds-uid".into()),
            generation: Some(2),
            ..Default::default()
        },
        spec: Some(DaemonSetSpec {
            selector: LabelSelector {
                match_labels: Some(labels(&[("app", "agent")])),
                ..Default::default()
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels(&[("app", "agent")])),
                    ..Default::default()
                }),
                spec: Some(PodSpec {
                    containers: vec![Container {
                        name: "agent".into(),
                        image: Some(image.into()),
                        ..Default::default()
                    }],
                    ..Default::default()
                }),
            },
            ..Default::default()
        }),
        status: None,
    }
}

fn node(name: &str, taints: Vec<Taint>) -> Node {
    Node {
        metadata: ObjectMeta {
            name: Some(name.into()),
            labels: Some(labels(&[("kubernetes.io/os", "linux")])),
            ..Default::default()
        },
        spec: Some(NodeSpec {
            taints: Some(taints),
            ..Default::default()
        }),
        status: None,
    }
}

fn taint(key: &str, effect: &str) -> Taint {
    Taint {
        key: key.into(),
        effect: effect.into(),
        ..Default::default()
    }
}

/// A running daemon pod of `set` on `node` with the given revision hash.
fn daemon_pod(
    set: &DaemonSet,
    name: &str,
    node: &str,
    hash: &str,
    ready_since: Option<i64>,
) -> Pod {
    let mut p = pod(
        name,
        &[("app", "agent"), (LABEL_REVISION_HASH, hash)],
        ready_since,
    );
    p.spec.as_mut().unwrap().node_name = Some(node.into());
    p.metadata.owner_references = Some(vec![controller_ref("apps/v1", "DaemonSet", &set.metadata)]);
    p
}

#[test]
fn which_nodes_run_daemon_pods() {
    let set = ds("agent:1");
    assert_eq!(node_should_run(&set, &node("a", vec![])), (true, true));
    // Cordoned and pressure taints are tolerated by daemon pods.
    let cordoned = node(
        "b",
        vec![
            taint(TAINT_UNSCHEDULABLE, "NoSchedule"),
            taint(TAINT_NOT_READY, "NoExecute"),
        ],
    );
    assert_eq!(node_should_run(&set, &cordoned), (true, true));
    // A foreign NoSchedule taint stops new pods but keeps running ones.
    assert_eq!(
        node_should_run(&set, &node("c", vec![taint("dedicated", "NoSchedule")])),
        (false, true)
    );
    assert_eq!(
        node_should_run(&set, &node("d", vec![taint("dedicated", "NoExecute")])),
        (false, false)
    );
    let mut selective = set.clone();
    selective
        .spec
        .as_mut()
        .unwrap()
        .template
        .spec
        .as_mut()
        .unwrap()
        .node_selector = Some(labels(&[("role", "edge")]));
    assert_eq!(
        node_should_run(&selective, &node("a", vec![])),
        (false, false)
    );
}

#[test]
fn creates_one_pod_per_eligible_node() {
    let set = ds("agent:1");
    let nodes = [
        node("a", vec![]),
        node("b", vec![]),
        node("c", vec![taint("x", "NoSchedule")]),
    ];
    let plan = reconcile(&set, &nodes, &[], t(0)).unwrap();
    assert_eq!(plan.create.len(), 2);
    let p = &plan.create[0];
    assert_eq!(p.metadata.generate_name.as_deref(), Some("agent-"));
    assert_eq!(target_node(p), Some("a"));
    let l = p.metadata.labels.as_ref().unwrap();
    assert_eq!(l[LABEL_REVISION_HASH], revision_hash(&set));
    assert_eq!(l[LABEL_TEMPLATE_GENERATION], "2");
    let tols = p.spec.as_ref().unwrap().tolerations.as_ref().unwrap();
    assert!(tols
        .iter()
        .any(|t| t.key.as_deref() == Some(TAINT_UNREACHABLE) && t.toleration_seconds.is_none()));
    assert_eq!(plan.status.desired_number_scheduled, 2);
    assert_eq!(plan.status.current_number_scheduled, 0);
    assert_eq!(plan.status.number_unavailable, Some(2));
}

#[test]
fn duplicates_failed_and_misscheduled_pods_are_deleted() {
    let set = ds("agent:1");
    let h = revision_hash(&set);
    let mut newer = daemon_pod(&set, "dup-new", "a", &h, Some(0));
    newer.metadata.creation_timestamp = Some(Time(t(10)));
    let mut failed = daemon_pod(&set, "failed", "b", &h, None);
    failed.status.as_mut().unwrap().phase = Some("Failed".into());
    let nodes = [
        node("a", vec![]),
        node("b", vec![]),
        node("c", vec![taint("dedicated", "NoExecute")]),
    ];
    let pods = [
        daemon_pod(&set, "dup-old", "a", &h, Some(0)),
        newer,
        failed,
        daemon_pod(&set, "evicted", "c", &h, Some(0)),
    ];
    let plan = reconcile(&set, &nodes, &pods, t(100)).unwrap();
    let mut deleted = plan.delete.clone();
    deleted.sort();
    assert_eq!(deleted, ["dup-new", "evicted", "failed"]);
    assert!(plan.create.is_empty()); // node b is recreated after the failed pod is gone
    assert_eq!(plan.status.number_misscheduled, 1);
    assert_eq!(plan.status.desired_number_scheduled, 2);
    assert_eq!(plan.status.number_ready, 1);
}

#[test]
fn rolling_update_respects_max_unavailable() {
    let old = ds("agent:1");
    let old_hash = revision_hash(&old);
    let set = ds("agent:2");
    let nodes = [node("a", vec![]), node("b", vec![]), node("c", vec![])];
    let pods: Vec<Pod> = ["a", "b", "c"]
        .iter()
        .map(|n| daemon_pod(&set, &format!("old-{n}"), n, &old_hash, Some(0)))
        .collect();
    let plan = reconcile(&set, &nodes, &pods, t(100)).unwrap();
    assert_eq!(plan.delete, ["old-a"]);
    assert_eq!(plan.status.updated_number_scheduled, Some(0));

    // An unavailable old pod is replaced at once and uses up the budget.
    let mut pods2 = pods.clone();
    pods2[1] = daemon_pod(&set, "old-b", "b", &old_hash, None);
    let plan = reconcile(&set, &nodes, &pods2, t(100)).unwrap();
    assert_eq!(plan.delete, ["old-b"]);

    // 50% of 3 rounds up to 2.
    let mut wide = set.clone();
    wide.spec.as_mut().unwrap().update_strategy = Some(DaemonSetUpdateStrategy {
        type_: Some("RollingUpdate".into()),
        rolling_update: Some(RollingUpdateDaemonSet {
            max_unavailable: Some(IntOrString::String("50%".into())),
            max_surge: None,
        }),
    });
    let plan = reconcile(&wide, &nodes, &pods, t(100)).unwrap();
    assert_eq!(plan.delete, ["old-a", "old-b"]);

    // OnDelete never replaces.
    let mut manual = set.clone();
    manual.spec.as_mut().unwrap().update_strategy = Some(DaemonSetUpdateStrategy {
        type_: Some("OnDelete".into()),
        rolling_update: None,
    });
    assert!(reconcile(&manual, &nodes, &pods, t(100))
        .unwrap()
        .delete
        .is_empty());
}

#[test]
fn unscheduled_pods_map_to_their_target_node() {
    let set = ds("agent:1");
    let p = pod_for_node(&set, "a", &revision_hash(&set));
    assert_eq!(target_node(&p), Some("a"));
    let mut created = p.clone();
    created.metadata.name = Some("agent-x".into());
    created.metadata.namespace = Some("default".into());
    let plan = reconcile(&set, &[node("a", vec![])], &[created], t(0)).unwrap();
    assert!(plan.create.is_empty() && plan.delete.is_empty());
    assert_eq!(plan.status.current_number_scheduled, 1);
}
