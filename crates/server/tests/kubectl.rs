//! The API server driven by the real kubectl (/usr/bin/kubectl, 1.32): each test starts a
//! server in-process on a free port with a temp data dir (SQLite store, as `deckhand server`
//! runs by default) and runs kubectl against the admin kubeconfig it writes.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use deckhand_server::store::SqliteBackend;
use deckhand_server::{Config, RunningServer};

const KUBECTL: &str = "/usr/bin/kubectl";

struct Cluster {
    rt: tokio::runtime::Runtime,
    server: Option<RunningServer>,
    kubeconfig: PathBuf,
    dir: tempfile::TempDir,
}

impl Cluster {
    /// `None` (and the test passes vacuously, saying so) when kubectl is not installed.
    fn start() -> Option<Cluster> {
        if !std::path::Path::new(KUBECTL).exists() {
            eprintln!("skipping: {KUBECTL} is not installed");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let store = SqliteBackend::open(dir.path().join("state.db")).unwrap();
        let mut config = Config::new(dir.path(), Arc::new(store));
        config.listen = "127.0.0.1:0".parse().unwrap();
        config.bookmark_interval = Duration::from_millis(200);
        let server = rt.block_on(deckhand_server::start(config)).unwrap();
        let kubeconfig = server.kubeconfig.clone();
        Some(Cluster {
            rt,
            server: Some(server),
            kubeconfig,
            dir,
        })
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(KUBECTL);
        c.args(args)
            .env("KUBECONFIG", &self.kubeconfig)
            .env("HOME", self.dir.path())
            .stdin(Stdio::null());
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
    }

    /// Run and require success; returns stdout.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "kubectl {args:?} failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Run and require failure; returns stderr.
    fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            !out.status.success(),
            "kubectl {args:?} unexpectedly succeeded:\n{}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    fn apply(&self, yaml: &str) -> String {
        let path = self.dir.path().join("manifest.yaml");
        std::fs::write(&path, yaml).unwrap();
        self.ok(&["apply", "-f", path.to_str().unwrap()])
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if let Some(s) = self.server.take() {
            self.rt.block_on(s.shutdown());
        }
    }
}

#[test]
fn version_and_api_resources() {
    let Some(c) = Cluster::start() else { return };
    let out = c.ok(&["version"]);
    assert!(out.contains("Server Version: v1.32"), "{out}");

    let out = c.ok(&["api-resources"]);
    let row = |name: &str| {
        out.lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .unwrap_or_else(|| panic!("{name} missing from:\n{out}"))
            .split_whitespace()
            .collect::<Vec<_>>()
    };
    assert_eq!(row("pods"), ["pods", "po", "v1", "true", "Pod"]);
    assert_eq!(row("nodes"), ["nodes", "no", "v1", "false", "Node"]);
    assert_eq!(
        row("deployments"),
        ["deployments", "deploy", "apps/v1", "true", "Deployment"]
    );
    assert_eq!(
        row("leases"),
        ["leases", "coordination.k8s.io/v1", "true", "Lease"]
    );
    assert_eq!(c.ok(&["auth", "can-i", "delete", "nodes"]), "yes\n");
    let explain = c.ok(&["explain", "pod.spec.containers.image"]);
    assert!(explain.contains("FIELD: image <string>"), "{explain}");
    let explain = c.ok(&["explain", "deployment.spec"]);
    assert!(
        explain.contains("GROUP:      apps") && explain.contains("replicas\t<integer>"),
        "{explain}"
    );
    let wide = c.ok(&["api-resources", "-o", "wide", "--api-group=storage.k8s.io"]);
    assert!(
        wide.contains("create,delete,deletecollection,get,list,patch,update,watch"),
        "{wide}"
    );
}

const MANIFEST: &str = "\
apiVersion: v1
kind: ConfigMap
metadata:
  name: cfg
  namespace: demo
  labels: {app: web}
data:
  a: \"1\"
---
apiVersion: v1
kind: Pod
metadata:
  name: web
  namespace: demo
  labels: {app: web, tier: front}
spec:
  containers:
  - name: c
    image: nginx:1.25
