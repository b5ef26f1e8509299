//! QoS class and cgroup resources of pods and containers.
//!
//! Follows upstream `pkg/apis/core/v1/helper/qos` (`ComputePodQOS`), `pkg/kubelet/cm/helpers_linux.go`
//! (`MilliCPUToShares`, `MilliCPUToQuota`, `ResourceConfigForPod`, `CpuSharesToCpuWeight`),
//! `pkg/api/v1/resource` (`PodRequests`/`PodLimits` with init containers and sidecars),
//! `pkg/kubelet/qos/policy.go` (OOM score adjust) and
//! `pkg/kubelet/kuberuntime/kuberuntime_container_linux.go` (the CRI container resources).
//! The resource `Quantity` parser follows `apimachinery/pkg/api/resource` (values round up).

use std::collections::BTreeMap;
use std::path::PathBuf;

use k8s_openapi::api::core::v1::{Container, Pod};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

/// The CPU shares a cgroup gets when it has no CPU request (upstream `MinShares`).
pub const MIN_SHARES: u64 = 2;
/// The most CPU shares the kernel accepts (upstream `MaxShares`).
pub const MAX_SHARES: u64 = 262_144;
/// The CFS period the kubelet uses for quotas, in microseconds.
pub const QUOTA_PERIOD: u64 = 100_000;
/// The smallest CFS quota the kubelet sets, in microseconds (upstream `MinQuotaPeriod`).
pub const MIN_QUOTA_PERIOD: i64 = 1_000;

/// The pod QoS class, as the API spells it in `status.qosClass`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QosClass {
    Guaranteed,
    Burstable,
    BestEffort,
}

impl QosClass {
    pub fn as_str(self) -> &'static str {
        match self {
            QosClass::Guaranteed => "Guaranteed",
            QosClass::Burstable => "Burstable",
            QosClass::BestEffort => "BestEffort",
        }
    }
}

/// A quantity that is not a valid Kubernetes resource quantity.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "quantity {0:?} is not a valid resource quantity (expected e.g. 100m, 1.5, 2Gi, 500M, 1e3)"
)]
pub struct QuantityError(pub String);

/// A parsed quantity, kept as an exact fraction so milli-units and bytes both round up exactly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Exact {
    num: i128,
    den: i128,
}

fn parse_exact(s: &str) -> Result<Exact, QuantityError> {
    let err = || QuantityError(s.to_string());
    let t = s.trim();
    if t.is_empty() {
        return Err(err());
    }
    let (neg, body) = match t.as_bytes()[0] {
        b'-' => (true, &t[1..]),
        b'+' => (false, &t[1..]),
        _ => (false, t),
    };
    let num_end = body
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(body.len());
    let (number, suffix) = body.split_at(num_end);
    if number.is_empty() || number == "." || number.matches('.').count() > 1 {
        return Err(err());
    }
    let (int_part, frac_part) = number.split_once('.').unwrap_or((number, ""));
    let digits = format!("{int_part}{frac_part}");
    if digits.len() > 30 {
        return Err(err());
    }
    let mut num: i128 = digits.parse().map_err(|_| err())?;
    let mut den: i128 = 10i128.pow(frac_part.len() as u32);
    let (pow2, pow10): (u32, i32) = match suffix {
        "" => (0, 0),
        "Ki" => (10, 0),
        "Mi" => (20, 0),
        "Gi" => (30, 0),
        "Ti" => (40, 0),
        "Pi" => (50, 0),
        "Ei" => (60, 0),
        "n" => (0, -9),
        "u" => (0, -6),
        "m" => (0, -3),
        "k" => (0, 3),
        "M" => (0, 6),
        "G" => (0, 9),
        "T" => (0, 12),
        "P" => (0, 15),
        "E" => (0, 18),
        s if s.starts_with(['e', 'E']) => {
            let e: i32 = s[1..].parse().map_err(|_| err())?;
            if !(-30..=30).contains(&e) {
                return Err(err());
            }
            (0, e)
        }
        _ => return Err(err()),
    };
    num = num.checked_mul(1i128 << pow2).ok_or_else(err)?;
    if pow10 >= 0 {
        num = num.checked_mul(10i128.pow(pow10 as u32)).ok_or_else(err)?;
    } else {
        den = den
            .checked_mul(10i128.pow((-pow10) as u32))
            .ok_or_else(err)?;
    }
    Ok(Exact {
        num: if neg { -num } else { num },
        den,
    })
}

