//! A pod's effective resource request and a node's free capacity, as the scheduler accounts them.
//!
//! Follows upstream's `resourcehelper.PodRequests` (k8s.io/component-helpers): the regular
//! containers are summed; init containers run one at a time, so the pod needs at least the largest
//! of them; native sidecars (init containers with `restartPolicy: Always`) keep running, so each
//! adds to the sum of the containers and to every init container started after it; the pod
//! overhead is added last. A container that sets a limit but no request is counted at its limit,
//! as API-server defaulting would have set the request.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, Node, Pod};

use deckhand_api::quantity::{resource_amount, QuantityError};

/// Resource amounts: cpu in millicores, everything else in whole units.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resources {
    pub milli_cpu: i64,
    pub memory: i64,
    pub ephemeral_storage: i64,
    /// Extended and other scalar resources (`nvidia.com/gpu`, `hugepages-2Mi`, …).
    pub scalar: BTreeMap<String, i64>,
}

/// The defaults upstream's scoring uses for a container that requests no cpu/memory
/// (`schedutil.DefaultMilliCPURequest` / `DefaultMemoryRequest`), so such pods still spread.
pub const DEFAULT_MILLI_CPU_REQUEST: i64 = 100;
pub const DEFAULT_MEMORY_REQUEST: i64 = 200 * 1024 * 1024;

impl Resources {
    fn set_max(&mut self, other: &Resources) {
        self.milli_cpu = self.milli_cpu.max(other.milli_cpu);
        self.memory = self.memory.max(other.memory);
        self.ephemeral_storage = self.ephemeral_storage.max(other.ephemeral_storage);
        for (k, v) in &other.scalar {
            let e = self.scalar.entry(k.clone()).or_insert(0);
            *e = (*e).max(*v);
        }
    }

    /// Adds `other` to `self`, saturating.
    pub fn add(&mut self, other: &Resources) {
        self.milli_cpu = self.milli_cpu.saturating_add(other.milli_cpu);
        self.memory = self.memory.saturating_add(other.memory);
        self.ephemeral_storage = self
            .ephemeral_storage
            .saturating_add(other.ephemeral_storage);
        for (k, v) in &other.scalar {
            let e = self.scalar.entry(k.clone()).or_insert(0);
            *e = e.saturating_add(*v);
        }
    }

    fn add_named(&mut self, name: &str, amount: i64) {
        match name {
            "cpu" => self.milli_cpu = self.milli_cpu.saturating_add(amount),
            "memory" => self.memory = self.memory.saturating_add(amount),
            "ephemeral-storage" => {
                self.ephemeral_storage = self.ephemeral_storage.saturating_add(amount)
            }
            // The pod count is accounted separately; a pod cannot request "pods".
            "pods" => {}
            other => {
                let e = self.scalar.entry(other.to_string()).or_insert(0);
                *e = e.saturating_add(amount);
            }
        }
    }

    /// Whether every amount is zero.
    pub fn is_zero(&self) -> bool {
        self.milli_cpu == 0
            && self.memory == 0
            && self.ephemeral_storage == 0
            && self.scalar.values().all(|v| *v == 0)
    }
}

fn container_requests(c: &Container, non_zero: bool) -> Result<Resources, QuantityError> {
    let mut r = Resources::default();
    let res = c.resources.as_ref();
    let requests = res.and_then(|r| r.requests.as_ref());
    let limits = res.and_then(|r| r.limits.as_ref());
    let mut names: Vec<&String> = requests.into_iter().flat_map(|m| m.keys()).collect();
    names.extend(limits.into_iter().flat_map(|m| m.keys()));
    names.sort();
    names.dedup();
    for name in names {
        let q = requests
            .and_then(|m| m.get(name))
            .or_else(|| limits.and_then(|m| m.get(name)));
        if let Some(q) = q {
            r.add_named(name, resource_amount(name, q)?);
        }
    }
    if non_zero {
        if !requests.is_some_and(|m| m.contains_key("cpu"))
            && !limits.is_some_and(|m| m.contains_key("cpu"))
        {
            r.milli_cpu = DEFAULT_MILLI_CPU_REQUEST;
        }
        if !requests.is_some_and(|m| m.contains_key("memory"))
            && !limits.is_some_and(|m| m.contains_key("memory"))
        {
            r.memory = DEFAULT_MEMORY_REQUEST;
        }
    }
    Ok(r)
}

fn is_sidecar(c: &Container) -> bool {
    c.restart_policy.as_deref() == Some("Always")
}