";

#[test]
fn apply_get_and_delete() {
    let Some(c) = Cluster::start() else { return };
    assert_eq!(
        c.ok(&["create", "namespace", "demo"]),
        "namespace/demo created\n"
    );
    let out = c.apply(MANIFEST);
    assert_eq!(out, "configmap/cfg created\npod/web created\n");
    let out = c.apply(
        &MANIFEST
            .replace("a: \"1\"", "a: \"2\"")
            .replace("1.25", "1.26"),
    );
    assert_eq!(out, "configmap/cfg configured\npod/web configured\n");
    let out = c.apply(
        &MANIFEST
            .replace("a: \"1\"", "a: \"2\"")
            .replace("1.25", "1.26"),
    );
    assert_eq!(out, "configmap/cfg unchanged\npod/web unchanged\n");

    let image = c.ok(&[
        "-n",
        "demo",
        "get",
        "pod",
        "web",
        "-o",
        "jsonpath={.spec.containers[0].image}",
    ]);
    assert_eq!(image, "nginx:1.26");
    let cm: serde_json::Value =
        serde_json::from_str(&c.ok(&["-n", "demo", "get", "cm", "cfg", "-o", "json"])).unwrap();
    assert_eq!(cm["data"]["a"], "2");
    assert!(cm["metadata"]["uid"]
        .as_str()
        .is_some_and(|u| u.len() == 36));
    let yaml = c.ok(&["-n", "demo", "get", "pod", "web", "-o", "yaml"]);
    assert!(yaml.contains("phase: Pending"), "{yaml}");
    assert!(yaml.contains("restartPolicy: Always"), "{yaml}");

    // The usual columns from the server-side Table.
    let table = c.ok(&["-n", "demo", "get", "pods"]);
    let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]);
    assert!(
        table.contains("web") && table.contains("Pending"),
        "{table}"
    );

    let selected = c.ok(&[
        "-n",
        "demo",
        "get",
        "pods,cm",
        "-l",
        "tier=front",
        "-o",
        "name",
    ]);
    assert_eq!(selected, "pod/web\n");
    let none = c.ok(&["get", "pods", "-A", "-l", "tier=back"]);
    assert_eq!(none, "");

    assert_eq!(
        c.ok(&["-n", "demo", "delete", "cm", "cfg"]),
        "configmap \"cfg\" deleted\n"
    );
    let err = c.fails(&["-n", "demo", "get", "cm", "cfg"]);
    assert!(
        err.contains("Error from server (NotFound): configmaps \"cfg\" not found"),
        "{err}"
    );
    // An unscheduled pod has nothing to stop: it goes at once.
    c.ok(&["-n", "demo", "delete", "pod", "web"]);
    assert_eq!(c.ok(&["-n", "demo", "get", "pods", "-o", "name"]), "");
}

