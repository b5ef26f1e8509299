//! Endpoints controller decisions: the legacy core/v1 Endpoints object of a Service (what
//! `kubectl describe service` shows as "Endpoints:").
//!
//! Follows upstream's `pkg/controller/endpoint`: Services without a selector are not managed;
//! selected pods with an IP of the Service's primary family are included unless terminal, and
//! terminating pods only with `publishNotReadyAddresses`; a Ready pod (or any, with
//! `publishNotReadyAddresses`) goes to `addresses`, others to `notReadyAddresses`; ports come
//! from each Service port's targetPort (named ports looked up per pod); a headless Service without
//! ports gets port-less subsets. Subsets are repacked as `endpoints.RepackSubsets` does (ports
//! with the same address sets share a subset, addresses sorted by IP then uid), labels are the
//! Service's plus `service.kubernetes.io/headless` for headless Services, and at most 1000
//! addresses are kept (`endpoints.kubernetes.io/over-capacity: truncated`).

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::{
    EndpointAddress, EndpointPort, EndpointSubset, Endpoints, ObjectReference, Pod, Service,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::endpointslice::{find_port, pod_ip, LABEL_HEADLESS};
use super::{pod_phase, pod_ready};

pub const MAX_CAPACITY: usize = 1000;
pub const OVER_CAPACITY_ANNOTATION: &str = "endpoints.kubernetes.io/over-capacity";

type PortKey = (String, i32, String, Option<String>);
type AddrKey = (String, String);

fn port_key(p: &EndpointPort) -> PortKey {
    (
        p.name.clone().unwrap_or_default(),
        p.port,
        p.protocol.clone().unwrap_or_default(),
        p.app_protocol.clone(),
    )
}

fn addr_key(a: &EndpointAddress) -> AddrKey {
    (
        a.ip.clone(),
        a.target_ref
            .as_ref()
            .and_then(|r| r.uid.clone())
            .unwrap_or_default(),
    )
}

/// Regroups (address, ready, port) triples into subsets (`endpoints.RepackSubsets`).
fn repack(entries: Vec<(EndpointAddress, bool, Option<EndpointPort>)>) -> Vec<EndpointSubset> {
    let mut addrs: BTreeMap<AddrKey, EndpointAddress> = BTreeMap::new();
    // port (None = headless without ports) → (ready set, not-ready set)
    type Sets = (BTreeSet<AddrKey>, BTreeSet<AddrKey>);
    let mut per_port: BTreeMap<Option<PortKey>, (Option<EndpointPort>, Sets)> = BTreeMap::new();
    for (addr, ready, port) in entries {
        let k = addr_key(&addr);
        addrs.entry(k.clone()).or_insert(addr);
        let entry = per_port
            .entry(port.as_ref().map(port_key))
            .or_insert_with(|| (port.clone(), Default::default()));
        if ready {
            entry.1 .0.insert(k);
        } else {
            entry.1 .1.insert(k);
        }
    }
    // Ports with identical address sets share one subset.
    let mut by_sets: BTreeMap<Sets, Vec<EndpointPort>> = BTreeMap::new();
    for (_, (port, sets)) in per_port {
        let ports = by_sets.entry(sets).or_default();
        ports.extend(port);
    }
    let list = |keys: &BTreeSet<AddrKey>| -> Option<Vec<EndpointAddress>> {
        (!keys.is_empty()).then(|| keys.iter().map(|k| addrs[k].clone()).collect())
    };
    let mut subsets: Vec<EndpointSubset> = by_sets
        .into_iter()
        .map(|((ready, not_ready), mut ports)| {
            ports.sort_by_key(port_key);
            EndpointSubset {
                addresses: list(&ready),
                not_ready_addresses: list(&not_ready),
                ports: (!ports.is_empty()).then_some(ports),
            }
        })
        .collect();
    subsets.sort_by_key(|s| s.ports.iter().flatten().map(port_key).collect::<Vec<_>>());
    subsets
}

/// The Endpoints object the Service should have, or `None` if this controller does not manage
/// it (no selector).
pub fn desired_endpoints(svc: &Service, pods: &[Pod]) -> Option<Endpoints> {
    let spec = svc.spec.as_ref()?;
    let selector = spec.selector.as_ref()?;
    let publish = spec.publish_not_ready_addresses == Some(true);
    let headless = spec.cluster_ip.as_deref() == Some("None");
    let family = spec
        .ip_families
        .as_ref()
        .and_then(|f| f.first().cloned())
        .unwrap_or_else(|| "IPv4".into());
    let ports = spec.ports.as_deref().unwrap_or(&[]);
    let mut entries = Vec::new();
    for pod in pods {
        if pod.metadata.namespace != svc.metadata.namespace
            || matches!(pod_phase(pod), "Succeeded" | "Failed")
            || (!publish && pod.metadata.deletion_timestamp.is_some())
        {
            continue;
        }
        let labels = pod.metadata.labels.as_ref();
        if !selector
            .iter()
            .all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
        {
            continue;
        }
        let Some(ip) = pod_ip(pod, &family) else {
            continue;
        };
        let pspec = pod.spec.as_ref();
        let hostname = pspec
            .and_then(|s| s.hostname.clone())
            .filter(|h| !h.is_empty())
            .filter(|_| pspec.and_then(|s| s.subdomain.as_deref()) == svc.metadata.name.as_deref());
        let addr = EndpointAddress {
            ip,
            hostname,
            node_name: pspec
                .and_then(|s| s.node_name.clone())
                .filter(|n| !n.is_empty()),
            target_ref: Some(ObjectReference {
                kind: Some("Pod".into()),
                namespace: pod.metadata.namespace.clone(),
                name: pod.metadata.name.clone(),
                uid: pod.metadata.uid.clone(),
                ..Default::default()
            }),
        };
        let ready = publish || pod_ready(pod).0;
        if ports.is_empty() {
            if headless {
                entries.push((addr, ready, None));
            }
            continue;
        }
        for sp in ports {
            let Some(port) = find_port(pod, sp) else {
                continue;
            };
            entries.push((
                addr.clone(),
                ready,
                Some(EndpointPort {
                    name: sp.name.clone().filter(|n| !n.is_empty()),
                    port,
                    protocol: Some(sp.protocol.clone().unwrap_or_else(|| "TCP".into())),
                    app_protocol: sp.app_protocol.clone(),
                }),
            ));
        }
    }
    let mut subsets = repack(entries);
    let mut annotations = BTreeMap::new();
    // Truncate to the capacity, ready addresses kept first.
    let total: usize = subsets
        .iter()
        .map(|s| {
            s.addresses.as_ref().map_or(0, Vec::len)
                + s.not_ready_addresses.as_ref().map_or(0, Vec::len)
        })
        .sum();
    if total > MAX_CAPACITY {
        annotations.insert(
            OVER_CAPACITY_ANNOTATION.to_string(),
            "truncated".to_string(),
        );
        let mut budget = MAX_CAPACITY;
        for s in &mut subsets {
            for list in [&mut s.addresses, &mut s.not_ready_addresses] {
                if let Some(v) = list.as_mut() {
                    v.truncate(budget);
                    budget -= v.len();
                    if v.is_empty() {
                        *list = None;
                    }
                }
            }
        }
        subsets.retain(|s| s.addresses.is_some() || s.not_ready_addresses.is_some());
    }
    let mut labels: BTreeMap<String, String> = svc
        .metadata
        .labels
        .clone()
        .unwrap_or_default()
        .into_iter()
        .filter(|(k, _)| k != LABEL_HEADLESS)
        .collect();
    if headless {
        labels.insert(LABEL_HEADLESS.into(), String::new());
    }
    Some(Endpoints {
        metadata: ObjectMeta {
            name: svc.metadata.name.clone(),
            namespace: svc.metadata.namespace.clone(),
            labels: (!labels.is_empty()).then_some(labels),
            annotations: (!annotations.is_empty()).then_some(annotations),
            ..Default::default()
        },
        subsets: (!subsets.is_empty()).then_some(subsets),
    })
}

/// Whether `existing` must be written to become `desired` (subsets, labels or the capacity
/// annotation differ); `None` existing means create.
pub fn needs_write(existing: Option<&Endpoints>, desired: &Endpoints) -> bool {
    let Some(e) = existing else { return true };
    let norm = |s: &Option<Vec<EndpointSubset>>| s.clone().filter(|v| !v.is_empty());
    let over = |m: &ObjectMeta| {
        m.annotations
            .as_ref()
            .and_then(|a| a.get(OVER_CAPACITY_ANNOTATION).cloned())
    };
    norm(&e.subsets) != norm(&desired.subsets)
        || e.metadata.labels.clone().unwrap_or_default()
            != desired.metadata.labels.clone().unwrap_or_default()
        || over(&e.metadata) != over(&desired.metadata)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controllers::testutil::{labels, pod, t};
    use k8s_openapi::api::core::v1::{Container, ContainerPort, ServicePort, ServiceSpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

    fn svc(ports: Vec<(&str, i32, IntOrString)>) -> Service {
        Service {
            metadata: ObjectMeta {
                name: Some("web".into()),
                namespace: Some("default".into()),
                labels: Some(labels(&[("app", "web")])),
                ..Default::default()
            },
            spec: Some(ServiceSpec {
                selector: Some(labels(&[("app", "web")])),
                ports: Some(
                    ports
                        .into_iter()
                        .map(|(n, p, tp)| ServicePort {
                            name: Some(n.into()),
                            port: p,
                            protocol: Some("TCP".into()),
                            target_port: Some(tp),
                            ..Default::default()
                        })
                        .collect(),
                ),
                ..Default::default()
            }),
            status: None,
        }
    }

    fn backend(name: &str, ip: &str, ready: bool) -> Pod {
        let mut p = pod(name, &[("app", "web")], ready.then_some(0));
        p.status.as_mut().unwrap().pod_ip = Some(ip.into());
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

    #[test]
    fn ready_and_not_ready_addresses_in_one_subset() {
        let s = svc(vec![
            ("http", 80, IntOrString::String("http".into())),
            ("metrics", 9090, IntOrString::Int(9090)),
        ]);
        let mut terminating = backend("c", "10.42.0.3", true);
        terminating.metadata.deletion_timestamp = Some(Time(t(1)));
        let pods = [
            backend("b", "10.42.0.2", false),
            backend("a", "10.42.0.1", true),
            terminating,
        ];
        let ep = desired_endpoints(&s, &pods).unwrap();
        assert_eq!(ep.metadata.name.as_deref(), Some("web"));
        let subsets = ep.subsets.as_ref().unwrap();
        assert_eq!(subsets.len(), 1);
        let sub = &subsets[0];
        let ips = |v: &Option<Vec<EndpointAddress>>| {
            v.iter().flatten().map(|a| a.ip.clone()).collect::<Vec<_>>()
        };
        assert_eq!(ips(&sub.addresses), ["10.42.0.1"]);
        assert_eq!(ips(&sub.not_ready_addresses), ["10.42.0.2"]);
        let ports: Vec<_> = sub.ports.iter().flatten().map(|p| p.port).collect();
        assert_eq!(ports, [8080, 9090]);
        assert!(!needs_write(
            Some(&ep),
            &desired_endpoints(&s, &pods).unwrap()
        ));
        assert!(needs_write(None, &ep));
    }

    #[test]
    fn pods_without_the_named_port_form_their_own_subset() {
        let s = svc(vec![
            ("http", 80, IntOrString::String("http".into())),
            ("raw", 81, IntOrString::Int(81)),
        ]);
        let mut plain = backend("p", "10.42.0.9", true);
        plain.spec.as_mut().unwrap().containers[0].ports = None;
        let ep = desired_endpoints(&s, &[backend("a", "10.42.0.1", true), plain]).unwrap();
        let subsets = ep.subsets.unwrap();
        assert_eq!(subsets.len(), 2);
    }

    #[test]
    fn publish_not_ready_and_headless_without_ports() {
        let mut s = svc(vec![]);
        let spec = s.spec.as_mut().unwrap();
        spec.cluster_ip = Some("None".into());
        spec.publish_not_ready_addresses = Some(true);
        let ep = desired_endpoints(&s, &[backend("b", "10.42.0.2", false)]).unwrap();
        let sub = &ep.subsets.as_ref().unwrap()[0];
        assert_eq!(sub.addresses.as_ref().unwrap()[0].ip, "10.42.0.2");
        assert!(sub.ports.is_none());
        assert_eq!(
            ep.metadata
                .labels
                .as_ref()
                .unwrap()
                .get(LABEL_HEADLESS)
                .map(String::as_str),
            Some("")
        );
        let mut no_selector = svc(vec![]);
        no_selector.spec.as_mut().unwrap().selector = None;
        assert!(desired_endpoints(&no_selector, &[]).is_none());
    }

    #[test]
    fn empty_and_over_capacity() {
        let s = svc(vec![("http", 80, IntOrString::Int(8080))]);
        let ep = desired_endpoints(&s, &[]).unwrap();
        assert!(ep.subsets.is_none());
        let pods: Vec<Pod> = (0..1005)
            .map(|i| {
                backend(
                    &format!("p{i}"),
                    &format!("10.42.{}.{}", i / 250, i % 250 + 1),
                    true,
                )
            })
            .collect();
        let ep = desired_endpoints(&s, &pods).unwrap();
        let n: usize = ep
            .subsets
            .iter()
            .flatten()
            .map(|s| s.addresses.as_ref().map_or(0, Vec::len))
            .sum();
        assert_eq!(n, MAX_CAPACITY);
        assert_eq!(
            ep.metadata.annotations.as_ref().unwrap()[OVER_CAPACITY_ANNOTATION],
            "truncated"
        );
    }
}
