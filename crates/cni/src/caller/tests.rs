//! Unit tests of the caller with a fake plugin (a shell script using jq) that logs every
//! invocation — command, CNI_* environment, stdin — and answers as its config tells it to.
//! No root, no kernel: what is checked here is the protocol the caller speaks. The real
//! plugins are exercised in `tests/real_plugins.rs`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::*;

const FAKE: &str = r#"#!/bin/sh
in=$(cat)
log=$(printf '%s' "$in" | jq -r '.log')
printf '%s' "$in" | jq -c '{cmd: env.CNI_COMMAND, tag: .tag, containerId: env.CNI_CONTAINERID,
  netns: env.CNI_NETNS, ifname: env.CNI_IFNAME, args: env.CNI_ARGS, path: env.CNI_PATH,
  conf: .}' >> "$log"
s=$(printf '%s' "$in" | jq -r '.sleep // 0')
[ "$s" = 0 ] || sleep "$s"
err=$(printf '%s' "$in" | jq -c --arg c "$CNI_COMMAND" '.fail[$c] // empty')
if [ -n "$err" ]; then printf '%s' "$err"; exit 1; fi
if [ "$(printf '%s' "$in" | jq -r --arg c "$CNI_COMMAND" '.crash[$c] // empty')" = true ]; then
  echo "panic: boom" >&2; exit 2
fi
if [ "$CNI_COMMAND" = ADD ]; then
  printf '%s' "$in" | jq -c '. as $in | ($in.result // $in.prevResult // {
    interfaces: [{name: env.CNI_IFNAME, sandbox: env.CNI_NETNS}],
    ips: [{address: "10.9.0.2/24", gateway: "10.9.0.1", interface: 0}]})
    | .cniVersion = $in.cniVersion'
fi
"#;

struct Fixture {
    _tmp: tempfile::TempDir,
    conf_dir: PathBuf,
    bin_dir: PathBuf,
    cache_dir: PathBuf,
    log: PathBuf,
    netns: PathBuf,
}

impl Fixture {
    fn new() -> Fixture {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().to_path_buf();
        let bin_dir = root.join("bin");
        std::fs::create_dir_all(&bin_dir).unwrap();
        // Written (and closed) before this process spawns anything, so no forked child can
        // hold the file open for writing when it is executed (ETXTBSY).
        for name in ["fake", "fake2", "fake3"] {
            write_exec(&bin_dir.join(name), FAKE);
        }
        let netns = root.join("netns");
        std::fs::write(&netns, "").unwrap();
        let f = Fixture {
            conf_dir: root.join("net.d"),
            cache_dir: root.join("cache"),
            log: root.join("log"),
            bin_dir,
            netns,
            _tmp: tmp,
        };
        std::fs::create_dir_all(&f.conf_dir).unwrap();
        f
    }

    fn caller(&self) -> CniCaller {
        CniCaller::new(CniConfig {
            conf_dir: self.conf_dir.clone(),
            bin_dirs: vec![self.bin_dir.clone()],
            cache_dir: self.cache_dir.clone(),
        })
    }

    /// A plugin entry that logs to this fixture's log.
    fn plugin(&self, ty: &str, tag: &str, extra: Value) -> Value {
        let mut p = json!({"type": ty, "tag": tag, "log": self.log});
        p.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        p
    }

    fn write_list(&self, file: &str, version: &str, plugins: Vec<Value>) {
        let list = json!({"cniVersion": version, "name": "testnet", "plugins": plugins});
        std::fs::write(self.conf_dir.join(file), list.to_string()).unwrap();
    }

    fn attachment(&self, id: &str) -> Attachment {
        Attachment {
            container_id: id.into(),
            netns: self.netns.clone(),
            pod_namespace: "default".into(),
            pod_name: "web".into(),
            pod_uid: "uid-1".into(),
            ..Attachment::default()
        }
    }

    fn calls(&self) -> Vec<Value> {
        match std::fs::read_to_string(&self.log) {
            Ok(s) => s
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect(),
            Err(_) => Vec::new(),
        }
    }

