use super::*;
use k8s_openapi::api::core::v1::{
    ConfigMapEnvSource, ConfigMapKeySelector, EnvFromSource, EnvVar, EnvVarSource,
    ObjectFieldSelector, PodSpec, ResourceFieldSelector, ResourceRequirements, SecretEnvSource,
    SecretKeySelector, ServicePort, ServiceSpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::ByteString;

fn meta(ns: &str, name: &str) -> ObjectMeta {
    ObjectMeta {
        namespace: Some(ns.into()),
        name: Some(name.into()),
        ..Default::default()
    }
}

fn pod(c: Container) -> Pod {
    Pod {
        metadata: ObjectMeta {
            uid: Some("u1".into()),
            labels: Some(
                [
                    ("app".to_string(), "web".to_string()),
                    ("tier".into(), "a\"b".into()),
                ]
                .into(),
            ),
            ..meta("ns1", "web")
        },
        spec: Some(PodSpec {
            node_name: Some("n1".into()),
            service_account_name: Some("sa".into()),
            containers: vec![c],
            ..Default::default()
        }),
        status: None,
    }
}

fn value(name: &str, v: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: Some(v.into()),
        value_from: None,
    }
}

fn from(name: &str, src: EnvVarSource) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: None,
        value_from: Some(src),
    }
}

fn field(name: &str, path: &str) -> EnvVar {
    from(
        name,
        EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: path.into(),
                api_version: None,
            }),
            ..Default::default()
        },
    )
}

fn service(ns: &str, name: &str, ip: &str, ports: &[(Option<&str>, i32, Option<&str>)]) -> Service {
    Service {
        metadata: meta(ns, name),
        spec: Some(ServiceSpec {
            cluster_ip: Some(ip.into()),
            ports: Some(
                ports
                    .iter()
                    .map(|(n, p, proto)| ServicePort {
                        name: n.map(str::to_string),
                        port: *p,
                        protocol: proto.map(str::to_string),
                        ..Default::default()
                    })
                    .collect(),
            ),
            ..Default::default()
        }),
        status: None,
    }
}