fn ceil_div(num: i128, den: i128) -> i64 {
    let q = num.div_euclid(den) + i128::from(num.rem_euclid(den) != 0);
    q.clamp(i64::MIN as i128, i64::MAX as i128) as i64
}

/// The quantity in milli-units, rounded up (upstream `Quantity.MilliValue`): `100m` → 100, `1.5` → 1500.
pub fn parse_milli(s: &str) -> Result<i64, QuantityError> {
    let e = parse_exact(s)?;
    Ok(ceil_div(e.num.saturating_mul(1000), e.den))
}

/// The quantity in whole units (bytes for memory), rounded up (upstream `Quantity.Value`).
pub fn parse_value(s: &str) -> Result<i64, QuantityError> {
    let e = parse_exact(s)?;
    Ok(ceil_div(e.num, e.den))
}

/// Milli-units of a quantity the API server already validated; an invalid one counts as zero.
pub fn milli(q: &Quantity) -> i64 {
    parse_milli(&q.0).unwrap_or(0)
}

/// Whole units of a quantity the API server already validated; an invalid one counts as zero.
pub fn value(q: &Quantity) -> i64 {
    parse_value(&q.0).unwrap_or(0)
}

fn is_restartable_init(c: &Container) -> bool {
    c.restart_policy.as_deref() == Some("Always")
}

fn resource_map(c: &Container, limits: bool) -> Option<&BTreeMap<String, Quantity>> {
    let r = c.resources.as_ref()?;
    if limits {
        r.limits.as_ref()
    } else {
        r.requests.as_ref()
    }
}

/// A container's requests with the API defaulting rule applied: a resource with a limit and no
/// request requests its limit.
pub fn effective_requests(c: &Container) -> BTreeMap<String, Quantity> {
    let mut out = resource_map(c, false).cloned().unwrap_or_default();
    if let Some(limits) = resource_map(c, true) {
        for (k, v) in limits {
            out.entry(k.clone()).or_insert_with(|| v.clone());
        }
    }
    out
}

/// One container's QoS (upstream `resourceQOS`), with requests defaulted to limits: BestEffort
/// when it neither requests nor limits cpu and memory, Guaranteed when both are limited and
/// requested at exactly their limits, Burstable otherwise.
pub fn container_qos_class(c: &Container) -> QosClass {
    let requests = effective_requests(c);
    let limits = resource_map(c, true);
    let mut class = None;
    for res in ["cpu", "memory"] {
        let req = requests.get(res).map_or(0, milli);
        let lim = limits.and_then(|l| l.get(res)).map_or(0, milli);
        if req != lim {
            return QosClass::Burstable;
        }
        let this = if req == 0 {
            QosClass::BestEffort
        } else {
            QosClass::Guaranteed
        };
        match class {
            None => class = Some(this),
            Some(c) if c != this => return QosClass::Burstable,
            Some(_) => {}
        }
    }
    class.unwrap_or(QosClass::BestEffort)
}

/// The pod QoS class as upstream `ComputePodQOS`, init containers included: Guaranteed when
/// every container is, BestEffort when every container is, Burstable otherwise.
pub fn pod_qos_class(pod: &Pod) -> QosClass {
    let Some(spec) = pod.spec.as_ref() else {
        return QosClass::BestEffort;
    };
    let mut class = None;
    for c in spec
        .init_containers
        .iter()
        .flatten()
        .chain(spec.containers.iter())
    {
        let this = container_qos_class(c);
        if this == QosClass::Burstable {
            return this;
        }
        match class {
            None => class = Some(this),
            Some(c) if c != this => return QosClass::Burstable,
            Some(_) => {}
        }
    }
    class.unwrap_or(QosClass::BestEffort)
}

fn container_amount(c: &Container, resource: &str, limits: bool, as_milli: bool) -> Option<i64> {
    let q = if limits {
        resource_map(c, true)?.get(resource)?.clone()
    } else {
        effective_requests(c).get(resource)?.clone()
    };
    Some(if as_milli { milli(&q) } else { value(&q) })
}

