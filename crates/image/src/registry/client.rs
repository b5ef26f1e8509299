//! HTTP side of the distribution protocol.
//!
//! Every request goes through [`RegistryClient::send`]: it picks the endpoint's HTTP client
//! (one per `configs` host, because TLS settings are per host), attaches cached auth, and on a
//! 401 runs the challenge flow once (Basic: resend with credentials; Bearer: fetch a token for
//! `repository:<repo>:pull` and resend). Tokens are cached per (endpoint, scope, credentials)
//! until they expire, so the layers of a pull share one token.
//!
//! Errors are classified where they arise (DNS, refused, TLS, HTTP status) into
//! [`RegistryError`] variants, which say whether a retry can help; nothing downstream looks at
//! error strings.

use super::auth::{Challenge, Credentials};
use super::hosts::{Endpoint, RegistriesConfig};
use crate::digest::Digest;
use crate::manifest::Descriptor;
use crate::media;
use crate::reference::Reference;
use futures::StreamExt as _;
use reqwest::header::{
    HeaderMap, HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE, RANGE, WWW_AUTHENTICATE,
};
use reqwest::StatusCode;
use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("{reference}: registry {registry} requires authentication (HTTP 401): configure credentials in {hint}")]
    Unauthorized {
        reference: String,
        registry: String,
        hint: String,
    },
    #[error("{reference}: access denied by registry {registry} (HTTP 403)")]
    Forbidden { reference: String, registry: String },
    #[error("{reference}: manifest not found in registry {registry} (HTTP 404): check the repository name and tag")]
    ManifestNotFound { reference: String, registry: String },
    #[error("{reference}: blob {digest} not found in registry {registry} (HTTP 404)")]
    BlobNotFound {
        reference: String,
        registry: String,
        digest: Digest,
    },
    #[error("{reference}: cannot resolve registry host {registry}: check the name or configure a mirror")]
    UnknownHost { reference: String, registry: String },
    #[error("{reference}: cannot connect to registry {endpoint}: {message}")]
    Connect {
        reference: String,
        endpoint: String,
        message: String,
    },
    #[error("{reference}: TLS error talking to {endpoint}: {message} (for a registry without TLS, configure it as insecure in registries.yaml)")]
    Tls {
        reference: String,
        endpoint: String,
        message: String,
    },
    #[error("{reference}: registry {endpoint} answered HTTP {status}: {body}")]
    Status {
        reference: String,
        endpoint: String,
        status: u16,
        body: String,
    },
    #[error("{reference}: manifest from {registry} has digest {actual}, but {expected} was requested; nothing was stored")]
    ManifestDigestMismatch {
        reference: String,
        registry: String,
        expected: Digest,
        actual: Digest,
    },
    #[error("{reference}: {message}")]
    Protocol { reference: String, message: String },
}

impl RegistryError {
    /// Whether retrying the same request may succeed (connection errors, 5xx, 429).
    pub fn is_retryable(&self) -> bool {
        match self {
            RegistryError::Connect { .. } => true,
            RegistryError::Status { status, .. } => {
                *status >= 500 || *status == 429 || *status == 408
            }
            RegistryError::Unauthorized { .. }
            | RegistryError::Forbidden { .. }
            | RegistryError::ManifestNotFound { .. }
            | RegistryError::BlobNotFound { .. }
            | RegistryError::UnknownHost { .. }
            | RegistryError::Tls { .. }
            | RegistryError::ManifestDigestMismatch { .. }
            | RegistryError::Protocol { .. } => false,
        }
    }
}

/// Configuration for [`RegistryClient`].
#[derive(Debug, Clone, Default)]
pub struct ClientConfig {
    pub registries: RegistriesConfig,
    pub docker_config: Option<super::auth::DockerConfig>,
}

/// A stream of blob bytes; `offset` is where it starts (0 unless a Range request was honoured).
pub struct BlobStream {
    pub offset: u64,
    pub body: Pin<Box<dyn futures::Stream<Item = Result<bytes::Bytes, RegistryError>> + Send>>,
}