    fn calls_summary(&self) -> Vec<String> {
        self.calls()
            .iter()
            .map(|c| {
                format!(
                    "{} {}",
                    c["cmd"].as_str().unwrap(),
                    c["tag"].as_str().unwrap()
                )
            })
            .collect()
    }
}

fn write_exec(path: &Path, body: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, body).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

// ---- config loading ----

#[test]
fn picks_the_lexically_first_config_and_wraps_a_single_conf() {
    let f = Fixture::new();
    let single = json!({"cniVersion": "1.0.0", "name": "single", "type": "fake", "x": 1});
    std::fs::write(f.conf_dir.join("10-a.conf"), single.to_string()).unwrap();
    f.write_list("20-b.conflist", "1.0.0", vec![json!({"type": "fake2"})]);
    // Not candidates: wrong extension, hidden temp file.
    std::fs::write(f.conf_dir.join("00-x.txt"), "junk").unwrap();
    std::fs::write(f.conf_dir.join(".00-tmp.conflist"), "junk").unwrap();
    let list = f.caller().network().unwrap();
    assert_eq!(list.name, "single");
    assert_eq!(list.cni_version, CniVersion::V1_0_0);
    assert_eq!(list.plugins.len(), 1);
    assert_eq!(list.plugins[0].plugin_type, "fake");
    assert_eq!(list.plugins[0].raw["x"], 1);
    assert!(list.source.ends_with("10-a.conf"));

    std::fs::remove_file(f.conf_dir.join("10-a.conf")).unwrap();
    let list = f.caller().network().unwrap();
    assert_eq!(list.name, "testnet");
    assert_eq!(list.plugins[0].plugin_type, "fake2");
}

#[test]
fn invalid_configs_name_the_file_and_the_fix() {
    let f = Fixture::new();
    let file = f.conf_dir.join("10-net.conflist");
    let cases = [
        ("{not json", "not valid JSON"),
        (
            r#"{"cniVersion":"0.2.0","name":"n","plugins":[{"type":"x"}]}"#,
            "not supported; use one of 0.3.0",
        ),
        (
            r#"{"name":"n","plugins":[{"type":"x"}]}"#,
            "\"cniVersion\" is missing",
        ),
        (
            r#"{"cniVersion":"1.0.0","plugins":[{"type":"x"}]}"#,
            "\"name\" is missing",
        ),
        (
            r#"{"cniVersion":"1.0.0","name":"a/b","plugins":[{"type":"x"}]}"#,
            "network name \"a/b\" is invalid",
        ),
        (
            r#"{"cniVersion":"1.0.0","name":"n","plugins":[]}"#,
            "\"plugins\" is empty",
        ),
        (
            r#"{"cniVersion":"1.0.0","name":"n","type":"bridge"}"#,
            "no \"plugins\" array",
        ),
        (
            r#"{"cniVersion":"1.0.0","name":"n","plugins":[{"bridge":"x"}]}"#,
            "plugins[0]: \"type\" is missing",
        ),
        (
            r#"{"cniVersion":"1.0.0","name":"n","plugins":[{"type":"../x"}]}"#,
            "plain binary name",
        ),
        (
            r#"{"cniVersion":"1.0.0","name":"n","plugins":[{"type":"x","capabilities":{"portMappings":"yes"}}]}"#,
            "must be true or false",
        ),
    ];
    for (body, want) in cases {
        std::fs::write(&file, body).unwrap();
        let err = f.caller().network().unwrap_err();
        let msg = err.to_string();
        assert!(
            matches!(err, CniError::InvalidConfig { .. }),
            "{body}: {err:?}"
        );
        assert!(msg.contains("10-net.conflist"), "{msg}");
        assert!(msg.contains(want), "{body}: {msg}");
        assert!(!err.is_retryable());
    }
}

