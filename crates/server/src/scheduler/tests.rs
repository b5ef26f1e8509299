use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Affinity, Container, ContainerPort, Node, NodeAffinity, NodeCondition, NodeSelector,
    NodeSelectorRequirement, NodeSelectorTerm, NodeSpec, NodeStatus, Pod, PodSpec, PodStatus,
    PreferredSchedulingTerm, ResourceRequirements, Taint, Toleration,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

use super::filters::*;
use super::*;

fn node(name: &str, cpu: &str, mem: &str) -> Node {
    Node {
        metadata: ObjectMeta {
            name: Some(name.into()),
            labels: Some(BTreeMap::from([(
                "kubernetes.io/hostname".to_string(),
                name.to_string(),
            )])),
            ..Default::default()
        },
        spec: Some(NodeSpec::default()),
        status: Some(NodeStatus {
            allocatable: Some(BTreeMap::from([
                ("cpu".to_string(), Quantity(cpu.into())),
                ("memory".to_string(), Quantity(mem.into())),
                ("pods".to_string(), Quantity("110".into())),
                ("ephemeral-storage".to_string(), Quantity("10Gi".into())),
            ])),
            conditions: Some(vec![NodeCondition {
                type_: "Ready".into(),
                status: "True".into(),
                ..Default::default()
            }]),
            ..Default::default()
        }),
    }
}

fn pod(name: &str, cpu: &str, mem: &str) -> Pod {
    let mut req = BTreeMap::new();
    if !cpu.is_empty() {
        req.insert("cpu".to_string(), Quantity(cpu.into()));
    }
    if !mem.is_empty() {
        req.insert("memory".to_string(), Quantity(mem.into()));
    }
    Pod {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some("default".into()),
            uid: Some(format!("uid-{name}")),
            ..Default::default()
        },
        spec: Some(PodSpec {
            containers: vec![Container {
                name: "c".into(),
                resources: Some(ResourceRequirements {
                    requests: Some(req),
                    ..Default::default()
                }),
                ..Default::default()
            }],
            ..Default::default()
        }),
        status: Some(PodStatus {
            phase: Some("Pending".into()),
            ..Default::default()
        }),
    }
}

fn bound(mut p: Pod, node: &str) -> Pod {
    p.spec.as_mut().unwrap().node_name = Some(node.into());
    p.status.as_mut().unwrap().phase = Some("Running".into());
    p
}

fn taint(key: &str, value: &str, effect: &str) -> Taint {
    Taint {
        key: key.into(),
        value: (!value.is_empty()).then(|| value.to_string()),
        effect: effect.into(),
        time_added: None,
    }
}

fn tainted(mut n: Node, t: Taint) -> Node {
    n.spec
        .as_mut()
        .unwrap()
        .taints
        .get_or_insert_with(Vec::new)
        .push(t);
    n
}

fn with_label(mut n: Node, k: &str, v: &str) -> Node {
    n.metadata
        .labels
        .as_mut()
        .unwrap()
        .insert(k.into(), v.into());
    n
}

fn req(key: &str, op: &str, values: &[&str]) -> NodeSelectorRequirement {
    NodeSelectorRequirement {
        key: key.into(),
        operator: op.into(),
        values: Some(values.iter().map(|s| s.to_string()).collect()),
    }
}

fn with_required(mut p: Pod, terms: Vec<NodeSelectorTerm>) -> Pod {
    p.spec.as_mut().unwrap().affinity = Some(Affinity {
        node_affinity: Some(NodeAffinity {
            required_during_scheduling_ignored_during_execution: Some(NodeSelector {
                node_selector_terms: terms,
            }),
            ..Default::default()
        }),
        ..Default::default()
    });
    p
}

fn with_host_port(mut p: Pod, ip: &str, proto: &str, port: i32) -> Pod {
    p.spec.as_mut().unwrap().containers[0]
        .ports
        .get_or_insert_with(Vec::new)
        .push(ContainerPort {
            container_port: port,
            host_port: Some(port),
            host_ip: (!ip.is_empty()).then(|| ip.to_string()),
            protocol: (!proto.is_empty()).then(|| proto.to_string()),
            ..Default::default()
        });
    p
}

