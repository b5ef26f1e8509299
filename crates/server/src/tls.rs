//! The server's PKI: a CA made on first start and kept in `<data-dir>/server/tls/`, a serving
//! certificate re-issued on every start (so new `--tls-san`s and host addresses take effect),
//! the admin client certificate (CN=admin, O=system:masters) and the admin kubeconfig.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, SanType,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::WebPkiClientVerifier;
use time::{Duration, OffsetDateTime};

const CA_CN: &str = "deckhand-server-ca";

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("certificate generation: {0}")]
    Rcgen(#[from] rcgen::Error),
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("client certificate verifier: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
    #[error("{path}: not a PEM certificate: {message}")]
    Pem { path: PathBuf, message: String },
    #[error("subject alternative name {0:?} is neither an IP address nor a DNS name")]
    BadSan(String),
}

fn read(path: &Path) -> Result<Option<String>, TlsError> {
    match std::fs::read_to_string(path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(TlsError::Io {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Write a file readable by its owner only when it holds a key.
fn write(path: &Path, contents: &str, private: bool) -> Result<(), TlsError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let io = |source| TlsError::Io {
        path: path.to_path_buf(),
        source,
    };
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(if private { 0o600 } else { 0o644 })
        .open(&tmp)
        .map_err(io)?;
    f.write_all(contents.as_bytes()).map_err(io)?;
    f.sync_all().map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

fn ca_params() -> Result<CertificateParams, TlsError> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, CA_CN);
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let now = OffsetDateTime::now_utc();
    params.not_before = now - Duration::hours(1);
    params.not_after = now + Duration::days(3650);
    Ok(params)
}

/// The CA as an issuer. rcgen 0.13 signs with a `Certificate`, so the one on disk is
/// re-made from the same key and name: a child's signature only depends on those.
struct Ca {
    cert: Certificate,
    key: KeyPair,
    pem: String,
}

fn leaf_params(
    cn: &str,
    org: Option<&str>,
    sans: Vec<SanType>,
    usage: ExtendedKeyUsagePurpose,
    days: i64,
) -> Result<CertificateParams, TlsError> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    let mut dn = DistinguishedName::new();
    if let Some(o) = org {
        dn.push(DnType::OrganizationName, o);
    }
    dn.push(DnType::CommonName, cn);
    params.distinguished_name = dn;
    params.subject_alt_names = sans;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![usage];
    let now = OffsetDateTime::now_utc();
    params.not_before = now - Duration::hours(1);
    params.not_after = now + Duration::days(days);
    Ok(params)
}

/// Everything the listener and the kubeconfig need.
pub struct TlsAssets {
    pub ca_pem: String,
    pub serving_cert_pem: String,
    pub serving_key_pem: String,
    pub admin_cert_pem: String,
    pub admin_key_pem: String,
    /// The SANs the serving certificate carries (logged at start).
    pub sans: Vec<String>,
}

impl TlsAssets {
    /// Load the CA and admin credentials from `dir` (making them the first time) and issue
    /// a fresh serving certificate for `sans`.
    pub fn load_or_create(dir: &Path, sans: &[String]) -> Result<TlsAssets, TlsError> {
        std::fs::create_dir_all(dir).map_err(|source| TlsError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        let ca = load_or_create_ca(dir)?;

        let (admin_crt, admin_key) = (dir.join("admin.crt"), dir.join("admin.key"));
        let (admin_cert_pem, admin_key_pem) = match (read(&admin_crt)?, read(&admin_key)?) {
            (Some(c), Some(k)) => (c, k),
            _ => {
                let key = KeyPair::generate()?;
                let params = leaf_params(
                    "admin",
                    Some("system:masters"),
                    Vec::new(),
                    ExtendedKeyUsagePurpose::ClientAuth,
                    3650,
                )?;
                let cert = params.signed_by(&key, &ca.cert, &ca.key)?;
                write(&admin_crt, &cert.pem(), false)?;
                write(&admin_key, &key.serialize_pem(), true)?;
                (cert.pem(), key.serialize_pem())
            }
        };

        let mut san_types = Vec::new();
        let mut names = Vec::new();
        for san in sans {
            if names.contains(san) {
                continue;
            }
            names.push(san.clone());
            san_types.push(match san.parse::<IpAddr>() {
                Ok(ip) => SanType::IpAddress(ip),
                Err(_) => SanType::DnsName(
                    san.clone()
                        .try_into()
                        .map_err(|_| TlsError::BadSan(san.clone()))?,
                ),
            });
        }
        let key = KeyPair::generate()?;
        let params = leaf_params(
            "deckhand-server",
            None,
            san_types,
            ExtendedKeyUsagePurpose::ServerAuth,
            365,
        )?;
        let cert = params.signed_by(&key, &ca.cert, &ca.key)?;
        write(&dir.join("serving.crt"), &cert.pem(), false)?;
        write(&dir.join("serving.key"), &key.serialize_pem(), true)?;

        Ok(TlsAssets {
            ca_pem: ca.pem,
            serving_cert_pem: cert.pem(),
            serving_key_pem: key.serialize_pem(),
            admin_cert_pem,
            admin_key_pem,
            sans: names,
        })
    }

    /// rustls configuration: the serving certificate, HTTP/2 and HTTP/1.1, and client
    /// certificates verified against the CA but optional (anonymous requests reach the
    /// server and get a 401 Status there, as from kube-apiserver).
    pub fn server_config(&self) -> Result<rustls::ServerConfig, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let ca_der = pem_cert(&self.ca_pem, "ca.crt")?;
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca_der.clone())?;
        let verifier =
            WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                .allow_unauthenticated()
                .build()?;
        let chain = vec![pem_cert(&self.serving_cert_pem, "serving.crt")?, ca_der];
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
            KeyPair::from_pem(&self.serving_key_pem)?.serialize_der(),
        ));
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain, key)?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(config)
    }

    /// The admin kubeconfig for `server_url` (`https://127.0.0.1:6443`).
    pub fn admin_kubeconfig(&self, server_url: &str) -> String {
        use base64::Engine;
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        let doc = serde_json::json!({
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "deckhand", "cluster": {
                "server": server_url,
                "certificate-authority-data": b64(&self.ca_pem),
            }}],
            "users": [{"name": "admin", "user": {
                "client-certificate-data": b64(&self.admin_cert_pem),
                "client-key-data": b64(&self.admin_key_pem),
            }}],
            "contexts": [{"name": "deckhand", "context": {"cluster": "deckhand", "user": "admin"}}],
            "current-context": "deckhand",
            "preferences": {},
        });
        serde_yaml::to_string(&doc).unwrap_or_default()
    }

    pub fn write_kubeconfig(&self, path: &Path, server_url: &str) -> Result<(), TlsError> {
        write(path, &self.admin_kubeconfig(server_url), true)
    }
}

