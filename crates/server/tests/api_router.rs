//! The API router called directly (no TLS, the user attached by hand): watch semantics
//! (410 Expired for compacted versions, bookmarks, selector transitions), paging tokens,
//! the status subresource, generation and typed validation.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use deckhand_server::api::{router, ApiState};
use deckhand_server::auth::User;
use deckhand_server::store::{Backend, MemoryBackend, MemoryConfig};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

struct Api {
    router: axum::Router,
}

impl Api {
    fn new(config: MemoryConfig) -> Api {
        Self::build(config, false)
    }

    fn build(config: MemoryConfig, namespace_controller: bool) -> Api {
        let store: Arc<dyn Backend> = Arc::new(MemoryBackend::new(config));
        let state = Arc::new(ApiState {
            store,
            shutdown: CancellationToken::new(),
            bookmark_interval: Duration::from_millis(100),
            join_token: None,
            namespace_controller,
        });
        Api {
            router: router(state),
        }
    }

    fn request(
        method: Method,
        uri: &str,
        body: Option<Value>,
        content_type: &str,
    ) -> Request<Body> {
        let mut req = Request::builder()
            .method(method)
            .uri(uri)
            .header("content-type", content_type)
            .body(
                body.map(|b| Body::from(b.to_string()))
                    .unwrap_or_else(Body::empty),
            )
            .unwrap();
        req.extensions_mut().insert(User::Authenticated {
            name: "admin".into(),
            groups: vec!["system:masters".into()],
        });
        req
    }

    async fn call(&self, method: Method, uri: &str, body: Option<Value>) -> (StatusCode, Value) {
        self.call_as(method, uri, body, "application/json").await
    }

    async fn call_as(
        &self,
        method: Method,
        uri: &str,
        body: Option<Value>,
        content_type: &str,
    ) -> (StatusCode, Value) {
        let resp = self
            .router
            .clone()
            .oneshot(Self::request(method, uri, body, content_type))
            .await
            .unwrap();
        let status = resp.status();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    /// Open a watch and return a reader of its events.
    async fn watch(&self, uri: &str) -> Watch {
        let resp = self
            .router
            .clone()
            .oneshot(Self::request(Method::GET, uri, None, "application/json"))
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        Watch {
            body: resp.into_body(),
            buf: String::new(),
        }
    }
}

struct Watch {
    body: Body,
    buf: String,
}

impl Watch {
    async fn next(&mut self) -> Value {
        loop {
            if let Some(i) = self.buf.find('\n') {
                let line: String = self.buf.drain(..=i).collect();
                return serde_json::from_str(&line).unwrap();
            }
            let frame = tokio::time::timeout(Duration::from_secs(5), self.body.frame())
                .await
                .expect("a watch event within 5 s")
                .expect("the stream is open")
                .unwrap();
            if let Ok(data) = frame.into_data() {
                self.buf.push_str(std::str::from_utf8(&data).unwrap());
            }
        }
    }

    /// The next event that is not a bookmark.
    async fn next_change(&mut self) -> Value {
        loop {
            let ev = self.next().await;
            if ev["type"] != "BOOKMARK" {
                return ev;
            }
        }
    }
}

fn cm(name: &str, labels: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap",
           "metadata": {"name": name, "labels": labels}, "data": {"k": "v"}})
}

async fn namespace(api: &Api, name: &str) {
    let (code, _) = api
        .call(
            Method::POST,
            "/api/v1/namespaces",
            Some(json!({"metadata": {"name": name}})),
        )
        .await;
    assert_eq!(code, StatusCode::CREATED);
}

#[tokio::test]
async fn watch_from_a_compacted_version_is_410_expired() {
    let api = Api::new(MemoryConfig {
        max_history: 4,
        ..MemoryConfig::default()
    });
    namespace(&api, "default").await;
    for i in 0..10 {
        let (code, _) = api
            .call(
                Method::POST,
                "/api/v1/namespaces/default/configmaps",
                Some(cm(&format!("c{i}"), json!({}))),
            )
            .await;
        assert_eq!(code, StatusCode::CREATED);
    }
    let mut w = api
        .watch("/api/v1/namespaces/default/configmaps?watch=1&resourceVersion=2")
        .await;
    let ev = w.next().await;
    assert_eq!(ev["type"], "ERROR");
    assert_eq!(ev["object"]["kind"], "Status");
    assert_eq!(ev["object"]["code"], 410);
    assert_eq!(ev["object"]["reason"], "Expired");
    assert!(ev["object"]["message"]
        .as_str()
        .unwrap()
        .starts_with("too old resource version: 2"));
}