fn owned_by(mut p: Pod, uid: &str) -> Pod {
    p.metadata.owner_references = Some(vec![OwnerReference {
        api_version: "apps/v1".into(),
        kind: "ReplicaSet".into(),
        name: "rs".into(),
        uid: uid.into(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }]);
    p
}

#[test]
fn picks_least_allocated_node() {
    let nodes = [node("a", "2", "4Gi"), node("b", "4", "8Gi")];
    assert_eq!(
        schedule(&pod("p", "500m", "1Gi"), &nodes, &[]),
        Ok("b".into())
    );
}

#[test]
fn tie_breaks_by_name() {
    let nodes = [
        node("b", "2", "4Gi"),
        node("a", "2", "4Gi"),
        node("c", "2", "4Gi"),
    ];
    assert_eq!(
        schedule(&pod("p", "100m", "100Mi"), &nodes, &[]),
        Ok("a".into())
    );
}

#[test]
fn already_bound_pods_are_not_scheduled() {
    let p = bound(pod("p", "", ""), "a");
    let err = schedule(&p, &[node("a", "1", "1Gi")], &[]).unwrap_err();
    assert!(err.already_bound);
}

#[test]
fn insufficient_cpu_counts_bound_pods_but_not_terminal_ones() {
    let nodes = [node("a", "1", "4Gi")];
    let running = bound(pod("r", "800m", ""), "a");
    let err = schedule(
        &pod("p", "300m", ""),
        &nodes,
        std::slice::from_ref(&running),
    )
    .unwrap_err();
    assert_eq!(err.node_reasons["a"], vec!["Insufficient cpu".to_string()]);
    let mut done = running.clone();
    done.status.as_mut().unwrap().phase = Some("Succeeded".into());
    assert_eq!(
        schedule(&pod("p", "300m", ""), &nodes, &[done]),
        Ok("a".into())
    );
}

#[test]
fn multiple_resource_shortfalls_and_too_many_pods() {
    let mut n = node("a", "1", "1Gi");
    n.status
        .as_mut()
        .unwrap()
        .allocatable
        .as_mut()
        .unwrap()
        .insert("pods".into(), Quantity("1".into()));
    let other = bound(pod("o", "", ""), "a");
    let reasons = check_resources(&pod("p", "2", "2Gi"), &n, &[&other]);
    assert_eq!(
        reasons,
        vec!["Too many pods", "Insufficient cpu", "Insufficient memory"]
    );
}

#[test]
fn extended_resources() {
    let mut p = pod("p", "", "");
    p.spec.as_mut().unwrap().containers[0]
        .resources
        .as_mut()
        .unwrap()
        .requests
        .as_mut()
        .unwrap()
        .insert("nvidia.com/gpu".into(), Quantity("1".into()));
    let mut gpu = node("gpu", "1", "1Gi");
    gpu.status
        .as_mut()
        .unwrap()
        .allocatable
        .as_mut()
        .unwrap()
        .insert("nvidia.com/gpu".into(), Quantity("1".into()));
    let err = schedule(&p, &[node("plain", "1", "1Gi")], &[]).unwrap_err();
    assert_eq!(
        err.node_reasons["plain"],
        vec!["Insufficient nvidia.com/gpu"]
    );
    assert_eq!(
        schedule(&p, &[node("plain", "1", "1Gi"), gpu], &[]),
        Ok("gpu".into())
    );
}

#[test]
fn not_ready_and_unschedulable_nodes() {
    let mut not_ready = node("a", "1", "1Gi");
    not_ready
        .status
        .as_mut()
        .unwrap()
        .conditions
        .as_mut()
        .unwrap()[0]
        .status = "Unknown".into();
    let mut cordoned = node("b", "1", "1Gi");
    cordoned.spec.as_mut().unwrap().unschedulable = Some(true);
    let err = schedule(&pod("p", "", ""), &[not_ready, cordoned.clone()], &[]).unwrap_err();
    assert_eq!(err.node_reasons["a"], vec![REASON_NOT_READY]);
    assert_eq!(err.node_reasons["b"], vec![filters::REASON_UNSCHEDULABLE]);

    let mut tolerant = pod("p", "", "");
    tolerant.spec.as_mut().unwrap().tolerations = Some(vec![Toleration {
        key: Some(TAINT_UNSCHEDULABLE.into()),
        operator: Some("Exists".into()),
        effect: Some("NoSchedule".into()),
        ..Default::default()
    }]);
    assert_eq!(schedule(&tolerant, &[cordoned], &[]), Ok("b".into()));
}

#[test]
fn taints_and_tolerations() {
    let n = tainted(
        node("a", "1", "1Gi"),
        taint("dedicated", "gpu", "NoSchedule"),
    );
    let p = pod("p", "", "");
    assert_eq!(
        check_taints(&p, &n).as_deref(),
        Some("node(s) had untolerated taint {dedicated: gpu}")
    );
    let tol = |op: &str, key: &str, value: &str, effect: &str| Toleration {
        key: (!key.is_empty()).then(|| key.to_string()),
        operator: Some(op.into()),
        value: (!value.is_empty()).then(|| value.to_string()),
        effect: (!effect.is_empty()).then(|| effect.to_string()),
        toleration_seconds: None,
    };
    let t = taint("dedicated", "gpu", "NoSchedule");
    assert!(tolerates(
        &tol("Equal", "dedicated", "gpu", "NoSchedule"),
        &t
    ));
    assert!(tolerates(&tol("Equal", "dedicated", "gpu", ""), &t));
    assert!(!tolerates(&tol("Equal", "dedicated", "cpu", ""), &t));
    assert!(tolerates(&tol("Exists", "dedicated", "", ""), &t));
    assert!(tolerates(&tol("Exists", "", "", ""), &t));
    assert!(!tolerates(&tol("Exists", "", "", "NoExecute"), &t));
    assert!(!tolerates(&tol("Exists", "other", "", ""), &t));

    // NoExecute filters too; PreferNoSchedule does not.
    let unreachable = tainted(
        node("u", "1", "1Gi"),
        taint("node.kubernetes.io/unreachable", "", "NoExecute"),
    );
    assert!(check_taints(&p, &unreachable).is_some());
    let soft = tainted(node("s", "1", "1Gi"), taint("k", "v", "PreferNoSchedule"));
    assert!(check_taints(&p, &soft).is_none());
}

#[test]
fn prefer_no_schedule_is_a_score_penalty() {
    let soft = tainted(node("a", "4", "8Gi"), taint("k", "v", "PreferNoSchedule"));
    let plain = node("b", "4", "8Gi");
    assert_eq!(
        schedule(&pod("p", "", ""), &[soft, plain], &[]),
        Ok("b".into())
    );
}

#[test]
fn node_selector() {
    let nodes = [
        with_label(node("a", "1", "1Gi"), "disk", "hdd"),
        with_label(node("b", "1", "1Gi"), "disk", "ssd"),
    ];
    let mut p = pod("p", "", "");
    p.spec.as_mut().unwrap().node_selector = Some(BTreeMap::from([("disk".into(), "ssd".into())]));
    assert_eq!(schedule(&p, &nodes, &[]), Ok("b".into()));
    p.spec.as_mut().unwrap().node_selector = Some(BTreeMap::from([("disk".into(), "nvme".into())]));
    let err = schedule(&p, &nodes, &[]).unwrap_err();
    assert_eq!(err.node_reasons.len(), 2);
    assert!(err.message.starts_with(
        "0/2 nodes are available: 2 node(s) didn't match Pod's node affinity/selector."
    ));
}

#[test]
fn required_node_affinity_operators() {
    let n = with_label(
        with_label(node("a", "1", "1Gi"), "zone", "z1"),
        "cores",
        "8",
    );
    let term = |exprs: Vec<NodeSelectorRequirement>| NodeSelectorTerm {
        match_expressions: Some(exprs),
        match_fields: None,
    };
    let cases = [
        (req("zone", "In", &["z1", "z2"]), true),
        (req("zone", "In", &["z2"]), false),
        (req("zone", "NotIn", &["z2"]), true),
        (req("missing", "NotIn", &["x"]), true),
        (req("zone", "Exists", &[]), true),
        (req("missing", "Exists", &[]), false),
        (req("missing", "DoesNotExist", &[]), true),
        (req("zone", "DoesNotExist", &[]), false),
        (req("cores", "Gt", &["4"]), true),
        (req("cores", "Gt", &["8"]), false),
        (req("cores", "Lt", &["16"]), true),
        (req("zone", "Lt", &["16"]), false), // not an integer
    ];
    for (r, want) in cases {
        let desc = format!("{} {} {:?}", r.key, r.operator, r.values);
        let p = with_required(pod("p", "", ""), vec![term(vec![r])]);
        assert_eq!(check_affinity(&p, &n).is_none(), want, "{desc}");
    }
    // Terms are ORed, expressions ANDed; an empty term matches nothing.
    let p = with_required(
        pod("p", "", ""),
        vec![
            term(vec![
                req("zone", "In", &["z1"]),
                req("cores", "Gt", &["10"]),
            ]),
            term(vec![req("zone", "Exists", &[])]),
        ],
    );
    assert!(check_affinity(&p, &n).is_none());
    let p = with_required(pod("p", "", ""), vec![NodeSelectorTerm::default()]);
    assert!(check_affinity(&p, &n).is_some());
    // matchFields on metadata.name.
    let by_name = |name: &str| {
        with_required(
            pod("p", "", ""),
            vec![NodeSelectorTerm {
                match_expressions: None,
                match_fields: Some(vec![req("metadata.name", "In", &[name])]),
            }],
        )
    };
    assert!(check_affinity(&by_name("a"), &n).is_none());
    assert!(check_affinity(&by_name("b"), &n).is_some());
}

#[test]
fn preferred_node_affinity_wins_scoring() {
    let nodes = [
        node("a", "4", "8Gi"),
        with_label(node("b", "4", "8Gi"), "zone", "z2"),
    ];
    let mut p = pod("p", "", "");
    p.spec.as_mut().unwrap().affinity = Some(Affinity {
        node_affinity: Some(NodeAffinity {
            preferred_during_scheduling_ignored_during_execution: Some(vec![
                PreferredSchedulingTerm {
                    weight: 10,
                    preference: NodeSelectorTerm {
                        match_expressions: Some(vec![req("zone", "In", &["z2"])]),
                        match_fields: None,
                    },
                },
            ]),
            ..Default::default()
        }),
        ..Default::default()
    });
    assert_eq!(schedule(&p, &nodes, &[]), Ok("b".into()));
}

#[test]
fn host_port_conflicts() {
    let n = node("a", "4", "8Gi");
    let used = bound(with_host_port(pod("u", "", ""), "", "", 8080), "a");
    let on = [&used];
    // Same port, wildcard IP on the existing pod: conflict for any IP.
    assert!(check_ports(
        &with_host_port(pod("p", "", ""), "10.0.0.1", "TCP", 8080),
        &on
    )
    .is_some());
    // Different protocol: no conflict.
    assert!(check_ports(&with_host_port(pod("p", "", ""), "", "UDP", 8080), &on).is_none());
    // Different port.
    assert!(check_ports(&with_host_port(pod("p", "", ""), "", "", 8081), &on).is_none());
    // Two specific, different IPs do not conflict; equal ones do.
    let specific = bound(
        with_host_port(pod("s", "", ""), "10.0.0.1", "TCP", 9090),
        "a",
    );
    let on = [&specific];
    assert!(check_ports(&with_host_port(pod("p", "", ""), "10.0.0.2", "", 9090), &on).is_none());
    assert!(check_ports(&with_host_port(pod("p", "", ""), "10.0.0.1", "", 9090), &on).is_some());
    assert!(check_ports(&with_host_port(pod("p", "", ""), "0.0.0.0", "", 9090), &on).is_some());
    let err = schedule(
        &with_host_port(pod("p", "", ""), "", "", 8080),
        &[n],
        &[used],
    )
    .unwrap_err();
    assert_eq!(err.node_reasons["a"], vec![REASON_PORTS]);
}

#[test]
fn spreads_replicas_of_one_owner() {
    let nodes = [node("a", "4", "8Gi"), node("b", "4", "8Gi")];
    // "a" has one replica of the same owner; "b" has a heavier unrelated pod.
    let pods = [
        bound(owned_by(pod("r1", "100m", "100Mi"), "rs-1"), "a"),
        bound(pod("other", "200m", "200Mi"), "b"),
    ];
    let p = owned_by(pod("r2", "100m", "100Mi"), "rs-1");
    assert_eq!(schedule(&p, &nodes, &pods), Ok("b".into()));
    // Without the owner, least-allocated prefers "a".
    assert_eq!(
        schedule(&pod("x", "100m", "100Mi"), &nodes, &pods),
        Ok("a".into())
    );
}

#[test]
fn message_counts_reasons_sorted() {
    let nodes = [
        node("small", "100m", "1Gi"),
        tainted(
            node("u1", "4", "8Gi"),
            taint("node.kubernetes.io/unreachable", "", "NoExecute"),
        ),
        tainted(
            node("u2", "4", "8Gi"),
            taint("node.kubernetes.io/unreachable", "", "NoExecute"),
        ),
    ];
    let err = schedule(&pod("p", "1", ""), &nodes, &[]).unwrap_err();
    assert_eq!(
        err.message,
        "0/3 nodes are available: 1 Insufficient cpu, 2 node(s) had untolerated taint \
         {node.kubernetes.io/unreachable: }. preemption: 0/3 nodes are available: \
         1 No preemption victims found for incoming pod, 2 Preemption is not helpful for scheduling."
    );
    assert_eq!(err.to_string(), err.message);
}

#[test]
fn no_nodes() {
    let err = schedule(&pod("p", "", ""), &[], &[]).unwrap_err();
    assert_eq!(err.message, "no nodes available to schedule pods");
}

#[test]
fn wiring_helpers() {
    let p = pod("p", "", "");
    assert!(needs_scheduling(&p));
    assert!(!needs_scheduling(&bound(pod("b", "", ""), "a")));
    let mut other = pod("o", "", "");
    other.spec.as_mut().unwrap().scheduler_name = Some("my-scheduler".into());
    assert!(!needs_scheduling(&other));

    let b = binding_for(&p, "node-a");
    assert_eq!(b.metadata.name.as_deref(), Some("p"));
    assert_eq!(b.metadata.uid.as_deref(), Some("uid-p"));
    assert_eq!(
        (b.target.kind.as_deref(), b.target.name.as_deref()),
        (Some("Node"), Some("node-a"))
    );
    assert_eq!(
        scheduled_event(&p, "node-a").2,
        "Successfully assigned default/p to node-a"
    );

    let err = schedule(&pod("p", "64", ""), &[node("a", "1", "1Gi")], &[]).unwrap_err();
    let now = crate::controllers::testutil::t(0);
    let c = unschedulable_condition(&err, now);
    assert_eq!(
        (c.type_.as_str(), c.status.as_str(), c.reason.as_deref()),
        ("PodScheduled", "False", Some("Unschedulable"))
    );
    assert_eq!(c.message.as_deref(), Some(err.message.as_str()));
    assert_eq!(failed_scheduling_event(&err).1, "FailedScheduling");
}
