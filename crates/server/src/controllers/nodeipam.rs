//! Node IPAM: one pod CIDR per node carved out of `--cluster-cidr`.
//!
//! Follows the node IPAM controller's `RangeAllocator` (`pkg/controller/nodeipam/ipam/cidrset`):
//! the cluster CIDR (default 10.42.0.0/16) is split into subnets of the node mask (default /24);
//! allocation hands out the next free subnet after the last one handed out, wrapping around
//! (so a released subnet is not immediately reused); a node that already has `spec.podCIDR`
//! keeps it; after a restart the set is rebuilt from the nodes' `spec.podCIDRs`, and the subnet
//! is released when its node is deleted.

use std::collections::BTreeSet;
use std::net::IpAddr;

use ipnet::IpNet;
use k8s_openapi::api::core::v1::Node;

/// Why a pod CIDR could not be handed out or recorded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IpamError {
    /// Retry after nodes are deleted, or widen `--cluster-cidr`.
    #[error("CIDR allocation failed; there are no remaining CIDRs left to allocate in the accepted range")]
    Full,
    #[error("invalid cluster CIDR {cidr:?} with node mask /{mask}: {reason}")]
    InvalidConfig {
        cidr: String,
        mask: u8,
        reason: String,
    },
    #[error("invalid pod CIDR {0:?}")]
    InvalidCidr(String),
    #[error("cidr {cidr} is out the range of cluster cidr {cluster}")]
    OutOfRange { cidr: String, cluster: String },
    #[error("cidr {0} is already allocated to another node")]
    Allocated(String),
}

/// The default `--cluster-cidr` and `--node-cidr-mask-size`.
pub const DEFAULT_CLUSTER_CIDR: &str = "10.42.0.0/16";
pub const DEFAULT_NODE_MASK: u8 = 24;

/// Pod CIDR allocator.
#[derive(Debug, Clone)]
pub struct NodeCidrAllocator {
    cluster: IpNet,
    mask: u8,
    count: u128,
    used: BTreeSet<u128>,
    next: u128,
}

fn to_u128(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v) => u128::from(u32::from(v)),
        IpAddr::V6(v) => u128::from(v),
    }
}

impl NodeCidrAllocator {
    /// An allocator for subnets of size `/mask` in `cluster_cidr`.
    pub fn new(cluster_cidr: &str, mask: u8) -> Result<Self, IpamError> {
        let invalid = |reason: &str| IpamError::InvalidConfig {
            cidr: cluster_cidr.into(),
            mask,
            reason: reason.into(),
        };
        let cluster: IpNet = cluster_cidr.parse().map_err(|_| invalid("not a CIDR"))?;
        let cluster = cluster.trunc();
        if mask < cluster.prefix_len() || mask > cluster.max_prefix_len() {
            return Err(invalid("the node mask must be within the cluster CIDR"));
        }
        // cidrset limits the number of subnet bits to 16 (65536 nodes).
        let bits = mask - cluster.prefix_len();
        if bits > 16 {
            return Err(invalid(
                "the node mask is more than 16 bits longer than the cluster CIDR's",
            ));
        }
        Ok(Self {
            cluster,
            mask,
            count: 1u128 << bits,
            used: BTreeSet::new(),
            next: 0,
        })
    }

    /// Rebuilds from the nodes' pod CIDRs; returns the conflicts found, by node name.
    pub fn from_nodes(
        cluster_cidr: &str,
        mask: u8,
        nodes: &[Node],
    ) -> Result<(Self, Vec<(String, IpamError)>), IpamError> {
        let mut a = Self::new(cluster_cidr, mask)?;
        let mut problems = Vec::new();
        for node in nodes {
            for cidr in node_pod_cidrs(node) {
                // Another family's CIDR belongs to another allocator.
                if cidr
                    .parse::<IpNet>()
                    .is_ok_and(|n| n.network().is_ipv4() != a.cluster.network().is_ipv4())
                {
                    continue;
                }
                if let Err(e) = a.occupy(cidr) {
                    problems.push((node.metadata.name.clone().unwrap_or_default(), e));
                }
            }
        }
        Ok((a, problems))
    }

    fn subnet(&self, index: u128) -> IpNet {
        let host_bits = u32::from(self.cluster.max_prefix_len() - self.mask);
        let v = to_u128(self.cluster.network()) + (index << host_bits);
        let addr = match self.cluster {
            IpNet::V4(_) => IpAddr::V4((v as u32).into()),
            IpNet::V6(_) => IpAddr::V6(v.into()),
        };
        IpNet::new(addr, self.mask).expect("mask validated in new")
    }

    fn index_of(&self, cidr: &str) -> Result<u128, IpamError> {
        let net: IpNet = cidr
            .parse()
            .map_err(|_| IpamError::InvalidCidr(cidr.into()))?;
        let out = || IpamError::OutOfRange {
            cidr: cidr.into(),
            cluster: self.cluster.to_string(),
        };
        if net.prefix_len() != self.mask || !self.cluster.contains(&net) || net.trunc() != net {
            return Err(out());
        }
        let host_bits = u32::from(self.cluster.max_prefix_len() - self.mask);
        Ok((to_u128(net.network()) - to_u128(self.cluster.network())) >> host_bits)
    }

