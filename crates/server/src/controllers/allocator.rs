//! Service ClusterIP and NodePort allocation.
//!
//! Follows the API server's allocators (`pkg/registry/core/service/ipallocator` and
//! `portallocator`, with the KEP-3070/KEP-3668 static/dynamic split):
//! - a ClusterIP range is a CIDR without its network and (IPv4) broadcast addresses; asking for a
//!   specific IP fails with "provided IP is already allocated" or "the provided IP (…) is not in
//!   the valid range"; by convention the first address (`.1`) is the `kubernetes` Service and
//!   `.10` the cluster DNS, both requested explicitly.
//! - dynamic allocation takes from the upper part of the range first and uses the lower "static"
//!   band (16–256 addresses, 1/16 of the range; for ports 16–128, 1/32) only when the upper part
//!   is full, so explicitly requested low addresses rarely collide. Upstream picks at random
//!   within the band; here the lowest free value is taken, so results are reproducible.
//! - NodePorts come from 30000–32767 (`--service-node-port-range`); a port number used by several
//!   ports of one Service (TCP and UDP) is one allocation.
//! - allocations are not persisted: after a restart the allocators are rebuilt from the existing
//!   Services (the source of truth), reporting conflicts as upstream's repair loops do.

use std::collections::BTreeSet;
use std::net::IpAddr;

use ipnet::IpNet;
use k8s_openapi::api::core::v1::Service;

/// Why an allocation failed. `Full` may succeed after Services are deleted; the others need a
/// different request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AllocError {
    #[error("range is full")]
    Full,
    #[error("provided IP is already allocated")]
    IpAllocated,
    #[error("the provided IP ({ip}) is not in the valid range. The range of valid IPs is {range}")]
    IpNotInRange { ip: String, range: String },
    #[error("provided port is already allocated")]
    PortAllocated,
    #[error("provided port is not in the valid range. The range of valid ports is {range}")]
    PortNotInRange { range: String },
    #[error("invalid service CIDR {cidr:?}: {reason}")]
    InvalidCidr { cidr: String, reason: String },
    #[error("invalid IP address {0:?}")]
    InvalidIp(String),
}

/// Offset of the dynamic band: `min(max(min, size/step), max)`, 0 for ranges smaller than `min`.
fn static_band(size: u128, min: u128, max: u128, step: u128) -> u128 {
    if size < min {
        0
    } else {
        (size / step).clamp(min, max)
    }
}

/// A set of used offsets in `[0, size)` with static/dynamic allocation.
#[derive(Debug, Clone)]
struct Bitmap {
    size: u128,
    offset: u128,
    used: BTreeSet<u128>,
}

impl Bitmap {
    fn next_free(&self) -> Option<u128> {
        let free_from = |lo: u128, hi: u128| {
            let mut candidate = lo;
            for &u in self.used.range(lo..hi) {
                if u != candidate {
                    break;
                }
                candidate += 1;
            }
            (candidate < hi).then_some(candidate)
        };
        free_from(self.offset, self.size).or_else(|| free_from(0, self.offset))
    }
}

/// ClusterIP allocator over one service CIDR.
#[derive(Debug, Clone)]
pub struct ClusterIpAllocator {
    net: IpNet,
    /// The first allocatable address as an integer.
    base: u128,
    map: Bitmap,
}

