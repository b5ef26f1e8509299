//! The CRI ImageService and RuntimeService Version/Status end to end: a real `docker-registry`
//! holding a busybox image built here and pushed with `skopeo`, the CRI server on a unix socket
//! in a temp dir, and a tonic client speaking CRI v1 over that socket.
//!
//! Needs root (pull unpacks layers into overlay snapshots, which keeps file owners), and
//! `docker-registry`, `skopeo` and `busybox-static` (`make deps` installs them).

use deckhand_runtime::cri::api;
use deckhand_runtime::cri::api::image_service_client::ImageServiceClient;
use deckhand_runtime::cri::api::runtime_service_client::RuntimeServiceClient;
use deckhand_runtime::cri::{CriServer, ServerConfig};
use flate2::write::GzEncoder;
use hyper_util::rt::TokioIo;
use sha2::{Digest as _, Sha256};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use tonic::transport::{Channel, Endpoint, Uri};
use tonic::Code;

fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "cri_images tests must run as root: pulling unpacks layers into overlay snapshots \
         (run `make test` as root, or `sudo -E cargo test -p deckhand-runtime --test cri_images`)"
    );
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn sha256(data: &[u8]) -> String {
    format!("sha256:{}", hex(&Sha256::digest(data)))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A real distribution registry on a loopback port, killed on drop.
struct Registry {
    child: Child,
    host: String,
    _dir: tempfile::TempDir,
}

impl Registry {
    async fn start() -> Registry {
        Registry::start_with(None).await
    }

    /// With `Some((user, password))` the registry requires HTTP basic auth (htpasswd).
    async fn start_with(basic_auth: Option<(&str, &str)>) -> Registry {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let mut config = format!(
            "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n",
            dir.path().join("data").display()
        );
        if let Some((user, password)) = basic_auth {
            let out = Command::new("htpasswd")
                .args(["-Bbn", user, password])
                .output()
                .expect("htpasswd is installed (apt install apache2-utils)");
            assert!(out.status.success(), "htpasswd failed");
            let path = dir.path().join("htpasswd");
            std::fs::write(&path, &out.stdout).unwrap();
            config.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: r\n    path: {}\n",
                path.display()
            ));
        }
        let config_path = dir.path().join("config.yml");
        std::fs::write(&config_path, config).unwrap();
        let log = std::fs::File::create(dir.path().join("registry.log")).unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config_path)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("docker-registry is installed (apt install docker-registry)");
        let registry = Registry {
            child,
            host: format!("127.0.0.1:{port}"),
            _dir: dir,
        };
        for _ in 0..400 {
            if tokio::net::TcpStream::connect(&registry.host).await.is_ok() {
                return registry;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("docker-registry did not come up on {}", registry.host);
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What the test image looks like once pushed.
struct PushedImage {
    /// Config digest: the image ID.
    id: String,
    /// Manifest digest as the registry stores it.
    manifest_digest: String,
    /// Config plus compressed layer sizes (what the store reports).
    size: u64,
}

fn oci_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// Write an OCI layout with one gzip layer holding `/bin/busybox` (Debian's busybox-static)
/// and `/bin/sh` → busybox, tagged `1`.
fn write_oci_layout(dir: &Path) -> (String, u64) {
    let busybox =
        std::fs::read("/bin/busybox").expect("/bin/busybox exists (apt install busybox-static)");
    let mut tar = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(tar::EntryType::Directory);
    header.set_mode(0o755);
    header.set_size(0);
    tar.append_data(&mut header, "bin/", std::io::empty())
        .unwrap();
    let mut header = tar::Header::new_gnu();
    header.set_mode(0o755);
    header.set_size(busybox.len() as u64);
    tar.append_data(&mut header, "bin/busybox", busybox.as_slice())
        .unwrap();
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(tar::EntryType::Symlink);
    header.set_size(0);
    header.set_mode(0o777);
    tar.append_link(&mut header, "bin/sh", "busybox").unwrap();
    let layer_tar = tar.into_inner().unwrap();
    let mut gz = GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&layer_tar).unwrap();
    let layer = gz.finish().unwrap();

    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": oci_arch(),
        "os": "linux",
        "config": {"Cmd": ["/bin/sh"], "User": "1000:1000", "Env": ["PATH=/bin"]},
        "rootfs": {"type": "layers", "diff_ids": [sha256(&layer_tar)]},
    }))
    .unwrap();
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": sha256(&config),
            "size": config.len(),
        },
        "layers": [{
            "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
            "digest": sha256(&layer),
            "size": layer.len(),
        }],
    }))
    .unwrap();
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": sha256(&manifest),
            "size": manifest.len(),
            "annotations": {"org.opencontainers.image.ref.name": "1"},
        }],
    }))
    .unwrap();
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    for blob in [&layer, &config, &manifest] {
        let digest = sha256(blob);
        std::fs::write(blobs.join(digest.trim_start_matches("sha256:")), blob).unwrap();
    }
    std::fs::write(dir.join("index.json"), index).unwrap();
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    (sha256(&config), (config.len() + layer.len()) as u64)
}

