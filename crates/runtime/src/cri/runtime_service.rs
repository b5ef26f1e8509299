//! CRI RuntimeService. Version and Status are real; the sandbox and container methods answer
//! `UNIMPLEMENTED` (with the method's name) until deckhand's execution layer is wired in, so a
//! client learns exactly what is missing instead of getting a fake success.

use super::api;
use super::api::runtime_service_server::RuntimeService as RuntimeServiceApi;
use tonic::{Request, Response, Status};

/// CRI API version this server speaks.
const API_VERSION: &str = "v1";
/// Version string CRI clients put in `VersionRequest`, answered as is by convention.
const KUBE_API_VERSION: &str = "0.1.0";
const RUNTIME_NAME: &str = "deckhand";

/// The RuntimeService (Version and Status for now).
#[derive(Debug, Clone, Default)]
pub struct RuntimeService {}

impl RuntimeService {
    pub fn new() -> RuntimeService {
        RuntimeService {}
    }
}

/// Kubelet's condition type names (`RuntimeReady`, `NetworkReady`).
const RUNTIME_READY: &str = "RuntimeReady";
const NETWORK_READY: &str = "NetworkReady";

fn unimplemented(method: &str) -> Status {
    Status::unimplemented(format!(
        "{method} is not implemented yet in deckhand's runtime (only images, Version and Status \
         are served so far); use containerd as the container runtime meanwhile"
    ))
}

/// Emits the trait impl: the methods written out in `{ ... }`, plus one answering
/// [`unimplemented`] per `name => Request, Response`. The whole impl comes from the macro so that
/// `async_trait` sees the generated methods already expanded.
macro_rules! runtime_service_impl {
    ({ $($implemented:tt)* } $($method:ident => $req:ident, $resp:ident;)*) => {
        #[tonic::async_trait]
        impl RuntimeServiceApi for RuntimeService {
            $($implemented)*
            $(
                async fn $method(
                    &self,
                    _request: Request<api::$req>,
                ) -> Result<Response<api::$resp>, Status> {
                    Err(unimplemented(stringify!($req).trim_end_matches("Request")))
                }
            )*
        }
    };
}

runtime_service_impl! {
{
    async fn version(
        &self,
        _request: Request<api::VersionRequest>,
    ) -> Result<Response<api::VersionResponse>, Status> {
        Ok(Response::new(api::VersionResponse {
            version: KUBE_API_VERSION.to_string(),
            runtime_name: RUNTIME_NAME.to_string(),
            runtime_version: env!("CARGO_PKG_VERSION").to_string(),
            runtime_api_version: API_VERSION.to_string(),
        }))
    }

    async fn status(
        &self,
        _request: Request<api::StatusRequest>,
    ) -> Result<Response<api::StatusResponse>, Status> {
        let conditions = vec![
            api::RuntimeCondition {
                r#type: RUNTIME_READY.to_string(),
                status: true,
                reason: String::new(),
                message: String::new(),
            },
            // Honest: no CNI caller exists yet, so no pod could get a network.
            api::RuntimeCondition {
                r#type: NETWORK_READY.to_string(),
                status: false,
                reason: "NetworkPluginNotReady".to_string(),
                message: "Network plugin returns error: deckhand's runtime has no CNI support yet, \
                          pod networking is not available"
                    .to_string(),
            },
        ];
        Ok(Response::new(api::StatusResponse {
            status: Some(api::RuntimeStatus { conditions }),
            ..Default::default()
        }))
    }

    type GetContainerEventsStream = tokio_stream::Empty<Result<api::ContainerEventResponse, Status>>;

    async fn get_container_events(
        &self,
        _request: Request<api::GetEventsRequest>,
    ) -> Result<Response<Self::GetContainerEventsStream>, Status> {
        Err(unimplemented("GetContainerEvents"))
    }
}
        run_pod_sandbox => RunPodSandboxRequest, RunPodSandboxResponse;
        stop_pod_sandbox => StopPodSandboxRequest, StopPodSandboxResponse;
        remove_pod_sandbox => RemovePodSandboxRequest, RemovePodSandboxResponse;
        pod_sandbox_status => PodSandboxStatusRequest, PodSandboxStatusResponse;
        list_pod_sandbox => ListPodSandboxRequest, ListPodSandboxResponse;
        create_container => CreateContainerRequest, CreateContainerResponse;
        start_container => StartContainerRequest, StartContainerResponse;
        stop_container => StopContainerRequest, StopContainerResponse;
        remove_container => RemoveContainerRequest, RemoveContainerResponse;
        list_containers => ListContainersRequest, ListContainersResponse;
        container_status => ContainerStatusRequest, ContainerStatusResponse;
        update_container_resources => UpdateContainerResourcesRequest, UpdateContainerResourcesResponse;
        reopen_container_log => ReopenContainerLogRequest, ReopenContainerLogResponse;
        exec_sync => ExecSyncRequest, ExecSyncResponse;
        exec => ExecRequest, ExecResponse;
        attach => AttachRequest, AttachResponse;
        port_forward => PortForwardRequest, PortForwardResponse;
        container_stats => ContainerStatsRequest, ContainerStatsResponse;
        list_container_stats => ListContainerStatsRequest, ListContainerStatsResponse;
        pod_sandbox_stats => PodSandboxStatsRequest, PodSandboxStatsResponse;
        list_pod_sandbox_stats => ListPodSandboxStatsRequest, ListPodSandboxStatsResponse;
        update_runtime_config => UpdateRuntimeConfigRequest, UpdateRuntimeConfigResponse;
        checkpoint_container => CheckpointContainerRequest, CheckpointContainerResponse;
        list_metric_descriptors => ListMetricDescriptorsRequest, ListMetricDescriptorsResponse;
        list_pod_sandbox_metrics => ListPodSandboxMetricsRequest, ListPodSandboxMetricsResponse;
        runtime_config => RuntimeConfigRequest, RuntimeConfigResponse;
}
