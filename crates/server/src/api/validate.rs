//! Checking an incoming object before anything is stored: its type, its namespace against the
//! URL, its shape against the k8s-openapi type (wrong types → 400 with a field path, missing
//! required fields → 422), unknown fields (per `fieldValidation`), names, and the few semantic
//! rules kubectl users hit first. Also upstream's defaults for the fields `kubectl get` shows.

use serde_json::{Map, Value};

use crate::registry::ResourceInfo;

use super::object;
use super::status::{ApiError, ApiResult, FieldError};

/// How unknown fields are treated (the `fieldValidation` query parameter).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldValidation {
    Ignore,
    Warn,
    Strict,
}

impl FieldValidation {
    pub fn parse(s: Option<&str>) -> ApiResult<Self> {
        match s {
            None | Some("") | Some("Warn") => Ok(FieldValidation::Warn),
            Some("Ignore") => Ok(FieldValidation::Ignore),
            Some("Strict") => Ok(FieldValidation::Strict),
            Some(other) => Err(ApiError::bad_request(format!(
                "fieldValidation parameter unsupported: {other}"
            ))),
        }
    }
}

/// The typed round trip of `body` plus warnings to send back.
pub struct Checked {
    pub object: Value,
    pub warnings: Vec<String>,
}

/// Decode, normalise and validate `body` for `info`. `namespace` is the URL's; the body's
/// must match it (or be empty, then it is filled in).
pub fn check(
    info: &ResourceInfo,
    mut body: Value,
    namespace: Option<&str>,
    validation: FieldValidation,
) -> ApiResult<Checked> {
    if !body.is_object() {
        return Err(ApiError::bad_request(format!(
            "the body of the request must be a {} object",
            info.kind
        )));
    }
    let want_version = info.api_version();
    if let Some(v) = body["apiVersion"].as_str() {
        if v != want_version {
            return Err(ApiError::bad_request(format!(
                "the API version in the data ({v}) does not match the expected API version ({want_version})"
            )));
        }
    }
    if let Some(k) = body["kind"].as_str() {
        if k != info.kind {
            return Err(ApiError::bad_request(format!(
                "the kind in the data ({k}) does not match the expected kind ({})",
                info.kind
            )));
        }
    }
    object::set_type(info, &mut body);
    if info.namespaced {
        let url_ns = namespace.unwrap_or_default();
        match object::namespace(&body) {
            Some(ns) if ns != url_ns => {
                return Err(ApiError::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                ))
            }
            _ => {
                object::meta_mut(&mut body)
                    .insert("namespace".into(), Value::String(url_ns.to_string()));
            }
        }
    } else {
        object::meta_mut(&mut body).remove("namespace");
    }
    let name_for_errors = object::name(&body).to_string();
    let normalized = (info.normalize)(&body).map_err(|e| {
        if e.missing_field {
            ApiError::invalid(
                info,
                &name_for_errors,
                vec![FieldError::required(e.path, "")],
            )
        } else {
            ApiError::bad_request(format!(
                "{} in version \"{}\" cannot be handled as a {}: {}: {}",
                info.kind,
                info.version,
                info.kind,
                if e.path.is_empty() { "body" } else { &e.path },
                e.message
            ))
        }
    })?;
    let mut warnings = Vec::new();
    if validation != FieldValidation::Ignore {
        let mut unknown = Vec::new();
        unknown_fields(&body, &normalized, String::new(), &mut unknown);
        if !unknown.is_empty() {
            if validation == FieldValidation::Strict {
                let list = unknown
                    .iter()
                    .map(|f| format!("unknown field \"{f}\""))
                    .collect::<Vec<_>>()
                    .join(", ");
                return Err(ApiError::bad_request(format!(
                    "strict decoding error: {list}"
                )));
            }
            warnings.extend(unknown.iter().map(|f| format!("unknown field \"{f}\"")));
        }
    }
    Ok(Checked {
        object: normalized,
        warnings,
    })
}

/// Paths present (non-null) in `input` but dropped by the typed round trip.
fn unknown_fields(input: &Value, typed: &Value, path: String, out: &mut Vec<String>) {
    match (input, typed) {
        (Value::Object(i), Value::Object(t)) => {
            for (k, v) in i {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                match t.get(k) {
                    Some(tv) => unknown_fields(v, tv, p, out),
                    None if !v.is_null() => out.push(p),
                    None => {}
                }
            }
        }
        (Value::Array(i), Value::Array(t)) => {
            for (n, (iv, tv)) in i.iter().zip(t).enumerate() {
                unknown_fields(iv, tv, format!("{path}[{n}]"), out);
            }
        }
        _ => {}
    }
}

