//! A CRI v1 client over a unix socket (`unix:///path`), for any CRI runtime: tonic with a
//! connector that dials the socket (the URI tonic wants is a placeholder), the generated
//! clients from `deckhand_runtime::cri::api`.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use deckhand_runtime::cri::api;
use deckhand_runtime::cri::api::image_service_client::ImageServiceClient;
use deckhand_runtime::cri::api::runtime_service_client::RuntimeServiceClient;
use hyper_util::rt::TokioIo;
use tonic::transport::{Channel, Endpoint, Uri};

pub use api::{ContainerState, PodSandboxState};

#[derive(Clone)]
pub struct CriClient {
    pub rt: RuntimeServiceClient<Channel>,
    pub img: ImageServiceClient<Channel>,
    pub endpoint: String,
}

/// `unix:///a/b` or a bare `/a/b` → the socket path.
pub fn socket_of(endpoint: &str) -> Result<PathBuf> {
    let p = endpoint.strip_prefix("unix://").unwrap_or(endpoint);
    if !p.starts_with('/') {
        bail!("CRI endpoint {endpoint:?} is not unix:///<absolute path>");
    }
    Ok(PathBuf::from(p))
}

impl CriClient {
    pub async fn connect(endpoint: &str) -> Result<CriClient> {
        let socket = socket_of(endpoint)?;
        let channel = Endpoint::try_from("http://[::]:50051")?
            .connect_with_connector(tower::service_fn(move |_: Uri| {
                let socket = socket.clone();
                async move {
                    Ok::<_, std::io::Error>(TokioIo::new(
                        tokio::net::UnixStream::connect(socket).await?,
                    ))
                }
            }))
            .await
            .with_context(|| format!("connect to CRI endpoint {endpoint}"))?;
        Ok(CriClient {
            // CRI messages (ListContainers with many pods, ExecSync output) can exceed tonic's
            // 4 MiB default; kubelet allows 16 MiB.
            rt: RuntimeServiceClient::new(channel.clone())
                .max_decoding_message_size(16 << 20)
                .max_encoding_message_size(16 << 20),
            img: ImageServiceClient::new(channel)
                .max_decoding_message_size(16 << 20)
                .max_encoding_message_size(16 << 20),
            endpoint: endpoint.to_string(),
        })
    }

    pub async fn version(&self) -> Result<api::VersionResponse> {
        Ok(self
            .rt
            .clone()
            .version(api::VersionRequest {
                version: "v1".into(),
            })
            .await?
            .into_inner())
    }

    pub async fn pull(&self, image: &str) -> Result<String> {
        Ok(self
            .img
            .clone()
            .pull_image(api::PullImageRequest {
                image: Some(image_spec(image)),
                ..Default::default()
            })
            .await
            .with_context(|| format!("PullImage {image}"))?
            .into_inner()
            .image_ref)
    }

    pub async fn image_status(&self, image: &str) -> Result<Option<api::Image>> {
        Ok(self
            .img
            .clone()
            .image_status(api::ImageStatusRequest {
                image: Some(image_spec(image)),
                verbose: false,
            })
            .await?
            .into_inner()
            .image)
    }

    pub async fn run_pod(&self, config: &api::PodSandboxConfig) -> Result<String> {
        Ok(self
            .rt
            .clone()
            .run_pod_sandbox(api::RunPodSandboxRequest {
                config: Some(config.clone()),
                runtime_handler: String::new(),
            })
            .await
            .context("RunPodSandbox")?
            .into_inner()
            .pod_sandbox_id)
    }

    pub async fn pod_status(&self, id: &str) -> Result<api::PodSandboxStatus, tonic::Status> {
        self.rt
            .clone()
            .pod_sandbox_status(api::PodSandboxStatusRequest {
                pod_sandbox_id: id.into(),
                verbose: false,
            })
            .await?
            .into_inner()
            .status
            .ok_or_else(|| tonic::Status::internal("PodSandboxStatus without status"))
    }

    pub async fn stop_pod(&self, id: &str) -> Result<(), tonic::Status> {
        self.rt
            .clone()
            .stop_pod_sandbox(api::StopPodSandboxRequest {
                pod_sandbox_id: id.into(),
            })
            .await?;
        Ok(())
    }