/// Manifests larger than this are refused (containerd uses the same bound): a manifest is read
/// into memory whole, and a hostile registry must not make us allocate without limit.
const MAX_MANIFEST_SIZE: u64 = 4 << 20;
/// Tokens without `expires_in` live this long (the distribution spec's default).
const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(60);
/// Tokens are renewed this long before they expire, so a request never races the expiry.
const TOKEN_EXPIRY_MARGIN: Duration = Duration::from_secs(5);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// No whole-request timeout (a layer can take minutes); a stalled connection is cut after this.
const READ_TIMEOUT: Duration = Duration::from_secs(60);
const USER_AGENT: &str = concat!("deckhand/", env!("CARGO_PKG_VERSION"));

/// Thread-safe, cheap to clone; caches tokens.
#[derive(Clone)]
pub struct RegistryClient {
    inner: Arc<Inner>,
}

struct Inner {
    config: ClientConfig,
    /// One HTTP client per `configs` host: TLS settings differ per host. Only successes are
    /// cached, so a fixed CA file is picked up by the next pull.
    http: Mutex<HashMap<String, reqwest::Client>>,
    auth: Mutex<HashMap<AuthKey, CachedAuth>>,
    /// Per `registry/repository`, the endpoint that last answered. Blob and manifest fetches
    /// start there: when a mirror is down, each layer of a pull would otherwise wait for it
    /// again before falling through.
    last_good: Mutex<HashMap<String, url::Url>>,
}

/// In which order [`RegistryClient::each_endpoint`] tries the endpoints.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Order {
    /// Mirrors then the registry, as configured: tags must come from the first that has them.
    Configured,
    /// The endpoint that last answered for this repository first: content-addressed objects
    /// are the same wherever they come from.
    LastGoodFirst,
}

#[derive(Clone, PartialEq, Eq, Hash)]
struct AuthKey {
    endpoint: String,
    scope: String,
    credentials: Option<Credentials>,
}

#[derive(Clone)]
struct CachedAuth {
    header: HeaderValue,
    /// `None` for Basic: credentials do not expire on their own.
    expires: Option<Instant>,
}

/// What a request is about, for auth scope and error messages.
struct Target<'a> {
    reference: &'a Reference,
    endpoint: Endpoint,
    credentials: Option<Credentials>,
}

impl Target<'_> {
    fn reference(&self) -> String {
        self.reference.to_string()
    }
    fn registry(&self) -> String {
        self.endpoint.config_host.clone()
    }
    fn endpoint(&self) -> String {
        self.endpoint
            .base
            .as_str()
            .trim_end_matches('/')
            .to_string()
    }
    fn scope(&self) -> String {
        format!("repository:{}:pull", self.reference.repository)
    }
    fn url(&self, suffix: &str) -> Result<url::Url, RegistryError> {
        // Mirror endpoints may carry a path prefix: requests go to `<endpoint>/v2/<repo>/...`.
        let base = self.endpoint();
        let url = format!("{base}/v2/{}/{suffix}", self.reference.repository);
        url::Url::parse(&url).map_err(|e| RegistryError::Protocol {
            reference: self.reference(),
            message: format!("cannot build request URL {url:?}: {e}"),
        })
    }
}

/// DNS failures are reported through this type so [`classify`] can tell "no such host" from
/// "host refused" by downcasting, not by reading messages.
#[derive(Debug, thiserror::Error)]
#[error("cannot resolve {host}: {source}")]
struct DnsError {
    host: String,
    #[source]
    source: std::io::Error,
}

struct Resolver;