/// Pod-level total of a resource as upstream `PodRequests`/`PodLimits`: regular containers and
/// sidecars add up; a regular init container runs alone with the sidecars started before it, so the
/// pod needs the larger of the two; the pod overhead is added on top. `None` for limits when any
/// container lacks that limit (the pod is then unbounded for it).
fn pod_total(pod: &Pod, resource: &str, limits: bool, as_milli: bool) -> Option<i64> {
    let spec = pod.spec.as_ref()?;
    let mut sum = 0i64;
    for c in &spec.containers {
        match container_amount(c, resource, limits, as_milli) {
            Some(v) => sum += v,
            None if limits => return None,
            None => {}
        }
    }
    let mut sidecars = 0i64;
    let mut init_max = 0i64;
    for c in spec.init_containers.iter().flatten() {
        let v = match container_amount(c, resource, limits, as_milli) {
            Some(v) => v,
            None if limits => return None,
            None => 0,
        };
        if is_restartable_init(c) {
            sidecars += v;
            init_max = init_max.max(sidecars);
        } else {
            init_max = init_max.max(sidecars + v);
        }
    }
    let mut total = (sum + sidecars).max(init_max);
    if let Some(q) = spec.overhead.as_ref().and_then(|o| o.get(resource)) {
        total += if as_milli { milli(q) } else { value(q) };
    }
    Some(total)
}

/// Upstream `MilliCPUToShares`: zero requests get the minimum, the rest scale 1000m → 1024 shares.
pub fn milli_cpu_to_shares(milli_cpu: i64) -> u64 {
    if milli_cpu <= 0 {
        return MIN_SHARES;
    }
    let shares = (milli_cpu as u64).saturating_mul(1024) / 1000;
    shares.clamp(MIN_SHARES, MAX_SHARES)
}

/// Upstream `MilliCPUToQuota`: no limit → 0 (unlimited), otherwise at least `MIN_QUOTA_PERIOD`.
pub fn milli_cpu_to_quota(milli_cpu: i64, period: u64) -> i64 {
    if milli_cpu <= 0 {
        return 0;
    }
    let quota = milli_cpu.saturating_mul(period as i64) / 1000;
    quota.max(MIN_QUOTA_PERIOD)
}

/// cgroup v2 `cpu.weight` for cgroup v1 shares (upstream `CpuSharesToCpuWeight`, as runc does).
pub fn cpu_shares_to_weight(shares: u64) -> u64 {
    let shares = shares.clamp(MIN_SHARES, MAX_SHARES);
    1 + ((shares - 2) * 9999) / 262_142
}

/// Resources of a pod-level cgroup (upstream `ResourceConfig`); `None` fields are left unlimited.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CgroupResources {
    pub cpu_shares: u64,
    /// cgroup v2 `cpu.weight` equivalent of `cpu_shares`.
    pub cpu_weight: u64,
    pub cpu_quota: Option<i64>,
    pub cpu_period: Option<u64>,
    pub memory_limit: Option<i64>,
}

/// The pod-level cgroup resources as upstream `ResourceConfigForPod`: Guaranteed pods get shares,
/// quota and memory limit; Burstable pods get shares, and quota / memory limit only when every
/// container sets that limit; BestEffort pods get the minimum shares and nothing else.
pub fn pod_cgroup_resources(pod: &Pod) -> CgroupResources {
    let qos = pod_qos_class(pod);
    if qos == QosClass::BestEffort {
        return CgroupResources {
            cpu_shares: MIN_SHARES,
            cpu_weight: cpu_shares_to_weight(MIN_SHARES),
            ..Default::default()
        };
    }
    let cpu_req = pod_total(pod, "cpu", false, true).unwrap_or(0);
    let shares = milli_cpu_to_shares(cpu_req);
    let cpu_limit = pod_total(pod, "cpu", true, true);
    let mem_limit = pod_total(pod, "memory", true, false);
    CgroupResources {
        cpu_shares: shares,
        cpu_weight: cpu_shares_to_weight(shares),
        cpu_quota: cpu_limit.map(|m| milli_cpu_to_quota(m, QUOTA_PERIOD)),
        cpu_period: cpu_limit.map(|_| QUOTA_PERIOD),
        memory_limit: mem_limit,
    }
}