fn sources() -> MapSources {
    let mut s = MapSources::default();
    s.config_maps.insert(
        ("ns1".into(), "cfg".into()),
        ConfigMap {
            metadata: meta("ns1", "cfg"),
            data: Some(
                [("A", "1"), ("B", "2"), ("bad key", "x"), ("1X", "y")]
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
            ..Default::default()
        },
    );
    s.secrets.insert(
        ("ns1".into(), "sec".into()),
        Secret {
            metadata: meta("ns1", "sec"),
            data: Some([("PASS".to_string(), ByteString(b"hunter2".to_vec()))].into()),
            ..Default::default()
        },
    );
    s.services = vec![
        service(
            "default",
            "kubernetes",
            "10.96.0.1",
            &[(Some("https"), 443, None)],
        ),
        service(
            "ns1",
            "redis-master",
            "10.96.0.11",
            &[(None, 6379, None), (Some("metrics"), 9121, Some("TCP"))],
        ),
        service("ns1", "headless", "None", &[(None, 80, None)]),
        service("ns2", "other", "10.96.0.12", &[(None, 80, None)]),
    ];
    s
}

fn node() -> NodeEnv {
    NodeEnv {
        host_ips: vec!["192.168.1.10".into(), "fd00::10".into()],
        allocatable: [
            ("cpu".to_string(), Quantity("4".into())),
            ("memory".into(), Quantity("8Gi".into())),
        ]
        .into(),
    }
}

fn build(c: Container) -> Result<ContainerEnv, EnvError> {
    let p = pod(c.clone());
    make_environment(
        &p,
        &c,
        &["10.0.0.5".into(), "fd00::5".into()],
        &node(),
        &sources(),
    )
}

#[test]
fn expansion_semantics() {
    let lookup = |n: &str| match n {
        "A" => Some("a".to_string()),
        "EMPTY" => Some(String::new()),
        _ => None,
    };
    for (input, want) in [
        ("$(A)", "a"),
        ("x$(A)y$(A)", "xaya"),
        ("$(B)", "$(B)"),
        ("$$(A)", "$(A)"),
        ("$$$(A)", "$a"),
        ("$$", "$"),
        ("$", "$"),
        ("$x", "$x"),
        ("$(A", "$(A"),
        ("$()", "$()"),
        ("$(EMPTY)z", "z"),
        ("héllo $(A) wörld", "héllo a wörld"),
        ("no refs", "no refs"),
    ] {
        assert_eq!(expand(input, &lookup), want, "{input}");
    }
}

#[test]
fn values_expand_against_earlier_vars() {
    let c = Container {
        name: "c".into(),
        env: Some(vec![
            value("HOST", "db"),
            value("URL", "pg://$(HOST):$(PORT)/$(MISSING)"),
            value("PORT", "5432"),
            value("HOST", "db2"),
        ]),
        ..Default::default()
    };
    let e = build(c).unwrap();
    assert_eq!(e.get("URL"), Some("pg://db:$(PORT)/$(MISSING)"));
    assert_eq!(e.get("HOST"), Some("db2"));
    assert_eq!(e.vars[0].0, "HOST", "an override keeps the first position");
}

#[test]
fn downward_api_fields() {
    let c = Container {
        name: "c".into(),
        env: Some(vec![
            field("N", "metadata.name"),
            field("NS", "metadata.namespace"),
            field("UID", "metadata.uid"),
            field("APP", "metadata.labels['app']"),
            field("LABELS", "metadata.labels"),
            field("NODE", "spec.nodeName"),
            field("SA", "spec.serviceAccountName"),
            field("HIP", "status.hostIP"),
            field("HIPS", "status.hostIPs"),
            field("PIP", "status.podIP"),
            field("PIPS", "status.podIPs"),
            field("NOPE", "metadata.annotations['x']"),
        ]),
        ..Default::default()
    };
    let e = build(c).unwrap();
    for (k, v) in [
        ("N", "web"),
        ("NS", "ns1"),
        ("UID", "u1"),
        ("APP", "web"),
        ("LABELS", "app=\"web\"\ntier=\"a\\\"b\""),
        ("NODE", "n1"),
        ("SA", "sa"),
        ("HIP", "192.168.1.10"),
        ("HIPS", "192.168.1.10,fd00::10"),
        ("PIP", "10.0.0.5"),
        ("PIPS", "10.0.0.5,fd00::5"),
        ("NOPE", ""),
    ] {
        assert_eq!(e.get(k), Some(v), "{k}");
    }
    let bad = Container {
        name: "c".into(),
        env: Some(vec![field("X", "spec.bogus")]),
        ..Default::default()
    };
    assert!(matches!(
        build(bad),
        Err(EnvError::UnsupportedFieldPath { .. })
    ));
}

#[test]
fn resource_fields_with_divisor_and_allocatable_default() {
    let rf = |name: &str, res: &str, div: Option<&str>| {
        from(
            name,
            EnvVarSource {
                resource_field_ref: Some(ResourceFieldSelector {
                    resource: res.into(),
                    divisor: div.map(|d| Quantity(d.into())),
                    container_name: None,
                }),
                ..Default::default()
            },
        )
    };
    let c = Container {
        name: "c".into(),
        resources: Some(ResourceRequirements {
            requests: Some(
                [
                    ("cpu".to_string(), Quantity("250m".into())),
                    ("memory".into(), Quantity("64Mi".into())),
                ]
                .into(),
            ),
            limits: Some([("memory".to_string(), Quantity("128Mi".into()))].into()),
            ..Default::default()
        }),
        env: Some(vec![
            rf("RC", "requests.cpu", None),
            rf("RCM", "requests.cpu", Some("1m")),
            rf("RM", "requests.memory", Some("1Mi")),
            rf("LM", "limits.memory", None),
            rf("LC", "limits.cpu", None),
            rf("LMA", "limits.ephemeral-storage", None),
            rf("RE", "requests.ephemeral-storage", None),
        ]),
        ..Default::default()
    };
    let e = build(c).unwrap();
    assert_eq!(e.get("RC"), Some("1"), "250m rounds up to one core");
    assert_eq!(e.get("RCM"), Some("250"));
    assert_eq!(e.get("RM"), Some("64"));
    assert_eq!(e.get("LM"), Some(&*(128u64 << 20).to_string()));
    assert_eq!(e.get("LC"), Some("4"), "node allocatable");
    assert_eq!(e.get("LMA"), Some("0"), "not allocatable either");
    assert_eq!(e.get("RE"), Some("0"));
    let bad = Container {
        name: "c".into(),
        env: Some(vec![rf("X", "limits.gpu", None)]),
        ..Default::default()
    };
    assert!(matches!(
        build(bad),
        Err(EnvError::UnsupportedResource { .. })
    ));
}

#[test]
fn config_map_and_secret_keys() {
    let cm = |name: &str, cm: &str, key: &str, optional: Option<bool>| {
        from(
            name,
            EnvVarSource {
                config_map_key_ref: Some(ConfigMapKeySelector {
                    name: cm.into(),
                    key: key.into(),
                    optional,
                }),
                ..Default::default()
            },
        )
    };
    let sk = |name: &str, s: &str, key: &str, optional: Option<bool>| {
        from(
            name,
            EnvVarSource {
                secret_key_ref: Some(SecretKeySelector {
                    name: s.into(),
                    key: key.into(),
                    optional,
                }),
                ..Default::default()
            },
        )
    };
    let c = Container {
        name: "c".into(),
        env: Some(vec![
            cm("A", "cfg", "A", None),
            cm("OPT", "cfg", "nope", Some(true)),
            cm("OPTCM", "missing", "x", Some(true)),
            sk("P", "sec", "PASS", None),
            sk("OPTS", "sec", "nope", Some(true)),
        ]),
        ..Default::default()
    };
    let e = build(c).unwrap();
    assert_eq!(e.get("A"), Some("1"));
    assert_eq!(e.get("P"), Some("hunter2"));
    assert_eq!(e.get("OPT"), None);
    assert_eq!(e.get("OPTCM"), None);
    assert_eq!(e.get("OPTS"), None);
    let err = build(Container {
        name: "c".into(),
        env: Some(vec![cm("X", "cfg", "nope", None)]),
        ..Default::default()
    })
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "couldn't find key nope in ConfigMap ns1/cfg"
    );
    let err = build(Container {
        name: "c".into(),
        env: Some(vec![sk("X", "sec", "nope", Some(false))]),
        ..Default::default()
    })
    .unwrap_err();
    assert_eq!(err.to_string(), "couldn't find key nope in Secret ns1/sec");
    let err = build(Container {
        name: "c".into(),
        env: Some(vec![cm("X", "gone", "k", None)]),
        ..Default::default()
    })
    .unwrap_err();
    assert_eq!(err.to_string(), "configmap ns1/gone not found");
}

