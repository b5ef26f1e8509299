//! Test fixtures shared by the registry and pull tests: a real `docker-registry` on a loopback
//! port (killed on drop), plain-HTTP pushes, tiny images built with `tar` + `flate2`, and a
//! hand-written HTTP/1.1 server for behaviours a real registry will not show (bearer tokens
//! without a JWT infrastructure, lying digests, ignored Range headers, cut connections).
#![allow(dead_code)]

use deckhand_image::digest::Digest;
use deckhand_image::manifest::Platform;
use deckhand_image::media;
use deckhand_image::reference::Reference;
use std::collections::HashMap;
use std::io::Write as _;
use std::net::TcpListener as StdListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn reference(
    registry: &str,
    repository: &str,
    tag: Option<&str>,
    digest: Option<&Digest>,
) -> Reference {
    Reference {
        registry: registry.to_string(),
        repository: repository.to_string(),
        tag: tag.map(str::to_string),
        digest: digest.cloned(),
    }
}

/// A real distribution registry (`docker-registry serve`), killed on drop.
pub struct Registry {
    child: Child,
    pub host: String,
    /// `user:pass` when started with htpasswd auth.
    pub basic_auth: Option<(String, String)>,
    _dir: tempfile::TempDir,
}

impl Registry {
    pub async fn start() -> Registry {
        Registry::start_with(None).await
    }