#[test]
fn status_follows_the_conf_dir_and_the_bin_dirs() {
    let f = Fixture::new();
    let caller = f.caller();
    let rt = rt();
    let err = rt.block_on(caller.status()).unwrap_err();
    assert!(matches!(err, CniError::NoConfig { .. }), "{err:?}");
    assert!(err.to_string().contains(&f.conf_dir.display().to_string()));
    assert!(err.is_retryable());

    // Written later (as the agent does): picked up without a new caller.
    f.write_list(
        "10-net.conflist",
        "1.0.0",
        vec![f.plugin("fake", "a", json!({}))],
    );
    rt.block_on(caller.status()).unwrap();
    // Pre-1.1.0 networks have no STATUS command: nothing was run.
    assert!(f.calls().is_empty());

    f.write_list(
        "10-net.conflist",
        "1.0.0",
        vec![f.plugin("fake", "a", json!({})), json!({"type": "nosuch"})],
    );
    let err = rt.block_on(caller.status()).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, CniError::PluginNotFound { .. }), "{err:?}");
    assert!(
        msg.contains("\"nosuch\"") && msg.contains(&f.bin_dir.display().to_string()),
        "{msg}"
    );
}

#[test]
fn status_runs_plugin_status_for_1_1_0() {
    let f = Fixture::new();
    let caller = f.caller();
    let rt = rt();
    f.write_list(
        "10-net.conflist",
        "1.1.0",
        vec![
            f.plugin("fake", "a", json!({})),
            f.plugin("fake2", "b", json!({})),
        ],
    );
    rt.block_on(caller.status()).unwrap();
    assert_eq!(f.calls_summary(), ["STATUS a", "STATUS b"]);
    let first = &f.calls()[0];
    assert_eq!(first["conf"]["name"], "testnet");
    assert_eq!(first["conf"]["cniVersion"], "1.1.0");
    assert_eq!(first["containerId"], Value::Null);

    let unavailable = json!({"fail": {"STATUS": {"code": 50, "msg": "no route to the apiserver"}}});
    f.write_list(
        "10-net.conflist",
        "1.1.0",
        vec![
            f.plugin("fake", "a", json!({})),
            f.plugin("fake2", "b", unavailable),
        ],
    );
    let err = rt.block_on(caller.status()).unwrap_err();
    assert!(
        matches!(&err, CniError::Plugin { code: 50, plugin, command: "STATUS", .. } if plugin == "fake2"),
        "{err:?}"
    );
    assert!(err.to_string().contains("no route to the apiserver"));
}

// ---- ADD ----

