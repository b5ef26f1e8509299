//! [`PodNetwork`] over the CNI caller of `deckhand-cni`: the runtime's networking hook, as
//! containerd's CRI plugin calls go-cni. The conflist comes from the conf dir (the agent
//! writes it from the node's pod CIDR; any CNI plugins work, Debian's reference ones included).

use std::path::Path;

use deckhand_cni::{Attachment, CniCaller, PortMapping, Protocol};

use super::api;
use super::network::{PodAddresses, PodNetwork};

pub struct CniNetwork {
    caller: CniCaller,
}

impl CniNetwork {
    pub fn new(caller: CniCaller) -> CniNetwork {
        CniNetwork { caller }
    }
}

fn attachment(sandbox_id: &str, netns: &Path, config: &api::PodSandboxConfig) -> Attachment {
    let meta = config.metadata.clone().unwrap_or_default();
    Attachment {
        container_id: sandbox_id.to_owned(),
        netns: netns.to_owned(),
        pod_namespace: meta.namespace,
        pod_name: meta.name,
        pod_uid: meta.uid,
        port_mappings: config
            .port_mappings
            .iter()
            .filter(|p| p.host_port > 0)
            .map(|p| PortMapping {
                host_port: p.host_port as u16,
                container_port: p.container_port as u16,
                protocol: match p.protocol {
                    1 => Protocol::Udp,
                    2 => Protocol::Sctp,
                    _ => Protocol::Tcp,
                },
                host_ip: p.host_ip.parse().ok(),
            })
            .collect(),
        ..Default::default()
    }
}

#[tonic::async_trait]
impl PodNetwork for CniNetwork {
    async fn status(&self) -> Result<(), String> {
        self.caller.status().await.map_err(|e| e.to_string())
    }

    async fn setup(
        &self,
        sandbox_id: &str,
        netns: &Path,
        config: &api::PodSandboxConfig,
    ) -> Result<PodAddresses, String> {
        let att = attachment(sandbox_id, netns, config);
        let result = self.caller.add(&att).await.map_err(|e| e.to_string())?;
        let ips = result.pod_ips(&att.ifname);
        let primary = ips.primary().map(|a| a.to_string()).unwrap_or_default();
        let additional = [ips.ipv4, ips.ipv6]
            .into_iter()
            .flatten()
            .map(|n| n.addr.to_string())
            .filter(|a| *a != primary)
            .collect();
        Ok(PodAddresses {
            ip: primary,
            additional_ips: additional,
        })
    }

    async fn teardown(
        &self,
        sandbox_id: &str,
        netns: &Path,
        config: &api::PodSandboxConfig,
    ) -> Result<(), String> {
        self.caller
            .del(&attachment(sandbox_id, netns, config))
            .await
            .map_err(|e| e.to_string())
    }
}
