//! `<data-dir>/registries.yaml`, in the shape k3s users know:
//!
//! ```yaml
//! mirrors:
//!   docker.io:
//!     endpoint: ["https://mirror.example.com", "http://10.0.0.5:5000"]
//!   "*":                       # every registry
//!     endpoint: [...]
//! configs:
//!   "127.0.0.1:5000":
//!     auth: { username: u, password: p }     # or auth: <base64 u:p>, identity_token
//!     tls: { ca_file: ..., cert_file: ..., key_file: ..., insecure_skip_verify: true }
//!   "10.0.0.5:5000":
//!     insecure: true           # deckhand extension: plain HTTP allowed for this host
//! ```
//!
//! An endpoint's scheme says whether it speaks HTTP or HTTPS. The upstream registry itself is
//! always tried after its mirrors. Without configuration only loopback registries may use
//! plain HTTP.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum HostsError {
    #[error("registries config {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("registries config {path} is not valid: {message}")]
    Invalid { path: PathBuf, message: String },
}

#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistriesConfig {
    #[serde(default)]
    pub mirrors: BTreeMap<String, Mirror>,
    #[serde(default)]
    pub configs: BTreeMap<String, HostConfig>,
}

// Unknown fields are refused everywhere: a misspelt `insecure_skip_verfy` silently ignored
// would leave a user debugging TLS errors, and k3s-only fields (`rewrite`) are not implemented.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mirror {
    #[serde(default)]
    pub endpoint: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostConfig {
    #[serde(default)]
    pub auth: Option<AuthConfig>,
    #[serde(default)]
    pub tls: Option<TlsConfig>,
    #[serde(default)]
    pub insecure: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    pub username: Option<String>,
    pub password: Option<String>,
    /// base64 of `username:password`.
    pub auth: Option<String>,
    pub identity_token: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    pub ca_file: Option<PathBuf>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    #[serde(default)]
    pub insecure_skip_verify: bool,
}

/// One place to try for a registry: base URL (scheme + host[:port]) and the host whose
/// `configs` entry applies to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub base: url::Url,
    pub config_host: String,
    pub is_mirror: bool,
}

impl RegistriesConfig {
    /// Load `path`; a missing file is the empty config. Errors name the file and the field.
    pub fn load(path: &Path) -> Result<RegistriesConfig, HostsError> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(RegistriesConfig::default())
            }
            Err(source) => {
                return Err(HostsError::Io {
                    path: path.to_path_buf(),
                    source,
                })
            }
        };
        RegistriesConfig::parse(path, &text)
    }

    /// Parse the YAML text of `path` (named in errors) and validate it.
    pub fn parse(path: &Path, text: &str) -> Result<RegistriesConfig, HostsError> {
        let invalid = |message: String| HostsError::Invalid {
            path: path.to_path_buf(),
            message,
        };
        // An empty or comment-only file is a valid, empty configuration.
        let value: serde_yaml::Value =
            serde_yaml::from_str(text).map_err(|e| invalid(e.to_string()))?;
        if value.is_null() {
            return Ok(RegistriesConfig::default());
        }
        // serde_yaml's message carries the field path (`configs.x.tls: unknown field ...`).
        // Deserialising from the text (not the Value) keeps the field path and line in messages:
        // `configs.x.tls: unknown field ... at line 4 column 7`.
        let config: RegistriesConfig =
            serde_yaml::from_str(text).map_err(|e| invalid(e.to_string()))?;
        for (host, mirror) in &config.mirrors {
            for (i, endpoint) in mirror.endpoint.iter().enumerate() {
                parse_endpoint_url(endpoint).map_err(|reason| {
                    invalid(format!(
                        "mirrors.{host:?}.endpoint[{i}]: {endpoint:?} is not a valid URL: {reason}"
                    ))
                })?;
            }
        }
        for (host, hc) in &config.configs {
            if let Some(auth) = &hc.auth {
                auth.credentials()
                    .map_err(|reason| invalid(format!("configs.{host:?}.auth: {reason}")))?;
            }
            if let Some(tls) = &hc.tls {
                if tls.cert_file.is_some() != tls.key_file.is_some() {
                    return Err(invalid(format!(
                        "configs.{host:?}.tls: cert_file and key_file must be given together"
                    )));
                }
            }
        }
        Ok(config)
    }

    /// Endpoints to try for `registry`, in order: its mirrors (or `*` mirrors), then itself
    /// (`https://`, or `http://` for loopback / `insecure` hosts). `docker.io` itself is
    /// `https://registry-1.docker.io`.
    pub fn endpoints(&self, registry: &str) -> Vec<Endpoint> {
        let registry = normalize_host(registry);
        let mirrors = self
            .mirrors
            .get(&registry)
            .or_else(|| self.mirrors.get("*"));
        let mut out: Vec<Endpoint> = Vec::new();
        for raw in mirrors.map(|m| m.endpoint.as_slice()).unwrap_or_default() {
            // Validated on load; a config built in code with a bad URL just loses that mirror.
            let Ok(base) = parse_endpoint_url(raw) else {
                continue;
            };
            let config_host = host_port(&base);
            let endpoint = Endpoint {
                base,
                config_host,
                is_mirror: true,
            };
            // A mirror list that names the registry itself (common with `*`) would be tried
            // twice; the registry entry is appended last anyway.
            if endpoint.config_host == registry || endpoint.config_host == upstream_host(&registry)
            {
                continue;
            }
            if !out.iter().any(|e| e.base == endpoint.base) {
                out.push(endpoint);
            }
        }
        let host = upstream_host(&registry);
        let host_config = self.configs.get(&registry);
        let plain_http = host_config.is_some_and(|c| c.insecure)
            || (is_loopback_host(&host) && host_config.and_then(|c| c.tls.as_ref()).is_none());
        let scheme = if plain_http { "http" } else { "https" };
        match url::Url::parse(&format!("{scheme}://{host}/")) {
            Ok(base) => out.push(Endpoint {
                base,
                config_host: registry,
                is_mirror: false,
            }),
            // Reference parsing already rejected such hosts; nothing sensible to add.
            Err(_) => tracing::warn!(registry = %registry, "registry host is not a valid URL host"),
        }
        out
    }

    /// The `configs` entry for a host (as named in [`Endpoint::config_host`]).
    pub fn host_config(&self, host: &str) -> Option<&HostConfig> {
        self.configs
            .get(host)
            .or_else(|| self.configs.get(&normalize_host(host)))
    }
}