    /// With `Some((user, pass))`, the registry requires HTTP basic auth (htpasswd).
    pub async fn start_with(basic_auth: Option<(&str, &str)>) -> Registry {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let mut config = format!(
            "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n",
            dir.path().join("data").display()
        );
        if let Some((user, pass)) = basic_auth {
            let out = Command::new("htpasswd")
                .args(["-Bbn", user, pass])
                .output()
                .expect("htpasswd (apache2-utils) is installed");
            assert!(
                out.status.success(),
                "htpasswd failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
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
            basic_auth: basic_auth.map(|(u, p)| (u.to_string(), p.to_string())),
            _dir: dir,
        };
        let client = reqwest::Client::new();
        for _ in 0..200 {
            if let Ok(resp) = client
                .get(format!("http://{}/v2/", registry.host))
                .send()
                .await
            {
                if resp.status().is_success() || resp.status() == 401 {
                    return registry;
                }
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        let log =
            std::fs::read_to_string(registry._dir.path().join("registry.log")).unwrap_or_default();
        panic!(
            "docker-registry did not come up on {}: {log}",
            registry.host
        );
    }

    fn request(&self, method: reqwest::Method, url: &str) -> reqwest::RequestBuilder {
        let request = reqwest::Client::new().request(method, url);
        match &self.basic_auth {
            Some((u, p)) => request.basic_auth(u, Some(p)),
            None => request,
        }
    }

    pub async fn push_blob(&self, repo: &str, data: &[u8]) -> Digest {
        let digest = Digest::of(data);
        let resp = self
            .request(
                reqwest::Method::POST,
                &format!("http://{}/v2/{repo}/blobs/uploads/", self.host),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 202, "start upload: {:?}", resp.text().await);
        let location = resp.headers()["location"].to_str().unwrap().to_string();
        let location = if location.starts_with("http") {
            location
        } else {
            format!("http://{}{location}", self.host)
        };
        let sep = if location.contains('?') { '&' } else { '?' };
        let resp = self
            .request(
                reqwest::Method::PUT,
                &format!("{location}{sep}digest={digest}"),
            )
            .header("content-type", "application/octet-stream")
            .body(data.to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 201, "finish upload: {:?}", resp.text().await);
        digest
    }

    pub async fn push_manifest(
        &self,
        repo: &str,
        tag: &str,
        media_type: &str,
        bytes: &[u8],
    ) -> Digest {
        let resp = self
            .request(
                reqwest::Method::PUT,
                &format!("http://{}/v2/{repo}/manifests/{tag}", self.host),
            )
            .header("content-type", media_type)
            .body(bytes.to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 201, "push manifest: {:?}", resp.text().await);
        Digest::of(bytes)
    }

    /// Push every blob of `image` and its manifest under `tag`.
    pub async fn push_image(&self, repo: &str, tag: &str, image: &TestImage) -> Digest {
        for layer in &image.layers {
            self.push_blob(repo, &layer.blob).await;
        }
        self.push_blob(repo, &image.config).await;
        self.push_manifest(repo, tag, media::OCI_MANIFEST, &image.manifest)
            .await
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub struct TestLayer {
    /// Uncompressed tar.
    pub tar: Vec<u8>,
    /// What is pushed (gzip of `tar`, or `tar` itself).
    pub blob: Vec<u8>,
    pub media_type: &'static str,
    pub diff_id: Digest,
    pub digest: Digest,
}

/// A layer tar with regular files (parents created as directories).
pub fn layer(files: &[(&str, &[u8])], gzip: bool) -> TestLayer {
    let mut builder = tar::Builder::new(Vec::new());
    for (path, data) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(1_700_000_000);
        header.set_entry_type(tar::EntryType::Regular);
        builder.append_data(&mut header, path, *data).unwrap();
    }
    let tar = builder.into_inner().unwrap();
    let (blob, media_type) = if gzip {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder.write_all(&tar).unwrap();
        (encoder.finish().unwrap(), media::OCI_LAYER_GZIP)
    } else {
        (tar.clone(), media::OCI_LAYER)
    };
    TestLayer {
        diff_id: Digest::of(&tar),
        digest: Digest::of(&blob),
        tar,
        blob,
        media_type,
    }
}

pub struct TestImage {
    pub layers: Vec<TestLayer>,
    pub config: Vec<u8>,
    pub config_digest: Digest,
    pub manifest: Vec<u8>,
    pub manifest_digest: Digest,
}

pub fn image(layers: Vec<TestLayer>, platform: &Platform) -> TestImage {
    let diff_ids: Vec<String> = layers.iter().map(|l| l.diff_id.to_string()).collect();
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": platform.architecture,
        "os": platform.os,
        "created": "2026-01-01T00:00:00Z",
        "config": {"Cmd": ["/bin/sh"], "Env": ["PATH=/bin"], "WorkingDir": "/"},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }))
    .unwrap();
    let config_digest = Digest::of(&config);
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": media::OCI_MANIFEST,
        "config": {"mediaType": media::OCI_CONFIG, "digest": config_digest.to_string(), "size": config.len()},
        "layers": layers.iter().map(|l| serde_json::json!({
            "mediaType": l.media_type, "digest": l.digest.to_string(), "size": l.blob.len()
        })).collect::<Vec<_>>(),
    }))
    .unwrap();
    let manifest_digest = Digest::of(&manifest);
    TestImage {
        layers,
        config,
        config_digest,
        manifest,
        manifest_digest,
    }
}

/// An OCI index over `(manifest bytes, platform)` entries.
pub fn index(entries: &[(&[u8], Platform)]) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": media::OCI_INDEX,
        "manifests": entries.iter().map(|(m, p)| serde_json::json!({
            "mediaType": media::OCI_MANIFEST,
            "digest": Digest::of(m).to_string(),
            "size": m.len(),
            "platform": {"os": p.os, "architecture": p.architecture},
        })).collect::<Vec<_>>(),
    }))
    .unwrap()
}

pub fn platform(os: &str, arch: &str) -> Platform {
    Platform {
        os: os.into(),
        architecture: arch.into(),
        variant: None,
        os_version: None,
    }
}

// ---------------------------------------------------------------------------------------------
// A tiny HTTP/1.1 server with a programmable handler.

#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    /// Path with query.
    pub target: String,
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
}

