use super::*;
use crate::controllers::testutil::{labels, pod, t};
use k8s_openapi::api::core::v1::{Container, ContainerPort, PodIP, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

fn svc(ports: Vec<ServicePort>) -> Service {
    Service {
        metadata: ObjectMeta {
            name: Some("web".into()),
            namespace: Some("default".into()),
            uid: Some("svc-uid".into()),
            labels: Some(labels(&[("team", "a")])),
            ..Default::default()
        },
        spec: Some(ServiceSpec {
            selector: Some(labels(&[("app", "web")])),
            ports: Some(ports),
            ..Default::default()
        }),
        status: None,
    }
}

fn port(name: &str, port: i32, target: IntOrString) -> ServicePort {
    ServicePort {
        name: Some(name.into()),
        port,
        protocol: Some("TCP".into()),
        target_port: Some(target),
        ..Default::default()
    }
}

/// A pod selected by the Service with an IP and a named container port "http" = 8080.
fn backend(name: &str, ip: &str, ready: bool) -> Pod {
    let mut p = pod(name, &[("app", "web")], ready.then_some(0));
    let status = p.status.as_mut().unwrap();
    status.pod_ip = Some(ip.into());
    status.pod_ips = Some(vec![PodIP { ip: ip.into() }]);
    p.spec.as_mut().unwrap().containers = vec![Container {
        name: "c".into(),
        ports: Some(vec![ContainerPort {
            name: Some("http".into()),
            container_port: 8080,
            ..Default::default()
        }]),
        ..Default::default()
    }];
    p
}

/// Pretend the API server created the slices: give them names.
fn created(diff: &EndpointSliceDiff) -> Vec<EndpointSlice> {
    diff.create
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let mut s = s.clone();
            s.metadata.name = Some(format!("web-{i}"));
            s
        })
        .collect()
}

#[test]
fn builds_slice_with_conditions_and_named_ports() {
    let s = svc(vec![port("http", 80, IntOrString::String("http".into()))]);
    let mut terminating = backend("c", "10.42.0.3", true);
    terminating.metadata.deletion_timestamp = Some(Time(t(5)));
    let pods = [
        backend("a", "10.42.0.1", true),
        backend("b", "10.42.0.2", false),
        terminating,
        pod("no-ip", &[("app", "web")], Some(0)),
        pod("other", &[("app", "db")], Some(0)),
    ];
    let diff = reconcile(&s, &pods, &[], &[]);
    assert_eq!(diff.create.len(), 1);
    let slice = &diff.create[0];
    assert_eq!(slice.metadata.generate_name.as_deref(), Some("web-"));
    assert_eq!(slice.address_type, "IPv4");
    let l = slice.metadata.labels.as_ref().unwrap();
    assert_eq!(l[LABEL_SERVICE_NAME], "web");
    assert_eq!(l[LABEL_MANAGED_BY], CONTROLLER_NAME);
    assert_eq!(l["team"], "a");
    let p = &slice.ports.as_ref().unwrap()[0];
    assert_eq!(
        (p.name.as_deref(), p.port, p.protocol.as_deref()),
        (Some("http"), Some(8080), Some("TCP"))
    );
    let conds: Vec<_> = slice
        .endpoints
        .iter()
        .map(|e| {
            let c = e.conditions.as_ref().unwrap();
            (e.addresses[0].as_str(), c.ready, c.serving, c.terminating)
        })
        .collect();
    assert_eq!(
        conds,
        [
            ("10.42.0.1", Some(true), Some(true), Some(false)),
            ("10.42.0.2", Some(false), Some(false), Some(false)),
            ("10.42.0.3", Some(false), Some(true), Some(true)),
        ]
    );
    let e = &slice.endpoints[0];
    assert_eq!(e.node_name.as_deref(), Some("node-a"));
    let r = e.target_ref.as_ref().unwrap();
    assert_eq!(
        (r.kind.as_deref(), r.name.as_deref()),
        (Some("Pod"), Some("a"))
    );
}

#[test]
fn publish_not_ready_addresses_and_zone() {
    let mut s = svc(vec![port("", 80, IntOrString::Int(8080))]);
    s.spec.as_mut().unwrap().publish_not_ready_addresses = Some(true);
    let node = k8s_openapi::api::core::v1::Node {
        metadata: ObjectMeta {
            name: Some("node-a".into()),
            labels: Some(labels(&[(LABEL_ZONE, "z1")])),
            ..Default::default()
        },
        ..Default::default()
    };
    let diff = reconcile(&s, &[backend("b", "10.42.0.2", false)], &[node], &[]);
    let e = &diff.create[0].endpoints[0];
    assert_eq!(e.conditions.as_ref().unwrap().ready, Some(true));
    assert_eq!(e.zone.as_deref(), Some("z1"));
    assert_eq!(diff.create[0].ports.as_ref().unwrap()[0].port, Some(8080));
}

