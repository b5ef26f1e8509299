//! A real `docker-registry` (distribution 2.8) on a free loopback port, with storage in a temp
//! dir, killed on drop. Variants: open, htpasswd basic auth, and token auth backed by
//! [`TokenServer`], a small in-test token issuer signing ES256 JWTs with an `x5c` chain.

use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use serde_json::json;

use crate::util::{run_checked, ChildGuard};

pub const USER: &str = "deckhand";
pub const PASS: &str = "s3cret-pass";
const SERVICE: &str = "deckhand-test-registry";
const ISSUER: &str = "deckhand-test-token-issuer";

/// How the registry authenticates clients.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Auth {
    None,
    /// htpasswd (bcrypt) basic auth with [`USER`]/[`PASS`].
    Basic,
    /// Bearer tokens from a [`TokenServer`] that accepts [`USER`]/[`PASS`].
    Token,
}

pub struct Registry {
    pub port: u16,
    pub auth: Auth,
    pub dir: tempfile::TempDir,
    child: ChildGuard,
    pub token_server: Option<TokenServer>,
}

impl Registry {
    pub fn start(auth: Auth) -> Result<Registry> {
        let dir = tempfile::Builder::new()
            .prefix("deckhand-registry-")
            .tempdir()?;
        let storage = dir.path().join("storage");
        fs::create_dir_all(&storage)?;
        let token_server = match auth {
            Auth::Token => Some(TokenServer::start(dir.path())?),
            _ => None,
        };
        let auth_yaml = match auth {
            Auth::None => String::new(),
            Auth::Basic => {
                let out = run_checked(Command::new("htpasswd").args(["-Bbn", USER, PASS]))?;
                let path = dir.path().join("htpasswd");
                fs::write(&path, out.stdout)?;
                format!(
                    "auth:\n  htpasswd:\n    realm: deckhand-test\n    path: {}\n",
                    path.display()
                )
            }
            Auth::Token => {
                let ts = token_server.as_ref().expect("token server");
                format!(
                    "auth:\n  token:\n    realm: {}\n    service: {SERVICE}\n    issuer: {ISSUER}\n    rootcertbundle: {}\n",
                    ts.realm(),
                    ts.cert_path.display()
                )
            }
        };
        // The port is picked by binding :0 and released before the registry binds it; another
        // process can race us to it, so a failed start is retried on a new port.
        let mut last_err = None;
        for _ in 0..5 {
            let port = free_port()?;
            let config = format!(
                "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n  secret: deckhand-e2e-secret\n{auth_yaml}",
                storage.display()
            );
            let cfg_path = dir.path().join("config.yml");
            fs::write(&cfg_path, config)?;
            let log = fs::File::create(dir.path().join("registry.log"))?;
            let child = Command::new("docker-registry")
                .arg("serve")
                .arg(&cfg_path)
                .stdin(Stdio::null())
                .stdout(log.try_clone()?)
                .stderr(log)
                .spawn()
                .context("spawn docker-registry (apt-get install docker-registry)")?;
            let mut child = ChildGuard::new(child);
            match wait_ready(port, &mut child.0) {
                Ok(()) => {
                    return Ok(Registry {
                        port,
                        auth,
                        dir,
                        child,
                        token_server,
                    });
                }
                Err(e) => {
                    let log =
                        fs::read_to_string(dir.path().join("registry.log")).unwrap_or_default();
                    last_err = Some(anyhow::anyhow!("{e:#}; registry log:\n{log}"));
                }
            }
        }
        Err(last_err.unwrap())
    }

    /// `127.0.0.1:<port>`.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `127.0.0.1:<port>/<name>:<tag>`.
    pub fn reference(&self, name: &str, tag: &str) -> String {
        format!("{}/{name}:{tag}", self.host())
    }

    pub fn creds(&self) -> Option<String> {
        match self.auth {
            Auth::None => None,
            _ => Some(format!("{USER}:{PASS}")),
        }
    }