impl Request {
    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap()
    }
    pub fn query(&self) -> Vec<(String, String)> {
        let query = self
            .target
            .split_once('?')
            .map(|(_, q)| q)
            .unwrap_or_default();
        url::form_urlencoded::parse(query.as_bytes())
            .into_owned()
            .collect()
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
    }
}

pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Send only this many body bytes, then close (a cut connection). The Content-Length
    /// header still announces the whole body.
    pub truncate_at: Option<usize>,
}

impl Response {
    pub fn new(status: u16, body: impl Into<Vec<u8>>) -> Response {
        Response {
            status,
            headers: Vec::new(),
            body: body.into(),
            truncate_at: None,
        }
    }
    pub fn header(mut self, name: &str, value: impl Into<String>) -> Response {
        self.headers.push((name.to_string(), value.into()));
        self
    }
}

type Handler = Arc<dyn Fn(&Request) -> Response + Send + Sync>;

pub struct FakeServer {
    pub addr: String,
    pub requests: Arc<Mutex<Vec<Request>>>,
    task: tokio::task::JoinHandle<()>,
}

impl FakeServer {
    pub async fn start(
        handler: impl Fn(&Request) -> Response + Send + Sync + 'static,
    ) -> FakeServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let handler: Handler = Arc::new(handler);
        let log = requests.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let handler = handler.clone();
                let log = log.clone();
                tokio::spawn(async move {
                    let _ = serve_connection(stream, handler, log).await;
                });
            }
        });
        FakeServer {
            addr,
            requests,
            task,
        }
    }

    pub fn requests(&self) -> Vec<Request> {
        self.requests.lock().unwrap().clone()
    }
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve_connection(
    mut stream: tokio::net::TcpStream,
    handler: Handler,
    log: Arc<Mutex<Vec<Request>>>,
) -> std::io::Result<()> {
    let mut buffer = Vec::new();
    loop {
        // Read one request head.
        let head_end = loop {
            if let Some(pos) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                break pos;
            }
            let mut chunk = [0u8; 4096];
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                return Ok(());
            }
            buffer.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8_lossy(&buffer[..head_end]).into_owned();
        buffer.drain(..head_end + 4);
        let mut lines = head.split("\r\n");
        let mut first = lines.next().unwrap_or_default().split(' ');
        let method = first.next().unwrap_or_default().to_string();
        let target = first.next().unwrap_or_default().to_string();
        let headers: HashMap<String, String> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        let length: usize = headers
            .get("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        while buffer.len() < length {
            let mut chunk = [0u8; 4096];
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                return Ok(());
            }
            buffer.extend_from_slice(&chunk[..n]);
        }
        let body: Vec<u8> = buffer.drain(..length).collect();
        let request = Request {
            method,
            target,
            headers,
            body,
        };
        log.lock().unwrap().push(request.clone());
        let response = handler(&request);
        let mut out = format!(
            "HTTP/1.1 {} X\r\ncontent-length: {}\r\n",
            response.status,
            response.body.len()
        );
        for (k, v) in &response.headers {
            out.push_str(&format!("{k}: {v}\r\n"));
        }
        out.push_str("\r\n");
        stream.write_all(out.as_bytes()).await?;
        if let Some(cut) = response.truncate_at {
            stream.write_all(&response.body[..cut]).await?;
            stream.flush().await?;
            return Ok(());
        }
        stream.write_all(&response.body).await?;
    }
}

/// Serve `data` honouring `Range: bytes=<n>-` (206) like a registry.
pub fn ranged(request: &Request, data: &[u8]) -> Response {
    if let Some(range) = request.header("range") {
        let start: usize = range
            .trim_start_matches("bytes=")
            .trim_end_matches('-')
            .parse()
            .unwrap();
        return Response::new(206, data[start..].to_vec()).header(
            "content-range",
            format!("bytes {start}-{}/{}", data.len() - 1, data.len()),
        );
    }
    Response::new(200, data.to_vec())
}

pub fn temp_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(name)
}
