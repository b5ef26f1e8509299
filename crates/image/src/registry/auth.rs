//! Credentials and the auth challenge flow: Docker `config.json` (`auths`, base64 `auth`,
//! `identitytoken`), CRI `AuthConfig`, `WWW-Authenticate` parsing (Basic and Bearer with realm,
//! service, scope), and a token cache keyed by (endpoint, scope).
//!
//! The cache itself lives in [`super::client`], next to the request flow that fills it; this
//! module is the pure part (parsing), so it is unit-tested without a network.

use base64::Engine as _;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Clone, PartialEq, Eq, Hash)]
pub enum Credentials {
    Basic {
        username: String,
        password: String,
    },
    /// OAuth2 refresh token (Docker's `identitytoken`), exchanged at the token endpoint.
    IdentityToken(String),
    /// A registry bearer token used as is (CRI `registry_token`).
    RegistryToken(String),
}

// Secrets must not end up in logs through `{:?}`.
impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credentials::Basic { username, .. } => f
                .debug_struct("Basic")
                .field("username", username)
                .field("password", &"<redacted>")
                .finish(),
            Credentials::IdentityToken(_) => f.write_str("IdentityToken(<redacted>)"),
            Credentials::RegistryToken(_) => f.write_str("RegistryToken(<redacted>)"),
        }
    }
}

/// Neither variant is helped by a retry: the file or the header has to change.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("docker config {path}: {message}")]
    DockerConfig { path: PathBuf, message: String },
    #[error("malformed WWW-Authenticate header {0:?}")]
    Challenge(String),
}

/// A parsed Docker `config.json`.
#[derive(Debug, Clone, Default)]
pub struct DockerConfig {
    /// Normalised registry host (`docker.io`, `127.0.0.1:5000`) → credentials.
    auths: BTreeMap<String, Credentials>,
}

#[derive(serde::Deserialize)]
struct RawDockerConfig {
    #[serde(default)]
    auths: BTreeMap<String, RawAuth>,
}

#[derive(serde::Deserialize, Default)]
#[serde(default)]
struct RawAuth {
    auth: Option<String>,
    username: Option<String>,
    password: Option<String>,
    identitytoken: Option<String>,
    registrytoken: Option<String>,
}

impl DockerConfig {
    /// Load from `path`; a missing file is empty.
    pub fn load(path: &Path) -> Result<DockerConfig, AuthError> {
        let bytes = match std::fs::read(path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(DockerConfig::default())
            }
            Err(e) => {
                return Err(AuthError::DockerConfig {
                    path: path.to_path_buf(),
                    message: e.to_string(),
                })
            }
        };
        DockerConfig::parse(path, &bytes)
    }

    /// Parse the JSON text of `path` (named in errors).
    pub fn parse(path: &Path, bytes: &[u8]) -> Result<DockerConfig, AuthError> {
        let error = |message: String| AuthError::DockerConfig {
            path: path.to_path_buf(),
            message,
        };
        let raw: RawDockerConfig =
            serde_json::from_slice(bytes).map_err(|e| error(e.to_string()))?;
        let mut auths = BTreeMap::new();
        for (key, entry) in raw.auths {
            let credentials = if let Some(token) = entry.identitytoken.filter(|t| !t.is_empty()) {
                Some(Credentials::IdentityToken(token))
            } else if let Some(token) = entry.registrytoken.filter(|t| !t.is_empty()) {
                Some(Credentials::RegistryToken(token))
            } else if let Some(auth) = entry.auth.filter(|a| !a.is_empty()) {
                let (username, password) = decode_basic_auth(&auth)
                    .map_err(|m| error(format!("auths.{key:?}.auth: {m}")))?;
                Some(Credentials::Basic { username, password })
            } else {
                entry
                    .username
                    .filter(|u| !u.is_empty())
                    .map(|username| Credentials::Basic {
                        username,
                        password: entry.password.unwrap_or_default(),
                    })
            };
            // Entries with only `{}` are what `docker login` with a credential helper leaves;
            // helpers are not supported, so such an entry gives no credentials.
            if let Some(credentials) = credentials {
                auths.insert(normalize_key(&key), credentials);
            }
        }
        Ok(DockerConfig { auths })
    }

    /// `$DOCKER_CONFIG/config.json`, else `$HOME/.docker/config.json`.
    pub fn default_path() -> Option<PathBuf> {
        if let Some(dir) = std::env::var_os("DOCKER_CONFIG").filter(|d| !d.is_empty()) {
            return Some(PathBuf::from(dir).join("config.json"));
        }
        std::env::var_os("HOME")
            .filter(|h| !h.is_empty())
            .map(|home| PathBuf::from(home).join(".docker/config.json"))
    }

    /// Credentials for a registry host (keys may be `host`, `https://host`, `https://host/v1/`;
    /// `docker.io` also matches `https://index.docker.io/v1/`).
    pub fn credentials(&self, registry: &str) -> Option<Credentials> {
        self.auths.get(&normalize_key(registry)).cloned()
    }
}