/// Where the kubelet's cgroups live: `<root>/kubepods[/burstable|/besteffort]/pod<uid>`, the
/// root being `deckhand-<node>` so two agents on one host never share a tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupLayout {
    /// The cgroupfs mount point, normally `/sys/fs/cgroup`.
    pub mount: PathBuf,
    /// The kubelet's root cgroup name below the mount point.
    pub root: String,
}

impl CgroupLayout {
    /// The layout for a node: root `deckhand-<node>` under `mount`.
    pub fn for_node(mount: impl Into<PathBuf>, node_name: &str) -> Self {
        CgroupLayout {
            mount: mount.into(),
            root: format!("deckhand-{node_name}"),
        }
    }

    /// `<mount>/<root>/kubepods`, the parent of all pod cgroups (and the Guaranteed QoS level).
    pub fn kubepods(&self) -> PathBuf {
        self.mount.join(&self.root).join("kubepods")
    }

    /// The QoS-level cgroup: Guaranteed pods sit directly under `kubepods`.
    pub fn qos_cgroup(&self, qos: QosClass) -> PathBuf {
        match qos {
            QosClass::Guaranteed => self.kubepods(),
            QosClass::Burstable => self.kubepods().join("burstable"),
            QosClass::BestEffort => self.kubepods().join("besteffort"),
        }
    }

    /// The pod-level cgroup `pod<uid>` (upstream `GetPodContainerName`).
    pub fn pod_cgroup(&self, qos: QosClass, pod_uid: &str) -> PathBuf {
        self.qos_cgroup(qos).join(format!("pod{pod_uid}"))
    }

    /// The pod cgroup path relative to the mount point, as the CRI `cgroup_parent` takes it.
    pub fn pod_cgroup_parent(&self, qos: QosClass, pod_uid: &str) -> String {
        let p = self.pod_cgroup(qos, pod_uid);
        let rel = p.strip_prefix(&self.mount).unwrap_or(&p);
        format!("/{}", rel.display())
    }
}

/// Upstream `GetContainerOOMScoreAdjust` (without the node-critical special cases): Guaranteed
/// pods −997, BestEffort 1000, Burstable between 2 and 999 by memory request over capacity.
pub fn oom_score_adj(pod: &Pod, container: &Container, memory_capacity: i64) -> i64 {
    match pod_qos_class(pod) {
        QosClass::Guaranteed => -997,
        QosClass::BestEffort => 1000,
        QosClass::Burstable => {
            let req = container_amount(container, "memory", false, false).unwrap_or(0);
            if memory_capacity <= 0 {
                return 999;
            }
            let adj = 1000 - (1000i128 * req as i128 / memory_capacity as i128) as i64;
            // Burstable containers must score above Guaranteed ones and below BestEffort ones.
            adj.clamp(2, 999)
        }
    }
}