#[tokio::test]
async fn watch_replays_history_sends_bookmarks_and_follows_selectors() {
    let api = Api::new(MemoryConfig::default());
    namespace(&api, "default").await;
    let (_, list) = api
        .call(Method::GET, "/api/v1/namespaces/default/configmaps", None)
        .await;
    let rv = list["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string();
    let (_, created) = api
        .call(
            Method::POST,
            "/api/v1/namespaces/default/configmaps",
            Some(cm("a", json!({"app": "web"}))),
        )
        .await;
    let mut w = api
        .watch(&format!(
            "/api/v1/namespaces/default/configmaps?watch=1&resourceVersion={rv}&labelSelector=app%3Dweb&allowWatchBookmarks=true"
        ))
        .await;
    let ev = w.next_change().await;
    assert_eq!(ev["type"], "ADDED");
    assert_eq!(ev["object"]["metadata"]["name"], "a");
    assert_eq!(
        ev["object"]["metadata"]["resourceVersion"],
        created["metadata"]["resourceVersion"]
    );
    // Relabelled out of the selector: DELETED for this watcher.
    let (code, _) = api
        .call_as(
            Method::PATCH,
            "/api/v1/namespaces/default/configmaps/a",
            Some(json!({"metadata": {"labels": {"app": "db"}}})),
            "application/merge-patch+json",
        )
        .await;
    assert_eq!(code, StatusCode::OK);
    let ev = w.next_change().await;
    assert_eq!(ev["type"], "DELETED");
    // Bookmarks carry only a resourceVersion.
    let bm = loop {
        let ev = w.next().await;
        if ev["type"] == "BOOKMARK" {
            break ev;
        }
    };
    assert_eq!(bm["object"]["kind"], "ConfigMap");
    assert!(bm["object"]["metadata"]["resourceVersion"]
        .as_str()
        .is_some());
    assert!(bm["object"].get("data").is_none());
}

#[tokio::test]
async fn paging_with_continue_tokens() {
    let api = Api::new(MemoryConfig::default());
    namespace(&api, "default").await;
    for i in 0..5 {
        api.call(
            Method::POST,
            "/api/v1/namespaces/default/configmaps",
            Some(cm(&format!("c{i}"), json!({}))),
        )
        .await;
    }
    let (_, first) = api
        .call(
            Method::GET,
            "/api/v1/namespaces/default/configmaps?limit=2",
            None,
        )
        .await;
    assert_eq!(first["items"].as_array().unwrap().len(), 2);
    let token = first["metadata"]["continue"].as_str().unwrap().to_string();
    // A write between pages does not show up: every page is read at the first one's revision.
    api.call(
        Method::POST,
        "/api/v1/namespaces/default/configmaps",
        Some(cm("c9", json!({}))),
    )
    .await;
    let mut names: Vec<String> = Vec::new();
    let mut page = first;
    let mut token = Some(token);
    loop {
        for item in page["items"].as_array().unwrap() {
            names.push(item["metadata"]["name"].as_str().unwrap().to_string());
        }
        let Some(t) = token.take() else { break };
        let (_, next) = api
            .call(
                Method::GET,
                &format!("/api/v1/namespaces/default/configmaps?limit=2&continue={t}"),
                None,
            )
            .await;
        token = next["metadata"]["continue"].as_str().map(str::to_string);
        page = next;
    }
    assert_eq!(names, ["c0", "c1", "c2", "c3", "c4"]);
    let (code, err) = api
        .call(
            Method::GET,
            "/api/v1/namespaces/default/configmaps?limit=2&continue=garbage",
            None,
        )
        .await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
    assert_eq!(err["reason"], "BadRequest");
}

#[tokio::test]
async fn status_subresource_generation_and_validation() {
    let api = Api::new(MemoryConfig::default());
    namespace(&api, "default").await;
    let deploy = json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": [{"name": "c", "image": "nginx"}]}}},
        "status": {"replicas": 7}});
    let base = "/apis/apps/v1/namespaces/default/deployments";
    let (code, created) = api.call(Method::POST, base, Some(deploy)).await;
    assert_eq!(code, StatusCode::CREATED);
    assert_eq!(created["metadata"]["generation"], 1);

    // The main endpoint ignores status; spec changes bump generation.
    let mut changed = created.clone();
    changed["spec"]["replicas"] = json!(3);
    changed["status"] = json!({"replicas": 9});
    let (code, updated) = api
        .call(Method::PUT, &format!("{base}/web"), Some(changed))
        .await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(updated["metadata"]["generation"], 2);
    assert_ne!(updated["status"]["replicas"], 9);

    // The status endpoint changes only status.
    let mut status = updated.clone();
    status["status"] = json!({"replicas": 3, "readyReplicas": 3});
    status["spec"]["replicas"] = json!(10);
    let (code, after) = api
        .call(Method::PUT, &format!("{base}/web/status"), Some(status))
        .await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(after["status"]["readyReplicas"], 3);
    assert_eq!(after["spec"]["replicas"], 3);
    assert_eq!(after["metadata"]["generation"], 2);

    // Stale resourceVersion.
    let (code, err) = api
        .call(Method::PUT, &format!("{base}/web"), Some(created))
        .await;
    assert_eq!(code, StatusCode::CONFLICT);
    assert_eq!(err["reason"], "Conflict");
    assert_eq!(err["details"]["group"], "apps");

    // Wrong shape: 400 with the field path; namespace mismatch: 400.
    let bad = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
        "spec": {"containers": [{"name": "c", "image": "i", "ports": [{"containerPort": "eighty"}]}]}});
    let (code, err) = api
        .call(Method::POST, "/api/v1/namespaces/default/pods", Some(bad))
        .await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
    assert!(err["message"]
        .as_str()
        .unwrap()
        .contains("spec.containers[0].ports[0].containerPort"));
    let other_ns = json!({"metadata": {"name": "x", "namespace": "other"}});
    let (code, _) = api
        .call(
            Method::POST,
            "/api/v1/namespaces/default/configmaps",
            Some(other_ns),
        )
        .await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
    // Missing required field: 422 naming it.
    let no_image = json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c"}]}});
    let (code, err) = api
        .call(
            Method::POST,
            "/api/v1/namespaces/default/pods",
            Some(no_image),
        )
        .await;
    assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        err["details"]["causes"][0]["field"],
        "spec.containers[0].image"
    );

    // generateName.
    let (code, made) = api
        .call(
            Method::POST,
            "/api/v1/namespaces/default/configmaps",
            Some(json!({"metadata": {"generateName": "gen-"}})),
        )
        .await;
    assert_eq!(code, StatusCode::CREATED);
    let name = made["metadata"]["name"].as_str().unwrap();
    assert!(name.starts_with("gen-") && name.len() == 9, "{name}");
}