const DNS1123_SUBDOMAIN: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
const DNS1123_LABEL: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";

fn is_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

fn is_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(is_label)
}

/// Resources whose names become DNS labels (a Service name is a hostname part).
fn name_is_label(info: &ResourceInfo) -> bool {
    info.group.is_empty() && matches!(info.resource, "namespaces" | "services")
}

/// Semantic validation of a normalised object (names and the required fields kubectl users
/// meet first). Returns every problem at once, as upstream does.
pub fn validate(info: &ResourceInfo, obj: &Value) -> ApiResult<()> {
    let name = object::name(obj);
    let mut errs = Vec::new();
    if name.is_empty() {
        errs.push(FieldError::required(
            "metadata.name",
            "name or generateName is required",
        ));
    } else if name_is_label(info) && !is_label(name) {
        errs.push(FieldError::invalid("metadata.name", name, DNS1123_LABEL));
    } else if !name_is_label(info) && !is_subdomain(name) && info.resource != "events" {
        errs.push(FieldError::invalid(
            "metadata.name",
            name,
            DNS1123_SUBDOMAIN,
        ));
    }
    if info.group.is_empty() && info.resource == "pods" {
        let containers = obj["spec"]["containers"].as_array();
        match containers {
            None => errs.push(FieldError::required("spec.containers", "")),
            Some(c) if c.is_empty() => errs.push(FieldError::required("spec.containers", "")),
            Some(c) => {
                for (i, ctr) in c.iter().enumerate() {
                    let cname = ctr["name"].as_str().unwrap_or_default();
                    if cname.is_empty() {
                        errs.push(FieldError::required(
                            format!("spec.containers[{i}].name"),
                            "",
                        ));
                    } else if !is_label(cname) {
                        errs.push(FieldError::invalid(
                            format!("spec.containers[{i}].name"),
                            cname,
                            DNS1123_LABEL,
                        ));
                    }
                    if ctr["image"].as_str().unwrap_or_default().is_empty() {
                        errs.push(FieldError::required(
                            format!("spec.containers[{i}].image"),
                            "",
                        ));
                    }
                }
            }
        }
    }
    if errs.is_empty() {
        Ok(())
    } else {
        Err(ApiError::invalid(info, name, errs))
    }
}

fn set_default(m: &mut Map<String, Value>, key: &str, v: Value) {
    if m.get(key).is_none_or(Value::is_null) {
        m.insert(key.to_string(), v);
    }
}

/// Upstream's defaults for a pod spec (in pods and in pod templates).
fn default_pod_spec(spec: &mut Value) {
    if let Some(spec) = spec.as_object_mut() {
        set_default(spec, "restartPolicy", "Always".into());
        set_default(spec, "dnsPolicy", "ClusterFirst".into());
        set_default(spec, "terminationGracePeriodSeconds", 30.into());
        set_default(spec, "schedulerName", "default-scheduler".into());
        set_default(spec, "serviceAccountName", "default".into());
        set_default(spec, "enableServiceLinks", true.into());
        set_default(spec, "securityContext", Value::Object(Map::new()));
        if let Some(containers) = spec.get_mut("containers").and_then(Value::as_array_mut) {
            for c in containers.iter_mut().filter_map(Value::as_object_mut) {
                let image = c.get("image").and_then(Value::as_str).unwrap_or_default();
                // Upstream: Always for :latest or no tag, IfNotPresent otherwise.
                let last = image.rsplit('/').next().unwrap_or_default();
                let tag = last.split_once(':').map(|(_, t)| t);
                let policy = if image.contains('@') || tag.is_some_and(|t| t != "latest") {
                    "IfNotPresent"
                } else {
                    "Always"
                };
                set_default(c, "imagePullPolicy", policy.into());
                set_default(c, "terminationMessagePath", "/dev/termination-log".into());
                set_default(c, "terminationMessagePolicy", "File".into());
                set_default(c, "resources", Value::Object(Map::new()));
            }
        }
    }
}