#[test]
fn watch_sees_changes() {
    let Some(c) = Cluster::start() else { return };
    let mut child = c
        .cmd(&["get", "cm", "-w", "-o", "json", "--output-watch-events"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    // kubectl lists, then watches; creating after a short pause lands in the watch.
    std::thread::sleep(Duration::from_millis(700));
    c.ok(&["create", "configmap", "watched", "--from-literal=k=v"]);
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut seen = String::new();
    while Instant::now() < deadline {
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) {
            seen.push_str(&line);
            seen.push('\n');
            if seen.contains("\"ADDED\"") && seen.contains("\"watched\"") {
                break;
            }
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        seen.contains("\"ADDED\"") && seen.contains("\"watched\""),
        "no ADDED event for the configmap in:\n{seen}"
    );
}

#[test]
fn errors_read_like_kube_apiserver() {
    let Some(c) = Cluster::start() else { return };
    c.ok(&["create", "configmap", "cfg", "--from-literal=a=1"]);
    let stale = c.ok(&["get", "cm", "cfg", "-o", "json"]);
    c.ok(&["patch", "cm", "cfg", "-p", r#"{"data":{"a":"2"}}"#]);
    let path = c.dir.path().join("stale.json");
    std::fs::write(&path, stale).unwrap();
    let err = c.fails(&["replace", "-f", path.to_str().unwrap()]);
    assert!(
        err.contains("Error from server (Conflict)")
            && err.contains("Operation cannot be fulfilled on configmaps \"cfg\": the object has been modified; please apply your changes to the latest version and try again"),
        "{err}"
    );

    let err = c.fails(&["get", "widgets"]);
    assert!(
        err.contains("the server doesn't have a resource type \"widgets\""),
        "{err}"
    );
    let err = c.fails(&["create", "namespace", "Bad_Name"]);
    assert!(
        err.contains("The Namespace \"Bad_Name\" is invalid: metadata.name: Invalid value"),
        "{err}"
    );
    let err = c.fails(&["create", "configmap", "cfg"]);
    assert!(err.contains("configmaps \"cfg\" already exists"), "{err}");
    let err = c.fails(&["-n", "nowhere", "create", "configmap", "x"]);
    assert!(err.contains("namespaces \"nowhere\" not found"), "{err}");
    // Unknown fields are refused under kubectl's default strict validation, nothing stored.
    let bad = c.dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: strict}\nbogus: 1\n",
    )
    .unwrap();
    let err = c.fails(&["create", "-f", bad.to_str().unwrap()]);
    assert!(err.contains("unknown field \"bogus\""), "{err}");
    c.fails(&["get", "cm", "strict"]);

    // No client certificate (an unknown bearer token): 401, "not logged in" to kubectl.
    let server = c.ok(&[
        "config",
        "view",
        "-o",
        "jsonpath={.clusters[0].cluster.server}",
    ]);
    let anon = c.dir.path().join("anonymous.yaml");
    std::fs::write(
        &anon,
        format!(
            "apiVersion: v1\nkind: Config\nclusters: [{{name: c, cluster: {{server: \"{server}\", insecure-skip-tls-verify: true}}}}]\nusers: [{{name: anon, user: {{token: not-a-valid-token}}}}]\ncontexts: [{{name: c, context: {{cluster: c, user: anon}}}}]\ncurrent-context: c\n"
        ),
    )
    .unwrap();
    let out = Command::new(KUBECTL)
        .args(["get", "pods"])
        .env("KUBECONFIG", &anon)
        .env("HOME", c.dir.path())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("You must be logged in to the server (Unauthorized)"),
        "{err}"
    );
}

#[test]
fn graceful_delete_finalizers_paging_and_dry_run() {
    let Some(c) = Cluster::start() else { return };
    // A pod bound to a node is deleted gracefully: it stays, marked, until the node (or a
    // grace-0 delete) finishes it.
    c.apply(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: bound}\nspec:\n  nodeName: n1\n  containers: [{name: c, image: busybox}]\n",
    );
    c.ok(&["delete", "pod", "bound", "--wait=false"]);
    let ts = c.ok(&[
        "get",
        "pod",
        "bound",
        "-o",
        "jsonpath={.metadata.deletionTimestamp} {.metadata.deletionGracePeriodSeconds}",
    ]);
    assert!(ts.ends_with(" 30"), "{ts}");
    c.ok(&["delete", "pod", "bound", "--grace-period=0", "--force"]);
    c.fails(&["get", "pod", "bound"]);

    // Drain: cordon (a node patch) and evictions (pods/eviction, a protobuf body).
    c.apply(
        "apiVersion: v1\nkind: Node\nmetadata: {name: n1}\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: evictee}\nspec:\n  nodeName: n1\n  containers: [{name: c, image: busybox}]\n",
    );
    let out = c.ok(&[
        "drain",
        "n1",
        "--force",
        "--grace-period=0",
        "--timeout=20s",
    ]);
    assert!(
        out.contains("pod/evictee evicted") && out.contains("node/n1 drained"),
        "{out}"
    );
    let unschedulable = c.ok(&["get", "node", "n1", "-o", "jsonpath={.spec.unschedulable}"]);
    assert_eq!(unschedulable, "true");
    c.fails(&["get", "pod", "evictee"]);

    // Finalizers hold an object until removed.
    c.apply(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: held, finalizers: [example.com/hold]}\n",
    );
    c.ok(&["delete", "cm", "held", "--wait=false"]);
    let ts = c.ok(&[
        "get",
        "cm",
        "held",
        "-o",
        "jsonpath={.metadata.deletionTimestamp}",
    ]);
    assert!(!ts.is_empty());
    c.ok(&[
        "patch",
        "cm",
        "held",
        "--type=merge",
        "-p",
        r#"{"metadata":{"finalizers":null}}"#,
    ]);
    c.fails(&["get", "cm", "held"]);

    // Chunked lists (limit/continue) return everything.
    for i in 0..5 {
        c.ok(&["create", "configmap", &format!("page-{i}")]);
    }
    let names = c.ok(&["get", "cm", "--chunk-size=2", "-o", "name"]);
    assert_eq!(
        names.lines().filter(|l| l.contains("page-")).count(),
        5,
        "{names}"
    );

    // Server-side dry run validates and stores nothing.
    let out = c.ok(&["create", "configmap", "dry", "--dry-run=server"]);
    assert!(
        out.contains("configmap/dry created (server dry run)"),
        "{out}"
    );
    c.fails(&["get", "cm", "dry"]);

    // A Deployment from kubectl's typed client (protobuf body) with upstream defaults.
    c.ok(&[
        "create",
        "deployment",
        "web",
        "--image=nginx:1.25",
        "--replicas=2",
    ]);
    let strategy = c.ok(&[
        "get",
        "deploy",
        "web",
        "-o",
        "jsonpath={.spec.strategy.type} {.metadata.generation}",
    ]);
    assert_eq!(strategy, "RollingUpdate 1");
    assert_eq!(
        c.ok(&["scale", "deploy", "web", "--replicas=3"]),
        "deployment.apps/web scaled\n"
    );
    let out = c.ok(&[
        "get",
        "deploy",
        "web",
        "-o",
        "jsonpath={.spec.replicas} {.metadata.generation}",
    ]);
    assert_eq!(out, "3 2");
}

