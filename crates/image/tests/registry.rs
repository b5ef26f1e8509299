//! The distribution client against a real `docker-registry` (plain HTTP on loopback, with and
//! without htpasswd auth) and, for what a stock registry cannot be made to do, a hand-written
//! HTTP server: bearer token flows, lying digests, ignored Range headers.

mod support;

use deckhand_image::digest::Digest;
use deckhand_image::manifest::Descriptor;
use deckhand_image::media;
use deckhand_image::registry::auth::{Credentials, DockerConfig};
use deckhand_image::registry::client::{ClientConfig, RegistryClient, RegistryError};
use deckhand_image::registry::hosts::RegistriesConfig;
use futures::StreamExt as _;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use support::*;

fn client() -> RegistryClient {
    RegistryClient::new(ClientConfig::default()).unwrap()
}

fn client_with(registries_yaml: &str) -> RegistryClient {
    let registries =
        RegistriesConfig::parse(Path::new("registries.yaml"), registries_yaml).unwrap();
    RegistryClient::new(ClientConfig {
        registries,
        docker_config: None,
    })
    .unwrap()
}

fn blob_descriptor(data: &[u8]) -> Descriptor {
    Descriptor {
        media_type: media::OCI_LAYER_GZIP.to_string(),
        digest: Digest::of(data),
        size: data.len() as u64,
        platform: None,
        annotations: Default::default(),
        urls: Vec::new(),
    }
}

async fn collect(stream: deckhand_image::registry::BlobStream) -> (u64, Vec<u8>) {
    let offset = stream.offset;
    let mut body = stream.body;
    let mut out = Vec::new();
    while let Some(chunk) = body.next().await {
        out.extend_from_slice(&chunk.unwrap());
    }
    (offset, out)
}

fn small_image() -> TestImage {
    image(
        vec![
            layer(&[("etc/hello.txt", b"hello\n")], true),
            layer(&[("bin/tool", &[7u8; 3000])], true),
        ],
        &platform("linux", "amd64"),
    )
}

#[tokio::test]
async fn resolve_by_tag_and_by_digest() {
    let registry = Registry::start().await;
    let img = small_image();
    let digest = registry.push_image("team/app", "v1", &img).await;

    let client = client();
    let by_tag = reference(&registry.host, "team/app", Some("v1"), None);
    let (descriptor, bytes) = client.resolve(&by_tag, None).await.unwrap();
    assert_eq!(descriptor.digest, digest);
    assert_eq!(descriptor.media_type, media::OCI_MANIFEST);
    assert_eq!(descriptor.size, img.manifest.len() as u64);
    assert_eq!(bytes, img.manifest);

    let by_digest = reference(&registry.host, "team/app", None, Some(&digest));
    let (descriptor, bytes) = client.resolve(&by_digest, None).await.unwrap();
    assert_eq!(descriptor.digest, digest);
    assert_eq!(bytes, img.manifest);

    // fetch_manifest by descriptor (the path used for a platform manifest of an index).
    let bytes = client
        .fetch_manifest(&by_tag, &descriptor, None)
        .await
        .unwrap();
    assert_eq!(bytes, img.manifest);
}

#[tokio::test]
async fn resolve_index_keeps_its_media_type() {
    let registry = Registry::start().await;
    let amd = small_image();
    let arm = image(
        vec![layer(&[("arm", b"arm")], true)],
        &platform("linux", "arm64"),
    );
    registry.push_image("multi", "amd", &amd).await;
    registry.push_image("multi", "arm", &arm).await;
    let index = index(&[
        (&amd.manifest, platform("linux", "amd64")),
        (&arm.manifest, platform("linux", "arm64")),
    ]);
    let index_digest = registry
        .push_manifest("multi", "latest", media::OCI_INDEX, &index)
        .await;

    let (descriptor, bytes) = client()
        .resolve(
            &reference(&registry.host, "multi", Some("latest"), None),
            None,
        )
        .await
        .unwrap();
    assert_eq!(descriptor.media_type, media::OCI_INDEX);
    assert_eq!(descriptor.digest, index_digest);
    assert_eq!(bytes, index);
}