#[tokio::test]
async fn binding_assigns_a_pod_once() {
    let api = Api::new(MemoryConfig::default());
    namespace(&api, "default").await;
    let pod =
        json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "i"}]}});
    let (code, _) = api
        .call(Method::POST, "/api/v1/namespaces/default/pods", Some(pod))
        .await;
    assert_eq!(code, StatusCode::CREATED);
    let binding = json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "p"},
                         "target": {"kind": "Node", "name": "n1"}});
    let uri = "/api/v1/namespaces/default/pods/p/binding";
    let (code, status) = api.call(Method::POST, uri, Some(binding.clone())).await;
    assert_eq!(code, StatusCode::CREATED, "{status}");
    let (_, bound) = api
        .call(Method::GET, "/api/v1/namespaces/default/pods/p", None)
        .await;
    assert_eq!(bound["spec"]["nodeName"], "n1");
    assert_eq!(bound["status"]["conditions"][0]["type"], "PodScheduled");
    let (code, err) = api.call(Method::POST, uri, Some(binding)).await;
    assert_eq!(code, StatusCode::CONFLICT);
    assert!(err["message"]
        .as_str()
        .unwrap()
        .contains("is already assigned to node \"n1\""));
}

#[tokio::test]
async fn secrets_deletecollection_and_namespace_deletion() {
    let api = Api::new(MemoryConfig::default());
    namespace(&api, "team").await;
    let secret = json!({"metadata": {"name": "s"}, "stringData": {"password": "hunter2"}});
    let (code, made) = api
        .call(
            Method::POST,
            "/api/v1/namespaces/team/secrets",
            Some(secret.clone()),
        )
        .await;
    assert_eq!(code, StatusCode::CREATED);
    assert_eq!(made["data"]["password"], "aHVudGVyMg==");
    assert!(made.get("stringData").is_none());
    assert_eq!(made["type"], "Opaque");
    // A dry run of an existing name conflicts like the real thing.
    let (code, _) = api
        .call(
            Method::POST,
            "/api/v1/namespaces/team/secrets?dryRun=All",
            Some(secret),
        )
        .await;
    assert_eq!(code, StatusCode::CONFLICT);

    for (name, tier) in [("a", "web"), ("b", "web"), ("c", "db")] {
        api.call(
            Method::POST,
            "/api/v1/namespaces/team/configmaps",
            Some(cm(name, json!({"tier": tier}))),
        )
        .await;
    }
    let (code, gone) = api
        .call(
            Method::DELETE,
            "/api/v1/namespaces/team/configmaps?labelSelector=tier%3Dweb",
            None,
        )
        .await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(gone["items"].as_array().unwrap().len(), 2);
    let (_, left) = api
        .call(Method::GET, "/api/v1/namespaces/team/configmaps", None)
        .await;
    assert_eq!(left["items"].as_array().unwrap().len(), 1);

    // Deleting the namespace takes its contents with it.
    let (code, status) = api
        .call(Method::DELETE, "/api/v1/namespaces/team", None)
        .await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(status["status"], "Success");
    let (_, left) = api.call(Method::GET, "/api/v1/configmaps", None).await;
    assert_eq!(left["items"].as_array().unwrap().len(), 0);
    let (code, err) = api
        .call(
            Method::POST,
            "/api/v1/namespaces/team/configmaps",
            Some(cm("late", json!({}))),
        )
        .await;
    assert_eq!(code, StatusCode::NOT_FOUND);
    assert_eq!(err["message"], "namespaces \"team\" not found");
}

