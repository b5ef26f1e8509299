//! The result of an ADD, read from the JSON the last plugin of the chain prints. The 0.3.x/0.4.0
//! and 1.x formats differ only in details (0.x IPs carry `"version"`, 1.x dropped it), so one
//! lenient reader serves all supported versions; the raw JSON is kept verbatim because it is
//! what goes back to the plugins as `prevResult` on DEL and CHECK.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

use super::config::CniVersion;

#[derive(Debug, thiserror::Error)]
pub enum ResultError {
    #[error("not a JSON CNI result: {0}")]
    Json(#[from] serde_json::Error),
    #[error(
        "result cniVersion {0:?} is not one we read (0.3.0 and later); the plugin must answer \
         in the config's cniVersion"
    )]
    Version(String),
    #[error("ips[{index}] names interface {interface}, but the result has {count} interfaces")]
    InterfaceIndex {
        index: usize,
        interface: usize,
        count: usize,
    },
}

/// An address with its prefix length, as CNI writes it ("10.88.0.5/16").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IpNet {
    pub addr: IpAddr,
    pub prefix_len: u8,
}

impl IpNet {
    /// Whether `ip` is inside this network.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix_len))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix_len))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl fmt::Display for IpNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix_len)
    }
}

impl FromStr for IpNet {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (addr, len) = s
            .split_once('/')
            .ok_or_else(|| format!("{s:?} is not in CIDR form (address/prefix)"))?;
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| format!("{s:?}: {addr:?} is not an IP address"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix_len: u8 = len
            .parse()
            .ok()
            .filter(|l| *l <= max)
            .ok_or_else(|| format!("{s:?}: prefix length {len:?} is not 0..={max}"))?;
        Ok(IpNet { addr, prefix_len })
    }
}

impl Serialize for IpNet {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for IpNet {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Interface {
    pub name: String,
    #[serde(default, deserialize_with = "empty_as_none")]
    pub mac: Option<String>,
    #[serde(default)]
    pub mtu: Option<u32>,
    /// The netns path for interfaces inside the container; absent for host-side ones.
    #[serde(default, deserialize_with = "empty_as_none")]
    pub sandbox: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct IpConfig {
    pub address: IpNet,
    #[serde(default, deserialize_with = "empty_as_none_parse")]
    pub gateway: Option<IpAddr>,
    /// Index into [`AddResult::interfaces`].
    #[serde(default)]
    pub interface: Option<usize>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Route {
    pub dst: IpNet,
    #[serde(default, deserialize_with = "empty_as_none_parse")]
    pub gw: Option<IpAddr>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct Dns {
    #[serde(default)]
    pub nameservers: Vec<String>,
    #[serde(default)]
    pub domain: Option<String>,
    #[serde(default)]
    pub search: Vec<String>,
    #[serde(default)]
    pub options: Vec<String>,
}

/// What an ADD did to the pod.
#[derive(Debug, Clone, PartialEq)]
pub struct AddResult {
    /// The version the result is written in (the network's cniVersion).
    pub cni_version: String,
    pub interfaces: Vec<Interface>,
    pub ips: Vec<IpConfig>,
    pub routes: Vec<Route>,
    pub dns: Dns,
    /// The result exactly as the last plugin printed it.
    pub raw: Value,
}

/// The pod's addresses on one interface, first of each family.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PodIps {
    pub ipv4: Option<IpNet>,
    pub ipv6: Option<IpNet>,
}

impl PodIps {
    /// The address Kubernetes reports first (`status.podIP`): IPv4 when there is one, as
    /// containerd orders them.
    pub fn primary(&self) -> Option<IpAddr> {
        self.ipv4.or(self.ipv6).map(|n| n.addr)
    }
}

#[derive(Deserialize)]
struct Wire {
    #[serde(rename = "cniVersion")]
    cni_version: String,
    #[serde(default)]
    interfaces: Vec<Interface>,
    #[serde(default)]
    ips: Vec<IpConfig>,
    #[serde(default)]
    routes: Vec<Route>,
    #[serde(default)]
    dns: Dns,
}

impl AddResult {
    pub fn from_json(bytes: &[u8]) -> Result<AddResult, ResultError> {
        let raw: Value = serde_json::from_slice(bytes)?;
        Self::from_value(raw)
    }

    pub fn from_value(raw: Value) -> Result<AddResult, ResultError> {
        let wire: Wire = serde_json::from_value(raw.clone())?;
        // 0.1.0/0.2.0 results ("ip4"/"ip6") never come from a list we accept.
        if CniVersion::parse(&wire.cni_version).is_none() {
            return Err(ResultError::Version(wire.cni_version));
        }
        for (index, ip) in wire.ips.iter().enumerate() {
            if let Some(interface) = ip.interface {
                if interface >= wire.interfaces.len() {
                    return Err(ResultError::InterfaceIndex {
                        index,
                        interface,
                        count: wire.interfaces.len(),
                    });
                }
            }
        }
        Ok(AddResult {
            cni_version: wire.cni_version,
            interfaces: wire.interfaces,
            ips: wire.ips,
            routes: wire.routes,
            dns: wire.dns,
            raw,
        })
    }

    /// The pod's IPv4 and IPv6 address on `ifname` inside the sandbox ("eth0" normally).
    ///
    /// An IP belongs to the pod when its `interface` index names a sandbox interface called
    /// `ifname` (as go-cni decides). Plugins that give no interface index at all (allowed by the
    /// spec) get the benefit of the doubt: then every IP counts.
    pub fn pod_ips(&self, ifname: &str) -> PodIps {
        let any_indexed = self.ips.iter().any(|ip| ip.interface.is_some());
        let mut out = PodIps::default();
        for ip in &self.ips {
            let ours = match ip.interface {
                Some(i) => self
                    .interfaces
                    .get(i)
                    .is_some_and(|iface| iface.name == ifname && iface.sandbox.is_some()),
                None => !any_indexed,
            };
            if !ours {
                continue;
            }
            let slot = if ip.address.addr.is_ipv4() {
                &mut out.ipv4
            } else {
                &mut out.ipv6
            };
            slot.get_or_insert(ip.address);
        }
        out
    }
}

fn empty_as_none<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let s: Option<String> = Option::deserialize(d)?;
    Ok(s.filter(|s| !s.is_empty()))
}

fn empty_as_none_parse<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: FromStr,
    T::Err: fmt::Display,
{
    match empty_as_none(d)? {
        None => Ok(None),
        Some(s) => s.parse().map(Some).map_err(serde::de::Error::custom),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_0_4_0_bridge_result() {
        // As Debian's bridge + host-local print it for cniVersion 0.4.0.
        let json = br#"{
            "cniVersion": "0.4.0",
            "interfaces": [
                {"name": "cni0", "mac": "6e:1a:2b:3c:4d:5e"},
                {"name": "veth1234", "mac": "aa:bb:cc:dd:ee:ff"},
                {"name": "eth0", "mac": "0a:58:0a:58:00:05", "sandbox": "/run/netns/p1"}
            ],
            "ips": [
                {"version": "4", "interface": 2, "address": "10.88.0.5/16", "gateway": "10.88.0.1"},
                {"version": "6", "interface": 2, "address": "fd00::5/64", "gateway": "fd00::1"}
            ],
            "routes": [{"dst": "0.0.0.0/0"}, {"dst": "::/0", "gw": "fd00::1"}],
            "dns": {"nameservers": ["10.96.0.10"], "search": ["svc.cluster.local"]}
        }"#;
        let r = AddResult::from_json(json).unwrap();
        assert_eq!(r.cni_version, "0.4.0");
        assert_eq!(r.interfaces.len(), 3);
        assert_eq!(r.interfaces[0].sandbox, None);
        let ips = r.pod_ips("eth0");
        assert_eq!(ips.ipv4.unwrap().to_string(), "10.88.0.5/16");
        assert_eq!(ips.ipv6.unwrap().to_string(), "fd00::5/64");
        assert_eq!(ips.primary(), Some("10.88.0.5".parse().unwrap()));
        assert_eq!(r.ips[0].gateway, Some("10.88.0.1".parse().unwrap()));
        assert_eq!(r.routes[0].dst.to_string(), "0.0.0.0/0");
        assert_eq!(r.routes[0].gw, None);
        assert_eq!(r.routes[1].gw, Some("fd00::1".parse().unwrap()));
        assert_eq!(r.dns.nameservers, vec!["10.96.0.10"]);
        assert!(r.pod_ips("eth1").primary().is_none());
    }

    #[test]
    fn parses_a_1_0_0_result_and_ignores_host_side_ips() {
        let json = br#"{
            "cniVersion": "1.0.0",
            "interfaces": [
                {"name": "br0", "mac": ""},
                {"name": "eth0", "sandbox": "/run/netns/p1", "mtu": 1450}
            ],
            "ips": [
                {"interface": 0, "address": "10.1.0.1/24"},
                {"interface": 1, "address": "10.1.0.7/24", "gateway": "10.1.0.1"}
            ],
            "dns": {}
        }"#;
        let r = AddResult::from_json(json).unwrap();
        assert_eq!(r.interfaces[0].mac, None);
        assert_eq!(r.interfaces[1].mtu, Some(1450));
        let ips = r.pod_ips("eth0");
        assert_eq!(
            ips.ipv4.unwrap().addr,
            "10.1.0.7".parse::<IpAddr>().unwrap()
        );
        assert_eq!(ips.ipv6, None);
        assert!(r.routes.is_empty());
    }

