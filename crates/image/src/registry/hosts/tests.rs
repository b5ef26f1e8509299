use super::*;
use crate::registry::auth::Credentials;

fn parse(text: &str) -> Result<RegistriesConfig, HostsError> {
    RegistriesConfig::parse(Path::new("/etc/deckhand/registries.yaml"), text)
}

fn bases(config: &RegistriesConfig, registry: &str) -> Vec<String> {
    config
        .endpoints(registry)
        .iter()
        .map(|e| e.base.to_string())
        .collect()
}

#[test]
fn missing_file_is_empty_config() {
    let dir = tempfile::tempdir().unwrap();
    let config = RegistriesConfig::load(&dir.path().join("registries.yaml")).unwrap();
    assert_eq!(config, RegistriesConfig::default());
}

#[test]
fn empty_and_comment_only_files_are_empty_config() {
    assert_eq!(parse("").unwrap(), RegistriesConfig::default());
    assert_eq!(
        parse("# nothing yet\n").unwrap(),
        RegistriesConfig::default()
    );
}

#[test]
fn full_k3s_style_file_parses() {
    let config = parse(
        r#"
mirrors:
  docker.io:
    endpoint: ["https://mirror.example.com", "http://10.0.0.5:5000"]
configs:
  "127.0.0.1:5000":
    auth: { username: u, password: p }
    tls: { ca_file: /ca.pem, cert_file: /c.pem, key_file: /k.pem, insecure_skip_verify: true }
  "10.0.0.5:5000":
    insecure: true
  "reg.example.com":
    auth: { auth: "dTpw" }
"#,
    )
    .unwrap();
    assert_eq!(config.mirrors["docker.io"].endpoint.len(), 2);
    let local = &config.configs["127.0.0.1:5000"];
    assert_eq!(
        local.auth.as_ref().unwrap().credentials().unwrap(),
        Some(Credentials::Basic {
            username: "u".into(),
            password: "p".into()
        })
    );
    assert!(local.tls.as_ref().unwrap().insecure_skip_verify);
    assert!(config.configs["10.0.0.5:5000"].insecure);
    assert_eq!(
        config.configs["reg.example.com"]
            .auth
            .as_ref()
            .unwrap()
            .credentials()
            .unwrap(),
        Some(Credentials::Basic {
            username: "u".into(),
            password: "p".into()
        })
    );
}

#[test]
fn errors_name_the_file_and_the_field() {
    let err = parse("configs:\n  r.example.com:\n    tls:\n      insecure_skip_verfy: true\n")
        .unwrap_err();
    let text = err.to_string();
    assert!(text.contains("/etc/deckhand/registries.yaml"), "{text}");
    assert!(text.contains("insecure_skip_verfy"), "{text}");
    assert!(text.contains("configs"), "{text}");

    let err = parse("mirrors:\n  docker.io:\n    endpoint: [\"ftp://x\"]\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("mirrors.\"docker.io\".endpoint[0]"), "{err}");

    let err = parse("configs:\n  r:\n    auth: { auth: \"!!!\" }\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("configs.\"r\".auth"), "{err}");

    let err = parse("configs:\n  r:\n    tls: { cert_file: /c.pem }\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("key_file"), "{err}");

    let err = parse("mirror: {}\n").unwrap_err().to_string();
    assert!(err.contains("mirror"), "{err}");
}

#[test]
fn unreadable_file_is_an_io_error() {
    let dir = tempfile::tempdir().unwrap();
    // A directory cannot be read as a file.
    let err = RegistriesConfig::load(dir.path()).unwrap_err();
    assert!(matches!(err, HostsError::Io { .. }), "{err}");
}

#[test]
fn registry_without_config_uses_https_and_docker_hub_its_api_host() {
    let config = RegistriesConfig::default();
    assert_eq!(bases(&config, "quay.io"), ["https://quay.io/"]);
    assert_eq!(
        bases(&config, "docker.io"),
        ["https://registry-1.docker.io/"]
    );
    let ep = &config.endpoints("docker.io")[0];
    assert_eq!(ep.config_host, "docker.io");
    assert!(!ep.is_mirror);
}