impl reqwest::dns::Resolve for Resolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_string();
        Box::pin(async move {
            let lookup = tokio::net::lookup_host((host.clone(), 0))
                .await
                .map(Iterator::collect::<Vec<_>>);
            let addrs: Vec<std::net::SocketAddr> = match lookup {
                Ok(addrs) => addrs,
                Err(source) => return Err(Box::new(DnsError { host, source }) as _),
            };
            if addrs.is_empty() {
                let source = std::io::Error::new(std::io::ErrorKind::NotFound, "no addresses");
                return Err(Box::new(DnsError { host, source }) as _);
            }
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

impl RegistryClient {
    pub fn new(config: ClientConfig) -> Result<RegistryClient, RegistryError> {
        Ok(RegistryClient {
            inner: Arc::new(Inner {
                config,
                http: Mutex::new(HashMap::new()),
                auth: Mutex::new(HashMap::new()),
                last_good: Mutex::new(HashMap::new()),
            }),
        })
    }

    /// The registries configuration in effect.
    pub fn registries(&self) -> &RegistriesConfig {
        &self.inner.config.registries
    }

    /// Resolve `reference` (tag or digest) to its top-level descriptor and manifest bytes,
    /// trying mirrors then the registry. `creds` (CRI auth) override configured credentials.
    /// When the reference has a digest, the bytes are verified against it.
    pub async fn resolve(
        &self,
        reference: &Reference,
        creds: Option<&Credentials>,
    ) -> Result<(Descriptor, Vec<u8>), RegistryError> {
        self.each_endpoint(reference, creds, Order::Configured, |target| async move {
            let expected = reference.digest.clone();
            let accept = media::MANIFEST_ACCEPT.join(", ");
            self.get_manifest(&target, &reference.object(), &accept, expected.as_ref())
                .await
        })
        .await
    }

    /// Fetch a manifest by digest (a platform manifest from an index); verified.
    pub async fn fetch_manifest(
        &self,
        reference: &Reference,
        descriptor: &Descriptor,
        creds: Option<&Credentials>,
    ) -> Result<Vec<u8>, RegistryError> {
        let (_, bytes) = self
            .each_endpoint(
                reference,
                creds,
                Order::LastGoodFirst,
                |target| async move {
                    let mut accept: Vec<&str> = Vec::new();
                    if !descriptor.media_type.is_empty() {
                        accept.push(&descriptor.media_type);
                    }
                    accept.extend(
                        media::MANIFEST_ACCEPT
                            .iter()
                            .filter(|m| **m != descriptor.media_type),
                    );
                    let object = descriptor.digest.to_string();
                    self.get_manifest(
                        &target,
                        &object,
                        &accept.join(", "),
                        Some(&descriptor.digest),
                    )
                    .await
                },
            )
            .await?;
        Ok(bytes)
    }

    /// Open a blob from byte `offset` (Range request; the stream's `offset` says whether the
    /// registry honoured it).
    pub async fn fetch_blob(
        &self,
        reference: &Reference,
        descriptor: &Descriptor,
        offset: u64,
        creds: Option<&Credentials>,
    ) -> Result<BlobStream, RegistryError> {
        self.each_endpoint(reference, creds, Order::LastGoodFirst, |target| async move {
            let url = target.url(&format!("blobs/{}", descriptor.digest))?;
            let mut headers = HeaderMap::new();
            if offset > 0 {
                headers.insert(RANGE, header_value(&format!("bytes={offset}-")));
            }
            let response = self.send(&target, url, headers).await?;
            let status = response.status();
            if status == StatusCode::NOT_FOUND {
                return Err(RegistryError::BlobNotFound {
                    reference: target.reference(),
                    registry: target.registry(),
                    digest: descriptor.digest.clone(),
                });
            }
            let start = match status {
                StatusCode::PARTIAL_CONTENT => {
                    let start = content_range_start(response.headers());
                    if start != Some(offset) {
                        return Err(RegistryError::Protocol {
                            reference: target.reference(),
                            message: format!(
                                "registry {} answered a request for blob {} from byte {offset} with Content-Range {:?}",
                                target.endpoint(),
                                descriptor.digest,
                                response.headers().get(reqwest::header::CONTENT_RANGE)
                            ),
                        });
                    }
                    offset
                }
                // The registry ignored Range: the caller starts over.
                s if s.is_success() => 0,
                _ => return Err(status_error(&target, response).await),
            };
            let reference_name = target.reference();
            let endpoint = target.endpoint();
            let body = response.bytes_stream().map(move |chunk| {
                chunk.map_err(|e| RegistryError::Connect {
                    reference: reference_name.clone(),
                    endpoint: endpoint.clone(),
                    message: format!("download interrupted: {}", error_chain(&e)),
                })
            });
            Ok(BlobStream { offset: start, body: Box::pin(body) })
        })
        .await
    }

    /// Run `attempt` against each endpoint in order (mirrors, then the registry): a mirror's
    /// failure, whatever it is, falls through to the next endpoint; the last error is returned.
    async fn each_endpoint<'r, T, F, Fut>(
        &self,
        reference: &'r Reference,
        creds: Option<&Credentials>,
        order: Order,
        attempt: F,
    ) -> Result<T, RegistryError>
    where
        F: Fn(Target<'r>) -> Fut,
        Fut: std::future::Future<Output = Result<T, RegistryError>>,
    {
        let mut endpoints = self.inner.config.registries.endpoints(&reference.registry);
        let repository = reference.name();
        if order == Order::LastGoodFirst {
            if let Some(good) = lock(&self.inner.last_good).get(&repository) {
                if let Some(pos) = endpoints.iter().position(|e| e.base == *good) {
                    let preferred = endpoints.remove(pos);
                    endpoints.insert(0, preferred);
                }
            }
        }
        let mut last = None;
        let mut registry_failed = false;
        let count = endpoints.len();
        for (i, endpoint) in endpoints.into_iter().enumerate() {
            let credentials = self.credentials_for(&endpoint, creds);
            let is_mirror = endpoint.is_mirror;
            let base = endpoint.base.clone();
            let target = Target {
                reference,
                endpoint,
                credentials,
            };
            match attempt(target).await {
                Ok(value) => {
                    if count > 1 {
                        lock(&self.inner.last_good).insert(repository, base);
                    }
                    return Ok(value);
                }
                Err(e) => {
                    if i + 1 < count {
                        tracing::info!(endpoint = %base, error = %e, "endpoint failed; trying the next one");
                    }
                    // The registry's own answer explains a failure best; a mirror's only when
                    // the registry was not asked.
                    if !is_mirror || !registry_failed {
                        last = Some(e);
                    }
                    if !is_mirror {
                        registry_failed = true;
                    }
                }
            }
        }
        Err(last.unwrap_or_else(|| RegistryError::Protocol {
            reference: reference.to_string(),
            message: "no endpoint to try".to_string(),
        }))
    }
}

/// The token endpoint's answer (Docker's `token`, OAuth2's `access_token`).
#[derive(serde::Deserialize)]
struct TokenResponse {
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    access_token: Option<String>,
    #[serde(default)]
    expires_in: Option<u64>,
}

impl RegistryClient {
    /// Credentials for one endpoint. Explicit ones (CRI auth, `--creds`) are meant for the
    /// image's registry, so they are not sent to mirrors (a mirror is another party); then
    /// `registries.yaml` `configs.<host>.auth`, then Docker's `config.json`.
    fn credentials_for(
        &self,
        endpoint: &Endpoint,
        explicit: Option<&Credentials>,
    ) -> Option<Credentials> {
        if !endpoint.is_mirror {
            if let Some(creds) = explicit {
                return Some(creds.clone());
            }
        }
        let configured = self
            .inner
            .config
            .registries
            .host_config(&endpoint.config_host)
            .and_then(|c| c.auth.as_ref())
            // Validated when the file was loaded; a config built in code with a bad base64
            // value simply gives no credentials, and the 401 error says where to configure.
            .and_then(|auth| auth.credentials().ok().flatten());
        configured.or_else(|| {
            self.inner
                .config
                .docker_config
                .as_ref()?
                .credentials(&endpoint.config_host)
        })
    }

    /// The HTTP client for `host` (a `configs` key), built on first use from its TLS settings.
    fn http_client(
        &self,
        target: &Target<'_>,
        host: &str,
    ) -> Result<reqwest::Client, RegistryError> {
        if let Some(client) = lock(&self.inner.http).get(host) {
            return Ok(client.clone());
        }
        let tls_error = |message: String| RegistryError::Tls {
            reference: target.reference(),
            endpoint: target.endpoint(),
            message: format!("{message} (registries.yaml configs.{host:?}.tls)"),
        };
        let mut builder = reqwest::Client::builder()
            .user_agent(USER_AGENT)
            .connect_timeout(CONNECT_TIMEOUT)
            .read_timeout(READ_TIMEOUT)
            .dns_resolver(Arc::new(Resolver))
            // Blob GETs are redirected to object storage; reqwest drops Authorization when the
            // host changes, so the registry's token never leaks to the storage backend.
            .redirect(reqwest::redirect::Policy::limited(10));
        if let Some(tls) = self
            .inner
            .config
            .registries
            .host_config(host)
            .and_then(|c| c.tls.as_ref())
        {
            if let Some(ca_file) = &tls.ca_file {
                let pem = std::fs::read(ca_file).map_err(|e| {
                    tls_error(format!("cannot read CA file {}: {e}", ca_file.display()))
                })?;
                let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
                    tls_error(format!(
                        "CA file {} is not PEM certificates: {e}",
                        ca_file.display()
                    ))
                })?;
                for cert in certs {
                    builder = builder.add_root_certificate(cert);
                }
            }
            if let (Some(cert_file), Some(key_file)) = (&tls.cert_file, &tls.key_file) {
                let mut pem = std::fs::read(cert_file).map_err(|e| {
                    tls_error(format!(
                        "cannot read client certificate {}: {e}",
                        cert_file.display()
                    ))
                })?;
                pem.push(b'\n');
                pem.extend(std::fs::read(key_file).map_err(|e| {
                    tls_error(format!(
                        "cannot read client key {}: {e}",
                        key_file.display()
                    ))
                })?);
                let identity = reqwest::Identity::from_pem(&pem).map_err(|e| {
                    tls_error(format!(
                        "client certificate {} / key {} are not usable: {}",
                        cert_file.display(),
                        key_file.display(),
                        error_chain(&e)
                    ))
                })?;
                builder = builder.identity(identity);
            }
            if tls.insecure_skip_verify {
                builder = builder.danger_accept_invalid_certs(true);
            }
        }
        let client = builder
            .build()
            .map_err(|e| tls_error(format!("cannot set up TLS: {}", error_chain(&e))))?;
        lock(&self.inner.http).insert(host.to_string(), client.clone());
        Ok(client)
    }

    /// GET `url` with auth: cached auth first, then, on 401, the challenge flow once.
    /// Returns any response other than 401; callers map the other statuses.
    async fn send(
        &self,
        target: &Target<'_>,
        url: url::Url,
        headers: HeaderMap,
    ) -> Result<reqwest::Response, RegistryError> {
        let client = self.http_client(target, &target.endpoint.config_host)?;
        let key = AuthKey {
            endpoint: target.endpoint(),
            scope: target.scope(),
            credentials: target.credentials.clone(),
        };
        let mut auth = match &target.credentials {
            Some(Credentials::RegistryToken(token)) => {
                Some(header_value(&format!("Bearer {token}")))
            }
            _ => self.cached_auth(&key),
        };
        let mut challenged = false;
        loop {
            let mut request = client.get(url.clone()).headers(headers.clone());
            if let Some(value) = &auth {
                request = request.header(AUTHORIZATION, value.clone());
            }
            let response = request.send().await.map_err(|e| classify(target, &e))?;
            if response.status() != StatusCode::UNAUTHORIZED {
                return Ok(response);
            }
            // A cached token may have been revoked early: drop it so the next pull starts over.
            lock(&self.inner.auth).remove(&key);
            if challenged {
                return Err(unauthorized(target));
            }
            challenged = true;
            // Some registries send one header per scheme (Basic and Bearer): parse them as the
            // one comma-separated list HTTP says they are equivalent to.
            let header = response
                .headers()
                .get_all(WWW_AUTHENTICATE)
                .iter()
                .filter_map(|h| h.to_str().ok())
                .collect::<Vec<_>>()
                .join(", ");
            if header.is_empty() {
                return Err(unauthorized(target));
            }
            let challenge = Challenge::parse(&header).map_err(|e| RegistryError::Protocol {
                reference: target.reference(),
                message: format!(
                    "registry {} sent an unusable auth challenge: {e}",
                    target.endpoint()
                ),
            })?;
            auth = Some(self.authorize(target, &key, &challenge).await?);
        }
    }

    fn cached_auth(&self, key: &AuthKey) -> Option<HeaderValue> {
        let mut cache = lock(&self.inner.auth);
        let entry = cache.get(key)?;
        if entry.expires.is_some_and(|at| Instant::now() >= at) {
            cache.remove(key);
            return None;
        }
        Some(entry.header.clone())
    }

    /// Answer a challenge: the Authorization header to resend with (also cached).
    async fn authorize(
        &self,
        target: &Target<'_>,
        key: &AuthKey,
        challenge: &Challenge,
    ) -> Result<HeaderValue, RegistryError> {
        let cached = match challenge {
            Challenge::Basic { .. } => match &target.credentials {
                Some(Credentials::Basic { username, password }) => CachedAuth {
                    header: basic_header(username, password),
                    expires: None,
                },
                _ => return Err(unauthorized(target)),
            },
            Challenge::Bearer {
                realm,
                service,
                scope,
            } => {
                self.fetch_token(target, realm, service.as_deref(), scope.as_deref())
                    .await?
            }
        };
        let header = cached.header.clone();
        lock(&self.inner.auth).insert(key.clone(), cached);
        Ok(header)
    }

    /// The token dance of the distribution auth spec, for pull access to the repository.
    async fn fetch_token(
        &self,
        target: &Target<'_>,
        realm: &str,
        service: Option<&str>,
        challenge_scope: Option<&str>,
    ) -> Result<CachedAuth, RegistryError> {
        let protocol = |message: String| RegistryError::Protocol {
            reference: target.reference(),
            message,
        };
        let realm_url = url::Url::parse(realm).map_err(|e| {
            protocol(format!(
                "registry {} names token realm {realm:?}, not a URL: {e}",
                target.endpoint()
            ))
        })?;
        let realm_host = match realm_url.port() {
            Some(port) => format!("{}:{port}", realm_url.host_str().unwrap_or_default()),
            None => realm_url.host_str().unwrap_or_default().to_string(),
        };
        // The token server may be another host with its own TLS settings.
        let client = if self
            .inner
            .config
            .registries
            .host_config(&realm_host)
            .is_some()
        {
            self.http_client(target, &realm_host)?
        } else {
            self.http_client(target, &target.endpoint.config_host)?
        };
        let mut scopes = vec![target.scope()];
        if let Some(extra) = challenge_scope.filter(|s| !s.is_empty() && *s != scopes[0]) {
            scopes.push(extra.to_string());
        }
        let mut params: Vec<(&str, String)> = Vec::new();
        if let Some(service) = service {
            params.push(("service", service.to_string()));
        }
        params.extend(scopes.into_iter().map(|s| ("scope", s)));
        let request = match &target.credentials {
            Some(Credentials::IdentityToken(refresh)) => {
                params.push(("grant_type", "refresh_token".to_string()));
                params.push(("refresh_token", refresh.clone()));
                params.push(("client_id", "deckhand".to_string()));
                let body = url::form_urlencoded::Serializer::new(String::new())
                    .extend_pairs(params.iter())
                    .finish();
                client
                    .post(realm_url)
                    .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
                    .body(body)
            }
            Some(Credentials::Basic { username, password }) => client
                .get(realm_url)
                .query(&params)
                .header(AUTHORIZATION, basic_header(username, password)),
            None => client.get(realm_url).query(&params),
            // A fixed token the registry has just rejected: nothing to exchange.
            Some(Credentials::RegistryToken(_)) => return Err(unauthorized(target)),
        };
        let response = request.send().await.map_err(|e| classify(target, &e))?;
        let status = response.status();
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            return Err(unauthorized(target));
        }
        if !status.is_success() {
            return Err(status_error(target, response).await);
        }
        let body = read_limited(target, response, MAX_MANIFEST_SIZE).await?;
        let token: TokenResponse = serde_json::from_slice(&body).map_err(|e| {
            protocol(format!(
                "token server {realm} answered with invalid JSON: {e}"
            ))
        })?;
        let token = token
            .token
            .filter(|t| !t.is_empty())
            .or(token.access_token.filter(|t| !t.is_empty()))
            .ok_or_else(|| protocol(format!("token server {realm} answered without a token")))
            .map(|t| (t, token.expires_in))?;
        let lifetime = token
            .1
            .map(Duration::from_secs)
            .unwrap_or(DEFAULT_TOKEN_LIFETIME);
        let expires =
            Instant::now() + lifetime.saturating_sub(TOKEN_EXPIRY_MARGIN.min(lifetime / 2));
        Ok(CachedAuth {
            header: header_value(&format!("Bearer {}", token.0)),
            expires: Some(expires),
        })
    }

    /// GET a manifest by tag or digest, verify it, and describe it.
    async fn get_manifest(
        &self,
        target: &Target<'_>,
        object: &str,
        accept: &str,
        expected: Option<&Digest>,
    ) -> Result<(Descriptor, Vec<u8>), RegistryError> {
        let url = target.url(&format!("manifests/{object}"))?;
        let mut headers = HeaderMap::new();
        headers.insert(ACCEPT, header_value(accept));
        let response = self.send(target, url, headers).await?;
        match response.status() {
            StatusCode::NOT_FOUND => {
                return Err(RegistryError::ManifestNotFound {
                    reference: target.reference(),
                    registry: target.registry(),
                })
            }
            s if !s.is_success() => return Err(status_error(target, response).await),
            _ => {}
        }
        let header_digest = response
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<Digest>().ok());
        let content_type = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(';').next().unwrap_or_default().trim().to_string())
            .unwrap_or_default();
        let body = read_limited(target, response, MAX_MANIFEST_SIZE).await?;
        // The header is the registry's word; only our own hash of the bytes is trusted.
        let actual = Digest::of(&body);
        if let Some(expected) = expected.or(header_digest.as_ref()) {
            if *expected != actual {
                return Err(RegistryError::ManifestDigestMismatch {
                    reference: target.reference(),
                    registry: target.registry(),
                    expected: expected.clone(),
                    actual,
                });
            }
        }
        let descriptor = Descriptor {
            media_type: manifest_media_type(&content_type, &body),
            digest: actual,
            size: body.len() as u64,
            platform: None,
            annotations: Default::default(),
            urls: Vec::new(),
        };
        Ok((descriptor, body))
    }
}