#[test]
fn env_from_with_prefix_invalid_keys_and_precedence() {
    let c = Container {
        name: "c".into(),
        env_from: Some(vec![
            EnvFromSource {
                config_map_ref: Some(ConfigMapEnvSource {
                    name: "cfg".into(),
                    optional: None,
                }),
                prefix: None,
                secret_ref: None,
            },
            EnvFromSource {
                config_map_ref: Some(ConfigMapEnvSource {
                    name: "cfg".into(),
                    optional: None,
                }),
                prefix: Some("P_".into()),
                secret_ref: None,
            },
            EnvFromSource {
                secret_ref: Some(SecretEnvSource {
                    name: "missing".into(),
                    optional: Some(true),
                }),
                ..Default::default()
            },
            EnvFromSource {
                secret_ref: Some(SecretEnvSource {
                    name: "sec".into(),
                    optional: None,
                }),
                ..Default::default()
            },
        ]),
        env: Some(vec![value("A", "override"), value("REF", "$(P_B)")]),
        ..Default::default()
    };
    let e = build(c).unwrap();
    assert_eq!(e.get("A"), Some("override"));
    assert_eq!(e.get("P_A"), Some("1"));
    assert_eq!(e.get("REF"), Some("2"));
    assert_eq!(e.get("PASS"), Some("hunter2"));
    assert_eq!(e.get("P_1X"), Some("y"), "a prefix can make a key valid");
    assert_eq!(e.get("1X"), None);
    assert_eq!(
        e.warnings[0],
        "Keys [1X, bad key] from the EnvFrom configMap ns1/cfg were skipped since they are considered invalid environment variable names."
    );
    assert_eq!(e.warnings[1], "Keys [P_bad key] from the EnvFrom configMap ns1/cfg were skipped since they are considered invalid environment variable names.");
    let missing = Container {
        name: "c".into(),
        env_from: Some(vec![EnvFromSource {
            secret_ref: Some(SecretEnvSource {
                name: "missing".into(),
                optional: None,
            }),
            ..Default::default()
        }]),
        ..Default::default()
    };
    assert_eq!(
        build(missing).unwrap_err().to_string(),
        "secret ns1/missing not found"
    );
}