    /// Pushes `oci:<layout>:<tag>` to `<name>:<tag>` with skopeo, keeping digests and
    /// compression (and every platform of an index).
    pub fn push(&self, layout: &Path, tag: &str, name: &str) -> Result<()> {
        let mut cmd = Command::new("skopeo");
        cmd.args([
            "copy",
            "--quiet",
            "--all",
            "--preserve-digests",
            "--dest-tls-verify=false",
        ]);
        if let Some(c) = self.creds() {
            cmd.arg("--dest-creds").arg(c);
        }
        cmd.arg(format!("oci:{}:{tag}", layout.display()));
        cmd.arg(format!("docker://{}", self.reference(name, tag)));
        run_checked(&mut cmd)
            .with_context(|| format!("push {} to {name}:{tag}", layout.display()))?;
        Ok(())
    }

    /// Where the registry stores a blob (`sha256:<hex>`); tests corrupt it to serve bad data.
    pub fn blob_path(&self, digest: &str) -> PathBuf {
        let hex = digest.trim_start_matches("sha256:");
        self.dir
            .path()
            .join("storage/docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }

    /// GET a path on the registry with no credentials; returns the HTTP status.
    pub fn get_status(&self, path: &str) -> Result<u16> {
        Ok(http_get(self.port, path, None)?.0)
    }

    pub fn pid(&self) -> u32 {
        self.child.0.id()
    }

    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }
}

pub fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn wait_ready(port: u16, child: &mut Child) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(st) = child.try_wait()? {
            bail!("docker-registry exited early: {st}");
        }
        if let Ok((status, _)) = http_get(port, "/v2/", None) {
            if status == 200 || status == 401 {
                return Ok(());
            }
        }
        if Instant::now() > deadline {
            bail!("docker-registry on port {port} did not answer /v2/ within 15s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A minimal HTTP/1.0 GET against 127.0.0.1:port: (status, body).
pub fn http_get(port: u16, path: &str, authorization: Option<&str>) -> Result<(u16, Vec<u8>)> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut req = format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n");
    if let Some(a) = authorization {
        req.push_str(&format!("Authorization: {a}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes())?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf)?;
    let text = String::from_utf8_lossy(&buf);
    let status: u16 = text
        .split_whitespace()
        .nth(1)
        .context("no HTTP status line")?
        .parse()
        .context("bad HTTP status")?;
    let body = match buf.windows(4).position(|w| w == b"\r\n\r\n") {
        Some(i) => buf[i + 4..].to_vec(),
        None => Vec::new(),
    };
    Ok((status, body))
}

/// A token issuer for distribution's `auth: token` mode. Answers `GET /token?service=&scope=`
/// with Basic credentials [`USER`]/[`PASS`] by granting exactly the requested scopes; anything
/// else gets 401. Tokens are ES256 JWTs whose `x5c` header carries the self-signed certificate
/// that the registry trusts through `rootcertbundle`.
pub struct TokenServer {
    pub port: u16,
    pub cert_path: PathBuf,
    /// Number of tokens issued (a test can prove the token flow was really used).
    pub issued: Arc<AtomicUsize>,
    /// Number of requests refused.
    pub refused: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

struct Signer {
    key: ring::signature::EcdsaKeyPair,
    cert_der: Vec<u8>,
    rng: ring::rand::SystemRandom,
}

impl TokenServer {
    pub fn start(dir: &Path) -> Result<TokenServer> {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let mut params = rcgen::CertificateParams::new(vec!["deckhand-token-issuer".to_string()])?;
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "deckhand test token issuer");
        let cert = params.self_signed(&key)?;
        let cert_path = dir.join("token-root.pem");
        fs::write(&cert_path, cert.pem())?;
        let rng = ring::rand::SystemRandom::new();
        let ring_key = ring::signature::EcdsaKeyPair::from_pkcs8(
            &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            &key.serialize_der(),
            &rng,
        )
        .map_err(|e| anyhow::anyhow!("load token signing key: {e}"))?;
        let signer = Signer {
            key: ring_key,
            cert_der: cert.der().to_vec(),
            rng,
        };

        let listener = TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let port = listener.local_addr()?.port();
        let stop = Arc::new(AtomicBool::new(false));
        let issued = Arc::new(AtomicUsize::new(0));
        let refused = Arc::new(AtomicUsize::new(0));
        let (stop2, issued2, refused2) = (stop.clone(), issued.clone(), refused.clone());
        let thread = std::thread::spawn(move || {
            while !stop2.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((conn, _)) => {
                        let _ = conn.set_nonblocking(false);
                        let _ = handle_token_request(conn, &signer, &issued2, &refused2);
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Ok(TokenServer {
            port,
            cert_path,
            issued,
            refused,
            stop,
            thread: Some(thread),
        })
    }

    pub fn realm(&self) -> String {
        format!("http://127.0.0.1:{}/token", self.port)
    }
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn handle_token_request(
    mut conn: TcpStream,
    signer: &Signer,
    issued: &AtomicUsize,
    refused: &AtomicUsize,
) -> Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = conn.read(&mut chunk)?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
        if buf.len() > 64 * 1024 {
            bail!("request too large");
        }
    }
    let text = String::from_utf8_lossy(&buf).to_string();
    let mut lines = text.split("\r\n");
    let request_line = lines.next().unwrap_or_default();
    let target = request_line.split_whitespace().nth(1).unwrap_or("/");
    let mut authorization = None;
    for l in lines {
        if let Some((k, v)) = l.split_once(':') {
            if k.trim().eq_ignore_ascii_case("authorization") {
                authorization = Some(v.trim().to_string());
            }
        }
    }
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let expected = format!("Basic {}", STANDARD.encode(format!("{USER}:{PASS}")));
    let authorized = authorization.as_deref() == Some(expected.as_str());
    if path != "/token" || !authorized {
        refused.fetch_add(1, Ordering::Relaxed);
        let body = r#"{"errors":[{"code":"UNAUTHORIZED","message":"bad or missing credentials"}]}"#;
        let resp = format!(
            "HTTP/1.1 401 Unauthorized\r\nContent-Type: application/json\r\nWWW-Authenticate: Basic realm=\"deckhand-token\"\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        conn.write_all(resp.as_bytes())?;
        return Ok(());
    }
    let mut access = Vec::new();
    let mut service = SERVICE.to_string();
    for pair in query.split('&') {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let v = percent_decode(v);
        match k {
            "scope" => {
                for scope in v.split(' ') {
                    // type:name:actions; the name may itself contain ':' (never for repos,
                    // but be safe), so split from both ends.
                    let Some((typ, rest)) = scope.split_once(':') else {
                        continue;
                    };
                    let Some((name, actions)) = rest.rsplit_once(':') else {
                        continue;
                    };
                    let actions: Vec<&str> = actions.split(',').filter(|a| !a.is_empty()).collect();
                    access.push(json!({"type": typ, "name": name, "actions": actions}));
                }
            }
            "service" => service = v,
            _ => {}
        }
    }
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    let n = issued.fetch_add(1, Ordering::Relaxed);
    let header = json!({"typ": "JWT", "alg": "ES256", "x5c": [STANDARD.encode(&signer.cert_der)]});
    let claims = json!({
        "iss": ISSUER,
        "sub": USER,
        "aud": service,
        "exp": now + 600,
        "nbf": now - 10,
        "iat": now,
        "jti": format!("deckhand-{now}-{n}"),
        "access": access,
    });
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(&header)?),
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims)?)
    );
    let sig = signer
        .key
        .sign(&signer.rng, signing_input.as_bytes())
        .map_err(|e| anyhow::anyhow!("sign token: {e}"))?;
    let token = format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref()));
    let body = json!({"token": token, "access_token": token, "expires_in": 600}).to_string();
    let resp = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    conn.write_all(resp.as_bytes())?;
    Ok(())
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(v) => {
                        out.push(v);
                        i += 3;
                        continue;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::percent_decode;

    #[test]
    fn decodes_scopes() {
        assert_eq!(
            percent_decode("repository%3Abusybox%3Apull%2Cpush"),
            "repository:busybox:pull,push"
        );
        assert_eq!(percent_decode("a+b%20c"), "a b c");
        assert_eq!(percent_decode("100%"), "100%");
    }
}