#[tokio::test]
async fn watch_list_sends_initial_events_then_the_end_bookmark() {
    let api = Api::new(MemoryConfig::default());
    namespace(&api, "default").await;
    for name in ["x", "y"] {
        api.call(
            Method::POST,
            "/api/v1/namespaces/default/configmaps",
            Some(cm(name, json!({}))),
        )
        .await;
    }
    let mut w = api
        .watch("/api/v1/namespaces/default/configmaps?watch=1&sendInitialEvents=true&allowWatchBookmarks=true&resourceVersionMatch=NotOlderThan")
        .await;
    let names = [w.next().await, w.next().await]
        .map(|ev| (ev["type"].clone(), ev["object"]["metadata"]["name"].clone()));
    assert_eq!(
        names,
        [(json!("ADDED"), json!("x")), (json!("ADDED"), json!("y"))]
    );
    let end = w.next().await;
    assert_eq!(end["type"], "BOOKMARK");
    assert_eq!(
        end["object"]["metadata"]["annotations"]["k8s.io/initial-events-end"],
        "true"
    );
}

#[tokio::test]
async fn list_from_the_future_is_504_too_large_resource_version() {
    let api = Api::new(MemoryConfig::default());
    namespace(&api, "default").await;
    let (code, err) = api
        .call(
            Method::GET,
            "/api/v1/namespaces/default/configmaps?resourceVersion=999&resourceVersionMatch=NotOlderThan",
            None,
        )
        .await;
    assert_eq!(code, StatusCode::GATEWAY_TIMEOUT);
    assert!(err["message"]
        .as_str()
        .unwrap()
        .starts_with("Too large resource version: 999"));
    let (code, _) = api
        .call(
            Method::GET,
            "/api/v1/namespaces/default/configmaps?resourceVersion=1",
            None,
        )
        .await;
    assert_eq!(code, StatusCode::OK);
}

#[tokio::test]
async fn eviction_deletes_the_pod() {
    let api = Api::new(MemoryConfig::default());
    namespace(&api, "default").await;
    let pod =
        json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "i"}]}});
    api.call(Method::POST, "/api/v1/namespaces/default/pods", Some(pod))
        .await;
    let eviction =
        json!({"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": "p"}});
    let (code, _) = api
        .call(
            Method::POST,
            "/api/v1/namespaces/default/pods/p/eviction",
            Some(eviction),
        )
        .await;
    assert_eq!(code, StatusCode::CREATED);
    let (code, _) = api
        .call(Method::GET, "/api/v1/namespaces/default/pods/p", None)
        .await;
    assert_eq!(code, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn namespaces_terminate_until_finalized_when_a_controller_runs() {
    let api = Api::build(MemoryConfig::default(), true);
    namespace(&api, "team").await;
    let (_, ns) = api.call(Method::GET, "/api/v1/namespaces/team", None).await;
    assert_eq!(ns["spec"]["finalizers"], json!(["kubernetes"]));
    api.call(
        Method::POST,
        "/api/v1/namespaces/team/configmaps",
        Some(cm("a", json!({}))),
    )
    .await;

    let (code, ns) = api
        .call(Method::DELETE, "/api/v1/namespaces/team", None)
        .await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(ns["status"]["phase"], "Terminating");
    assert!(ns["metadata"]["deletionTimestamp"].is_string());
    // Content stays for the controller to delete; new content is refused.
    let (_, left) = api
        .call(Method::GET, "/api/v1/namespaces/team/configmaps", None)
        .await;
    assert_eq!(left["items"].as_array().unwrap().len(), 1);
    let (code, _) = api
        .call(
            Method::POST,
            "/api/v1/namespaces/team/configmaps",
            Some(cm("b", json!({}))),
        )
        .await;
    assert_eq!(code, StatusCode::FORBIDDEN);

    // The controller finalizes: the namespace goes.
    let mut done = ns.clone();
    done["spec"]["finalizers"] = json!([]);
    let (code, body) = api
        .call(Method::PUT, "/api/v1/namespaces/team/finalize", Some(done))
        .await;
    assert_eq!(code, StatusCode::OK, "{body}");
    let (code, _) = api.call(Method::GET, "/api/v1/namespaces/team", None).await;
    assert_eq!(code, StatusCode::NOT_FOUND);
}