impl AuthConfig {
    /// The credentials this entry describes, if any: `username`/`password`, else the base64
    /// `auth`, else `identity_token`.
    pub fn credentials(&self) -> Result<Option<crate::registry::auth::Credentials>, String> {
        use crate::registry::auth::Credentials;
        if let Some(username) = &self.username {
            return Ok(Some(Credentials::Basic {
                username: username.clone(),
                password: self.password.clone().unwrap_or_default(),
            }));
        }
        if let Some(auth) = &self.auth {
            let (username, password) = crate::registry::auth::decode_basic_auth(auth)?;
            return Ok(Some(Credentials::Basic { username, password }));
        }
        Ok(self.identity_token.clone().map(Credentials::IdentityToken))
    }
}

/// Mirror endpoints may omit the scheme (`mirror.example.com:5000`): HTTPS is assumed.
fn parse_endpoint_url(raw: &str) -> Result<url::Url, String> {
    let raw = raw.trim();
    let with_scheme = if raw.contains("://") {
        raw.to_string()
    } else {
        format!("https://{raw}")
    };
    let url = url::Url::parse(&with_scheme).map_err(|e| e.to_string())?;
    if url.scheme() != "http" && url.scheme() != "https" {
        return Err(format!(
            "scheme {:?} is neither http nor https",
            url.scheme()
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("no host".to_string());
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err("query and fragment are not allowed".to_string());
    }
    Ok(url)
}

/// `host[:port]` of a URL, the key its `configs` entry is found under.
fn host_port(url: &url::Url) -> String {
    let host = url.host_str().unwrap_or_default();
    match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_string(),
    }
}

/// Docker Hub goes by several names; deckhand keys it as `docker.io` everywhere.
pub(crate) fn normalize_host(host: &str) -> String {
    let host = host.trim().to_ascii_lowercase();
    match host.as_str() {
        "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => {
            "docker.io".to_string()
        }
        _ => host,
    }
}

/// Where a registry's API really lives (`docker.io` is only a name).
fn upstream_host(registry: &str) -> String {
    if registry == "docker.io" {
        "registry-1.docker.io".to_string()
    } else {
        registry.to_string()
    }
}

/// Whether `host[:port]` names the loopback interface: `localhost`, `127.0.0.0/8`, `[::1]`.
pub fn is_loopback_host(host_port: &str) -> bool {
    let host = if let Some(rest) = host_port.strip_prefix('[') {
        rest.split(']').next().unwrap_or_default()
    } else {
        host_port.rsplit_once(':').map_or(host_port, |(h, _)| h)
    };
    if host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    host.parse::<std::net::IpAddr>()
        .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests;