#[test]
fn pods_without_the_named_port_get_their_own_slice() {
    let s = svc(vec![port("http", 80, IntOrString::String("http".into()))]);
    let mut plain = backend("p", "10.42.0.9", true);
    plain.spec.as_mut().unwrap().containers[0].ports = None;
    let diff = reconcile(&s, &[backend("a", "10.42.0.1", true), plain], &[], &[]);
    assert_eq!(diff.create.len(), 2);
    let mut port_counts: Vec<_> = diff
        .create
        .iter()
        .map(|s| s.ports.as_ref().map_or(0, |p| p.len()))
        .collect();
    port_counts.sort();
    assert_eq!(port_counts, [0, 1]);
}

#[test]
fn no_churn_when_nothing_changed_and_minimal_updates() {
    let s = svc(vec![port("http", 80, IntOrString::String("http".into()))]);
    let mut pods = vec![
        backend("a", "10.42.0.1", true),
        backend("b", "10.42.0.2", true),
    ];
    let existing = created(&reconcile(&s, &pods, &[], &[]));
    assert!(reconcile(&s, &pods, &[], &existing).is_empty());

    // A pod turns unready: the one slice is updated in place.
    pods[1] = backend("b", "10.42.0.2", false);
    let diff = reconcile(&s, &pods, &[], &existing);
    assert!(diff.create.is_empty() && diff.delete.is_empty());
    assert_eq!(diff.update.len(), 1);
    assert_eq!(diff.update[0].metadata.name.as_deref(), Some("web-0"));
    assert_eq!(
        diff.update[0].endpoints[1]
            .conditions
            .as_ref()
            .unwrap()
            .ready,
        Some(false)
    );

    // All pods gone: a placeholder replaces the slice.
    let diff = reconcile(&s, &[], &[], &existing);
    assert_eq!(diff.delete, vec!["web-0"]);
    assert_eq!(diff.create.len(), 1);
    assert!(diff.create[0].endpoints.is_empty() && diff.create[0].ports.is_none());
    // ...and the placeholder itself is stable.
    let placeholder = created(&diff);
    assert!(reconcile(&s, &[], &[], &placeholder).is_empty());
    // Pods come back: the placeholder goes, a real slice is created.
    let diff = reconcile(&s, &pods, &[], &placeholder);
    assert_eq!((diff.create.len(), diff.delete.len()), (1, 1));
}

#[test]
fn splits_at_100_endpoints_and_fills_existing_room() {
    let s = svc(vec![port("http", 80, IntOrString::String("http".into()))]);
    let mut pods: Vec<Pod> = (0..150)
        .map(|i| {
            backend(
                &format!("p{i:03}"),
                &format!("10.42.{}.{}", i / 200, i % 200 + 1),
                true,
            )
        })
        .collect();
    let diff = reconcile(&s, &pods, &[], &[]);
    let sizes: Vec<_> = diff.create.iter().map(|s| s.endpoints.len()).collect();
    assert_eq!(sizes, [100, 50]);
    let existing = created(&diff);
    // Ten more pods go into the slice with room; the full one is untouched.
    pods.extend(
        (150..160).map(|i| backend(&format!("p{i:03}"), &format!("10.42.0.{}", i + 1), true)),
    );
    let diff = reconcile(&s, &pods, &[], &existing);
    assert!(diff.create.is_empty() && diff.delete.is_empty());
    assert_eq!(diff.update.len(), 1);
    assert_eq!(diff.update[0].endpoints.len(), 60);
}

#[test]
fn unmanaged_services_and_foreign_slices() {
    let mut s = svc(vec![]);
    s.spec.as_mut().unwrap().selector = None;
    assert!(reconcile(&s, &[backend("a", "10.42.0.1", true)], &[], &[]).is_empty());
    let mut foreign = new_slice(&svc(vec![]), "IPv4", None);
    foreign.metadata.name = Some("custom".into());
    foreign.metadata.labels = Some(labels(&[(LABEL_SERVICE_NAME, "web")]));
    let diff = reconcile(&svc(vec![]), &[], &[], &[foreign]);
    assert!(diff.delete.is_empty());
    assert_eq!(diff.create.len(), 1);
}

#[test]
fn headless_label_and_hostname() {
    let mut s = svc(vec![]);
    s.spec.as_mut().unwrap().cluster_ip = Some("None".into());
    let mut p = backend("a", "10.42.0.1", true);
    let spec = p.spec.as_mut().unwrap();
    spec.hostname = Some("a-0".into());
    spec.subdomain = Some("web".into());
    let diff = reconcile(&s, &[p], &[], &[]);
    let slice = &diff.create[0];
    assert_eq!(
        slice
            .metadata
            .labels
            .as_ref()
            .unwrap()
            .get(LABEL_HEADLESS)
            .map(String::as_str),
        Some("")
    );
    assert_eq!(slice.endpoints[0].hostname.as_deref(), Some("a-0"));
}