#[test]
fn add_speaks_the_protocol_chains_results_and_caches() {
    let f = Fixture::new();
    let first_result = json!({
        "interfaces": [{"name": "br0"}, {"name": "eth0", "sandbox": f.netns}],
        "ips": [{"address": "10.9.0.7/24", "gateway": "10.9.0.1", "interface": 1}],
        "routes": [{"dst": "0.0.0.0/0"}],
        "dns": {"nameservers": ["10.96.0.10"]}
    });
    f.write_list(
        "10-net.conflist",
        "1.0.0",
        vec![
            f.plugin(
                "fake",
                "main",
                json!({"result": first_result, "runtimeConfig": {"stale": 1}}),
            ),
            f.plugin(
                "fake2",
                "ports",
                json!({"capabilities": {"portMappings": true, "bandwidth": false}}),
            ),
            // Declares "ips" too, which the runtime has no value for: not sent.
            f.plugin(
                "fake3",
                "other",
                json!({"capabilities": {"bandwidth": true, "ips": true}}),
            ),
        ],
    );
    let mut att = f.attachment("c1");
    att.port_mappings = vec![
        PortMapping {
            host_port: 8080,
            container_port: 80,
            protocol: Protocol::Tcp,
            host_ip: None,
        },
        // No host port: not a host port mapping, not passed.
        PortMapping {
            host_port: 0,
            container_port: 81,
            protocol: Protocol::Udp,
            host_ip: None,
        },
    ];
    att.bandwidth = Some(Bandwidth {
        ingress_rate: 1_000_000,
        ingress_burst: 2_000_000,
        egress_rate: 3_000_000,
        egress_burst: 4_000_000,
    });
    let result = rt().block_on(f.caller().add(&att)).unwrap();

    assert_eq!(f.calls_summary(), ["ADD main", "ADD ports", "ADD other"]);
    let calls = f.calls();
    for call in &calls {
        assert_eq!(call["containerId"], "c1");
        assert_eq!(call["netns"], f.netns.to_str().unwrap());
        assert_eq!(call["ifname"], "eth0");
        assert_eq!(
            call["args"],
            "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web;\
             K8S_POD_INFRA_CONTAINER_ID=c1;K8S_POD_UID=uid-1"
        );
        assert_eq!(call["path"], f.bin_dir.to_str().unwrap());
        assert_eq!(call["conf"]["name"], "testnet");
        assert_eq!(call["conf"]["cniVersion"], "1.0.0");
    }
    // Chaining: the first plugin has no prevResult, the next ones get the previous result.
    assert_eq!(calls[0]["conf"].get("prevResult"), None);
    assert_eq!(
        calls[1]["conf"]["prevResult"]["ips"][0]["address"],
        "10.9.0.7/24"
    );
    assert_eq!(
        calls[2]["conf"]["prevResult"]["ips"][0]["address"],
        "10.9.0.7/24"
    );
    // runtimeConfig: only declared capabilities the runtime has values for; a plugin that
    // declares none keeps its own runtimeConfig untouched.
    assert_eq!(calls[0]["conf"]["runtimeConfig"], json!({"stale": 1}));
    assert_eq!(
        calls[1]["conf"]["runtimeConfig"],
        json!({"portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]})
    );
    assert_eq!(
        calls[2]["conf"]["runtimeConfig"],
        json!({"bandwidth": {"ingressRate": 1_000_000, "ingressBurst": 2_000_000,
            "egressRate": 3_000_000, "egressBurst": 4_000_000}})
    );

    assert_eq!(
        result.pod_ips("eth0").primary(),
        Some("10.9.0.7".parse().unwrap())
    );
    assert_eq!(result.routes.len(), 1);
    assert_eq!(result.dns.nameservers, ["10.96.0.10"]);

    // The cache, in libcni's place and format.
    let cache_file = f.cache_dir.join("results/testnet-c1-eth0");
    let cached: Value = serde_json::from_slice(&std::fs::read(&cache_file).unwrap()).unwrap();
    assert_eq!(cached["kind"], "cniCacheV1");
    assert_eq!(cached["containerId"], "c1");
    assert_eq!(cached["ifName"], "eth0");
    assert_eq!(cached["networkName"], "testnet");
    assert_eq!(cached["netns"], f.netns.to_str().unwrap());
    assert_eq!(
        cached["capabilityArgs"]["portMappings"][0]["hostPort"],
        8080
    );
    assert_eq!(
        cached["cniArgs"][1],
        json!(["K8S_POD_NAMESPACE", "default"])
    );
    assert_eq!(cached["result"]["ips"][0]["address"], "10.9.0.7/24");
    use base64::Engine as _;
    let config = base64::engine::general_purpose::STANDARD
        .decode(cached["config"].as_str().unwrap())
        .unwrap();
    let config: Value = serde_json::from_slice(&config).unwrap();
    assert_eq!(config["plugins"][1]["tag"], "ports");
}

#[test]
fn add_failing_midway_deletes_what_ran_and_reports_the_plugin_error() {
    let f = Fixture::new();
    let fail = json!({"fail": {"ADD": {"cniVersion": "1.0.0", "code": 7, "msg": "bad port",
        "details": "hostPort 8080 in use"}}});
    f.write_list(
        "10-net.conflist",
        "1.0.0",
        vec![
            f.plugin("fake", "a", json!({})),
            f.plugin("fake2", "b", fail),
            f.plugin("fake3", "c", json!({})),
        ],
    );
    let err = rt()
        .block_on(f.caller().add(&f.attachment("c1")))
        .unwrap_err();
    assert!(
        matches!(&err, CniError::Plugin { plugin, command: "ADD", code: 7, .. } if plugin == "fake2"),
        "{err:?}"
    );
    let msg = err.to_string();
    for want in [
        "fake2",
        "ADD",
        "container c1",
        "bad port",
        "hostPort 8080 in use",
        "code 7",
    ] {
        assert!(msg.contains(want), "{want:?} not in {msg}");
    }
    // The failed plugin and the one before it got a DEL, in reverse order, with the last
    // good result; the plugin after it never ran.
    assert_eq!(f.calls_summary(), ["ADD a", "ADD b", "DEL b", "DEL a"]);
    let calls = f.calls();
    assert_eq!(
        calls[2]["conf"]["prevResult"]["ips"][0]["address"],
        "10.9.0.2/24"
    );
    assert!(!f.cache_dir.join("results/testnet-c1-eth0").exists());
}

#[test]
fn add_with_a_missing_plugin_runs_nothing() {
    let f = Fixture::new();
    f.write_list(
        "10-net.conflist",
        "1.0.0",
        vec![
            f.plugin("fake", "a", json!({})),
            json!({"type": "portmapx"}),
        ],
    );
    let err = rt()
        .block_on(f.caller().add(&f.attachment("c1")))
        .unwrap_err();
    assert!(matches!(err, CniError::PluginNotFound { .. }), "{err:?}");
    assert!(f.calls().is_empty());
}

#[test]
fn a_crashing_plugin_reports_its_stderr() {
    let f = Fixture::new();
    f.write_list(
        "10-net.conflist",
        "1.0.0",
        vec![f.plugin("fake", "a", json!({"crash": {"ADD": true}}))],
    );
    let err = rt()
        .block_on(f.caller().add(&f.attachment("c1")))
        .unwrap_err();
    assert!(matches!(err, CniError::PluginCrashed { .. }), "{err:?}");
    assert!(err.to_string().contains("panic: boom"), "{err}");
    assert_eq!(f.calls_summary(), ["ADD a", "DEL a"]);
}

#[test]
fn a_hung_plugin_is_killed_at_the_timeout() {
    let f = Fixture::new();
    f.write_list(
        "10-net.conflist",
        "1.0.0",
        // An odd duration marks this test's sleeps for the pgrep below.
        vec![f.plugin("fake", "a", json!({"sleep": 29.917}))],
    );
    let caller = f.caller().with_plugin_timeout(Duration::from_secs(3));
    let start = Instant::now();
    let err = rt().block_on(caller.add(&f.attachment("c1"))).unwrap_err();
    assert!(
        matches!(&err, CniError::PluginTimeout { command: "ADD", .. }),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("did not finish within 3s"),
        "{err}"
    );
    // ADD timed out, then its rollback DEL (which sleeps too) timed out: 2 × 3 s, not 30 s.
    // (3 s so that the script surely got to its sleep, even on a loaded machine.)
    assert!(
        start.elapsed() < Duration::from_secs(20),
        "{:?}",
        start.elapsed()
    );
    // The plugin's own child (the sleep) died with it: the whole process group was killed.
    std::thread::sleep(Duration::from_millis(200));
    let left = std::process::Command::new("pgrep")
        .args(["-f", "^sleep 29.917"])
        .output()
        .unwrap();
    assert!(left.stdout.is_empty(), "left running: {left:?}");
}

#[test]
fn a_cancelled_call_kills_the_plugin() {
    let f = Fixture::new();
    f.write_list(
        "10-net.conflist",
        "1.0.0",
        vec![f.plugin("fake", "a", json!({"sleep": 29.918}))],
    );
    let caller = f.caller();
    let rt = rt();
    // The runtime gives up on the sandbox (its CRI deadline): the future is dropped.
    let outcome = rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(3), caller.add(&f.attachment("c1"))).await
    });
    assert!(outcome.is_err(), "the fake plugin should still be sleeping");
    std::thread::sleep(Duration::from_millis(200));
    let left = std::process::Command::new("pgrep")
        .args(["-f", "^sleep 29.918"])
        .output()
        .unwrap();
    assert!(left.stdout.is_empty(), "left running: {left:?}");
}