#[test]
fn service_links() {
    let c = Container {
        name: "c".into(),
        env: Some(vec![
            value("REDIS_MASTER_SERVICE_PORT", "mine"),
            value("USE", "$(KUBERNETES_SERVICE_HOST)"),
        ]),
        ..Default::default()
    };
    let e = build(c.clone()).unwrap();
    for (k, v) in [
        ("KUBERNETES_SERVICE_HOST", "10.96.0.1"),
        ("KUBERNETES_SERVICE_PORT", "443"),
        ("KUBERNETES_SERVICE_PORT_HTTPS", "443"),
        ("KUBERNETES_PORT", "tcp://10.96.0.1:443"),
        ("KUBERNETES_PORT_443_TCP", "tcp://10.96.0.1:443"),
        ("KUBERNETES_PORT_443_TCP_PROTO", "tcp"),
        ("KUBERNETES_PORT_443_TCP_PORT", "443"),
        ("KUBERNETES_PORT_443_TCP_ADDR", "10.96.0.1"),
        ("REDIS_MASTER_SERVICE_HOST", "10.96.0.11"),
        ("REDIS_MASTER_SERVICE_PORT", "mine"),
        ("REDIS_MASTER_SERVICE_PORT_METRICS", "9121"),
        ("REDIS_MASTER_PORT", "tcp://10.96.0.11:6379"),
        ("REDIS_MASTER_PORT_9121_TCP_ADDR", "10.96.0.11"),
        ("USE", "10.96.0.1"),
    ] {
        assert_eq!(e.get(k), Some(v), "{k}");
    }
    assert_eq!(e.get("HEADLESS_SERVICE_HOST"), None);
    assert_eq!(e.get("OTHER_SERVICE_HOST"), None);

    let mut p = pod(c.clone());
    p.spec.as_mut().unwrap().enable_service_links = Some(false);
    let e = make_environment(&p, &c, &[], &node(), &sources()).unwrap();
    assert_eq!(
        e.get("KUBERNETES_SERVICE_HOST"),
        Some("10.96.0.1"),
        "always linked"
    );
    assert_eq!(e.get("REDIS_MASTER_SERVICE_HOST"), None);
}

#[test]
fn ipv6_service_addresses_are_bracketed() {
    let s = service("ns1", "v6", "fd00::1", &[(None, 80, Some("UDP"))]);
    let vars = service_env_vars(&[&s]);
    assert!(vars.contains(&("V6_PORT".into(), "udp://[fd00::1]:80".into())));
    assert!(vars.contains(&("V6_PORT_80_UDP_PROTO".into(), "udp".into())));
}

#[test]
fn command_and_args_expansion() {
    let c = Container {
        name: "c".into(),
        command: Some(vec!["/bin/$(BIN)".into(), "$$(BIN)".into()]),
        args: Some(vec!["--port=$(PORT)".into(), "$(UNSET)".into()]),
        ..Default::default()
    };
    let env = ContainerEnv {
        vars: vec![("BIN".into(), "app".into()), ("PORT".into(), "80".into())],
        warnings: vec![],
    };
    let (cmd, args) = expand_command_and_args(&c, &env);
    assert_eq!(cmd, ["/bin/app", "$(BIN)"]);
    assert_eq!(args, ["--port=80", "$(UNSET)"]);
}

#[test]
fn env_var_names() {
    for ok in ["A", "a_b", "-x", ".x", "A1.b-c"] {
        assert!(is_env_var_name(ok), "{ok}");
    }
    for bad in ["", "1A", "a b", "a=b", "é"] {
        assert!(!is_env_var_name(bad), "{bad}");
    }
}