fn ip_to_u128(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

impl ClusterIpAllocator {
    /// An allocator for `cidr` (e.g. `10.43.0.0/16`).
    pub fn new(cidr: &str) -> Result<Self, AllocError> {
        let invalid = |reason: &str| AllocError::InvalidCidr {
            cidr: cidr.into(),
            reason: reason.into(),
        };
        let net: IpNet = cidr.parse().map_err(|_| invalid("not a CIDR"))?;
        let net = net.trunc();
        let host_bits = u32::from(net.max_prefix_len() - net.prefix_len());
        if host_bits > 64 {
            return Err(invalid("the range is too large (at most 2^64 addresses)"));
        }
        let total: u128 = 1u128 << host_bits;
        let (base_skip, usable) = match (net, total) {
            // A /32 or /128 has nothing to hand out; a /31 (/127) uses both addresses.
            (_, 1) => return Err(invalid("the range has no usable addresses")),
            (_, 2) => (0, 2),
            // The network address and, for IPv4, the broadcast address are never allocated.
            (IpNet::V4(_), t) => (1, t - 2),
            (IpNet::V6(_), t) => (1, t - 1),
        };
        Ok(Self {
            base: ip_to_u128(net.network()) + base_skip,
            map: Bitmap {
                size: usable,
                offset: static_band(total, 16, 256, 16).min(usable),
                used: BTreeSet::new(),
            },
            net,
        })
    }

    /// Rebuilds the allocator from existing Services; the problems found (duplicates, IPs out
    /// of range) are returned with the Service they concern, as the repair loop reports them.
    pub fn from_services(
        cidr: &str,
        services: &[Service],
    ) -> Result<(Self, Vec<(String, AllocError)>), AllocError> {
        let mut a = Self::new(cidr)?;
        let mut problems = Vec::new();
        for svc in services {
            for ip in service_cluster_ips(svc) {
                let Ok(addr) = ip.parse::<IpAddr>() else {
                    problems.push((service_key(svc), AllocError::InvalidIp(ip.to_string())));
                    continue;
                };
                // Other families belong to another allocator.
                if addr.is_ipv4() != a.net.network().is_ipv4() {
                    continue;
                }
                if let Err(e) = a.allocate(addr) {
                    problems.push((service_key(svc), e));
                }
            }
        }
        Ok((a, problems))
    }

    fn offset_of(&self, ip: IpAddr) -> Result<u128, AllocError> {
        let not_in_range = || AllocError::IpNotInRange {
            ip: ip.to_string(),
            range: self.net.to_string(),
        };
        if !self.net.contains(&ip) {
            return Err(not_in_range());
        }
        let v = ip_to_u128(ip);
        if v < self.base || v - self.base >= self.map.size {
            return Err(not_in_range());
        }
        Ok(v - self.base)
    }

    fn addr_at(&self, offset: u128) -> IpAddr {
        let v = self.base + offset;
        match self.net {
            IpNet::V4(_) => IpAddr::V4((v as u32).into()),
            IpNet::V6(_) => IpAddr::V6(v.into()),
        }
    }

    /// The CIDR this allocator serves.
    pub fn cidr(&self) -> IpNet {
        self.net
    }

    /// The `n`th allocatable address (1-based: `nth(1)` is `.1`, the `kubernetes` Service;
    /// `nth(10)` the conventional cluster DNS address).
    pub fn nth(&self, n: u128) -> Option<IpAddr> {
        (n >= 1 && n <= self.map.size).then(|| self.addr_at(n - 1))
    }

    /// Allocates a specific IP.
    pub fn allocate(&mut self, ip: IpAddr) -> Result<(), AllocError> {
        let off = self.offset_of(ip)?;
        if !self.map.used.insert(off) {
            return Err(AllocError::IpAllocated);
        }
        Ok(())
    }

    /// Allocates a free IP (dynamic band first).
    pub fn allocate_next(&mut self) -> Result<IpAddr, AllocError> {
        let off = self.map.next_free().ok_or(AllocError::Full)?;
        self.map.used.insert(off);
        Ok(self.addr_at(off))
    }

    /// Releases an IP; returns whether it was allocated. Out-of-range IPs are ignored.
    pub fn release(&mut self, ip: IpAddr) -> bool {
        self.offset_of(ip)
            .map(|off| self.map.used.remove(&off))
            .unwrap_or(false)
    }

    pub fn is_allocated(&self, ip: IpAddr) -> bool {
        self.offset_of(ip)
            .map(|off| self.map.used.contains(&off))
            .unwrap_or(false)
    }

    /// How many addresses are still free.
    pub fn free(&self) -> u128 {
        self.map.size - self.map.used.len() as u128
    }
}

/// The default NodePort range (`--service-node-port-range`).
pub const DEFAULT_NODE_PORT_RANGE: (u16, u16) = (30000, 32767);

/// NodePort allocator over an inclusive port range.
#[derive(Debug, Clone)]
pub struct NodePortAllocator {
    first: u16,
    last: u16,
    map: Bitmap,
}

impl Default for NodePortAllocator {
    fn default() -> Self {
        Self::new(DEFAULT_NODE_PORT_RANGE.0, DEFAULT_NODE_PORT_RANGE.1)
    }
}

impl NodePortAllocator {
    /// An allocator for `first..=last` (swapped if given the wrong way round).
    pub fn new(first: u16, last: u16) -> Self {
        let (first, last) = (first.min(last), first.max(last));
        let size = u128::from(last - first) + 1;
        Self {
            first,
            last,
            map: Bitmap {
                size,
                offset: static_band(size, 16, 128, 32),
                used: BTreeSet::new(),
            },
        }
    }

    /// Rebuilds the allocator from the node ports of existing Services.
    pub fn from_services(
        first: u16,
        last: u16,
        services: &[Service],
    ) -> (Self, Vec<(String, AllocError)>) {
        let mut a = Self::new(first, last);
        let mut problems = Vec::new();
        for svc in services {
            for port in service_node_ports(svc) {
                if let Err(e) = a.allocate(port) {
                    problems.push((service_key(svc), e));
                }
            }
        }
        (a, problems)
    }

    fn range(&self) -> String {
        format!("{}-{}", self.first, self.last)
    }

    /// Allocates a specific port.
    pub fn allocate(&mut self, port: i32) -> Result<(), AllocError> {
        if port < i32::from(self.first) || port > i32::from(self.last) {
            return Err(AllocError::PortNotInRange {
                range: self.range(),
            });
        }
        if !self.map.used.insert((port - i32::from(self.first)) as u128) {
            return Err(AllocError::PortAllocated);
        }
        Ok(())
    }

    /// Allocates a free port (dynamic band first).
    pub fn allocate_next(&mut self) -> Result<i32, AllocError> {
        let off = self.map.next_free().ok_or(AllocError::Full)?;
        self.map.used.insert(off);
        Ok(i32::from(self.first) + off as i32)
    }

    /// Releases a port; returns whether it was allocated.
    pub fn release(&mut self, port: i32) -> bool {
        port >= i32::from(self.first)
            && port <= i32::from(self.last)
            && self
                .map
                .used
                .remove(&((port - i32::from(self.first)) as u128))
    }

    pub fn is_allocated(&self, port: i32) -> bool {
        port >= i32::from(self.first)
            && port <= i32::from(self.last)
            && self
                .map
                .used
                .contains(&((port - i32::from(self.first)) as u128))
    }
}

fn service_key(svc: &Service) -> String {
    format!(
        "{}/{}",
        svc.metadata.namespace.as_deref().unwrap_or(""),
        svc.metadata.name.as_deref().unwrap_or("")
    )
}

/// The Service's allocated cluster IPs (`clusterIPs`, else `clusterIP`; not "None").
pub fn service_cluster_ips(svc: &Service) -> Vec<&str> {
    let Some(spec) = svc.spec.as_ref() else {
        return Vec::new();
    };
    let ips: Vec<&str> = match spec.cluster_ips.as_ref().filter(|v| !v.is_empty()) {
        Some(v) => v.iter().map(String::as_str).collect(),
        None => spec.cluster_ip.as_deref().into_iter().collect(),
    };
    ips.into_iter()
        .filter(|ip| !ip.is_empty() && *ip != "None")
        .collect()
}

/// The Service's node ports (each number once) and health-check node port.
pub fn service_node_ports(svc: &Service) -> Vec<i32> {
    let Some(spec) = svc.spec.as_ref() else {
        return Vec::new();
    };
    let mut ports: Vec<i32> = spec
        .ports
        .iter()
        .flatten()
        .filter_map(|p| p.node_port)
        .chain(spec.health_check_node_port)
        .filter(|p| *p > 0)
        .collect();
    ports.sort_unstable();
    ports.dedup();
    ports
}

fn needs_node_ports(svc: &Service) -> bool {
    let spec = svc.spec.as_ref();
    match spec.and_then(|s| s.type_.as_deref()) {
        Some("NodePort") => true,
        Some("LoadBalancer") => {
            spec.and_then(|s| s.allocate_load_balancer_node_ports) != Some(false)
        }
        _ => false,
    }
}

/// Fills in a new Service's cluster IP and node ports (requested values are honoured, missing
/// ones allocated). All-or-nothing: on error nothing stays allocated.
pub fn allocate_service(
    svc: &Service,
    ips: &mut ClusterIpAllocator,
    ports: &mut NodePortAllocator,
) -> Result<Service, AllocError> {
    let mut out = svc.clone();
    let spec = out.spec.get_or_insert_with(Default::default);
    let mut got_ips: Vec<IpAddr> = Vec::new();
    let mut got_ports: Vec<i32> = Vec::new();
    let result = (|| {
        if spec.type_.as_deref() != Some("ExternalName")
            && spec.cluster_ip.as_deref() != Some("None")
        {
            let requested = spec
                .cluster_ips
                .as_ref()
                .and_then(|v| v.first().cloned())
                .or_else(|| spec.cluster_ip.clone())
                .filter(|ip| !ip.is_empty());
            let ip = match requested {
                Some(s) => {
                    let ip: IpAddr = s.parse().map_err(|_| AllocError::InvalidIp(s.clone()))?;
                    ips.allocate(ip)?;
                    ip
                }
                None => ips.allocate_next()?,
            };
            got_ips.push(ip);
            spec.cluster_ip = Some(ip.to_string());
            spec.cluster_ips = Some(vec![ip.to_string()]);
        }
        if needs_node_ports(svc) {
            for p in spec.ports.iter_mut().flatten() {
                match p.node_port.filter(|n| *n > 0) {
                    Some(n) if got_ports.contains(&n) => {}
                    Some(n) => {
                        ports.allocate(n)?;
                        got_ports.push(n);
                    }
                    None => {
                        let n = ports.allocate_next()?;
                        got_ports.push(n);
                        p.node_port = Some(n);
                    }
                }
            }
        }
        Ok(())
    })();
    if let Err(e) = result {
        for ip in got_ips {
            ips.release(ip);
        }
        for p in got_ports {
            ports.release(p);
        }
        return Err(e);
    }
    Ok(out)
}

/// Releases everything a deleted Service held.
pub fn release_service(svc: &Service, ips: &mut ClusterIpAllocator, ports: &mut NodePortAllocator) {
    for ip in service_cluster_ips(svc) {
        if let Ok(ip) = ip.parse() {
            ips.release(ip);
        }
    }
    for p in service_node_ports(svc) {
        ports.release(p);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{ServicePort, ServiceSpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn svc(name: &str, type_: &str, cluster_ip: &str, node_ports: &[i32]) -> Service {
        Service {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("default".into()),
                ..Default::default()
            },
            spec: Some(ServiceSpec {
                type_: Some(type_.into()),
                cluster_ip: (!cluster_ip.is_empty()).then(|| cluster_ip.to_string()),
                ports: Some(
                    node_ports
                        .iter()
                        .enumerate()
                        .map(|(i, n)| ServicePort {
                            port: 80 + i as i32,
                            node_port: (*n != 0).then_some(*n),
                            ..Default::default()
                        })
                        .collect(),
                ),
                ..Default::default()
            }),
            status: None,
        }
    }

    #[test]
    fn specific_ips_and_upstream_errors() {
        let mut a = ClusterIpAllocator::new("10.43.0.0/16").unwrap();
        assert_eq!(a.nth(1), Some(ip("10.43.0.1")));
        assert_eq!(a.nth(10), Some(ip("10.43.0.10")));
        a.allocate(ip("10.43.0.1")).unwrap();
        assert_eq!(a.allocate(ip("10.43.0.1")), Err(AllocError::IpAllocated));
        assert_eq!(
            a.allocate(ip("10.44.0.1")).unwrap_err().to_string(),
            "the provided IP (10.44.0.1) is not in the valid range. The range of valid IPs is 10.43.0.0/16"
        );
        // Network and broadcast addresses are not in the range.
        assert!(matches!(
            a.allocate(ip("10.43.0.0")),
            Err(AllocError::IpNotInRange { .. })
        ));
        assert!(matches!(
            a.allocate(ip("10.43.255.255")),
            Err(AllocError::IpNotInRange { .. })
        ));
        a.allocate(ip("10.43.255.254")).unwrap();
        assert_eq!(
            AllocError::IpAllocated.to_string(),
            "provided IP is already allocated"
        );
    }

    #[test]
    fn dynamic_allocation_avoids_the_static_band_until_full() {
        let mut a = ClusterIpAllocator::new("10.43.0.0/16").unwrap();
        // /16: static band is the first 256 addresses (offsets 0..=255 → .0.1 to .1.0).
        assert_eq!(a.allocate_next(), Ok(ip("10.43.1.1")));
        assert_eq!(a.allocate_next(), Ok(ip("10.43.1.2")));
        let mut small = ClusterIpAllocator::new("10.0.0.0/29").unwrap(); // 6 usable, no band
        let got: Vec<_> = (0..6).map(|_| small.allocate_next().unwrap()).collect();
        assert_eq!(got.first(), Some(&ip("10.0.0.1")));
        assert_eq!(got.last(), Some(&ip("10.0.0.6")));
        assert_eq!(small.allocate_next(), Err(AllocError::Full));
        assert!(small.release(ip("10.0.0.3")));
        assert!(!small.release(ip("10.0.0.3")));
        assert_eq!(small.allocate_next(), Ok(ip("10.0.0.3")));
        assert_eq!(small.free(), 0);
    }

    #[test]
    fn static_band_used_when_dynamic_part_is_full() {
        let mut a = ClusterIpAllocator::new("10.0.0.0/24").unwrap(); // band 16, 254 usable
        for _ in 0..(254 - 16) {
            a.allocate_next().unwrap();
        }
        assert_eq!(a.allocate_next(), Ok(ip("10.0.0.1")));
    }

    #[test]
    fn invalid_cidrs() {
        assert!(ClusterIpAllocator::new("nonsense").is_err());
        assert!(ClusterIpAllocator::new("10.0.0.1/32").is_err());
        assert!(ClusterIpAllocator::new("fd00::/48").is_err());
        let v6 = ClusterIpAllocator::new("fd00::/112").unwrap();
        assert_eq!(v6.nth(1), Some(ip("fd00::1")));
    }

    #[test]
    fn node_ports() {
        let mut p = NodePortAllocator::default();
        // 2768 ports: band = min(max(16, 86), 128) = 86.
        assert_eq!(p.allocate_next(), Ok(30086));
        p.allocate(30000).unwrap();
        assert_eq!(p.allocate(30000), Err(AllocError::PortAllocated));
        assert_eq!(
            p.allocate(80).unwrap_err().to_string(),
            "provided port is not in the valid range. The range of valid ports is 30000-32767"
        );
        assert!(p.release(30000));
        assert!(!p.is_allocated(30000));
    }

    #[test]
    fn rebuild_from_services_reports_conflicts() {
        let services = [
            svc("kubernetes", "ClusterIP", "10.43.0.1", &[]),
            svc("dup", "ClusterIP", "10.43.0.1", &[]),
            svc("np", "NodePort", "10.43.5.5", &[30080, 30080]),
            svc("outside", "ClusterIP", "10.99.0.1", &[]),
            svc("headless", "ClusterIP", "None", &[]),
        ];
        let (a, problems) = ClusterIpAllocator::from_services("10.43.0.0/16", &services).unwrap();
        assert!(a.is_allocated(ip("10.43.0.1")) && a.is_allocated(ip("10.43.5.5")));
        let keys: Vec<_> = problems.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["default/dup", "default/outside"]);
        let (p, problems) = NodePortAllocator::from_services(30000, 32767, &services);
        assert!(p.is_allocated(30080) && problems.is_empty());
    }

    #[test]
    fn allocate_and_release_service() {
        let mut ips = ClusterIpAllocator::new("10.43.0.0/16").unwrap();
        let mut ports = NodePortAllocator::default();
        let s = allocate_service(
            &svc("web", "NodePort", "", &[0, 30500]),
            &mut ips,
            &mut ports,
        )
        .unwrap();
        let spec = s.spec.as_ref().unwrap();
        assert_eq!(spec.cluster_ip.as_deref(), Some("10.43.1.1"));
        assert_eq!(spec.cluster_ips, Some(vec!["10.43.1.1".to_string()]));
        let nps: Vec<_> = spec
            .ports
            .as_ref()
            .unwrap()
            .iter()
            .map(|p| p.node_port)
            .collect();
        assert_eq!(nps, [Some(30086), Some(30500)]);

        // A conflicting request allocates nothing.
        let err = allocate_service(&svc("b", "NodePort", "", &[0, 30500]), &mut ips, &mut ports);
        assert_eq!(err, Err(AllocError::PortAllocated));
        assert!(!ips.is_allocated(ip("10.43.1.2")) && !ports.is_allocated(30087));

        // Headless and ClusterIP services get no IP / no node ports respectively.
        let h =
            allocate_service(&svc("h", "ClusterIP", "None", &[0]), &mut ips, &mut ports).unwrap();
        assert_eq!(h.spec.as_ref().unwrap().cluster_ip.as_deref(), Some("None"));
        assert_eq!(
            h.spec.as_ref().unwrap().ports.as_ref().unwrap()[0].node_port,
            None
        );

        release_service(&s, &mut ips, &mut ports);
        assert!(!ips.is_allocated(ip("10.43.1.1")) && !ports.is_allocated(30500));
    }
}