#[test]
fn add_rejects_bad_attachments() {
    let f = Fixture::new();
    f.write_list(
        "10-net.conflist",
        "1.0.0",
        vec![f.plugin("fake", "a", json!({}))],
    );
    let rt = rt();
    let caller = f.caller();
    let mut att = f.attachment("c1");
    att.ifname = "a-very-long-interface-name".into();
    assert!(matches!(
        rt.block_on(caller.add(&att)),
        Err(CniError::InvalidAttachment { .. })
    ));
    let mut att = f.attachment("");
    att.container_id.clear();
    assert!(matches!(
        rt.block_on(caller.add(&att)),
        Err(CniError::InvalidAttachment { .. })
    ));
    let mut att = f.attachment("c1");
    att.netns = "/nonexistent/netns".into();
    let err = rt.block_on(caller.add(&att)).unwrap_err();
    assert!(err.to_string().contains("/nonexistent/netns"), "{err}");
    assert!(f.calls().is_empty());
}

// ---- DEL / CHECK / GC ----

#[test]
fn del_uses_the_cached_config_and_is_idempotent() {
    let f = Fixture::new();
    f.write_list(
        "10-net.conflist",
        "1.0.0",
        vec![
            f.plugin("fake", "a", json!({})),
            f.plugin(
                "fake2",
                "b",
                json!({"capabilities": {"portMappings": true}}),
            ),
        ],
    );
    let rt = rt();
    let caller = f.caller();
    let mut att = f.attachment("c1");
    att.port_mappings = vec![PortMapping {
        host_port: 8080,
        container_port: 80,
        protocol: Protocol::Tcp,
        host_ip: Some("127.0.0.1".parse().unwrap()),
    }];
    rt.block_on(caller.add(&att)).unwrap();

    // The conf dir changes (another network, other plugins) before the pod goes away; the
    // teardown knows nothing about port mappings any more.
    std::fs::remove_file(f.conf_dir.join("10-net.conflist")).unwrap();
    f.write_list(
        "20-new.conflist",
        "1.0.0",
        vec![f.plugin("fake3", "new", json!({}))],
    );
    let bare = f.attachment("c1");
    rt.block_on(caller.del(&bare)).unwrap();
    assert_eq!(f.calls_summary(), ["ADD a", "ADD b", "DEL b", "DEL a"]);
    let calls = f.calls();
    assert_eq!(
        calls[2]["conf"]["prevResult"]["ips"][0]["address"],
        "10.9.0.2/24"
    );
    assert_eq!(
        calls[2]["conf"]["runtimeConfig"]["portMappings"][0]["hostIP"],
        "127.0.0.1"
    );
    assert!(calls[2]["args"]
        .as_str()
        .unwrap()
        .contains("K8S_POD_NAME=web"));
    assert!(!f.cache_dir.join("results/testnet-c1-eth0").exists());

    // Again: no cache, so the current network gets a DEL without prevResult. And the netns
    // is gone by now: CNI_NETNS is left out.
    std::fs::remove_file(&f.netns).unwrap();
    rt.block_on(caller.del(&bare)).unwrap();
    let calls = f.calls();
    assert_eq!(calls.len(), 5);
    assert_eq!(calls[4]["cmd"], "DEL");
    assert_eq!(calls[4]["tag"], "new");
    assert_eq!(calls[4]["conf"].get("prevResult"), None);
    assert_eq!(calls[4]["netns"], Value::Null);

    // No cache and no config at all: nothing to do, still fine.
    std::fs::remove_file(f.conf_dir.join("20-new.conflist")).unwrap();
    rt.block_on(caller.del(&bare)).unwrap();
    assert_eq!(f.calls().len(), 5);
}

