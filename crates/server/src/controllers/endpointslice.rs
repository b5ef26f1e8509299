//! EndpointSlice controller decisions: the slices a Service with a selector should have, and the
//! creates/updates/deletes that get the existing managed slices there without churn.
//!
//! Follows upstream's `pkg/controller/endpointslice` and `endpointslice/reconciler`:
//! - Services without a selector or of type ExternalName are not managed (no changes).
//! - a pod is included when it is not terminal and has an IP of the slice's family; terminating
//!   pods stay, with `ready = publishNotReadyAddresses || (Ready && !terminating)`,
//!   `serving = Ready`, `terminating = deletionTimestamp set`; `nodeName`, the node's
//!   `topology.kubernetes.io/zone`, a Pod `targetRef`, and `hostname` when the pod's subdomain is
//!   the Service's name.
//! - ports are resolved per pod (`podutil.FindPort`): a named targetPort is looked up among the
//!   pod's container ports with the same protocol; pods resolving to different port sets go to
//!   different slices. At most 100 endpoints per slice (`--max-endpoints-per-slice` default).
//! - slices are named by generateName `<service>-`, labelled `kubernetes.io/service-name`,
//!   `endpointslice.kubernetes.io/managed-by: endpointslice-controller.k8s.io` (plus the
//!   Service's own labels and `service.kubernetes.io/headless` for headless Services), owned by
//!   the Service.
//! - reconciling keeps unchanged slices untouched; changed or removed endpoints mark their slice
//!   for update; new endpoints fill slices already being updated, then slices with room, then new
//!   slices; emptied slices are deleted; with no endpoints at all a single placeholder slice
//!   (no ports, no endpoints) remains, reusing an existing placeholder.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use k8s_openapi::api::core::v1::{Node, ObjectReference, Pod, Service};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{controller_ref, pod_ready};

pub const LABEL_SERVICE_NAME: &str = "kubernetes.io/service-name";
pub const LABEL_MANAGED_BY: &str = "endpointslice.kubernetes.io/managed-by";
pub const CONTROLLER_NAME: &str = "endpointslice-controller.k8s.io";
pub const LABEL_HEADLESS: &str = "service.kubernetes.io/headless";
pub const LABEL_ZONE: &str = "topology.kubernetes.io/zone";
pub const MAX_ENDPOINTS_PER_SLICE: usize = 100;

/// The changes that bring a Service's managed EndpointSlices to the desired state.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EndpointSliceDiff {
    /// New slices (generateName set, no name).
    pub create: Vec<EndpointSlice>,
    /// Existing slices with new content (name and resourceVersion kept).
    pub update: Vec<EndpointSlice>,
    /// Names of managed slices to delete.
    pub delete: Vec<String>,
}

impl EndpointSliceDiff {
    pub fn is_empty(&self) -> bool {
        self.create.is_empty() && self.update.is_empty() && self.delete.is_empty()
    }
}

fn family_of(ip: &str) -> Option<&'static str> {
    match ip.parse::<IpAddr>().ok()? {
        IpAddr::V4(_) => Some("IPv4"),
        IpAddr::V6(_) => Some("IPv6"),
    }
}

/// The pod's IP of the given family ("IPv4"/"IPv6"), from status.podIPs or status.podIP.
pub(crate) fn pod_ip(pod: &Pod, family: &str) -> Option<String> {
    let status = pod.status.as_ref()?;
    status
        .pod_ips
        .iter()
        .flatten()
        .map(|p| p.ip.as_str())
        .chain(status.pod_ip.as_deref())
        .find(|ip| family_of(ip) == Some(family))
        .map(str::to_string)
}