#[tokio::test]
async fn fetch_blob_whole_and_resumed_with_range() {
    let registry = Registry::start().await;
    let data: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
    registry.push_blob("blobs", &data).await;
    let reference = reference(&registry.host, "blobs", Some("x"), None);
    let descriptor = blob_descriptor(&data);
    let client = client();

    let (offset, body) = collect(
        client
            .fetch_blob(&reference, &descriptor, 0, None)
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(offset, 0);
    assert_eq!(body, data);

    let (offset, body) = collect(
        client
            .fetch_blob(&reference, &descriptor, 123_456, None)
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(offset, 123_456);
    assert_eq!(body, &data[123_456..]);
}

#[tokio::test]
async fn not_found_errors_say_what_is_missing() {
    let registry = Registry::start().await;
    registry.push_image("present", "v1", &small_image()).await;
    let client = client();

    let missing_tag = reference(&registry.host, "present", Some("nope"), None);
    let err = client.resolve(&missing_tag, None).await.unwrap_err();
    assert!(
        matches!(err, RegistryError::ManifestNotFound { .. }),
        "{err:?}"
    );
    assert!(!err.is_retryable());
    let text = err.to_string();
    assert!(
        text.contains(&format!("{}/present:nope", registry.host)) && text.contains("404"),
        "{text}"
    );

    let missing_repo = reference(&registry.host, "absent/repo", Some("v1"), None);
    let err = client.resolve(&missing_repo, None).await.unwrap_err();
    assert!(
        matches!(err, RegistryError::ManifestNotFound { .. }),
        "{err:?}"
    );

    let absent = blob_descriptor(b"never pushed");
    let err = client
        .fetch_blob(&missing_tag, &absent, 0, None)
        .await
        .err()
        .unwrap();
    match &err {
        RegistryError::BlobNotFound { digest, .. } => assert_eq!(*digest, absent.digest),
        other => panic!("{other:?}"),
    }
    assert!(err.to_string().contains(&absent.digest.to_string()));
}

#[tokio::test]
async fn basic_auth_with_and_without_credentials() {
    let registry = Registry::start_with(Some(("alice", "wonderland"))).await;
    let img = small_image();
    let digest = registry.push_image("private/app", "v1", &img).await;
    let reference = reference(&registry.host, "private/app", Some("v1"), None);

    // No credentials anywhere: a 401 that says where to put them.
    let err = client().resolve(&reference, None).await.unwrap_err();
    match &err {
        RegistryError::Unauthorized {
            hint,
            registry: host,
            ..
        } => {
            assert_eq!(host, &registry.host);
            assert!(
                hint.contains("registries.yaml") && hint.contains("--creds"),
                "{hint}"
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(!err.is_retryable());

    // Explicit credentials (CRI auth / --creds).
    let creds = Credentials::Basic {
        username: "alice".into(),
        password: "wonderland".into(),
    };
    let client = client();
    let (descriptor, _) = client.resolve(&reference, Some(&creds)).await.unwrap();
    assert_eq!(descriptor.digest, digest);
    let layer = &img.layers[0];
    let (_, body) = collect(
        client
            .fetch_blob(&reference, &blob_descriptor(&layer.blob), 0, Some(&creds))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(body, layer.blob);

    // Wrong credentials: still 401, and the message says they were rejected.
    let wrong = Credentials::Basic {
        username: "alice".into(),
        password: "nope".into(),
    };
    let err = client.resolve(&reference, Some(&wrong)).await.unwrap_err();
    assert!(
        matches!(&err, RegistryError::Unauthorized { hint, .. } if hint.contains("rejected")),
        "{err:?}"
    );

    // registries.yaml configs.<host>.auth.
    let yaml = format!(
        "configs:\n  \"{}\":\n    auth: {{ username: alice, password: wonderland }}\n",
        registry.host
    );
    let (descriptor, _) = client_with(&yaml).resolve(&reference, None).await.unwrap();
    assert_eq!(descriptor.digest, digest);

    // Docker config.json, keyed by URL.
    let docker = DockerConfig::parse(
        Path::new("config.json"),
        format!(
            r#"{{"auths": {{"http://{}/v1/": {{"auth": "YWxpY2U6d29uZGVybGFuZA=="}}}}}}"#,
            registry.host
        )
        .as_bytes(),
    )
    .unwrap();
    let client = RegistryClient::new(ClientConfig {
        registries: RegistriesConfig::default(),
        docker_config: Some(docker),
    })
    .unwrap();
    let (descriptor, _) = client.resolve(&reference, None).await.unwrap();
    assert_eq!(descriptor.digest, digest);

    // Explicit credentials win over configured ones.
    let yaml = format!(
        "configs:\n  \"{}\":\n    auth: {{ username: alice, password: stale }}\n",
        registry.host
    );
    let (descriptor, _) = client_with(&yaml)
        .resolve(&reference, Some(&creds))
        .await
        .unwrap();
    assert_eq!(descriptor.digest, digest);
}

/// A registry + token server in one: manifests need `Bearer <token>`; `/token` hands out
/// tokens (to anyone, or only to `user:pass` when `require_basic`) and counts its calls.
struct TokenRegistry {
    server: FakeServer,
    token_requests: Arc<AtomicUsize>,
    manifest: Vec<u8>,
    blob: Vec<u8>,
}

async fn token_registry(
    require_basic: bool,
    expires_in: Option<u64>,
    use_access_token: bool,
) -> TokenRegistry {
    let manifest = small_image().manifest;
    let blob: Vec<u8> = (0..50_000u32).map(|i| (i % 256) as u8).collect();
    let token_requests = Arc::new(AtomicUsize::new(0));
    let counter = token_requests.clone();
    let addr = Arc::new(std::sync::OnceLock::<String>::new());
    let addr_in = addr.clone();
    let (m, b) = (manifest.clone(), blob.clone());
    let server = FakeServer::start(move |req| {
        let addr = addr_in.get().unwrap();
        if req.path() == "/token" {
            let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
            let query = req.query();
            let has = |k: &str, v: &str| query.iter().any(|(qk, qv)| qk == k && qv == v);
            let form = if req.method == "POST" {
                url::form_urlencoded::parse(&req.body).into_owned().collect::<Vec<_>>()
            } else {
                Vec::new()
            };
            let refresh_ok = form.iter().any(|(k, v)| k == "grant_type" && v == "refresh_token")
                && form.iter().any(|(k, v)| k == "refresh_token" && v == "refresh-123")
                && form.iter().any(|(k, v)| k == "scope" && v == "repository:org/app:pull");
            let scope_ok = has("scope", "repository:org/app:pull") && has("service", "fake-registry");
            let basic_ok = req.header("authorization") == Some("Basic dTpw"); // u:p
            if req.method == "POST" && !refresh_ok {
                return Response::new(401, "bad refresh token");
            }
            if req.method == "GET" && (!scope_ok || (require_basic && !basic_ok)) {
                return Response::new(401, r#"{"errors":[{"code":"UNAUTHORIZED","message":"no"}]}"#);
            }
            let token = format!("tok-{n}");
            let mut body = if use_access_token {
                serde_json::json!({"access_token": token})
            } else {
                serde_json::json!({"token": token})
            };
            if let Some(e) = expires_in {
                body["expires_in"] = e.into();
            }
            return Response::new(200, body.to_string()).header("content-type", "application/json");
        }
        let authorized = req.header("authorization").is_some_and(|a| a.starts_with("Bearer tok-"));
        if !authorized {
            return Response::new(401, r#"{"errors":[{"code":"UNAUTHORIZED"}]}"#).header(
                "www-authenticate",
                format!(r#"Bearer realm="http://{addr}/token",service="fake-registry",scope="repository:org/app:pull""#),
            );
        }
        if req.path().starts_with("/v2/org/app/manifests/") {
            return Response::new(200, m.clone())
                .header("content-type", media::OCI_MANIFEST)
                .header("docker-content-digest", Digest::of(&m).to_string());
        }
        if req.path().starts_with("/v2/org/app/blobs/") {
            return ranged(req, &b);
        }
        Response::new(404, "")
    })
    .await;
    addr.set(server.addr.clone()).unwrap();
    TokenRegistry {
        server,
        token_requests,
        manifest,
        blob,
    }
}

#[tokio::test]
async fn bearer_token_flow_anonymous_with_cache() {
    let fake = token_registry(false, Some(300), false).await;
    let reference = reference(&fake.server.addr, "org/app", Some("v1"), None);
    let client = client();
    let (descriptor, bytes) = client.resolve(&reference, None).await.unwrap();
    assert_eq!(bytes, fake.manifest);
    assert_eq!(descriptor.digest, Digest::of(&fake.manifest));
    // The token is cached per (endpoint, scope): the blob and a second resolve reuse it.
    let (_, body) = collect(
        client
            .fetch_blob(&reference, &blob_descriptor(&fake.blob), 10, None)
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(body, &fake.blob[10..]);
    client.resolve(&reference, None).await.unwrap();
    assert_eq!(fake.token_requests.load(Ordering::SeqCst), 1);
    // Requests after the first carried the token straight away (no 401 round trip).
    let unauthenticated = fake
        .server
        .requests()
        .iter()
        .filter(|r| r.path() != "/token" && r.header("authorization").is_none())
        .count();
    assert_eq!(unauthenticated, 1);
}

#[tokio::test]
async fn bearer_token_with_basic_credentials_and_access_token_field() {
    let fake = token_registry(true, None, true).await;
    let reference = reference(&fake.server.addr, "org/app", Some("v1"), None);

    let err = client().resolve(&reference, None).await.unwrap_err();
    assert!(matches!(err, RegistryError::Unauthorized { .. }), "{err:?}");

    let creds = Credentials::Basic {
        username: "u".into(),
        password: "p".into(),
    };
    let (_, bytes) = client().resolve(&reference, Some(&creds)).await.unwrap();
    assert_eq!(bytes, fake.manifest);
}

#[tokio::test]
async fn bearer_token_from_identity_token() {
    let fake = token_registry(true, None, false).await;
    let reference = reference(&fake.server.addr, "org/app", Some("v1"), None);
    let creds = Credentials::IdentityToken("refresh-123".into());
    let (_, bytes) = client().resolve(&reference, Some(&creds)).await.unwrap();
    assert_eq!(bytes, fake.manifest);
    let token_request = fake
        .server
        .requests()
        .into_iter()
        .find(|r| r.path() == "/token")
        .unwrap();
    assert_eq!(token_request.method, "POST");
}

#[tokio::test]
async fn expired_tokens_are_fetched_again() {
    // A 1 s token is renewed after half its life (the renewal margin is capped at half).
    let fake = token_registry(false, Some(1), false).await;
    let reference = reference(&fake.server.addr, "org/app", Some("v1"), None);
    let client = client();
    client.resolve(&reference, None).await.unwrap();
    client.resolve(&reference, None).await.unwrap();
    assert_eq!(fake.token_requests.load(Ordering::SeqCst), 1);
    tokio::time::sleep(std::time::Duration::from_millis(600)).await;
    client.resolve(&reference, None).await.unwrap();
    assert_eq!(fake.token_requests.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn manifest_digest_is_checked_against_our_own_hash() {
    let manifest = small_image().manifest;
    let other = Digest::of(b"something else");
    let (m, lie) = (manifest.clone(), other.clone());
    let server = FakeServer::start(move |_| {
        Response::new(200, m.clone())
            .header("content-type", media::OCI_MANIFEST)
            .header("docker-content-digest", lie.to_string())
    })
    .await;
    // By tag: the header lies about the body.
    let err = client()
        .resolve(&reference(&server.addr, "x", Some("v1"), None), None)
        .await
        .unwrap_err();
    match &err {
        RegistryError::ManifestDigestMismatch {
            expected, actual, ..
        } => {
            assert_eq!(*expected, other);
            assert_eq!(*actual, Digest::of(&manifest));
        }
        e => panic!("{e:?}"),
    }
    // By digest: the body is not what was asked for.
    let wanted = Digest::of(b"wanted");
    let err = client()
        .resolve(&reference(&server.addr, "x", None, Some(&wanted)), None)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, RegistryError::ManifestDigestMismatch { expected, .. } if *expected == wanted),
        "{err:?}"
    );
    assert!(err.to_string().contains("nothing was stored"));
}

#[tokio::test]
async fn media_type_comes_from_the_document_when_content_type_is_generic() {
    let manifest = small_image().manifest;
    let m = manifest.clone();
    let server = FakeServer::start(move |_| {
        Response::new(200, m.clone()).header("content-type", "application/json")
    })
    .await;
    let (descriptor, _) = client()
        .resolve(&reference(&server.addr, "x", Some("v1"), None), None)
        .await
        .unwrap();
    assert_eq!(descriptor.media_type, media::OCI_MANIFEST);
}

#[tokio::test]
async fn range_ignored_by_server_restarts_at_zero() {
    let data = b"0123456789abcdef".repeat(1000);
    let d = data.clone();
    let server = FakeServer::start(move |_| Response::new(200, d.clone())).await;
    let reference = reference(&server.addr, "x", Some("v1"), None);
    let (offset, body) = collect(
        client()
            .fetch_blob(&reference, &blob_descriptor(&data), 500, None)
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(offset, 0);
    assert_eq!(body, data);
    assert_eq!(server.requests()[0].header("range"), Some("bytes=500-"));
}

#[tokio::test]
async fn blob_redirects_are_followed() {
    let data = b"redirected blob".to_vec();
    let d = data.clone();
    let addr = Arc::new(std::sync::OnceLock::<String>::new());
    let a = addr.clone();
    let server = FakeServer::start(move |req| {
        if req.path().starts_with("/storage/") {
            return Response::new(200, d.clone());
        }
        Response::new(307, "").header(
            "location",
            format!("http://{}/storage/blob?sig=1", a.get().unwrap()),
        )
    })
    .await;
    addr.set(server.addr.clone()).unwrap();
    let reference = reference(&server.addr, "x", Some("v1"), None);
    let (_, body) = collect(
        client()
            .fetch_blob(&reference, &blob_descriptor(&data), 0, None)
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(body, data);
}

#[tokio::test]
async fn server_errors_are_retryable_and_carry_the_registry_message() {
    let server = FakeServer::start(|_| {
        Response::new(
            503,
            r#"{"errors":[{"code":"UNAVAILABLE","message":"backend down"}]}"#,
        )
    })
    .await;
    let err = client()
        .resolve(&reference(&server.addr, "x", Some("v1"), None), None)
        .await
        .unwrap_err();
    assert!(
        matches!(err, RegistryError::Status { status: 503, .. }),
        "{err:?}"
    );
    assert!(err.is_retryable());
    assert!(err.to_string().contains("backend down"), "{err}");

    let server = FakeServer::start(|_| Response::new(403, "")).await;
    let err = client()
        .resolve(&reference(&server.addr, "x", Some("v1"), None), None)
        .await
        .unwrap_err();
    assert!(matches!(err, RegistryError::Forbidden { .. }), "{err:?}");
}

#[tokio::test]
async fn connection_refused_is_a_retryable_connect_error() {
    let host = format!("127.0.0.1:{}", free_port());
    let err = client()
        .resolve(&reference(&host, "x", Some("v1"), None), None)
        .await
        .unwrap_err();
    assert!(matches!(err, RegistryError::Connect { .. }), "{err:?}");
    assert!(err.is_retryable());
    assert!(err.to_string().contains(&host), "{err}");
}

#[tokio::test]
async fn unknown_host_is_reported_as_such() {
    let err = client()
        .resolve(
            &reference("no-such-registry.invalid", "x", Some("v1"), None),
            None,
        )
        .await
        .unwrap_err();
    assert!(matches!(err, RegistryError::UnknownHost { .. }), "{err:?}");
    assert!(
        err.to_string().contains("no-such-registry.invalid"),
        "{err}"
    );
}

#[tokio::test]
async fn tls_to_a_plain_http_registry_is_a_tls_error() {
    let registry = Registry::start().await;
    // A tls section makes even a loopback registry HTTPS.
    let yaml = format!(
        "configs:\n  \"{}\":\n    tls: {{ insecure_skip_verify: true }}\n",
        registry.host
    );
    let err = client_with(&yaml)
        .resolve(&reference(&registry.host, "x", Some("v1"), None), None)
        .await
        .unwrap_err();
    assert!(matches!(err, RegistryError::Tls { .. }), "{err:?}");
    assert!(err.to_string().contains("insecure"), "{err}");
}

#[tokio::test]
async fn mirrors_are_tried_first_and_failures_fall_through() {
    let upstream = Registry::start().await;
    let mirror = Registry::start().await;
    let img = small_image();
    let digest = upstream.push_image("lib/app", "v1", &img).await;
    mirror.push_image("lib/app", "v1", &img).await;
    let only_on_mirror = image(
        vec![layer(&[("m", b"mirror only")], true)],
        &platform("linux", "amd64"),
    );
    let mirror_digest = mirror
        .push_image("lib/app", "mirror-only", &only_on_mirror)
        .await;
    let dead = format!("127.0.0.1:{}", free_port());

    let yaml = format!(
        "mirrors:\n  \"{}\":\n    endpoint: [\"http://{dead}\", \"http://{}\"]\n",
        upstream.host, mirror.host
    );
    let client = client_with(&yaml);
    // The dead mirror is skipped; the live mirror answers (it alone has this tag).
    let (d, _) = client
        .resolve(
            &reference(&upstream.host, "lib/app", Some("mirror-only"), None),
            None,
        )
        .await
        .unwrap();
    assert_eq!(d.digest, mirror_digest);
    // A tag the mirrors lack: upstream answers.
    let upstream_only = image(
        vec![layer(&[("u", b"upstream only")], true)],
        &platform("linux", "amd64"),
    );
    let upstream_digest = upstream
        .push_image("lib/app", "upstream-only", &upstream_only)
        .await;
    let (d, _) = client
        .resolve(
            &reference(&upstream.host, "lib/app", Some("upstream-only"), None),
            None,
        )
        .await
        .unwrap();
    assert_eq!(d.digest, upstream_digest);
    let (d, _) = client
        .resolve(
            &reference(&upstream.host, "lib/app", Some("v1"), None),
            None,
        )
        .await
        .unwrap();
    assert_eq!(d.digest, digest);
    // Blobs follow the same order.
    let layer = &img.layers[1];
    let r = reference(&upstream.host, "lib/app", Some("v1"), None);
    let (_, body) = collect(
        client
            .fetch_blob(&r, &blob_descriptor(&layer.blob), 0, None)
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(body, layer.blob);
    // Every endpoint failing: the registry's own error is the one reported.
    let err = client
        .resolve(
            &reference(&upstream.host, "lib/app", Some("nowhere"), None),
            None,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&err, RegistryError::ManifestNotFound { registry, .. } if *registry == upstream.host),
        "{err:?}"
    );
}

#[tokio::test]
async fn mirror_endpoint_path_prefix_is_kept() {
    let manifest = small_image().manifest;
    let m = manifest.clone();
    let server = FakeServer::start(move |req| {
        if req.path() == "/prefix/v2/lib/app/manifests/v1" {
            Response::new(200, m.clone()).header("content-type", media::OCI_MANIFEST)
        } else {
            Response::new(404, "")
        }
    })
    .await;
    let yaml = format!(
        "mirrors:\n  \"docker.io\":\n    endpoint: [\"http://{}/prefix\"]\n",
        server.addr
    );
    let (_, bytes) = client_with(&yaml)
        .resolve(&reference("docker.io", "lib/app", Some("v1"), None), None)
        .await
        .unwrap();
    assert_eq!(bytes, manifest);
}