#[test]
fn a_failed_del_keeps_the_cache_for_the_retry() {
    let f = Fixture::new();
    f.write_list(
        "10-net.conflist",
        "1.0.0",
        vec![f.plugin("fake", "a", json!({}))],
    );
    let rt = rt();
    let caller = f.caller();
    rt.block_on(caller.add(&f.attachment("c1"))).unwrap();
    let fail = json!({"fail": {"DEL": {"code": 11, "msg": "busy"}}});
    let cache_file = f.cache_dir.join("results/testnet-c1-eth0");
    // Break the cached config's plugin: DEL fails, the entry stays.
    let mut cached: Value = serde_json::from_slice(&std::fs::read(&cache_file).unwrap()).unwrap();
    let list = json!({"cniVersion": "1.0.0", "name": "testnet",
        "plugins": [f.plugin("fake", "a", fail)]});
    use base64::Engine as _;
    cached["config"] = base64::engine::general_purpose::STANDARD
        .encode(list.to_string())
        .into();
    std::fs::write(&cache_file, cached.to_string()).unwrap();
    let err = rt.block_on(caller.del(&f.attachment("c1"))).unwrap_err();
    assert!(matches!(err, CniError::Plugin { code: 11, .. }), "{err:?}");
    assert!(err.is_retryable());
    assert!(cache_file.exists());
}