#[test]
fn users_outside_system_masters_are_forbidden() {
    use base64::Engine;
    let Some(c) = Cluster::start() else { return };
    let tls_dir = c.dir.path().join("server/tls");
    let (cert, key) =
        deckhand_server::tls::issue_client_cert(&tls_dir, "bob", Some("developers"), 1).unwrap();
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let admin = std::fs::read_to_string(&c.kubeconfig).unwrap();
    let mut doc: serde_yaml::Value = serde_yaml::from_str(&admin).unwrap();
    doc["users"][0]["user"]["client-certificate-data"] = b64(&cert).into();
    doc["users"][0]["user"]["client-key-data"] = b64(&key).into();
    let bob = c.dir.path().join("bob.yaml");
    std::fs::write(&bob, serde_yaml::to_string(&doc).unwrap()).unwrap();
    let run = |args: &[&str]| {
        Command::new(KUBECTL)
            .args(args)
            .env("KUBECONFIG", &bob)
            .env("HOME", c.dir.path())
            .output()
            .unwrap()
    };
    let out = run(&["get", "pods"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("Error from server (Forbidden): pods is forbidden: User \"bob\" cannot list resource \"pods\" in API group \"\" in the namespace \"default\""),
        "{err}"
    );
    let out = run(&["auth", "can-i", "list", "pods"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "no\n");

    // The join token authenticates a bootstrap user, who may only deal with CSRs.
    let token = c.server.as_ref().unwrap().token.clone();
    let users = &mut doc["users"][0]["user"];
    *users = serde_yaml::Mapping::new().into();
    users["token"] = token.clone().into();
    std::fs::write(&bob, serde_yaml::to_string(&doc).unwrap()).unwrap();
    let out = run(&["get", "csr"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run(&["get", "pods"]);
    let err = String::from_utf8_lossy(&out.stderr);
    let id: String = token.chars().take(6).collect();
    assert!(
        err.contains(&format!(
            "User \"system:bootstrap:{id}\" cannot list resource \"pods\""
        )),
        "{err}"
    );
}