/// The container port a Service port targets on this pod (`podutil.FindPort`).
pub fn find_port(pod: &Pod, port: &k8s_openapi::api::core::v1::ServicePort) -> Option<i32> {
    let proto = port.protocol.as_deref().unwrap_or("TCP");
    match port.target_port.as_ref() {
        None => Some(port.port),
        Some(IntOrString::Int(0)) => Some(port.port),
        Some(IntOrString::Int(p)) => Some(*p),
        Some(IntOrString::String(name)) => pod
            .spec
            .as_ref()?
            .containers
            .iter()
            .flat_map(|c| c.ports.iter().flatten())
            .find(|cp| {
                cp.name.as_deref() == Some(name.as_str())
                    && cp.protocol.as_deref().unwrap_or("TCP") == proto
            })
            .map(|cp| cp.container_port),
    }
}

fn endpoint_ports(svc: &Service, pod: &Pod) -> Vec<EndpointPort> {
    svc.spec
        .iter()
        .flat_map(|s| s.ports.iter().flatten())
        .filter_map(|sp| {
            Some(EndpointPort {
                name: Some(sp.name.clone().unwrap_or_default()),
                port: Some(find_port(pod, sp)?),
                protocol: Some(sp.protocol.clone().unwrap_or_else(|| "TCP".into())),
                app_protocol: sp.app_protocol.clone(),
            })
        })
        .collect()
}