/// `https://index.docker.io/v1/` → `docker.io`; `http://127.0.0.1:5000/v2/` → `127.0.0.1:5000`.
fn normalize_key(key: &str) -> String {
    let key = key.trim();
    let without_scheme = key.split_once("://").map_or(key, |(_, rest)| rest);
    let host = without_scheme.split('/').next().unwrap_or_default();
    super::hosts::normalize_host(host)
}

/// Decode a base64 `user:password` (Docker's and k3s's `auth` field).
pub(crate) fn decode_basic_auth(auth: &str) -> Result<(String, String), String> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(auth.trim())
        .map_err(|e| format!("not valid base64 ({e})"))?;
    let text = String::from_utf8(bytes).map_err(|_| "decoded value is not UTF-8".to_string())?;
    let (username, password) = text
        .split_once(':')
        .ok_or_else(|| "decoded value is not of the form username:password".to_string())?;
    Ok((username.to_string(), password.to_string()))
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    Basic {
        realm: String,
    },
    Bearer {
        realm: String,
        service: Option<String>,
        scope: Option<String>,
    },
}

impl Challenge {
    /// Parse a `WWW-Authenticate` value (RFC 7235). When it lists several challenges the first
    /// Bearer or Basic one wins; schemes are case-insensitive, parameter values may be tokens or
    /// quoted strings (with commas and `\"` escapes inside).
    pub fn parse(header: &str) -> Result<Challenge, AuthError> {
        let malformed = || AuthError::Challenge(header.to_string());
        let mut lexer = Lexer {
            s: header.as_bytes(),
            pos: 0,
        };
        let mut challenges: Vec<(String, BTreeMap<String, String>)> = Vec::new();
        loop {
            lexer.skip_separators();
            if lexer.at_end() {
                break;
            }
            let token = lexer.token().ok_or_else(malformed)?;
            lexer.skip_ws();
            if lexer.peek() == Some(b'=') {
                // A parameter of the current challenge.
                lexer.pos += 1;
                lexer.skip_ws();
                let value = if lexer.peek() == Some(b'"') {
                    lexer.quoted().ok_or_else(malformed)?
                } else {
                    lexer.token().ok_or_else(malformed)?
                };
                let (_, params) = challenges.last_mut().ok_or_else(malformed)?;
                params.insert(token.to_ascii_lowercase(), value);
            } else {
                challenges.push((token.to_ascii_lowercase(), BTreeMap::new()));
            }
        }
        for (scheme, mut params) in challenges {
            match scheme.as_str() {
                "bearer" => {
                    let realm = params
                        .remove("realm")
                        .filter(|r| !r.is_empty())
                        .ok_or_else(malformed)?;
                    return Ok(Challenge::Bearer {
                        realm,
                        service: params.remove("service"),
                        scope: params.remove("scope"),
                    });
                }
                "basic" => {
                    return Ok(Challenge::Basic {
                        realm: params.remove("realm").unwrap_or_default(),
                    })
                }
                _ => {}
            }
        }
        Err(malformed())
    }
}

struct Lexer<'a> {
    s: &'a [u8],
    pos: usize,
}

impl Lexer<'_> {
    fn at_end(&self) -> bool {
        self.pos >= self.s.len()
    }
    fn peek(&self) -> Option<u8> {
        self.s.get(self.pos).copied()
    }
    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.pos += 1;
        }
    }
    fn skip_separators(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b',')) {
            self.pos += 1;
        }
    }
    /// An RFC 7230 token (plus `/` and `=`-free base64 chars seen in the wild, e.g. `:`).
    fn token(&mut self) -> Option<String> {
        let start = self.pos;
        while let Some(c) = self.peek() {
            if c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~:/".contains(&c) {
                self.pos += 1;
            } else {
                break;
            }
        }
        (self.pos > start).then(|| String::from_utf8_lossy(&self.s[start..self.pos]).into_owned())
    }
    fn quoted(&mut self) -> Option<String> {
        debug_assert_eq!(self.peek(), Some(b'"'));
        self.pos += 1;
        let mut out = Vec::new();
        loop {
            match self.peek()? {
                b'"' => {
                    self.pos += 1;
                    return Some(String::from_utf8_lossy(&out).into_owned());
                }
                b'\\' => {
                    self.pos += 1;
                    out.push(self.peek()?);
                    self.pos += 1;
                }
                c => {
                    out.push(c);
                    self.pos += 1;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