    #[test]
    fn ips_without_interface_index_count_for_the_pod() {
        // host-local alone prints IPs without an interface.
        let r = AddResult::from_json(
            br#"{"cniVersion":"0.4.0","ips":[{"version":"4","address":"10.2.0.3/24"}]}"#,
        )
        .unwrap();
        assert_eq!(
            r.pod_ips("eth0").primary(),
            Some("10.2.0.3".parse().unwrap())
        );
    }

    #[test]
    fn rejects_legacy_and_inconsistent_results() {
        let legacy = br#"{"cniVersion":"0.2.0","ip4":{"ip":"10.0.0.2/24"}}"#;
        assert!(matches!(
            AddResult::from_json(legacy),
            Err(ResultError::Version(v)) if v == "0.2.0"
        ));
        let bad_index =
            br#"{"cniVersion":"1.0.0","interfaces":[],"ips":[{"interface":0,"address":"10.0.0.2/24"}]}"#;
        assert!(matches!(
            AddResult::from_json(bad_index),
            Err(ResultError::InterfaceIndex { .. })
        ));
        let bad_cidr = br#"{"cniVersion":"1.0.0","ips":[{"address":"10.0.0.2"}]}"#;
        assert!(AddResult::from_json(bad_cidr).is_err());
    }

    #[test]
    fn ipnet_contains() {
        let net: IpNet = "10.88.0.0/16".parse().unwrap();
        assert!(net.contains("10.88.200.1".parse().unwrap()));
        assert!(!net.contains("10.89.0.1".parse().unwrap()));
        let all: IpNet = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains("1.2.3.4".parse().unwrap()));
        let v6: IpNet = "fd00::/64".parse().unwrap();
        assert!(v6.contains("fd00::9".parse().unwrap()));
        assert!(!v6.contains("10.88.0.1".parse().unwrap()));
        assert!("10.0.0.0/33".parse::<IpNet>().is_err());
    }
}
