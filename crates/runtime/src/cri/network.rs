//! The seam between the runtime and pod networking: RunPodSandbox asks a [`PodNetwork`] to
//! attach the pod's network namespace, StopPodSandbox to detach it. The CNI implementation
//! lives in `deckhand-cni`; tests may put anything behind this trait.

use std::path::Path;

use super::api;

/// What a network attachment gave the pod.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodAddresses {
    pub ip: String,
    pub additional_ips: Vec<String>,
}

#[tonic::async_trait]
pub trait PodNetwork: Send + Sync + 'static {
    /// `Err(message)` when pods cannot get a network now (reported as NetworkReady=false).
    async fn status(&self) -> Result<(), String>;
    async fn setup(
        &self,
        sandbox_id: &str,
        netns: &Path,
        config: &api::PodSandboxConfig,
    ) -> Result<PodAddresses, String>;
    /// Idempotent: detaching a pod that is not attached (or whose netns is gone) succeeds.
    async fn teardown(
        &self,
        sandbox_id: &str,
        netns: &Path,
        config: &api::PodSandboxConfig,
    ) -> Result<(), String>;
}