#[test]
fn loopback_registries_use_plain_http() {
    let config = RegistriesConfig::default();
    assert_eq!(bases(&config, "127.0.0.1:5000"), ["http://127.0.0.1:5000/"]);
    assert_eq!(bases(&config, "localhost:5000"), ["http://localhost:5000/"]);
    assert_eq!(bases(&config, "[::1]:5000"), ["http://[::1]:5000/"]);
    assert_eq!(bases(&config, "127.1.2.3"), ["http://127.1.2.3/"]);
    assert_eq!(bases(&config, "10.0.0.5:5000"), ["https://10.0.0.5:5000/"]);
    assert_eq!(
        bases(&config, "localhost.example.com"),
        ["https://localhost.example.com/"]
    );
}

#[test]
fn insecure_allows_http_and_tls_config_forces_https_on_loopback() {
    let config = parse(
        "configs:\n  \"10.0.0.5:5000\": { insecure: true }\n  \"127.0.0.1:5443\": { tls: { ca_file: /ca.pem } }\n",
    )
    .unwrap();
    assert_eq!(bases(&config, "10.0.0.5:5000"), ["http://10.0.0.5:5000/"]);
    assert_eq!(
        bases(&config, "127.0.0.1:5443"),
        ["https://127.0.0.1:5443/"]
    );
}

#[test]
fn mirrors_come_first_then_the_registry() {
    let config = parse(
        r#"
mirrors:
  docker.io:
    endpoint: ["https://mirror.example.com", "http://10.0.0.5:5000/", "mirror2.example.com:8443/some/path"]
"#,
    )
    .unwrap();
    let eps = config.endpoints("docker.io");
    assert_eq!(
        eps.iter().map(|e| e.base.to_string()).collect::<Vec<_>>(),
        [
            "https://mirror.example.com/",
            "http://10.0.0.5:5000/",
            "https://mirror2.example.com:8443/some/path",
            "https://registry-1.docker.io/"
        ]
    );
    assert_eq!(eps[1].config_host, "10.0.0.5:5000");
    assert_eq!(eps[2].config_host, "mirror2.example.com:8443");
    assert!(eps[..3].iter().all(|e| e.is_mirror));
    assert!(!eps[3].is_mirror);
    // Mirrors apply only to their registry.
    assert_eq!(bases(&config, "quay.io"), ["https://quay.io/"]);
    // Docker Hub aliases find the docker.io mirrors.
    assert_eq!(config.endpoints("index.docker.io").len(), 4);
}

#[test]
fn wildcard_mirrors_apply_when_the_host_has_none() {
    let config = parse(
        r#"
mirrors:
  "*":
    endpoint: ["https://all.example.com", "https://quay.io"]
  quay.io:
    endpoint: ["https://quay-mirror.example.com"]
"#,
    )
    .unwrap();
    assert_eq!(
        bases(&config, "ghcr.io"),
        [
            "https://all.example.com/",
            "https://quay.io/",
            "https://ghcr.io/"
        ]
    );
    assert_eq!(
        bases(&config, "quay.io"),
        ["https://quay-mirror.example.com/", "https://quay.io/"]
    );
}

#[test]
fn a_mirror_naming_the_registry_itself_is_not_tried_twice() {
    let config = parse("mirrors:\n  \"*\":\n    endpoint: [\"https://m.example.com\"]\n").unwrap();
    assert_eq!(bases(&config, "m.example.com"), ["https://m.example.com/"]);
}

#[test]
fn loopback_detection() {
    for host in [
        "localhost",
        "LOCALHOST:80",
        "127.0.0.1",
        "127.0.0.1:5000",
        "[::1]",
        "[::1]:5000",
    ] {
        assert!(is_loopback_host(host), "{host}");
    }
    for host in [
        "10.0.0.1",
        "example.com",
        "[::2]:5000",
        "128.0.0.1:5000",
        "localhost.localdomain",
    ] {
        assert!(!is_loopback_host(host), "{host}");
    }
}