/// The CRI resources of one container (upstream `generateLinuxContainerResources`): shares from
/// the cpu request (the limit when only that is set), quota from the cpu limit, memory limit.
pub fn container_linux_resources(
    pod: &Pod,
    container: &Container,
    memory_capacity: i64,
) -> k8s_cri::v1::LinuxContainerResources {
    let cpu_req = container_amount(container, "cpu", false, true).unwrap_or(0);
    let cpu_limit = container_amount(container, "cpu", true, true);
    let mem_limit = container_amount(container, "memory", true, false).unwrap_or(0);
    let mut r = k8s_cri::v1::LinuxContainerResources {
        cpu_shares: milli_cpu_to_shares(cpu_req) as i64,
        memory_limit_in_bytes: mem_limit,
        oom_score_adj: oom_score_adj(pod, container, memory_capacity),
        ..Default::default()
    };
    if let Some(l) = cpu_limit {
        r.cpu_quota = milli_cpu_to_quota(l, QUOTA_PERIOD);
        r.cpu_period = QUOTA_PERIOD as i64;
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{PodSpec, ResourceRequirements};

    fn c(name: &str, req: &[(&str, &str)], lim: &[(&str, &str)]) -> Container {
        let m = |v: &[(&str, &str)]| {
            (!v.is_empty()).then(|| {
                v.iter()
                    .map(|(k, q)| (k.to_string(), Quantity(q.to_string())))
                    .collect()
            })
        };
        Container {
            name: name.into(),
            resources: Some(ResourceRequirements {
                requests: m(req),
                limits: m(lim),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn pod(containers: Vec<Container>, init: Vec<Container>) -> Pod {
        Pod {
            metadata: Default::default(),
            spec: Some(PodSpec {
                containers,
                init_containers: (!init.is_empty()).then_some(init),
                ..Default::default()
            }),
            status: None,
        }
    }

    #[test]
    fn quantities_parse_and_round_up() {
        assert_eq!(parse_milli("100m").unwrap(), 100);
        assert_eq!(parse_milli("1.5").unwrap(), 1500);
        assert_eq!(parse_milli("1e3").unwrap(), 1_000_000);
        assert_eq!(parse_milli("1E-3").unwrap(), 1);
        assert_eq!(parse_milli("0.0001").unwrap(), 1);
        assert_eq!(parse_milli("1u").unwrap(), 1);
        assert_eq!(parse_value("2Gi").unwrap(), 2 << 30);
        assert_eq!(parse_value("500M").unwrap(), 500_000_000);
        assert_eq!(parse_value("1.5Ki").unwrap(), 1536);
        assert_eq!(parse_value("100m").unwrap(), 1);
        assert_eq!(parse_value("1k").unwrap(), 1000);
        assert_eq!(parse_value("-1").unwrap(), -1);
        assert_eq!(parse_value("+5").unwrap(), 5);
        for bad in ["", "abc", "1.2.3", "1Q", "1ki", "1e", ".", "m"] {
            assert!(parse_value(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn qos_classes_as_upstream() {
        assert_eq!(
            pod_qos_class(&pod(vec![c("a", &[], &[])], vec![])),
            QosClass::BestEffort
        );
        let g = c("a", &[], &[("cpu", "1"), ("memory", "1Gi")]);
        assert_eq!(
            pod_qos_class(&pod(vec![g.clone()], vec![])),
            QosClass::Guaranteed
        );
        let g2 = c(
            "a",
            &[("cpu", "1000m"), ("memory", "1Gi")],
            &[("cpu", "1"), ("memory", "1Gi")],
        );
        assert_eq!(pod_qos_class(&pod(vec![g2], vec![])), QosClass::Guaranteed);
        let b = c("b", &[("cpu", "100m")], &[]);
        assert_eq!(
            pod_qos_class(&pod(vec![g.clone(), b], vec![])),
            QosClass::Burstable
        );
        let less = c(
            "a",
            &[("cpu", "500m"), ("memory", "1Gi")],
            &[("cpu", "1"), ("memory", "1Gi")],
        );
        assert_eq!(pod_qos_class(&pod(vec![less], vec![])), QosClass::Burstable);
        // An init container without limits makes a guaranteed pod burstable.
        let i = c("i", &[("memory", "10Mi")], &[]);
        assert_eq!(
            pod_qos_class(&pod(vec![g.clone()], vec![i])),
            QosClass::Burstable
        );
        // Only cpu and memory count.
        let e = c("a", &[("ephemeral-storage", "1Gi")], &[]);
        assert_eq!(pod_qos_class(&pod(vec![e], vec![])), QosClass::BestEffort);
        let cpu_only = c("a", &[], &[("cpu", "1")]);
        assert_eq!(
            pod_qos_class(&pod(vec![cpu_only], vec![])),
            QosClass::Burstable
        );
    }

    #[test]
    fn shares_weight_quota() {
        assert_eq!(milli_cpu_to_shares(0), 2);
        assert_eq!(milli_cpu_to_shares(1), 2);
        assert_eq!(milli_cpu_to_shares(100), 102);
        assert_eq!(milli_cpu_to_shares(1000), 1024);
        assert_eq!(milli_cpu_to_shares(10_000_000), MAX_SHARES);
        assert_eq!(cpu_shares_to_weight(2), 1);
        assert_eq!(cpu_shares_to_weight(1024), 39);
        assert_eq!(cpu_shares_to_weight(262_144), 10_000);
        assert_eq!(milli_cpu_to_quota(0, QUOTA_PERIOD), 0);
        assert_eq!(milli_cpu_to_quota(5, QUOTA_PERIOD), 1000);
        assert_eq!(milli_cpu_to_quota(250, QUOTA_PERIOD), 25_000);
        assert_eq!(milli_cpu_to_quota(2000, QUOTA_PERIOD), 200_000);
    }

    #[test]
    fn pod_resources_by_qos() {
        let g = pod(
            vec![c("a", &[], &[("cpu", "500m"), ("memory", "128Mi")])],
            vec![],
        );
        let r = pod_cgroup_resources(&g);
        assert_eq!(r.cpu_shares, 512);
        assert_eq!(r.cpu_quota, Some(50_000));
        assert_eq!(r.cpu_period, Some(QUOTA_PERIOD));
        assert_eq!(r.memory_limit, Some(128 << 20));
        let b = pod(
            vec![
                c("a", &[("cpu", "100m")], &[("memory", "64Mi")]),
                c("b", &[("cpu", "200m")], &[]),
            ],
            vec![],
        );
        let r = pod_cgroup_resources(&b);
        assert_eq!(r.cpu_shares, milli_cpu_to_shares(300));
        assert_eq!(r.cpu_quota, None);
        assert_eq!(r.memory_limit, None);
        let be = pod(vec![c("a", &[], &[])], vec![]);
        assert_eq!(pod_cgroup_resources(&be).cpu_shares, 2);
        assert_eq!(pod_cgroup_resources(&be).memory_limit, None);
    }

    #[test]
    fn init_containers_and_sidecars_in_pod_totals() {
        // Regular init container larger than the containers: its request wins.
        let p = pod(
            vec![c("a", &[("cpu", "100m")], &[])],
            vec![c("i", &[("cpu", "1")], &[])],
        );
        assert_eq!(pod_total(&p, "cpu", false, true), Some(1000));
        // Sidecar adds to the containers and to later init containers.
        let mut side = c("s", &[("cpu", "200m")], &[]);
        side.restart_policy = Some("Always".into());
        let p = pod(
            vec![c("a", &[("cpu", "100m")], &[])],
            vec![side, c("i", &[("cpu", "250m")], &[])],
        );
        assert_eq!(pod_total(&p, "cpu", false, true), Some(450));
    }

    #[test]
    fn cgroup_paths() {
        let l = CgroupLayout::for_node("/sys/fs/cgroup", "n1");
        assert_eq!(
            l.pod_cgroup(QosClass::Guaranteed, "u1"),
            PathBuf::from("/sys/fs/cgroup/deckhand-n1/kubepods/podu1")
        );
        assert_eq!(
            l.pod_cgroup(QosClass::Burstable, "u1"),
            PathBuf::from("/sys/fs/cgroup/deckhand-n1/kubepods/burstable/podu1")
        );
        assert_eq!(
            l.pod_cgroup_parent(QosClass::BestEffort, "u1"),
            "/deckhand-n1/kubepods/besteffort/podu1"
        );
    }

    #[test]
    fn container_cri_resources() {
        let a = c(
            "a",
            &[("cpu", "250m"), ("memory", "1Gi")],
            &[("cpu", "500m"), ("memory", "2Gi")],
        );
        let p = pod(vec![a.clone()], vec![]);
        let r = container_linux_resources(&p, &a, 8 << 30);
        assert_eq!(r.cpu_shares, 256);
        assert_eq!(r.cpu_quota, 50_000);
        assert_eq!(r.cpu_period, 100_000);
        assert_eq!(r.memory_limit_in_bytes, 2 << 30);
        assert_eq!(r.oom_score_adj, 1000 - 125);
        let lim_only = c("a", &[], &[("cpu", "1"), ("memory", "1Gi")]);
        let p = pod(vec![lim_only.clone()], vec![]);
        let r = container_linux_resources(&p, &lim_only, 8 << 30);
        assert_eq!(r.cpu_shares, 1024);
        assert_eq!(r.oom_score_adj, -997);
        let none = c("a", &[], &[]);
        let p = pod(vec![none.clone()], vec![]);
        let r = container_linux_resources(&p, &none, 8 << 30);
        assert_eq!(
            (
                r.cpu_shares,
                r.cpu_quota,
                r.memory_limit_in_bytes,
                r.oom_score_adj
            ),
            (2, 0, 0, 1000)
        );
    }
}