/// Upstream's defaults for the fields users look at (`kubectl get -o yaml` shows them).
pub fn default(info: &ResourceInfo, obj: &mut Value) {
    if info.group == "apps" {
        if let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) {
            if info.resource != "daemonsets" {
                set_default(spec, "replicas", 1.into());
            }
            set_default(spec, "revisionHistoryLimit", 10.into());
            if info.resource == "deployments" {
                set_default(spec, "progressDeadlineSeconds", 600.into());
                let strategy = spec
                    .entry("strategy")
                    .or_insert_with(|| Value::Object(Map::new()));
                if let Some(s) = strategy.as_object_mut() {
                    set_default(s, "type", "RollingUpdate".into());
                    if s.get("type").and_then(Value::as_str) == Some("RollingUpdate") {
                        set_default(
                            s,
                            "rollingUpdate",
                            serde_json::json!({"maxSurge": "25%", "maxUnavailable": "25%"}),
                        );
                    }
                }
            }
            if let Some(pod) = spec.get_mut("template").and_then(|t| t.get_mut("spec")) {
                default_pod_spec(pod);
            }
        }
        return;
    }
    if !info.group.is_empty() {
        return;
    }
    match info.resource {
        "pods" => {
            if let Some(spec) = obj.get_mut("spec") {
                default_pod_spec(spec);
            }
            if let Some(root) = obj.as_object_mut() {
                let status = root
                    .entry("status")
                    .or_insert_with(|| Value::Object(Map::new()));
                if let Some(s) = status.as_object_mut() {
                    set_default(s, "phase", "Pending".into());
                    set_default(s, "qosClass", "BestEffort".into());
                }
            }
        }
        "namespaces" => {
            if let Some(root) = obj.as_object_mut() {
                let status = root
                    .entry("status")
                    .or_insert_with(|| Value::Object(Map::new()));
                if let Some(s) = status.as_object_mut() {
                    set_default(s, "phase", "Active".into());
                }
            }
            // The name label every namespace carries (kubernetes.io/metadata.name).
            let name = object::name(obj).to_string();
            let meta = object::meta_mut(obj);
            let labels = meta
                .entry("labels")
                .or_insert_with(|| Value::Object(Map::new()));
            if let Some(l) = labels.as_object_mut() {
                l.insert("kubernetes.io/metadata.name".into(), Value::String(name));
            }
        }
        "secrets" => {
            // stringData is write-only: its entries land in data, base64-encoded, and win
            // over data's (upstream's conversion does the same).
            use base64::Engine;
            let Some(root) = obj.as_object_mut() else {
                return;
            };
            if let Some(Value::Object(plain)) = root.remove("stringData") {
                let data = root
                    .entry("data")
                    .or_insert_with(|| Value::Object(Map::new()));
                if let Some(d) = data.as_object_mut() {
                    for (k, v) in plain {
                        let text = v.as_str().unwrap_or_default();
                        let b64 = base64::engine::general_purpose::STANDARD.encode(text);
                        d.insert(k, Value::String(b64));
                    }
                }
            }
            set_default(root, "type", "Opaque".into());
        }
        "services" => {
            if let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) {
                set_default(spec, "type", "ClusterIP".into());
                set_default(spec, "sessionAffinity", "None".into());
                if let Some(ports) = spec.get_mut("ports").and_then(Value::as_array_mut) {
                    for p in ports.iter_mut().filter_map(Value::as_object_mut) {
                        set_default(p, "protocol", "TCP".into());
                        if let Some(port) = p.get("port").cloned() {
                            set_default(p, "targetPort", port);
                        }
                    }
                }
            }
        }
        _ => {}
    }
}

const POD_UPDATE_RULE: &str = "pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)";

/// The pod spec with the fields an update may change blanked out.
fn pod_spec_frozen(spec: &Value) -> Value {
    let mut s = spec.clone();
    if let Some(m) = s.as_object_mut() {
        m.remove("activeDeadlineSeconds");
        m.remove("tolerations");
        m.remove("terminationGracePeriodSeconds");
        for list in ["containers", "initContainers"] {
            if let Some(Value::Array(cs)) = m.get_mut(list) {
                for c in cs.iter_mut().filter_map(Value::as_object_mut) {
                    c.remove("image");
                }
            }
        }
    }
    s
}