#[test]
fn check_runs_with_the_cached_result() {
    let f = Fixture::new();
    f.write_list(
        "10-net.conflist",
        "1.0.0",
        vec![
            f.plugin("fake", "a", json!({})),
            f.plugin("fake2", "b", json!({})),
        ],
    );
    let rt = rt();
    let caller = f.caller();
    let err = rt.block_on(caller.check(&f.attachment("c1"))).unwrap_err();
    assert!(matches!(err, CniError::NotAttached { .. }), "{err:?}");
    rt.block_on(caller.add(&f.attachment("c1"))).unwrap();
    rt.block_on(caller.check(&f.attachment("c1"))).unwrap();
    assert_eq!(f.calls_summary(), ["ADD a", "ADD b", "CHECK a", "CHECK b"]);
    let calls = f.calls();
    assert_eq!(
        calls[2]["conf"]["prevResult"]["ips"][0]["address"],
        "10.9.0.2/24"
    );
}

#[test]
fn check_is_unsupported_before_0_4_0() {
    let f = Fixture::new();
    f.write_list(
        "10-net.conflist",
        "0.3.1",
        vec![f.plugin("fake", "a", json!({}))],
    );
    let rt = rt();
    let caller = f.caller();
    rt.block_on(caller.add(&f.attachment("c1"))).unwrap();
    let err = rt.block_on(caller.check(&f.attachment("c1"))).unwrap_err();
    assert!(
        matches!(
            err,
            CniError::Unsupported {
                command: "CHECK",
                ..
            }
        ),
        "{err:?}"
    );
    // 0.3.x DEL gets no prevResult (it came with 0.4.0).
    rt.block_on(caller.del(&f.attachment("c1"))).unwrap();
    assert_eq!(f.calls()[1]["conf"].get("prevResult"), None);
}

#[test]
fn gc_deletes_stale_attachments_and_runs_plugin_gc() {
    let f = Fixture::new();
    f.write_list(
        "10-net.conflist",
        "1.1.0",
        vec![f.plugin("fake", "a", json!({}))],
    );
    let rt = rt();
    let caller = f.caller();
    for id in ["keep", "stale-1"] {
        rt.block_on(caller.add(&f.attachment(id))).unwrap();
    }
    let valid = [AttachmentKey {
        container_id: "keep".into(),
        ifname: "eth0".into(),
    }];
    rt.block_on(caller.gc(&valid)).unwrap();
    let calls = f.calls();
    assert_eq!(f.calls_summary(), ["ADD a", "ADD a", "DEL a", "GC a"]);
    assert_eq!(calls[2]["containerId"], "stale-1");
    assert_eq!(calls[2]["netns"], Value::Null);
    assert_eq!(
        calls[3]["conf"]["cni.dev/valid-attachments"],
        json!([{"containerID": "keep", "ifname": "eth0"}])
    );
    assert!(f.cache_dir.join("results/testnet-keep-eth0").exists());
    assert!(!f.cache_dir.join("results/testnet-stale-1-eth0").exists());
}

#[test]
fn parallel_adds_of_different_containers() {
    let f = Fixture::new();
    f.write_list(
        "10-net.conflist",
        "1.0.0",
        vec![f.plugin("fake", "a", json!({}))],
    );
    let caller = std::sync::Arc::new(f.caller());
    let rt = rt();
    rt.block_on(async {
        let mut tasks = Vec::new();
        for i in 0..8 {
            let caller = caller.clone();
            let att = f.attachment(&format!("c{i}"));
            tasks.push(tokio::spawn(async move { caller.add(&att).await }));
        }
        for t in tasks {
            t.await.unwrap().unwrap();
        }
    });
    for i in 0..8 {
        assert!(f
            .cache_dir
            .join(format!("results/testnet-c{i}-eth0"))
            .exists());
    }
    assert!(
        caller.locks.map.lock().unwrap().is_empty(),
        "attachment locks are released"
    );
}