    pub async fn remove_pod(&self, id: &str) -> Result<(), tonic::Status> {
        self.rt
            .clone()
            .remove_pod_sandbox(api::RemovePodSandboxRequest {
                pod_sandbox_id: id.into(),
            })
            .await?;
        Ok(())
    }

    pub async fn list_pods(
        &self,
        filter: Option<api::PodSandboxFilter>,
    ) -> Result<Vec<api::PodSandbox>> {
        Ok(self
            .rt
            .clone()
            .list_pod_sandbox(api::ListPodSandboxRequest { filter })
            .await?
            .into_inner()
            .items)
    }

    pub async fn create_container(
        &self,
        pod: &str,
        config: &api::ContainerConfig,
        pod_config: &api::PodSandboxConfig,
    ) -> Result<String, tonic::Status> {
        Ok(self
            .rt
            .clone()
            .create_container(api::CreateContainerRequest {
                pod_sandbox_id: pod.into(),
                config: Some(config.clone()),
                sandbox_config: Some(pod_config.clone()),
            })
            .await?
            .into_inner()
            .container_id)
    }

    pub async fn start_container(&self, id: &str) -> Result<(), tonic::Status> {
        self.rt
            .clone()
            .start_container(api::StartContainerRequest {
                container_id: id.into(),
            })
            .await?;
        Ok(())
    }

    pub async fn stop_container(&self, id: &str, timeout: i64) -> Result<(), tonic::Status> {
        self.rt
            .clone()
            .stop_container(api::StopContainerRequest {
                container_id: id.into(),
                timeout,
            })
            .await?;
        Ok(())
    }

    pub async fn remove_container(&self, id: &str) -> Result<(), tonic::Status> {
        self.rt
            .clone()
            .remove_container(api::RemoveContainerRequest {
                container_id: id.into(),
            })
            .await?;
        Ok(())
    }

    pub async fn container_status(&self, id: &str) -> Result<api::ContainerStatus, tonic::Status> {
        self.rt
            .clone()
            .container_status(api::ContainerStatusRequest {
                container_id: id.into(),
                verbose: false,
            })
            .await?
            .into_inner()
            .status
            .ok_or_else(|| tonic::Status::internal("ContainerStatus without status"))
    }

    pub async fn list_containers(
        &self,
        filter: Option<api::ContainerFilter>,
    ) -> Result<Vec<api::Container>> {
        Ok(self
            .rt
            .clone()
            .list_containers(api::ListContainersRequest { filter })
            .await?
            .into_inner()
            .containers)
    }

    pub async fn exec_sync(
        &self,
        id: &str,
        cmd: &[&str],
        timeout: i64,
    ) -> Result<api::ExecSyncResponse, tonic::Status> {
        Ok(self
            .rt
            .clone()
            .exec_sync(api::ExecSyncRequest {
                container_id: id.into(),
                cmd: cmd.iter().map(|s| s.to_string()).collect(),
                timeout,
            })
            .await?
            .into_inner())
    }

    /// ExecSync that must exit 0; returns stdout.
    pub async fn exec_ok(&self, id: &str, cmd: &[&str]) -> Result<String> {
        let r = self
            .exec_sync(id, cmd, 30)
            .await
            .with_context(|| format!("ExecSync {cmd:?}"))?;
        if r.exit_code != 0 {
            bail!(
                "ExecSync {cmd:?} exited {}: stdout {:?} stderr {:?}",
                r.exit_code,
                String::from_utf8_lossy(&r.stdout),
                String::from_utf8_lossy(&r.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&r.stdout).into_owned())
    }

    /// Polls ContainerStatus until the state is `want`.
    pub async fn wait_container(
        &self,
        id: &str,
        want: ContainerState,
        limit: Duration,
    ) -> Result<api::ContainerStatus> {
        let deadline = Instant::now() + limit;
        loop {
            let st = self.container_status(id).await?;
            if st.state == want as i32 {
                return Ok(st);
            }
            if Instant::now() > deadline {
                bail!(
                    "container {id} did not reach {want:?} within {limit:?}; last status: {st:?}"
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

pub fn image_spec(image: &str) -> api::ImageSpec {
    api::ImageSpec {
        image: image.into(),
        ..Default::default()
    }
}
