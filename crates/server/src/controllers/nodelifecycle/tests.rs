use super::*;
use crate::controllers::testutil::{pod, t};
use k8s_openapi::api::coordination::v1::LeaseSpec;
use k8s_openapi::api::core::v1::{NodeSpec, NodeStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};

fn cond(type_: &str, status: &str, heartbeat: i64) -> NodeCondition {
    NodeCondition {
        type_: type_.into(),
        status: status.into(),
        last_heartbeat_time: Some(Time(t(heartbeat))),
        last_transition_time: Some(Time(t(0))),
        ..Default::default()
    }
}

fn node(conditions: Vec<NodeCondition>, taints: Vec<Taint>) -> Node {
    Node {
        metadata: ObjectMeta {
            name: Some("node-a".into()),
            creation_timestamp: Some(Time(t(0))),
            ..Default::default()
        },
        spec: Some(NodeSpec {
            taints: Some(taints),
            ..Default::default()
        }),
        status: Some(NodeStatus {
            conditions: Some(conditions),
            ..Default::default()
        }),
    }
}

fn lease(renew: i64) -> Lease {
    Lease {
        metadata: ObjectMeta::default(),
        spec: Some(LeaseSpec {
            renew_time: Some(MicroTime(t(renew))),
            lease_duration_seconds: Some(40),
            ..Default::default()
        }),
    }
}

fn keys(ts: &[Taint]) -> Vec<(String, String)> {
    let mut v: Vec<_> = ts
        .iter()
        .map(|t| (t.key.clone(), t.effect.clone()))
        .collect();
    v.sort();
    v
}

#[test]
fn healthy_node_with_fresh_lease() {
    let n = node(vec![cond("Ready", "True", 0)], vec![]);
    let d = evaluate_node(&n, Some(&lease(100)), t(120), &LifecycleConfig::default());
    assert!(!d.became_unknown && d.conditions.is_none());
    assert!(d.add_taints.is_empty() && d.remove_taints.is_empty());
    assert_eq!(d.recheck_at, Some(t(140)));
}

#[test]
fn silent_node_becomes_unknown_and_unreachable() {
    let n = node(
        vec![cond("Ready", "True", 0), cond("MemoryPressure", "False", 0)],
        vec![],
    );
    let cfg = LifecycleConfig::default();
    // 40 s after the last renewal: still fine.
    assert!(!evaluate_node(&n, Some(&lease(100)), t(140), &cfg).became_unknown);
    let d = evaluate_node(&n, Some(&lease(100)), t(141), &cfg);
    assert!(d.became_unknown);
    let conds = d.conditions.as_ref().unwrap();
    let ready = conds.iter().find(|c| c.type_ == "Ready").unwrap();
    assert_eq!(ready.status, "Unknown");
    assert_eq!(ready.reason.as_deref(), Some("NodeStatusUnknown"));
    assert_eq!(
        ready.message.as_deref(),
        Some("Kubelet stopped posting node status.")
    );
    let never = conds.iter().find(|c| c.type_ == "DiskPressure").unwrap();
    assert_eq!(never.reason.as_deref(), Some("NodeStatusNeverUpdated"));
    assert_eq!(
        keys(&d.add_taints),
        [
            (TAINT_UNREACHABLE.to_string(), "NoExecute".to_string()),
            (TAINT_UNREACHABLE.to_string(), "NoSchedule".to_string())
        ]
    );
    assert_eq!(d.add_taints[0].time_added, Some(Time(t(141))));
}

#[test]
fn custom_grace_period() {
    let n = node(vec![cond("Ready", "True", 0)], vec![]);
    let cfg = LifecycleConfig {
        grace_period: Duration::from_secs(10),
        ..Default::default()
    };
    assert!(evaluate_node(&n, Some(&lease(100)), t(111), &cfg).became_unknown);
}

#[test]
fn recovery_swaps_and_removes_taints() {
    let unreachable = vec![
        taint(TAINT_UNREACHABLE, "NoExecute", t(5)),
        taint(TAINT_UNREACHABLE, "NoSchedule", t(5)),
        Taint {
            key: "dedicated".into(),
            value: Some("x".into()),
            effect: "NoSchedule".into(),
            time_added: None,
        },
    ];
    // The kubelet is back and reports NotReady: unreachable → not-ready.
    let n = node(vec![cond("Ready", "False", 200)], unreachable.clone());
    let d = evaluate_node(&n, Some(&lease(200)), t(201), &LifecycleConfig::default());
    assert_eq!(
        keys(&d.add_taints),
        [
            (TAINT_NOT_READY.to_string(), "NoExecute".to_string()),
            (TAINT_NOT_READY.to_string(), "NoSchedule".to_string())
        ]
    );
    assert_eq!(keys(&d.remove_taints).len(), 2);
    // Ready again: controller taints go, the user's taint stays.
    let n = node(vec![cond("Ready", "True", 300)], unreachable);
    let d = evaluate_node(&n, Some(&lease(300)), t(301), &LifecycleConfig::default());
    assert!(d.add_taints.is_empty());
    let left = apply_taints(&n, &d);
    assert_eq!(
        keys(&left),
        [("dedicated".to_string(), "NoSchedule".to_string())]
    );
}