/// Issue a client certificate (user `cn`, group `org`) from the CA in `dir`, returning the
/// certificate and key PEMs. For node credentials and for tests of other users. (rcgen 0.13
/// keeps one value per name attribute, so one group per certificate.)
pub fn issue_client_cert(
    dir: &Path,
    cn: &str,
    org: Option<&str>,
    days: i64,
) -> Result<(String, String), TlsError> {
    let ca = load_or_create_ca(dir)?;
    let key = KeyPair::generate()?;
    let params = leaf_params(
        cn,
        org,
        Vec::new(),
        ExtendedKeyUsagePurpose::ClientAuth,
        days,
    )?;
    let cert = params.signed_by(&key, &ca.cert, &ca.key)?;
    Ok((cert.pem(), key.serialize_pem()))
}

fn pem_cert(pem: &str, what: &str) -> Result<CertificateDer<'static>, TlsError> {
    CertificateDer::from_pem_slice(pem.as_bytes()).map_err(|e| TlsError::Pem {
        path: PathBuf::from(what),
        message: e.to_string(),
    })
}

fn load_or_create_ca(dir: &Path) -> Result<Ca, TlsError> {
    let (crt, key_path) = (dir.join("ca.crt"), dir.join("ca.key"));
    if let (Some(pem), Some(key_pem)) = (read(&crt)?, read(&key_path)?) {
        let key = KeyPair::from_pem(&key_pem)?;
        let cert = ca_params()?.self_signed(&key)?;
        return Ok(Ca { cert, key, pem });
    }
    let key = KeyPair::generate()?;
    let cert = ca_params()?.self_signed(&key)?;
    write(&key_path, &key.serialize_pem(), true)?;
    write(&crt, &cert.pem(), false)?;
    Ok(Ca {
        pem: cert.pem(),
        cert,
        key,
    })
}

/// The names and addresses a client may use to reach this host: localhost, the hostname
/// and every local IPv4/IPv6 address (from /proc, so no unsafe getifaddrs).
pub fn host_sans() -> Vec<String> {
    let mut out = vec![
        "127.0.0.1".to_string(),
        "::1".to_string(),
        "localhost".to_string(),
    ];
    if let Ok(h) = std::fs::read_to_string("/proc/sys/kernel/hostname") {
        let h = h.trim();
        if !h.is_empty() {
            out.push(h.to_string());
        }
    }
    // fib_trie lists each local address as "|-- A.B.C.D" followed by "/32 host LOCAL".
    if let Ok(trie) = std::fs::read_to_string("/proc/net/fib_trie") {
        let mut last: Option<&str> = None;
        for line in trie.lines() {
            let t = line.trim();
            if let Some(addr) = t.strip_prefix("|-- ") {
                last = Some(addr);
            } else if t.contains("/32 host LOCAL") {
                if let Some(a) = last {
                    if a.parse::<std::net::Ipv4Addr>().is_ok() && !out.iter().any(|o| o == a) {
                        out.push(a.to_string());
                    }
                }
            }
        }
    }
    if let Ok(v6) = std::fs::read_to_string("/proc/net/if_inet6") {
        for line in v6.lines() {
            let Some(hex) = line.split_whitespace().next() else {
                continue;
            };
            if hex.len() != 32 {
                continue;
            }
            let mut bytes = [0u8; 16];
            let ok = (0..16).all(|i| {
                u8::from_str_radix(&hex[2 * i..2 * i + 2], 16)
                    .map(|b| bytes[i] = b)
                    .is_ok()
            });
            let ip = std::net::Ipv6Addr::from(bytes);
            // Link-local addresses need a zone and are never used to reach an API server.
            if ok && (ip.segments()[0] & 0xffc0) != 0xfe80 {
                let s = ip.to_string();
                if !out.contains(&s) {
                    out.push(s);
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ca_survives_restart_and_serving_cert_is_reissued() {
        let dir = tempfile::tempdir().unwrap();
        let a = TlsAssets::load_or_create(dir.path(), &["127.0.0.1".into()]).unwrap();
        let b = TlsAssets::load_or_create(dir.path(), &["127.0.0.1".into(), "example.test".into()])
            .unwrap();
        assert_eq!(a.ca_pem, b.ca_pem);
        assert_eq!(a.admin_cert_pem, b.admin_cert_pem);
        assert_ne!(a.serving_cert_pem, b.serving_cert_pem);
        b.server_config().unwrap();
        assert!(b
            .admin_kubeconfig("https://127.0.0.1:6443")
            .contains("client-key-data"));
    }
}