fn endpoint_for(svc: &Service, pod: &Pod, ip: String, nodes: &[Node]) -> Endpoint {
    let spec = svc.spec.as_ref();
    let publish = spec.and_then(|s| s.publish_not_ready_addresses) == Some(true);
    let serving = pod_ready(pod).0;
    let terminating = pod.metadata.deletion_timestamp.is_some();
    let node_name = pod
        .spec
        .as_ref()
        .and_then(|s| s.node_name.clone())
        .filter(|n| !n.is_empty());
    let zone = node_name.as_ref().and_then(|n| {
        nodes
            .iter()
            .find(|node| node.metadata.name.as_ref() == Some(n))
            .and_then(|node| node.metadata.labels.as_ref())
            .and_then(|l| l.get(LABEL_ZONE))
            .filter(|z| !z.is_empty())
            .cloned()
    });
    let pspec = pod.spec.as_ref();
    let hostname = pspec
        .and_then(|s| s.hostname.clone())
        .filter(|h| !h.is_empty())
        .filter(|_| {
            pspec.and_then(|s| s.subdomain.as_deref()) == svc.metadata.name.as_deref()
                && pod.metadata.namespace == svc.metadata.namespace
        });
    Endpoint {
        addresses: vec![ip],
        conditions: Some(EndpointConditions {
            ready: Some(publish || (serving && !terminating)),
            serving: Some(serving),
            terminating: Some(terminating),
        }),
        hostname,
        node_name,
        zone,
        target_ref: Some(ObjectReference {
            kind: Some("Pod".into()),
            namespace: pod.metadata.namespace.clone(),
            name: pod.metadata.name.clone(),
            uid: pod.metadata.uid.clone(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// (addressType, sorted ports as (name, port, protocol, appProtocol)): endpoints with the same key may share a slice.
pub type SliceKey = (String, Vec<(String, i32, String, Option<String>)>);

fn ports_key(ports: Option<&Vec<EndpointPort>>) -> Vec<(String, i32, String, Option<String>)> {
    let mut v: Vec<_> = ports
        .into_iter()
        .flatten()
        .map(|p| {
            (
                p.name.clone().unwrap_or_default(),
                p.port.unwrap_or(0),
                p.protocol.clone().unwrap_or_default(),
                p.app_protocol.clone(),
            )
        })
        .collect();
    v.sort();
    v
}

fn endpoint_key(e: &Endpoint) -> (String, String) {
    (
        e.addresses.first().cloned().unwrap_or_default(),
        e.target_ref
            .as_ref()
            .and_then(|r| r.uid.clone())
            .unwrap_or_default(),
    )
}

/// The desired endpoints grouped by slice key, each group sorted by address.
pub fn desired_endpoints(
    svc: &Service,
    pods: &[Pod],
    nodes: &[Node],
) -> BTreeMap<SliceKey, (Vec<EndpointPort>, Vec<Endpoint>)> {
    let mut groups: BTreeMap<SliceKey, (Vec<EndpointPort>, Vec<Endpoint>)> = BTreeMap::new();
    let Some(spec) = svc.spec.as_ref() else {
        return groups;
    };
    let Some(selector) = spec.selector.as_ref() else {
        return groups;
    };
    let families: Vec<String> = spec
        .ip_families
        .clone()
        .filter(|f| !f.is_empty())
        .unwrap_or_else(|| vec!["IPv4".into()]);
    for pod in pods {
        if pod.metadata.namespace != svc.metadata.namespace
            || matches!(super::pod_phase(pod), "Succeeded" | "Failed")
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
        for family in &families {
            let Some(ip) = pod_ip(pod, family) else {
                continue;
            };
            let ports = endpoint_ports(svc, pod);
            let key = (family.clone(), ports_key(Some(&ports)));
            let entry = groups.entry(key).or_insert_with(|| (ports, Vec::new()));
            entry.1.push(endpoint_for(svc, pod, ip, nodes));
        }
    }
    for (_, eps) in groups.values_mut() {
        eps.sort_by_key(endpoint_key);
    }
    groups
}

fn slice_labels(svc: &Service) -> BTreeMap<String, String> {
    let mut labels: BTreeMap<String, String> = svc
        .metadata
        .labels
        .iter()
        .flatten()
        .filter(|(k, _)| {
            !matches!(
                k.as_str(),
                LABEL_SERVICE_NAME | LABEL_MANAGED_BY | LABEL_HEADLESS
            )
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let name = svc.metadata.name.clone().unwrap_or_default();
    labels.insert(LABEL_SERVICE_NAME.into(), name);
    labels.insert(LABEL_MANAGED_BY.into(), CONTROLLER_NAME.into());
    if svc.spec.as_ref().and_then(|s| s.cluster_ip.as_deref()) == Some("None") {
        labels.insert(LABEL_HEADLESS.into(), String::new());
    }
    labels
}

fn new_slice(svc: &Service, address_type: &str, ports: Option<Vec<EndpointPort>>) -> EndpointSlice {
    EndpointSlice {
        metadata: ObjectMeta {
            generate_name: Some(format!("{}-", svc.metadata.name.as_deref().unwrap_or(""))),
            namespace: svc.metadata.namespace.clone(),
            labels: Some(slice_labels(svc)),
            owner_references: Some(vec![controller_ref("v1", "Service", &svc.metadata)]),
            ..Default::default()
        },
        address_type: address_type.into(),
        endpoints: Vec::new(),
        ports,
    }
}

/// Whether the slice is one this controller manages for `svc`.
pub fn is_managed(slice: &EndpointSlice, svc: &Service) -> bool {
    let labels = slice.metadata.labels.as_ref();
    labels
        .and_then(|l| l.get(LABEL_MANAGED_BY))
        .map(String::as_str)
        == Some(CONTROLLER_NAME)
        && labels.and_then(|l| l.get(LABEL_SERVICE_NAME)) == svc.metadata.name.as_ref()
        && slice.metadata.namespace == svc.metadata.namespace
}

fn is_placeholder(s: &EndpointSlice) -> bool {
    s.endpoints.is_empty() && s.ports.as_ref().is_none_or(|p| p.is_empty())
}

/// Reconciles the managed slices of `svc` against its pods (`nodes` supply zones).
pub fn reconcile(
    svc: &Service,
    pods: &[Pod],
    nodes: &[Node],
    existing: &[EndpointSlice],
) -> EndpointSliceDiff {
    let mut diff = EndpointSliceDiff::default();
    let spec = svc.spec.as_ref();
    if spec.and_then(|s| s.selector.as_ref()).is_none()
        || spec.and_then(|s| s.type_.as_deref()) == Some("ExternalName")
    {
        return diff;
    }
    let labels = slice_labels(svc);
    let mut managed: Vec<&EndpointSlice> = existing.iter().filter(|s| is_managed(s, svc)).collect();
    managed.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    let mut groups = desired_endpoints(svc, pods, nodes);

    if groups.values().all(|(_, eps)| eps.is_empty()) {
        // Placeholder: keep one existing placeholder, delete everything else.
        let keep = managed.iter().position(|s| is_placeholder(s));
        for (i, s) in managed.iter().enumerate() {
            if Some(i) == keep {
                if s.metadata.labels.as_ref() != Some(&labels) {
                    let mut s = (*s).clone();
                    s.metadata.labels = Some(labels.clone());
                    diff.update.push(s);
                }
            } else {
                diff.delete
                    .push(s.metadata.name.clone().unwrap_or_default());
            }
        }
        if keep.is_none() {
            let family = spec
                .and_then(|s| s.ip_families.as_ref())
                .and_then(|f| f.first().cloned())
                .unwrap_or_else(|| "IPv4".into());
            diff.create.push(new_slice(svc, &family, None));
        }
        return diff;
    }

    for slice in &managed {
        let key = (slice.address_type.clone(), ports_key(slice.ports.as_ref()));
        if !groups.contains_key(&key) || is_placeholder(slice) {
            diff.delete
                .push(slice.metadata.name.clone().unwrap_or_default());
        }
    }
    for (key, (ports, desired)) in groups.iter_mut() {
        let mut remaining: BTreeMap<(String, String), Endpoint> =
            desired.drain(..).map(|e| (endpoint_key(&e), e)).collect();
        // (slice, dirty)
        let mut slices: Vec<(EndpointSlice, bool)> = Vec::new();
        for slice in managed.iter().filter(|s| {
            !is_placeholder(s) && (s.address_type.clone(), ports_key(s.ports.as_ref())) == *key
        }) {
            let mut s = (*slice).clone();
            let mut dirty = s.metadata.labels.as_ref() != Some(&labels);
            let mut kept = Vec::new();
            let mut seen = BTreeSet::new();
            for e in &slice.endpoints {
                let k = endpoint_key(e);
                match remaining.remove(&k) {
                    Some(want) if seen.insert(k) => {
                        dirty |= want != *e;
                        kept.push(want);
                    }
                    _ => dirty = true,
                }
            }
            s.endpoints = kept;
            s.metadata.labels = Some(labels.clone());
            slices.push((s, dirty));
        }
        let mut to_add: Vec<Endpoint> = remaining.into_values().collect();
        to_add.sort_by_key(endpoint_key);
        let mut to_add = to_add.into_iter().peekable();
        // Fill slices already being updated, then any with room (fullest first).
        let mut order: Vec<usize> = (0..slices.len()).collect();
        order.sort_by_key(|i| {
            (
                !slices[*i].1,
                std::cmp::Reverse(slices[*i].0.endpoints.len()),
            )
        });
        for i in order {
            let (s, dirty) = &mut slices[i];
            while s.endpoints.len() < MAX_ENDPOINTS_PER_SLICE {
                match to_add.next() {
                    Some(e) => {
                        s.endpoints.push(e);
                        *dirty = true;
                    }
                    None => break,
                }
            }
        }
        for (s, dirty) in slices {
            if s.endpoints.is_empty() {
                diff.delete
                    .push(s.metadata.name.clone().unwrap_or_default());
            } else if dirty {
                diff.update.push(s);
            }
        }
        while to_add.peek().is_some() {
            let mut s = new_slice(svc, &key.0, Some(ports.clone()));
            s.endpoints = to_add.by_ref().take(MAX_ENDPOINTS_PER_SLICE).collect();
            diff.create.push(s);
        }
    }
    diff
}

#[cfg(test)]
mod tests;