/// Build the image and push it as `<registry>/bb:<tag>` for each tag, with skopeo.
fn push_busybox(registry: &Registry, tags: &[&str]) -> PushedImage {
    push_busybox_as(registry, None, tags)
}

fn push_busybox_as(registry: &Registry, creds: Option<&str>, tags: &[&str]) -> PushedImage {
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("layout");
    let (id, size) = write_oci_layout(&layout);
    let digest_file = dir.path().join("digest");
    for tag in tags {
        skopeo_push(registry, creds, &layout, tag, &digest_file);
    }
    let manifest_digest = std::fs::read_to_string(&digest_file)
        .unwrap()
        .trim()
        .to_string();
    PushedImage {
        id,
        manifest_digest,
        size,
    }
}

fn skopeo_push(
    registry: &Registry,
    creds: Option<&str>,
    layout: &Path,
    tag: &str,
    digest_file: &Path,
) {
    let out = Command::new("skopeo")
        .arg("--insecure-policy")
        .arg("copy")
        .arg("--dest-tls-verify=false")
        .args(creds.map(|c| format!("--dest-creds={c}")))
        .arg("--digestfile")
        .arg(digest_file)
        .arg(format!("oci:{}:1", layout.display()))
        .arg(format!("docker://{}/bb:{tag}", registry.host))
        .output()
        .expect("skopeo is installed (apt install skopeo)");
    assert!(
        out.status.success(),
        "skopeo copy failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The CRI server in-process on a socket in a temp dir; stopped (socket removed) on drop.
struct Runtime {
    socket: PathBuf,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
    dir: tempfile::TempDir,
}

impl Runtime {
    async fn start() -> Runtime {
        let dir = tempfile::tempdir().unwrap();
        let server = CriServer::bind(ServerConfig::new(
            dir.path().join("data"),
            dir.path().join("run/cri.sock"),
        ))
        .await
        .unwrap();
        let socket = server.socket().to_path_buf();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            server
                .serve(async {
                    let _ = stopped.await;
                })
                .await
                .unwrap();
        });
        Runtime {
            socket,
            stop: Some(stop),
            task: Some(task),
            dir,
        }
    }

    async fn channel(&self) -> Channel {
        let socket = self.socket.clone();
        // The URI is required by the builder but unused: the connector dials the socket.
        Endpoint::try_from("http://[::]:50051")
            .unwrap()
            .connect_with_connector(tower::service_fn(move |_: Uri| {
                let socket = socket.clone();
                async move {
                    Ok::<_, std::io::Error>(TokioIo::new(
                        tokio::net::UnixStream::connect(socket).await?,
                    ))
                }
            }))
            .await
            .unwrap()
    }

    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        self.task.take().unwrap().await.unwrap();
        assert!(!self.socket.exists(), "socket removed after shutdown");
    }
}