fn requests(pod: &Pod, non_zero: bool) -> Result<Resources, QuantityError> {
    let Some(spec) = pod.spec.as_ref() else {
        return Ok(Resources::default());
    };
    let mut reqs = Resources::default();
    for c in &spec.containers {
        reqs.add(&container_requests(c, non_zero)?);
    }
    let mut sidecars = Resources::default();
    let mut init_max = Resources::default();
    for c in spec.init_containers.iter().flatten() {
        let mut creq = container_requests(c, non_zero)?;
        if is_sidecar(c) {
            reqs.add(&creq);
            sidecars.add(&creq);
            creq = sidecars.clone();
        } else {
            creq.add(&sidecars);
        }
        init_max.set_max(&creq);
    }
    reqs.set_max(&init_max);
    if let Some(overhead) = spec.overhead.as_ref() {
        for (name, q) in overhead {
            reqs.add_named(name, resource_amount(name, q)?);
        }
    }
    Ok(reqs)
}

/// The pod's effective request (what the NodeResourcesFit filter compares with free capacity).
pub fn pod_requests(pod: &Pod) -> Result<Resources, QuantityError> {
    requests(pod, false)
}

/// As [`pod_requests`], with cpu/memory defaults for containers that request none (scoring only).
pub fn pod_requests_non_zero(pod: &Pod) -> Result<Resources, QuantityError> {
    requests(pod, true)
}

/// The node's allocatable resources and its pod capacity (`status.allocatable`; missing → 0).
pub fn node_allocatable(node: &Node) -> Result<(Resources, i64), QuantityError> {
    let mut r = Resources::default();
    let mut pods = 0;
    if let Some(alloc) = node.status.as_ref().and_then(|s| s.allocatable.as_ref()) {
        for (name, q) in alloc {
            let v = resource_amount(name, q)?;
            if name == "pods" {
                pods = v;
            } else {
                r.add_named(name, v);
            }
        }
    }
    Ok((r, pods))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{PodSpec, ResourceRequirements};
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

    pub(crate) fn container(name: &str, cpu: &str, mem: &str) -> Container {
        let mut req = BTreeMap::new();
        if !cpu.is_empty() {
            req.insert("cpu".to_string(), Quantity(cpu.into()));
        }
        if !mem.is_empty() {
            req.insert("memory".to_string(), Quantity(mem.into()));
        }
        Container {
            name: name.into(),
            resources: Some(ResourceRequirements {
                requests: Some(req),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn pod(containers: Vec<Container>, init: Vec<Container>) -> Pod {
        Pod {
            spec: Some(PodSpec {
                containers,
                init_containers: Some(init),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn sums_containers_and_takes_max_of_init() {
        let p = pod(
            vec![container("a", "100m", "1Mi"), container("b", "200m", "1Mi")],
            vec![
                container("i1", "500m", "1Ki"),
                container("i2", "100m", "4Mi"),
            ],
        );
        let r = pod_requests(&p).unwrap();
        assert_eq!(r.milli_cpu, 500);
        assert_eq!(r.memory, 4 * 1024 * 1024);
    }

    #[test]
    fn sidecars_add_to_containers_and_later_inits() {
        let mut sidecar = container("side", "200m", "");
        sidecar.restart_policy = Some("Always".into());
        let p = pod(
            vec![container("a", "100m", "")],
            vec![
                container("i0", "1", ""), // before the sidecar: 1000
                sidecar,
                container("i2", "900m", ""), // after: 900 + 200 = 1100
            ],
        );
        // containers 100 + sidecar 200 = 300; init max = 1100
        assert_eq!(pod_requests(&p).unwrap().milli_cpu, 1100);
    }

    #[test]
    fn overhead_and_limits_fallback_and_extended() {
        let mut c = container("a", "", "");
        let res = c.resources.as_mut().unwrap();
        res.limits = Some(BTreeMap::from([
            ("cpu".to_string(), Quantity("1".into())),
            ("example.com/foo".to_string(), Quantity("2".into())),
        ]));
        let mut p = pod(vec![c], vec![]);
        p.spec.as_mut().unwrap().overhead = Some(BTreeMap::from([(
            "cpu".to_string(),
            Quantity("250m".into()),
        )]));
        let r = pod_requests(&p).unwrap();
        assert_eq!(r.milli_cpu, 1250);
        assert_eq!(r.scalar.get("example.com/foo"), Some(&2));
        assert_eq!(r.memory, 0);
        assert_eq!(
            pod_requests_non_zero(&p).unwrap().memory,
            DEFAULT_MEMORY_REQUEST
        );
    }
}