/// Update-only rules: immutable fields, and server-allocated values a client may omit
/// (carried over from the stored object, as upstream does for a Service's clusterIP).
pub fn validate_update(info: &ResourceInfo, old: &Value, new: &mut Value) -> ApiResult<()> {
    let name = object::name(new).to_string();
    let mut errs = Vec::new();
    let core = info.group.is_empty();
    match info.resource {
        "configmaps" | "secrets" if core && old["immutable"].as_bool() == Some(true) => {
            for field in ["data", "binaryData", "immutable"] {
                if old.get(field) != new.get(field) {
                    errs.push(FieldError::forbidden(
                        field,
                        "field is immutable when `immutable` is set",
                    ));
                }
            }
        }
        "pods" if core && pod_spec_frozen(&old["spec"]) != pod_spec_frozen(&new["spec"]) => {
            errs.push(FieldError::forbidden("spec", POD_UPDATE_RULE));
        }
        "services" if core => {
            for field in ["clusterIP", "clusterIPs"] {
                let before = &old["spec"][field];
                let after = &new["spec"][field];
                let unset =
                    |v: &Value| v.is_null() || v == "" || v.as_array().is_some_and(Vec::is_empty);
                if unset(after) && !unset(before) {
                    new["spec"][field] = before.clone();
                } else if !unset(before) && before != after {
                    errs.push(FieldError::invalid(
                        format!("spec.{field}"),
                        after.to_string().trim_matches('"'),
                        "field is immutable",
                    ));
                }
            }
        }
        "deployments" | "replicasets" | "daemonsets"
            if info.group == "apps" && old["spec"]["selector"] != new["spec"]["selector"] =>
        {
            errs.push(FieldError::invalid(
                "spec.selector",
                &new["spec"]["selector"].to_string(),
                "field is immutable",
            ));
        }
        _ => {}
    }
    if errs.is_empty() {
        Ok(())
    } else {
        let mut e = ApiError::invalid(info, &name, errs);
        if !info.group.is_empty() {
            // Upstream names group kinds with their group here: Deployment.apps "web".
            e.message = e.message.replacen(
                &format!("{} \"", info.kind),
                &format!("{}.{} \"", info.kind, info.group),
                1,
            );
        }
        Err(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::registry;

    #[test]
    fn strict_rejects_unknown_fields_with_their_path() {
        let cm = registry().find("", "v1", "configmaps").unwrap();
        let body = serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "a"}, "data": {"k": "v"}, "bogus": 1});
        let err = check(cm, body.clone(), Some("default"), FieldValidation::Strict)
            .err()
            .unwrap();
        assert_eq!(err.code, 400);
        assert!(
            err.message.contains("unknown field \"bogus\""),
            "{}",
            err.message
        );
        let ok = check(cm, body, Some("default"), FieldValidation::Warn).unwrap();
        assert_eq!(ok.warnings, vec!["unknown field \"bogus\"".to_string()]);
        assert_eq!(ok.object["metadata"]["namespace"], "default");
    }

    #[test]
    fn immutable_fields() {
        let pods = registry().find("", "v1", "pods").unwrap();
        let old = serde_json::json!({"metadata": {"name": "p"},
            "spec": {"containers": [{"name": "c", "image": "a"}]}});
        let mut image = serde_json::json!({"metadata": {"name": "p"},
            "spec": {"containers": [{"name": "c", "image": "b"}]}});
        validate_update(pods, &old, &mut image).unwrap();
        let mut node = serde_json::json!({"metadata": {"name": "p"},
            "spec": {"nodeName": "n", "containers": [{"name": "c", "image": "a"}]}});
        let err = validate_update(pods, &old, &mut node).unwrap_err();
        assert!(err.message.starts_with(
            "Pod \"p\" is invalid: spec: Forbidden: pod updates may not change fields other than"
        ));

        let deploy = registry().find("apps", "v1", "deployments").unwrap();
        let old = serde_json::json!({"metadata": {"name": "d"}, "spec": {"selector": {"matchLabels": {"a": "1"}}}});
        let mut new = serde_json::json!({"metadata": {"name": "d"}, "spec": {"selector": {"matchLabels": {"a": "2"}}}});
        let err = validate_update(deploy, &old, &mut new).unwrap_err();
        assert!(
            err.message
                .starts_with("Deployment.apps \"d\" is invalid: spec.selector"),
            "{}",
            err.message
        );

        let svc = registry().find("", "v1", "services").unwrap();
        let old =
            serde_json::json!({"metadata": {"name": "s"}, "spec": {"clusterIP": "10.43.0.9"}});
        let mut omitted = serde_json::json!({"metadata": {"name": "s"}, "spec": {}});
        validate_update(svc, &old, &mut omitted).unwrap();
        assert_eq!(omitted["spec"]["clusterIP"], "10.43.0.9");
    }

    #[test]
    fn names_and_required_fields() {
        let pods = registry().find("", "v1", "pods").unwrap();
        let pod = serde_json::json!({"metadata": {"name": "Bad_Name"},
            "spec": {"containers": [{"name": "c"}]}});
        let err = validate(pods, &pod).unwrap_err();
        assert_eq!(err.code, 422);
        assert!(err
            .message
            .starts_with("Pod \"Bad_Name\" is invalid: [metadata.name: Invalid value"));
        assert!(err
            .message
            .contains("spec.containers[0].image: Required value"));
    }
}