#[test]
fn pressure_and_unschedulable_taints() {
    let mut n = node(
        vec![cond("Ready", "True", 0), cond("DiskPressure", "True", 0)],
        vec![],
    );
    n.spec.as_mut().unwrap().unschedulable = Some(true);
    let d = evaluate_node(&n, Some(&lease(10)), t(11), &LifecycleConfig::default());
    assert_eq!(
        keys(&d.add_taints),
        [
            (TAINT_DISK_PRESSURE.to_string(), "NoSchedule".to_string()),
            (TAINT_UNSCHEDULABLE.to_string(), "NoSchedule".to_string())
        ]
    );
}

#[test]
fn eviction_times() {
    let tainted = node(
        vec![cond("Ready", "Unknown", 0)],
        vec![taint(TAINT_UNREACHABLE, "NoExecute", t(100))],
    );
    let mut p = pod("p", &[], Some(0));
    // No tolerations: evict now.
    assert_eq!(eviction_time(&p, &tainted, t(150)), Some(t(150)));
    // Default tolerations: 300 s after the taint was added.
    p.spec.as_mut().unwrap().tolerations = Some(default_tolerations(&p));
    assert_eq!(eviction_time(&p, &tainted, t(150)), Some(t(400)));
    // Tolerated forever.
    p.spec.as_mut().unwrap().tolerations = Some(vec![Toleration {
        operator: Some("Exists".into()),
        ..Default::default()
    }]);
    assert_eq!(eviction_time(&p, &tainted, t(150)), None);
    // Not tainted: never.
    let healthy = node(vec![cond("Ready", "True", 0)], vec![]);
    assert_eq!(eviction_time(&pod("q", &[], None), &healthy, t(0)), None);
}

#[test]
fn default_tolerations_are_added_once() {
    let p = pod("p", &[], None);
    let tols = default_tolerations(&p);
    assert_eq!(tols.len(), 2);
    assert!(tols.iter().all(|t| t.toleration_seconds == Some(300)
        && t.operator.as_deref() == Some("Exists")
        && t.effect.as_deref() == Some("NoExecute")));
    let mut p2 = p.clone();
    p2.spec.as_mut().unwrap().tolerations = Some(vec![Toleration {
        key: Some(TAINT_UNREACHABLE.into()),
        operator: Some("Exists".into()),
        effect: Some("NoExecute".into()),
        toleration_seconds: Some(5),
        value: None,
    }]);
    let tols = default_tolerations(&p2);
    assert_eq!(tols.len(), 2);
    assert_eq!(tols[0].toleration_seconds, Some(5));
    assert_eq!(tols[1].key.as_deref(), Some(TAINT_NOT_READY));
}

#[test]
fn pods_marked_not_ready_on_unready_node() {
    let n = node(vec![cond("Ready", "Unknown", 0)], vec![]);
    let pods = [pod("ready", &[], Some(0)), pod("unready", &[], None)];
    let marked: Vec<_> = pods_to_mark_not_ready(&n, &pods)
        .into_iter()
        .map(|p| p.metadata.name.clone().unwrap())
        .collect();
    assert_eq!(marked, ["ready"]);
}

#[test]
fn never_reported_node() {
    let mut n = node(vec![], vec![]);
    n.status = None;
    let cfg = LifecycleConfig::default();
    let d = evaluate_node(&n, None, t(10), &cfg);
    assert!(!d.became_unknown && d.add_taints.is_empty());
    // The startup grace period (60 s) applies until Ready is first posted.
    assert!(!evaluate_node(&n, None, t(41), &cfg).became_unknown);
    let d = evaluate_node(&n, None, t(61), &cfg);
    assert!(d.became_unknown);
    let ready = d
        .conditions
        .as_ref()
        .unwrap()
        .iter()
        .find(|c| c.type_ == "Ready")
        .unwrap();
    assert_eq!(ready.reason.as_deref(), Some("NodeStatusNeverUpdated"));
    assert_eq!(keys(&d.add_taints).len(), 2);
}
