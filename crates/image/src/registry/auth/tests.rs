use super::*;

fn basic(u: &str, p: &str) -> Credentials {
    Credentials::Basic {
        username: u.into(),
        password: p.into(),
    }
}

fn docker_config(json: &str) -> DockerConfig {
    DockerConfig::parse(Path::new("/root/.docker/config.json"), json.as_bytes()).unwrap()
}

#[test]
fn docker_config_auth_fields() {
    // "dXNlcjpwYTpzcw==" is "user:pa:ss": only the first colon separates.
    let config = docker_config(
        r#"{"auths": {
            "https://index.docker.io/v1/": {"auth": "dXNlcjpwYTpzcw=="},
            "127.0.0.1:5000": {"username": "alice", "password": "secret"},
            "https://quay.io": {"auth": "", "identitytoken": "refresh-me"},
            "http://reg.example.com:8080/v2/": {"auth": "YTpi"},
            "helper.example.com": {}
        }, "credsStore": "desktop"}"#,
    );
    assert_eq!(
        config.credentials("docker.io"),
        Some(basic("user", "pa:ss"))
    );
    assert_eq!(
        config.credentials("index.docker.io"),
        Some(basic("user", "pa:ss"))
    );
    assert_eq!(
        config.credentials("127.0.0.1:5000"),
        Some(basic("alice", "secret"))
    );
    assert_eq!(
        config.credentials("quay.io"),
        Some(Credentials::IdentityToken("refresh-me".into()))
    );
    assert_eq!(
        config.credentials("reg.example.com:8080"),
        Some(basic("a", "b"))
    );
    assert_eq!(
        config.credentials("REG.example.com:8080"),
        Some(basic("a", "b"))
    );
    assert_eq!(config.credentials("helper.example.com"), None);
    assert_eq!(config.credentials("reg.example.com"), None);
}

#[test]
fn docker_config_keys_in_every_spelling() {
    for key in [
        "docker.io",
        "https://docker.io",
        "index.docker.io",
        "https://index.docker.io/v1/",
        "registry-1.docker.io",
    ] {
        let config = docker_config(&format!(r#"{{"auths": {{"{key}": {{"auth": "YTpi"}}}}}}"#));
        assert_eq!(
            config.credentials("docker.io"),
            Some(basic("a", "b")),
            "{key}"
        );
    }
}

#[test]
fn docker_config_errors_name_the_file_and_entry() {
    let err = DockerConfig::parse(
        Path::new("/x/config.json"),
        br#"{"auths": {"r": {"auth": "bm9jb2xvbg=="}}}"#,
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("/x/config.json") && err.contains("auths.\"r\".auth"),
        "{err}"
    );
    let err = DockerConfig::parse(Path::new("/x/config.json"), b"{not json")
        .unwrap_err()
        .to_string();
    assert!(err.contains("/x/config.json"), "{err}");
}

#[test]
fn docker_config_missing_file_is_empty() {
    let dir = tempfile::tempdir().unwrap();
    let config = DockerConfig::load(&dir.path().join("config.json")).unwrap();
    assert_eq!(config.credentials("docker.io"), None);
}

#[test]
fn credentials_debug_hides_secrets() {
    let text = format!(
        "{:?} {:?}",
        basic("bob", "hunter2"),
        Credentials::IdentityToken("tok".into())
    );
    assert!(
        text.contains("bob") && !text.contains("hunter2") && !text.contains("tok\""),
        "{text}"
    );
}

#[test]
fn challenge_bearer() {
    let c = Challenge::parse(
        r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull""#,
    )
    .unwrap();
    assert_eq!(
        c,
        Challenge::Bearer {
            realm: "https://auth.docker.io/token".into(),
            service: Some("registry.docker.io".into()),
            scope: Some("repository:library/busybox:pull".into()),
        }
    );
}

#[test]
fn challenge_commas_inside_quotes_and_case_insensitive_scheme() {
    let c = Challenge::parse(
        r#"bEaReR  realm = "https://t.example.com/token?a=1,b=2" , scope="repository:a/b:pull,push", service=reg"#,
    )
    .unwrap();
    assert_eq!(
        c,
        Challenge::Bearer {
            realm: "https://t.example.com/token?a=1,b=2".into(),
            service: Some("reg".into()),
            scope: Some("repository:a/b:pull,push".into()),
        }
    );
}

#[test]
fn challenge_escapes_and_missing_optional_params() {
    let c = Challenge::parse(r#"Bearer realm="https://x/t\"q""#).unwrap();
    assert_eq!(
        c,
        Challenge::Bearer {
            realm: "https://x/t\"q".into(),
            service: None,
            scope: None
        }
    );
}

#[test]
fn challenge_basic() {
    assert_eq!(
        Challenge::parse(r#"Basic realm="Registry Realm""#).unwrap(),
        Challenge::Basic {
            realm: "Registry Realm".into()
        }
    );
    assert_eq!(
        Challenge::parse("basic").unwrap(),
        Challenge::Basic {
            realm: String::new()
        }
    );
}

#[test]
fn challenge_first_supported_of_several() {
    let c =
        Challenge::parse(r#"Negotiate, Bearer realm="https://t/token", Basic realm="r""#).unwrap();
    assert!(matches!(c, Challenge::Bearer { .. }), "{c:?}");
}

#[test]
fn malformed_challenges() {
    for header in [
        "",
        "Bearer",
        "Bearer service=\"x\"",
        "Bearer realm=\"unterminated",
        "Digest realm=\"x\"",
        "=x",
    ] {
        assert!(
            matches!(Challenge::parse(header), Err(AuthError::Challenge(_))),
            "{header:?}"
        );
    }
}
