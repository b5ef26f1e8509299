//! Registry authentication: htpasswd basic auth and distribution's token auth, with credentials
//! from `--creds`, from `registries.yaml` and from `$DOCKER_CONFIG/config.json`; refused without.

use std::fs;
use std::sync::atomic::Ordering;

use base64::Engine as _;
use deckhand_e2e::check::{image_record, rootfs_matches_umoci};
use deckhand_e2e::deckhand::Deckhand;
use deckhand_e2e::fixtures::TAG;
use deckhand_e2e::registry::{Auth, Registry, PASS, USER};
use deckhand_e2e::{registry_with, setup};

#[derive(Clone, Copy)]
enum Creds {
    Flag,
    RegistriesYaml,
    DockerConfig,
    None,
    Wrong,
}

fn configure(dh: &Deckhand, reg: &Registry, creds: Creds) -> Vec<String> {
    match creds {
        Creds::Flag => vec!["--creds".into(), format!("{USER}:{PASS}")],
        Creds::Wrong => vec!["--creds".into(), format!("{USER}:not-{PASS}")],
        Creds::RegistriesYaml => {
            dh.write_registries_yaml(&format!(
                "configs:\n  \"{}\":\n    auth:\n      username: {USER}\n      password: {PASS}\n",
                reg.host()
            ));
            vec![]
        }
        Creds::DockerConfig => {
            let auth = base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASS}"));
            let cfg = serde_json::json!({"auths": {reg.host(): {"auth": auth}}});
            fs::write(dh.docker_config.join("config.json"), cfg.to_string()).unwrap();
            vec![]
        }
        Creds::None => vec![],
    }
}

fn case(auth: Auth, creds: Creds) {
    let fx = setup(env!("CARGO_TARGET_TMPDIR"));
    let reg = registry_with(&fx, auth, &["busybox"]);
    let issued_before = reg
        .token_server
        .as_ref()
        .map(|t| t.issued.load(Ordering::Relaxed));
    let dh = Deckhand::new();
    let r = reg.reference("busybox", TAG);
    let mut args = vec!["image".to_string(), "pull".into(), r.clone()];
    args.extend(configure(&dh, &reg, creds));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    match creds {
        Creds::None | Creds::Wrong => {
            let e = dh.fails(&args);
            let s = e.stderr.to_lowercase();
            assert!(
                s.contains("401") || s.contains("credential") || s.contains("unauthorized"),
                "error must mention 401/credentials:\n{e}"
            );
            assert!(
                e.stderr.contains(&reg.host()),
                "error must name the registry:\n{e}"
            );
            assert!(
                !e.stderr.contains(PASS),
                "error must not leak the password:\n{e}"
            );
            assert!(dh.image_names().is_empty());
        }
        _ => {
            dh.ok(&args);
            image_record(&dh, &r, &r, &fx.info("busybox").images[0]);
            rootfs_matches_umoci(&dh, &r, &fx, "busybox");
            if let (Some(ts), Some(before)) = (reg.token_server.as_ref(), issued_before) {
                assert!(
                    ts.issued.load(Ordering::Relaxed) > before,
                    "deckhand must have fetched a token"
                );
            }
        }
    }
}

#[test]
fn basic_auth_creds_flag() {
    case(Auth::Basic, Creds::Flag);
}

#[test]
fn basic_auth_registries_yaml() {
    case(Auth::Basic, Creds::RegistriesYaml);
}

#[test]
fn basic_auth_docker_config() {
    case(Auth::Basic, Creds::DockerConfig);
}

#[test]
fn basic_auth_without_creds_fails() {
    case(Auth::Basic, Creds::None);
}

#[test]
fn basic_auth_wrong_creds_fails() {
    case(Auth::Basic, Creds::Wrong);
}

#[test]
fn token_auth_creds_flag() {
    case(Auth::Token, Creds::Flag);
}

#[test]
fn token_auth_registries_yaml() {
    case(Auth::Token, Creds::RegistriesYaml);
}

#[test]
fn token_auth_docker_config() {
    case(Auth::Token, Creds::DockerConfig);
}

#[test]
fn token_auth_without_creds_fails() {
    case(Auth::Token, Creds::None);
}

#[test]
fn token_auth_wrong_creds_fails() {
    case(Auth::Token, Creds::Wrong);
}