    /// Records a subnet as used (a node's existing podCIDR).
    pub fn occupy(&mut self, cidr: &str) -> Result<(), IpamError> {
        let i = self.index_of(cidr)?;
        if !self.used.insert(i) {
            return Err(IpamError::Allocated(cidr.into()));
        }
        Ok(())
    }

    /// Hands out the next free subnet after the last one handed out.
    pub fn allocate_next(&mut self) -> Result<IpNet, IpamError> {
        for step in 0..self.count {
            let i = (self.next + step) % self.count;
            if self.used.insert(i) {
                self.next = (i + 1) % self.count;
                return Ok(self.subnet(i));
            }
        }
        Err(IpamError::Full)
    }

    /// Releases a subnet; returns whether it was in use.
    pub fn release(&mut self, cidr: &str) -> bool {
        self.index_of(cidr)
            .map(|i| self.used.remove(&i))
            .unwrap_or(false)
    }

    /// The pod CIDR to set on a node (`spec.podCIDR` and `spec.podCIDRs`), or `None` when the
    /// node already has one.
    pub fn pod_cidr_for(&mut self, node: &Node) -> Result<Option<String>, IpamError> {
        if !node_pod_cidrs(node).is_empty() {
            return Ok(None);
        }
        Ok(Some(self.allocate_next()?.to_string()))
    }

    /// Releases the subnets of a deleted node.
    pub fn release_node(&mut self, node: &Node) {
        for cidr in node_pod_cidrs(node) {
            self.release(cidr);
        }
    }
}

/// The node's pod CIDRs (`spec.podCIDRs`, else `spec.podCIDR`).
pub fn node_pod_cidrs(node: &Node) -> Vec<&str> {
    let Some(spec) = node.spec.as_ref() else {
        return Vec::new();
    };
    match spec.pod_cidrs.as_ref().filter(|v| !v.is_empty()) {
        Some(v) => v.iter().map(String::as_str).collect(),
        None => spec
            .pod_cidr
            .as_deref()
            .filter(|c| !c.is_empty())
            .into_iter()
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::NodeSpec;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn node(name: &str, cidr: Option<&str>) -> Node {
        Node {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..Default::default()
            },
            spec: Some(NodeSpec {
                pod_cidr: cidr.map(str::to_string),
                pod_cidrs: cidr.map(|c| vec![c.to_string()]),
                ..Default::default()
            }),
            status: None,
        }
    }

    #[test]
    fn allocates_24s_in_order_and_round_robin() {
        let mut a = NodeCidrAllocator::new(DEFAULT_CLUSTER_CIDR, DEFAULT_NODE_MASK).unwrap();
        assert_eq!(a.allocate_next().unwrap().to_string(), "10.42.0.0/24");
        assert_eq!(a.allocate_next().unwrap().to_string(), "10.42.1.0/24");
        assert!(a.release("10.42.0.0/24"));
        // Released subnets are reused only after wrapping around.
        assert_eq!(a.allocate_next().unwrap().to_string(), "10.42.2.0/24");
    }

    #[test]
    fn full_range() {
        let mut a = NodeCidrAllocator::new("10.42.0.0/23", 24).unwrap();
        a.allocate_next().unwrap();
        a.allocate_next().unwrap();
        assert_eq!(a.allocate_next(), Err(IpamError::Full));
        a.release("10.42.0.0/24");
        assert_eq!(a.allocate_next().unwrap().to_string(), "10.42.0.0/24");
    }

    #[test]
    fn rebuild_from_nodes_and_conflicts() {
        let nodes = [
            node("a", Some("10.42.0.0/24")),
            node("b", Some("10.42.0.0/24")),
            node("c", Some("10.99.0.0/24")),
            node("d", None),
        ];
        let (mut a, problems) = NodeCidrAllocator::from_nodes("10.42.0.0/16", 24, &nodes).unwrap();
        let who: Vec<_> = problems.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(who, ["b", "c"]);
        assert_eq!(
            problems[1].1.to_string(),
            "cidr 10.99.0.0/24 is out the range of cluster cidr 10.42.0.0/16"
        );
        assert_eq!(a.pod_cidr_for(&nodes[0]), Ok(None));
        assert_eq!(a.pod_cidr_for(&nodes[3]), Ok(Some("10.42.1.0/24".into())));
        a.release_node(&nodes[0]);
        assert!(a.occupy("10.42.0.0/24").is_ok());
    }

    #[test]
    fn invalid_config_and_cidrs() {
        assert!(NodeCidrAllocator::new("10.42.0.0/16", 8).is_err());
        assert!(NodeCidrAllocator::new("10.0.0.0/8", 28).is_err());
        assert!(NodeCidrAllocator::new("bogus", 24).is_err());
        let mut a = NodeCidrAllocator::new("10.42.0.0/16", 24).unwrap();
        assert!(matches!(
            a.occupy("10.42.0.0/25"),
            Err(IpamError::OutOfRange { .. })
        ));
        assert!(matches!(
            a.occupy("10.42.0.5/24"),
            Err(IpamError::OutOfRange { .. })
        ));
        assert!(matches!(a.occupy("x"), Err(IpamError::InvalidCidr(_))));
    }
}