fn spec(image: &str) -> Option<api::ImageSpec> {
    Some(api::ImageSpec {
        image: image.to_string(),
        ..Default::default()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn version_and_status() {
    let runtime = Runtime::start().await;
    let mut client = RuntimeServiceClient::new(runtime.channel().await);
    let version = client
        .version(api::VersionRequest {
            version: "v1".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(version.version, "0.1.0");
    assert_eq!(version.runtime_name, "deckhand");
    assert_eq!(version.runtime_version, env!("CARGO_PKG_VERSION"));
    assert_eq!(version.runtime_api_version, "v1");

    let status = client
        .status(api::StatusRequest { verbose: false })
        .await
        .unwrap()
        .into_inner();
    let conditions = status.status.unwrap().conditions;
    let runtime_ready = conditions
        .iter()
        .find(|c| c.r#type == "RuntimeReady")
        .unwrap();
    assert!(runtime_ready.status);
    let network_ready = conditions
        .iter()
        .find(|c| c.r#type == "NetworkReady")
        .unwrap();
    assert!(!network_ready.status);
    assert_eq!(network_ready.reason, "NetworkPluginNotReady");
    assert!(!network_ready.message.is_empty());

    // An empty runtime lists nothing (and does not refuse).
    let listed = client
        .list_containers(api::ListContainersRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(listed.containers.is_empty());
    // Pod networking needs a CNI config; without one only host-network pods run, and the
    // refusal says what to configure.
    let err = client
        .run_pod_sandbox(api::RunPodSandboxRequest {
            config: Some(api::PodSandboxConfig {
                metadata: Some(api::PodSandboxMetadata {
                    name: "p".into(),
                    uid: "u".into(),
                    namespace: "default".into(),
                    attempt: 0,
                }),
                ..Default::default()
            }),
            runtime_handler: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(err.message().contains("cni"), "{}", err.message());
    drop(client);
    runtime.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn image_lifecycle_over_cri() {
    require_root();
    let registry = Registry::start().await;
    let pushed = push_busybox(&registry, &["1", "2"]);
    let runtime = Runtime::start().await;
    let mut images = ImageServiceClient::new(runtime.channel().await);
    let name = format!("{}/bb:1", registry.host);

    // Absent image: not an error, no image.
    let status = images
        .image_status(api::ImageStatusRequest {
            image: spec(&name),
            verbose: false,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(status.image.is_none());

    // Pull answers the image ID, as containerd does.
    let pulled = images
        .pull_image(api::PullImageRequest {
            image: spec(&name),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(pulled.image_ref, pushed.id);

    let list = images
        .list_images(api::ListImagesRequest::default())
        .await
        .unwrap()
        .into_inner()
        .images;
    assert_eq!(list.len(), 1, "{list:?}");
    let image = &list[0];
    assert_eq!(image.id, pushed.id);
    assert_eq!(image.repo_tags, vec![name.clone()]);
    assert_eq!(
        image.repo_digests,
        vec![format!("{}/bb@{}", registry.host, pushed.manifest_digest)]
    );
    assert_eq!(image.size, pushed.size);
    assert_eq!(image.uid.as_ref().map(|u| u.value), Some(1000));
    assert_eq!(image.username, "");
    assert!(!image.pinned);

    // Filtered list: by name, and by a name that is absent.
    let filtered = images
        .list_images(api::ListImagesRequest {
            filter: Some(api::ImageFilter { image: spec(&name) }),
        })
        .await
        .unwrap()
        .into_inner()
        .images;
    assert_eq!(filtered.len(), 1);
    let none = images
        .list_images(api::ListImagesRequest {
            filter: Some(api::ImageFilter {
                image: spec(&format!("{}/other:1", registry.host)),
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .images;
    assert!(none.is_empty());

    // Status by name (verbose carries the config) and by ID.
    let by_name = images
        .image_status(api::ImageStatusRequest {
            image: spec(&name),
            verbose: true,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(by_name.image.as_ref().unwrap().id, pushed.id);
    let info: serde_json::Value = serde_json::from_str(&by_name.info["info"]).unwrap();
    assert_eq!(info["imageSpec"]["config"]["User"], "1000:1000");
    let by_id = images
        .image_status(api::ImageStatusRequest {
            image: spec(&pushed.id),
            verbose: false,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(by_id.image.unwrap().repo_tags, vec![name.clone()]);

    // Errors a person can act on.
    let missing = format!("{}/bb:nope", registry.host);
    let err = images
        .pull_image(api::PullImageRequest {
            image: spec(&missing),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    assert!(err.message().contains(&missing), "{}", err.message());
    let err = images
        .pull_image(api::PullImageRequest {
            image: spec("127.0.0.1:1/UPPER/Case::x"),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(err.message().contains("UPPER/Case::x"), "{}", err.message());

    let fs = images
        .image_fs_info(api::ImageFsInfoRequest {})
        .await
        .unwrap()
        .into_inner();
    let usage = &fs.image_filesystems[0];
    let used = usage.used_bytes.as_ref().unwrap().value;
    assert!(
        used >= pushed.size,
        "used {used} < image size {}",
        pushed.size
    );
    assert!(usage.inodes_used.as_ref().unwrap().value > 0);
    assert!(usage.timestamp > 0);
    let mountpoint = &usage.fs_id.as_ref().unwrap().mountpoint;
    assert!(
        runtime
            .dir
            .path()
            .canonicalize()
            .unwrap()
            .starts_with(mountpoint),
        "mountpoint {mountpoint}"
    );

    // A second tag of the same image: one image with both tags.
    let second = format!("{}/bb:2", registry.host);
    images
        .pull_image(api::PullImageRequest {
            image: spec(&second),
            ..Default::default()
        })
        .await
        .unwrap();
    let list = images
        .list_images(api::ListImagesRequest::default())
        .await
        .unwrap()
        .into_inner()
        .images;
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(list[0].repo_tags, vec![name.clone(), second.clone()]);
    assert_eq!(list[0].repo_digests.len(), 1, "{:?}", list[0].repo_digests);

    // Remove by one name: the whole image goes (as containerd), its content pruned;
    // removing again is still success.
    images
        .remove_image(api::RemoveImageRequest { image: spec(&name) })
        .await
        .unwrap();
    let status = images
        .image_status(api::ImageStatusRequest {
            image: spec(&name),
            verbose: false,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(status.image.is_none());
    let status = images
        .image_status(api::ImageStatusRequest {
            image: spec(&second),
            verbose: false,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(status.image.is_none(), "{status:?}");
    assert!(images
        .list_images(api::ListImagesRequest::default())
        .await
        .unwrap()
        .into_inner()
        .images
        .is_empty());
    let blobs = runtime.dir.path().join("data/images/blobs");
    let left: Vec<_> = walk_files(&blobs);
    assert!(left.is_empty(), "blobs left after remove: {left:?}");
    images
        .remove_image(api::RemoveImageRequest { image: spec(&name) })
        .await
        .unwrap();
    images
        .remove_image(api::RemoveImageRequest {
            image: spec(&pushed.id),
        })
        .await
        .unwrap();

    drop(images);
    runtime.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_with_credentials_and_registry_errors() {
    require_root();
    let registry = Registry::start_with(Some(("alice", "s3cret"))).await;
    let pushed = push_busybox_as(&registry, Some("alice:s3cret"), &["1"]);
    let runtime = Runtime::start().await;
    let mut images = ImageServiceClient::new(runtime.channel().await);
    let name = format!("{}/bb:1", registry.host);

    let err = images
        .pull_image(api::PullImageRequest {
            image: spec(&name),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated, "{err:?}");
    assert!(err.message().contains("credentials"), "{}", err.message());

    let wrong = api::AuthConfig {
        username: "alice".into(),
        password: "wrong".into(),
        ..Default::default()
    };
    let err = images
        .pull_image(api::PullImageRequest {
            image: spec(&name),
            auth: Some(wrong),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated, "{err:?}");

    // Docker's `auth` field: base64 of `user:password`.
    let auth = api::AuthConfig {
        auth: "YWxpY2U6czNjcmV0".into(),
        ..Default::default()
    };
    let pulled = images
        .pull_image(api::PullImageRequest {
            image: spec(&name),
            auth: Some(auth),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(pulled.image_ref, pushed.id);

    // Nothing listens on this port: the registry is unavailable, a retry later may work.
    let err = images
        .pull_image(api::PullImageRequest {
            image: spec(&format!("127.0.0.1:{}/bb:1", free_port())),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");

    drop(images);
    runtime.stop().await;
}

fn walk_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk_files(&path));
        } else {
            out.push(path);
        }
    }
    out
}