/// The media type of a manifest: `Content-Type` when it names a manifest type; otherwise (some
/// registries and static file servers say `application/json`) what the document says it is.
fn manifest_media_type(content_type: &str, body: &[u8]) -> String {
    if media::MANIFEST_ACCEPT.contains(&content_type) {
        return content_type.to_string();
    }
    crate::manifest::sniff_media_type(body)
        .ok()
        .flatten()
        .unwrap_or_else(|| content_type.to_string())
}

async fn read_limited(
    target: &Target<'_>,
    response: reqwest::Response,
    limit: u64,
) -> Result<Vec<u8>, RegistryError> {
    let too_big = || RegistryError::Protocol {
        reference: target.reference(),
        message: format!(
            "registry {} sent a document larger than {limit} bytes; refusing it",
            target.endpoint()
        ),
    };
    if response.content_length().is_some_and(|len| len > limit) {
        return Err(too_big());
    }
    let mut body = Vec::new();
    let mut stream = response.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| classify(target, &e))?;
        if body.len() as u64 + chunk.len() as u64 > limit {
            return Err(too_big());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

fn unauthorized(target: &Target<'_>) -> RegistryError {
    let host = &target.endpoint.config_host;
    let mut hint =
        format!("registries.yaml configs.{host:?}.auth or docker config.json (or pass --creds)");
    if target.credentials.is_some() {
        hint.push_str("; the credentials that were sent were rejected");
    }
    RegistryError::Unauthorized {
        reference: target.reference(),
        registry: target.registry(),
        hint,
    }
}

/// Map an unexpected status to an error, keeping the registry's own explanation (the
/// distribution spec's `{"errors":[{"code","message"}]}`) when there is one.
async fn status_error(target: &Target<'_>, response: reqwest::Response) -> RegistryError {
    let status = response.status();
    match status {
        StatusCode::UNAUTHORIZED => return unauthorized(target),
        StatusCode::FORBIDDEN => {
            return RegistryError::Forbidden {
                reference: target.reference(),
                registry: target.registry(),
            }
        }
        _ => {}
    }
    let bytes = read_limited(target, response, 64 << 10)
        .await
        .unwrap_or_default();
    #[derive(serde::Deserialize)]
    struct Errors {
        errors: Vec<ErrorEntry>,
    }
    #[derive(serde::Deserialize)]
    struct ErrorEntry {
        #[serde(default)]
        code: String,
        #[serde(default)]
        message: String,
    }
    let body = match serde_json::from_slice::<Errors>(&bytes) {
        Ok(errors) if !errors.errors.is_empty() => errors
            .errors
            .iter()
            .map(|e| format!("{}: {}", e.code, e.message))
            .collect::<Vec<_>>()
            .join("; "),
        _ => {
            let text = String::from_utf8_lossy(&bytes);
            let text = text.trim();
            let cut = text.char_indices().nth(300).map_or(text.len(), |(i, _)| i);
            if text.is_empty() {
                status
                    .canonical_reason()
                    .unwrap_or("no explanation")
                    .to_string()
            } else {
                text[..cut].to_string()
            }
        }
    };
    RegistryError::Status {
        reference: target.reference(),
        endpoint: target.endpoint(),
        status: status.as_u16(),
        body,
    }
}

/// Turn a transport error into the variant that says what went wrong, by the error types in
/// its source chain (our [`DnsError`], the OS's `io::ErrorKind`), never by its text.
fn classify(target: &Target<'_>, error: &reqwest::Error) -> RegistryError {
    let message = error_chain(error);
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = source {
        if e.downcast_ref::<DnsError>().is_some() {
            return RegistryError::UnknownHost {
                reference: target.reference(),
                registry: target.registry(),
            };
        }
        // TLS failures (bad certificate, a plain-HTTP peer) arrive as an io::Error wrapping a
        // rustls::Error; io::Error::source skips the wrapped error, so look inside explicitly.
        if is_tls_error(e) {
            return RegistryError::Tls {
                reference: target.reference(),
                endpoint: target.endpoint(),
                message,
            };
        }
        source = e.source();
    }
    if error.is_connect()
        || error.is_timeout()
        || error.is_body()
        || error.is_request()
        || error.is_decode()
    {
        return RegistryError::Connect {
            reference: target.reference(),
            endpoint: target.endpoint(),
            message,
        };
    }
    RegistryError::Protocol {
        reference: target.reference(),
        message: format!("{}: {message}", target.endpoint()),
    }
}

/// Whether `e` is a rustls error, possibly inside (nested) io::Error wrappers.
fn is_tls_error(e: &(dyn std::error::Error + 'static)) -> bool {
    if e.is::<rustls::Error>() {
        return true;
    }
    match e
        .downcast_ref::<std::io::Error>()
        .and_then(|io| io.get_ref())
    {
        Some(inner) => is_tls_error(inner),
        None => false,
    }
}

/// `a: b: c` from an error and its sources, skipping repeats (reqwest and hyper often repeat
/// their cause in their own message).
fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut source = Some(error);
    while let Some(e) = source {
        let text = e.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = e.source();
    }
    parts.join(": ")
}

fn basic_header(username: &str, password: &str) -> HeaderValue {
    use base64::Engine as _;
    let encoded =
        base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"));
    let mut value = header_value(&format!("Basic {encoded}"));
    value.set_sensitive(true);
    value
}

fn header_value(value: &str) -> HeaderValue {
    // Every value built here is ASCII (base64, digests, numbers, media types), except a token
    // a hostile server could fill with control characters: such a value is sent empty and
    // the registry's 401 reports the problem.
    let mut value = HeaderValue::from_str(value).unwrap_or_else(|_| HeaderValue::from_static(""));
    value.set_sensitive(value.as_bytes().starts_with(b"Bearer "));
    value
}

/// The first byte of a `Content-Range: bytes <first>-<last>/<size>` header.
fn content_range_start(headers: &HeaderMap) -> Option<u64> {
    let value = headers.get(reqwest::header::CONTENT_RANGE)?.to_str().ok()?;
    let range = value.trim().strip_prefix("bytes")?.trim_start();
    range.split('-').next()?.trim().parse().ok()
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // The maps hold no invariants a panicking holder could break half-way.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
