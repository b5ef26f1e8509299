//! PATCH bodies: JSON patch (RFC 6902), JSON merge patch (RFC 7386), strategic merge patch and a
//! simplified server-side apply, as pure functions from (original object, patch bytes) to the
//! patched object. The HTTP handler owns reading the object, admission, validation and storage.
//!
//! Strategic merge patch needs each list's merge strategy, which upstream reads from Go struct
//! tags. Here it comes from a table keyed by resource and JSON path ([`list_strategy`]); lists that
//! are not in the table are replaced, which is also upstream's behaviour for atomic lists.
//!
//! Server-side apply is simplified: the applied configuration is strategic-merged onto the live
//! object. There is no field ownership (`managedFields`), no conflict detection, and fields the
//! applier stopped sending are not removed; `kubectl apply` without `--server-side` is unaffected
//! because it sends a strategic merge patch.

use serde_json::{json, Map, Value};

/// The patch formats kube-apiserver accepts, named by the request's `Content-Type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchKind {
    Json,
    Merge,
    StrategicMerge,
    Apply,
}

impl PatchKind {
    /// Maps a `Content-Type` header value (parameters such as `charset` are ignored) to a kind;
    /// `None` means the handler should answer 415 Unsupported Media Type.
    pub fn from_content_type(content_type: &str) -> Option<PatchKind> {
        let essence = content_type.split(';').next().unwrap_or("").trim();
        match essence.to_ascii_lowercase().as_str() {
            "application/json-patch+json" => Some(PatchKind::Json),
            "application/merge-patch+json" => Some(PatchKind::Merge),
            "application/strategic-merge-patch+json" => Some(PatchKind::StrategicMerge),
            "application/apply-patch+yaml" => Some(PatchKind::Apply),
            _ => None,
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            PatchKind::Json => "application/json-patch+json",
            PatchKind::Merge => "application/merge-patch+json",
            PatchKind::StrategicMerge => "application/strategic-merge-patch+json",
            PatchKind::Apply => "application/apply-patch+yaml",
        }
    }
}

/// Why a patch could not be applied. None of these is retryable with the same body: the client
/// has to change the patch (or, for [`PatchError::UnsupportedForResource`], its type).
#[derive(Debug, thiserror::Error)]
pub enum PatchError {
    /// The body does not parse as the format its content type announces (HTTP 400).
    #[error("the patch body is not valid {format}: {detail}")]
    Malformed {
        format: &'static str,
        detail: String,
    },
    /// The body parses but is not a well-formed patch of its kind (HTTP 400), e.g. a JSON patch
    /// operation without `path`, or an unknown `$patch` directive.
    #[error("invalid {format}: {detail}")]
    BadFormat {
        format: &'static str,
        detail: String,
    },
    /// A JSON patch operation could not be applied to this object (HTTP 422), including a failed
    /// `test` operation.
    #[error("json patch operation {index} ({op} {path}) failed: {detail}")]
    JsonPatchFailed {
        index: usize,
        op: String,
        path: String,
        detail: String,
    },
    /// The strategic merge patch contradicts itself or the object's schema (HTTP 422).
    #[error("strategic merge patch cannot be applied at {path}: {detail}")]
    Unprocessable { path: String, detail: String },
    /// Strategic merge patch needs merge keys that only built-in types declare (HTTP 415, as
    /// upstream answers for custom resources).
    #[error("strategic merge patch is not supported for {resource}; use a JSON merge patch (kubectl patch --type=merge) or a JSON patch (--type=json)")]
    UnsupportedForResource { resource: String },
    /// The patch replaced the whole object with something that is not a JSON object (HTTP 422).
    #[error("the patched {resource} is not a JSON object but {found}")]
    NotAnObject {
        resource: String,
        found: &'static str,
    },
}

impl PatchError {
    /// The HTTP status kube-apiserver answers with for this failure.
    pub fn http_status(&self) -> u16 {
        match self {
            PatchError::Malformed { .. } | PatchError::BadFormat { .. } => 400,
            PatchError::JsonPatchFailed { .. }
            | PatchError::Unprocessable { .. }
            | PatchError::NotAnObject { .. } => 422,
            PatchError::UnsupportedForResource { .. } => 415,
        }
    }
}

/// Applies `patch` of `kind` to `original`, an object of `resource` (the plural resource name,
/// optionally `plural.group` and/or `/subresource`, e.g. `pods`, `deployments.apps`,
/// `pods/status`). `original` is not modified; the patched object is returned.
pub fn apply(
    kind: PatchKind,
    resource: &str,
    original: &Value,
    patch: &[u8],
) -> Result<Value, PatchError> {
    let res = Resource::parse(resource);
    let patched = match kind {
        PatchKind::Json => json_patch(original, patch)?,
        PatchKind::Merge => {
            let patch: Value =
                serde_json::from_slice(patch).map_err(|e| PatchError::Malformed {
                    format: "JSON merge patch",
                    detail: e.to_string(),
                })?;
            let mut out = original.clone();
            merge_patch(&mut out, &patch);
            out
        }
        PatchKind::StrategicMerge => {
            if !res.builtin {
                return Err(PatchError::UnsupportedForResource {
                    resource: resource.to_string(),
                });
            }
            let patch: Value =
                serde_json::from_slice(patch).map_err(|e| PatchError::Malformed {
                    format: "strategic merge patch",
                    detail: e.to_string(),
                })?;
            strategic_merge(&res, original, &patch, "strategic merge patch")?
        }
        PatchKind::Apply => {
            let text = std::str::from_utf8(patch).map_err(|e| PatchError::Malformed {
                format: "apply configuration (YAML)",
                detail: e.to_string(),
            })?;
            let applied: Value = serde_yaml::from_str(text).map_err(|e| PatchError::Malformed {
                format: "apply configuration (YAML)",
                detail: e.to_string(),
            })?;
            if !applied.is_object() {
                return Err(PatchError::BadFormat {
                    format: "apply configuration",
                    detail: format!("expected an object, found {}", type_name(&applied)),
                });
            }
            strategic_merge(&res, original, &applied, "apply configuration")?
        }
    };
    if !patched.is_object() {
        return Err(PatchError::NotAnObject {
            resource: resource.to_string(),
            found: type_name(&patched),
        });
    }
    Ok(patched)
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

// ---------------------------------------------------------------------------------------------
// RFC 6902 JSON patch

fn json_patch(original: &Value, patch: &[u8]) -> Result<Value, PatchError> {
    const FORMAT: &str = "JSON patch";
    let ops: Value = serde_json::from_slice(patch).map_err(|e| PatchError::Malformed {
        format: FORMAT,
        detail: e.to_string(),
    })?;
    let Value::Array(ops) = ops else {
        return Err(PatchError::BadFormat {
            format: FORMAT,
            detail: format!("expected an array of operations, found {}", type_name(&ops)),
        });
    };
    // Decode everything before touching the document so a malformed op late in the list is a
    // 400 rather than a 422 after partial work.
    let mut decoded = Vec::with_capacity(ops.len());
    for (index, op) in ops.iter().enumerate() {
        decoded.push(decode_op(index, op)?);
    }
    let mut doc = original.clone();
    for (index, op) in decoded.into_iter().enumerate() {
        let fail = |detail: String| PatchError::JsonPatchFailed {
            index,
            op: op.name.to_string(),
            path: op.path_text.clone(),
            detail,
        };
        match op.name {
            "add" => pointer_add(&mut doc, &op.path, op.value.clone().unwrap_or(Value::Null))
                .map_err(fail)?,
            "remove" => {
                pointer_remove(&mut doc, &op.path).map_err(fail)?;
            }
            "replace" => {
                let target = pointer_get_mut(&mut doc, &op.path).map_err(fail)?;
                *target = op.value.clone().unwrap_or(Value::Null);
            }
            "move" => {
                let from = op.from.as_deref().unwrap_or_default();
                if op.path.len() > from.len() && op.path[..from.len()] == *from {
                    return Err(fail(format!(
                        "cannot move {} into its own child",
                        op.from_text
                    )));
                }
                let v = pointer_remove(&mut doc, from).map_err(fail)?;
                pointer_add(&mut doc, &op.path, v).map_err(fail)?;
            }
            "copy" => {
                let from = op.from.as_deref().unwrap_or_default();
                let v = pointer_get(&doc, from).map_err(fail)?.clone();
                pointer_add(&mut doc, &op.path, v).map_err(fail)?;
            }
            "test" => {
                let want = op.value.as_ref().unwrap_or(&Value::Null);
                let found = pointer_get(&doc, &op.path).map_err(fail)?;
                if !json_eq(found, want) {
                    return Err(fail(format!(
                        "test failed: value is {found}, the patch expects {want}"
                    )));
                }
            }
            _ => unreachable!("decode_op only accepts the six RFC 6902 operations"),
        }
    }
    Ok(doc)
}

struct Op {
    name: &'static str,
    path: Vec<String>,
    path_text: String,
    from: Option<Vec<String>>,
    from_text: String,
    value: Option<Value>,
}

fn decode_op(index: usize, op: &Value) -> Result<Op, PatchError> {
    let bad = |detail: String| PatchError::BadFormat {
        format: "JSON patch",
        detail: format!("operation {index}: {detail}"),
    };
    let obj = op
        .as_object()
        .ok_or_else(|| bad(format!("expected an object, found {}", type_name(op))))?;
    let name = match obj.get("op").and_then(Value::as_str) {
        Some("add") => "add",
        Some("remove") => "remove",
        Some("replace") => "replace",
        Some("move") => "move",
        Some("copy") => "copy",
        Some("test") => "test",
        Some(other) => {
            return Err(bad(format!(
                "unknown op {other:?} (expected add, remove, replace, move, copy or test)"
            )))
        }
        None => return Err(bad("missing string field \"op\"".into())),
    };
    let path_text = obj
        .get("path")
        .and_then(Value::as_str)
        .ok_or_else(|| bad(format!("{name}: missing string field \"path\"")))?
        .to_string();
    let path = parse_pointer(&path_text).map_err(|e| bad(format!("{name}: {e}")))?;
    let (from, from_text) = if matches!(name, "move" | "copy") {
        let text = obj
            .get("from")
            .and_then(Value::as_str)
            .ok_or_else(|| bad(format!("{name}: missing string field \"from\"")))?;
        (
            Some(parse_pointer(text).map_err(|e| bad(format!("{name}: {e}")))?),
            text.to_string(),
        )
    } else {
        (None, String::new())
    };
    let value = obj.get("value").cloned();
    if matches!(name, "add" | "replace" | "test") && value.is_none() {
        return Err(bad(format!("{name}: missing field \"value\"")));
    }
    Ok(Op {
        name,
        path,
        path_text,
        from,
        from_text,
        value,
    })
}

fn parse_pointer(text: &str) -> Result<Vec<String>, String> {
    if text.is_empty() {
        return Ok(Vec::new());
    }
    let Some(rest) = text.strip_prefix('/') else {
        return Err(format!("JSON pointer {text:?} must start with '/'"));
    };
    rest.split('/')
        .map(|tok| {
            // ~1 before ~0 so that "~01" decodes to "~1", as RFC 6901 requires.
            let mut out = String::with_capacity(tok.len());
            let mut chars = tok.chars();
            while let Some(c) = chars.next() {
                if c == '~' {
                    match chars.next() {
                        Some('0') => out.push('~'),
                        Some('1') => out.push('/'),
                        _ => return Err(format!("JSON pointer {text:?} has a bad '~' escape")),
                    }
                } else {
                    out.push(c);
                }
            }
            Ok(out)
        })
        .collect()
}

fn array_index(tok: &str, len: usize, allow_end: bool) -> Result<usize, String> {
    if allow_end && tok == "-" {
        return Ok(len);
    }
    let valid = !tok.is_empty()
        && tok.bytes().all(|b| b.is_ascii_digit())
        && (tok == "0" || !tok.starts_with('0'));
    let idx: usize = if valid {
        tok.parse()
            .map_err(|_| format!("array index {tok:?} is too large"))?
    } else {
        return Err(format!("{tok:?} is not an array index"));
    };
    let limit = if allow_end {
        len
    } else {
        len.saturating_sub(1)
    };
    if idx > limit || (!allow_end && len == 0) {
        return Err(format!("array index {idx} is out of bounds (length {len})"));
    }
    Ok(idx)
}

fn pointer_get<'a>(doc: &'a Value, path: &[String]) -> Result<&'a Value, String> {
    let mut cur = doc;
    for (i, tok) in path.iter().enumerate() {
        cur = match cur {
            Value::Object(m) => m
                .get(tok)
                .ok_or_else(|| format!("{} does not exist", render_pointer(&path[..=i])))?,
            Value::Array(a) => &a[array_index(tok, a.len(), false)?],
            other => {
                return Err(format!(
                    "{} is {}, not an object or array",
                    render_pointer(&path[..i]),
                    type_name(other)
                ))
            }
        };
    }
    Ok(cur)
}

fn pointer_get_mut<'a>(doc: &'a mut Value, path: &[String]) -> Result<&'a mut Value, String> {
    let mut cur = doc;
    for (i, tok) in path.iter().enumerate() {
        cur = match cur {
            Value::Object(m) => m
                .get_mut(tok)
                .ok_or_else(|| format!("{} does not exist", render_pointer(&path[..=i])))?,
            Value::Array(a) => {
                let idx = array_index(tok, a.len(), false)?;
                &mut a[idx]
            }
            other => {
                return Err(format!(
                    "{} is {}, not an object or array",
                    render_pointer(&path[..i]),
                    type_name(other)
                ))
            }
        };
    }
    Ok(cur)
}

fn pointer_add(doc: &mut Value, path: &[String], value: Value) -> Result<(), String> {
    let Some((last, parent)) = path.split_last() else {
        *doc = value;
        return Ok(());
    };
    match pointer_get_mut(doc, parent)? {
        Value::Object(m) => {
            m.insert(last.clone(), value);
        }
        Value::Array(a) => {
            let idx = array_index(last, a.len(), true)?;
            a.insert(idx, value);
        }
        other => {
            return Err(format!(
                "{} is {}, not an object or array",
                render_pointer(parent),
                type_name(other)
            ))
        }
    }
    Ok(())
}

fn pointer_remove(doc: &mut Value, path: &[String]) -> Result<Value, String> {
    let Some((last, parent)) = path.split_last() else {
        return Err("cannot remove the whole document".into());
    };
    match pointer_get_mut(doc, parent)? {
        Value::Object(m) => m
            .remove(last)
            .ok_or_else(|| format!("{} does not exist", render_pointer(path))),
        Value::Array(a) => {
            let idx = array_index(last, a.len(), false)?;
            Ok(a.remove(idx))
        }
        other => Err(format!(
            "{} is {}, not an object or array",
            render_pointer(parent),
            type_name(other)
        )),
    }
}

fn render_pointer(path: &[String]) -> String {
    if path.is_empty() {
        return "the document root".into();
    }
    path.iter()
        .map(|t| format!("/{}", t.replace('~', "~0").replace('/', "~1")))
        .collect()
}

/// Equality for `test`: numbers compare by value, so `1` equals `1.0` as RFC 6902 asks.
fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            if let (Some(x), Some(y)) = (x.as_i64(), y.as_i64()) {
                x == y
            } else if let (Some(x), Some(y)) = (x.as_u64(), y.as_u64()) {
                x == y
            } else {
                x.as_f64() == y.as_f64()
            }
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| json_eq(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| json_eq(v, w)))
        }
        _ => a == b,
    }
}

// ---------------------------------------------------------------------------------------------
// RFC 7386 JSON merge patch

fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let Value::Object(t) = target else {
        unreachable!("target was just made an object")
    };
    for (k, v) in patch {
        if v.is_null() {
            t.remove(k);
        } else {
            merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Strategic merge patch

/// How a list field merges, mirroring the Go struct tags `patchStrategy`/`patchMergeKey`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListStrategy {
    /// The patch's list replaces the original (no `patchStrategy`, i.e. atomic).
    Replace,
    /// Objects are matched by this key and merged; unmatched patch objects are appended.
    MergeKey(&'static str),
    /// A list of scalars merged as a set (`patchStrategy:"merge"` without a key).
    PrimitiveMerge,
}

struct Resource {
    plural: String,
    builtin: bool,
}

/// Whether `resource` (`plural`, `plural.group`, optionally `/subresource`) is compiled into
/// kube-apiserver rather than served from a CustomResourceDefinition. A bare plural counts as
/// built-in: custom resources are always named with their group.
pub fn is_builtin_resource(resource: &str) -> bool {
    Resource::parse(resource).builtin
}

/// API groups whose types are compiled into kube-apiserver; anything else is a custom resource.
fn builtin_group(group: &str) -> bool {
    group.is_empty()
        || group == "apps"
        || group == "batch"
        || group == "policy"
        || group == "autoscaling"
        || group.ends_with(".k8s.io")
}

impl Resource {
    fn parse(resource: &str) -> Resource {
        let base = resource.split('/').next().unwrap_or(resource);
        let (plural, group) = base.split_once('.').unwrap_or((base, ""));
        Resource {
            plural: plural.to_ascii_lowercase(),
            builtin: builtin_group(group),
        }
    }
}

/// Where the PodSpec sits inside objects of `plural`.
fn pod_spec_prefix(plural: &str) -> Option<&'static [&'static str]> {
    match plural {
        "pods" => Some(&["spec"]),
        "podtemplates" => Some(&["template", "spec"]),
        "deployments"
        | "replicasets"
        | "daemonsets"
        | "statefulsets"
        | "jobs"
        | "replicationcontrollers" => Some(&["spec", "template", "spec"]),
        "cronjobs" => Some(&["spec", "jobTemplate", "spec", "template", "spec"]),
        _ => None,
    }
}

const CONTAINER_LISTS: [&str; 3] = ["containers", "initContainers", "ephemeralContainers"];

/// The merge strategy of the list at `path` (object keys from the root; list elements are
/// transparent) in objects of `resource`. Public so the API handler and tests can reuse it.
pub fn list_strategy(resource: &str, path: &[&str]) -> ListStrategy {
    use ListStrategy::*;
    let res = Resource::parse(resource);
    if !res.builtin {
        return Replace;
    }
    // ObjectMeta appears at the root and in every embedded template.
    match path {
        [.., "metadata", "ownerReferences"] => return MergeKey("uid"),
        [.., "metadata", "finalizers"] => return PrimitiveMerge,
        _ => {}
    }
    if let Some(prefix) = pod_spec_prefix(&res.plural) {
        if let Some(rest) = path.strip_prefix(prefix) {
            return pod_spec_list(rest);
        }
    }
    match (res.plural.as_str(), path) {
        ("pods", ["status", "podIPs" | "hostIPs"]) => MergeKey("ip"),
        ("pods", ["status", "resourceClaimStatuses"]) => MergeKey("name"),
        ("nodes", ["status", "addresses"]) => MergeKey("type"),
        ("nodes", ["spec", "podCIDRs"]) => PrimitiveMerge,
        ("services", ["spec", "ports"]) => MergeKey("port"),
        ("serviceaccounts", ["secrets"]) => MergeKey("name"),
        // Statuses whose Go types tag conditions `patchMergeKey:"type"`; others (CSRs, CRDs,
        // most metav1.Condition users) are atomic for strategic merge.
        (
            "pods"
            | "nodes"
            | "namespaces"
            | "persistentvolumeclaims"
            | "services"
            | "deployments"
            | "replicasets"
            | "statefulsets"
            | "daemonsets"
            | "jobs"
            | "replicationcontrollers"
            | "poddisruptionbudgets"
            | "horizontalpodautoscalers",
            ["status", "conditions"],
        ) => MergeKey("type"),
        _ => Replace,
    }
}

fn pod_spec_list(rest: &[&str]) -> ListStrategy {
    use ListStrategy::*;
    match rest {
        [c] if CONTAINER_LISTS.contains(c) => MergeKey("name"),
        [c, field] if CONTAINER_LISTS.contains(c) => match *field {
            "ports" => MergeKey("containerPort"),
            "env" => MergeKey("name"),
            "volumeMounts" => MergeKey("mountPath"),
            "volumeDevices" => MergeKey("devicePath"),
            _ => Replace,
        },
        ["volumes" | "imagePullSecrets" | "schedulingGates" | "resourceClaims"] => MergeKey("name"),
        ["hostAliases"] => MergeKey("ip"),
        ["topologySpreadConstraints"] => MergeKey("topologyKey"),
        // tolerations, readinessGates and the rest are atomic upstream.
        _ => Replace,
    }
}

const DIRECTIVE: &str = "$patch";
const RETAIN_KEYS: &str = "$retainKeys";
const DELETE_PRIMITIVE: &str = "$deleteFromPrimitiveList/";
const SET_ORDER: &str = "$setElementOrder/";

struct Smp<'a> {
    resource: &'a Resource,
    format: &'static str,
    path: Vec<String>,
}

enum MapOutcome {
    Keep,
    Delete,
}

fn strategic_merge(
    resource: &Resource,
    original: &Value,
    patch: &Value,
    format: &'static str,
) -> Result<Value, PatchError> {
    let Value::Object(patch) = patch else {
        return Err(PatchError::BadFormat {
            format,
            detail: format!("expected a JSON object, found {}", type_name(patch)),
        });
    };
    let mut smp = Smp {
        resource,
        format,
        path: Vec::new(),
    };
    let mut out = match original {
        Value::Object(m) => m.clone(),
        _ => Map::new(),
    };
    match smp.merge_map(&mut out, patch)? {
        MapOutcome::Keep => Ok(Value::Object(out)),
        // Upstream turns a root-level `$patch: delete` into an empty object.
        MapOutcome::Delete => Ok(Value::Object(Map::new())),
    }
}

impl Smp<'_> {
    fn bad(&self, detail: String) -> PatchError {
        PatchError::BadFormat {
            format: self.format,
            detail: format!("at {}: {detail}", self.path_text()),
        }
    }

    fn unprocessable(&self, detail: String) -> PatchError {
        PatchError::Unprocessable {
            path: self.path_text(),
            detail,
        }
    }

    fn path_text(&self) -> String {
        if self.path.is_empty() {
            ".".into()
        } else {
            self.path.join(".")
        }
    }

    fn strategy(&self) -> ListStrategy {
        let path: Vec<&str> = self.path.iter().map(String::as_str).collect();
        list_strategy_for(self.resource, &path)
    }

    fn merge_map(
        &mut self,
        original: &mut Map<String, Value>,
        patch: &Map<String, Value>,
    ) -> Result<MapOutcome, PatchError> {
        match patch.get(DIRECTIVE) {
            None => {}
            Some(Value::String(d)) if d == "merge" => {}
            // Upstream leaves an empty map behind; removing the key is what that empty map
            // serializes to for every omitempty map field, and what the client asked for.
            Some(Value::String(d)) if d == "delete" => return Ok(MapOutcome::Delete),
            Some(Value::String(d)) if d == "replace" => original.clear(),
            Some(other) => {
                return Err(self.bad(format!(
                "unknown $patch directive {other} (expected \"replace\", \"delete\" or \"merge\")"
            )))
            }
        }

        if let Some(retain) = patch.get(RETAIN_KEYS) {
            let keys = string_list(retain)
                .ok_or_else(|| self.bad("$retainKeys must be a list of strings".into()))?;
            for (k, v) in patch {
                // kubectl sends the dropped union members as explicit nulls next to the
                // directive; only fields that are being set must be retained.
                if !k.starts_with('$') && !v.is_null() && !keys.iter().any(|r| r == k) {
                    return Err(self.unprocessable(format!(
                        "field {k:?} is set by the patch but missing from $retainKeys {keys:?}"
                    )));
                }
            }
            original.retain(|k, _| keys.iter().any(|r| r == k));
        }

        // Lists named by $setElementOrder are ordered against their state before this patch.
        let mut server_lists: Vec<(String, Vec<Value>)> = Vec::new();
        for (k, v) in patch {
            let Some(field) = k.strip_prefix(SET_ORDER) else {
                continue;
            };
            if !v.is_array() {
                return Err(self.bad(format!("{k} must be a list")));
            }
            let before = match original.get(field) {
                Some(Value::Array(list)) => list.clone(),
                _ => Vec::new(),
            };
            server_lists.push((field.to_string(), before));
        }

        for (k, v) in patch {
            let Some(field) = k.strip_prefix(DELETE_PRIMITIVE) else {
                continue;
            };
            let Value::Array(remove) = v else {
                return Err(self.bad(format!("{k} must be a list")));
            };
            if let Some(Value::Array(list)) = original.get_mut(field) {
                list.retain(|item| !remove.iter().any(|r| json_eq(r, item)));
            }
        }

        for (k, v) in patch {
            if k.starts_with('$') {
                if k == DIRECTIVE
                    || k == RETAIN_KEYS
                    || k.starts_with(DELETE_PRIMITIVE)
                    || k.starts_with(SET_ORDER)
                {
                    continue;
                }
                return Err(self.bad(format!("unknown directive {k:?}")));
            }
            if v.is_null() {
                original.remove(k);
                continue;
            }
            self.path.push(k.clone());
            let result = self.merge_field(original, k, v);
            self.path.pop();
            result?;
        }

        for (field, before) in server_lists {
            let Some(Value::Array(order)) = patch.get(&format!("{SET_ORDER}{field}")) else {
                continue;
            };
            self.path.push(field.clone());
            let strategy = self.strategy();
            self.path.pop();
            if let Some(Value::Array(list)) = original.get_mut(&field) {
                let merged = std::mem::take(list);
                *list = normalize_order(merged, order, &before, strategy);
            }
        }
        Ok(MapOutcome::Keep)
    }

    fn merge_field(
        &mut self,
        original: &mut Map<String, Value>,
        key: &str,
        patch: &Value,
    ) -> Result<(), PatchError> {
        match (original.get_mut(key), patch) {
            (Some(Value::Object(o)), Value::Object(p)) => {
                if let MapOutcome::Delete = self.merge_map(o, p)? {
                    original.remove(key);
                }
            }
            (Some(Value::Array(o)), Value::Array(p)) => self.merge_list(o, p)?,
            (_, Value::Object(p)) => {
                let mut fresh = Map::new();
                match self.merge_map(&mut fresh, p)? {
                    MapOutcome::Keep => {
                        original.insert(key.to_string(), Value::Object(fresh));
                    }
                    MapOutcome::Delete => {
                        original.remove(key);
                    }
                }
            }
            (_, Value::Array(p)) => {
                let mut fresh = Vec::new();
                self.merge_list(&mut fresh, p)?;
                original.insert(key.to_string(), Value::Array(fresh));
            }
            (_, scalar) => {
                original.insert(key.to_string(), scalar.clone());
            }
        }
        Ok(())
    }

    fn merge_list(&mut self, original: &mut Vec<Value>, patch: &[Value]) -> Result<(), PatchError> {
        let server = original.clone();
        match self.strategy() {
            ListStrategy::Replace => {
                // Atomic lists take the patch's list; a bare `{"$patch": "replace"}` element is
                // only a marker and never becomes an item.
                let mut out = Vec::with_capacity(patch.len());
                for e in patch {
                    if e.as_object()
                        .is_some_and(|m| m.len() == 1 && m.contains_key(DIRECTIVE))
                    {
                        continue;
                    }
                    out.push(self.fresh(e)?);
                }
                *original = out;
            }
            ListStrategy::PrimitiveMerge => {
                for e in patch {
                    if e.is_object() || e.is_array() {
                        return Err(self.bad(format!(
                            "expected a list of scalars, found an element that is {}",
                            type_name(e)
                        )));
                    }
                    if !original.iter().any(|o| json_eq(o, e)) {
                        original.push(e.clone());
                    }
                }
                let merged = std::mem::take(original);
                *original = normalize_order(merged, patch, &server, ListStrategy::PrimitiveMerge);
            }
            ListStrategy::MergeKey(key) => {
                let mut plain: Vec<&Map<String, Value>> = Vec::with_capacity(patch.len());
                let mut replace = false;
                for e in patch {
                    let Value::Object(pm) = e else {
                        return Err(self.bad(format!(
                            "expected a list of objects merged by {key:?}, found an element that is {}",
                            type_name(e)
                        )));
                    };
                    match pm.get(DIRECTIVE) {
                        None => plain.push(pm),
                        Some(Value::String(d)) if d == "delete" => {
                            let Some(kv) = pm.get(key) else {
                                return Err(self.unprocessable(format!(
                                    "the $patch: delete element {e} does not contain the merge key {key:?}"
                                )));
                            };
                            original.retain(|o| !o.get(key).is_some_and(|ov| json_eq(ov, kv)));
                        }
                        // Upstream treats any element carrying `$patch: replace` as the marker
                        // that replaces the whole list with the remaining elements.
                        Some(Value::String(d)) if d == "replace" => replace = true,
                        Some(other) => {
                            return Err(self.bad(format!(
                                "unsupported $patch directive {other} in a list element (expected \"delete\" or \"replace\")"
                            )))
                        }
                    }
                }
                if replace {
                    let mut out = Vec::with_capacity(plain.len());
                    for pm in plain {
                        out.push(self.fresh(&Value::Object(pm.clone()))?);
                    }
                    *original = out;
                    return Ok(());
                }
                let mut order = Vec::with_capacity(plain.len());
                for pm in plain {
                    let Some(kv) = pm.get(key) else {
                        return Err(self.unprocessable(format!(
                            "list element {} does not contain the merge key {key:?}",
                            Value::Object(pm.clone())
                        )));
                    };
                    order.push(json!({ key: kv }));
                    let pos = original
                        .iter()
                        .position(|o| o.get(key).is_some_and(|ov| json_eq(ov, kv)));
                    match pos {
                        Some(i) => {
                            let Value::Object(om) = &mut original[i] else {
                                original[i] = self.fresh(&Value::Object(pm.clone()))?;
                                continue;
                            };
                            if let MapOutcome::Delete = self.merge_map(om, pm)? {
                                original.remove(i);
                            }
                        }
                        None => original.push(self.fresh(&Value::Object(pm.clone()))?),
                    }
                }
                let merged = std::mem::take(original);
                *original = normalize_order(merged, &order, &server, ListStrategy::MergeKey(key));
            }
        }
        Ok(())
    }

    /// A patch value applied where nothing exists yet: directives and nulls are processed
    /// against an empty original so they never leak into the stored object.
    fn fresh(&mut self, v: &Value) -> Result<Value, PatchError> {
        match v {
            Value::Object(p) => {
                let mut m = Map::new();
                self.merge_map(&mut m, p)?;
                Ok(Value::Object(m))
            }
            other => Ok(other.clone()),
        }
    }
}

fn list_strategy_for(resource: &Resource, path: &[&str]) -> ListStrategy {
    let name = if resource.builtin {
        resource.plural.clone()
    } else {
        format!("{}.custom.invalid", resource.plural)
    };
    list_strategy(&name, path)
}

fn string_list(v: &Value) -> Option<Vec<String>> {
    v.as_array()?
        .iter()
        .map(|e| e.as_str().map(str::to_string))
        .collect()
}

/// Orders a merged list the way upstream's `normalizeElementOrder` does, so clients see the same
/// list order as from kube-apiserver: elements named in `order` (the patch list, or a
/// `$setElementOrder` list) come in that order; elements only the server had keep their order
/// and go before a patch element only when they preceded it in the `server` list. A new element
/// therefore lands before the server-only elements that follow its predecessor, which for a
/// single added element means at the front.
fn normalize_order(
    merged: Vec<Value>,
    order: &[Value],
    server: &[Value],
    strategy: ListStrategy,
) -> Vec<Value> {
    let identity = |v: &Value| -> Option<Value> {
        match strategy {
            ListStrategy::MergeKey(key) => v.get(key).cloned(),
            _ => Some(v.clone()),
        }
    };
    let position = |list: &[Value], v: &Value| -> Option<usize> {
        let id = identity(v)?;
        list.iter()
            .position(|o| identity(o).is_some_and(|oid| json_eq(&oid, &id)))
    };
    let mut from_patch: Vec<(usize, Value)> = Vec::new();
    let mut server_only: Vec<(usize, Value)> = Vec::new();
    for v in merged {
        match position(order, &v) {
            Some(i) => from_patch.push((i, v)),
            None => server_only.push((position(server, &v).unwrap_or(usize::MAX), v)),
        }
    }
    from_patch.sort_by_key(|(i, _)| *i);
    server_only.sort_by_key(|(i, _)| *i);
    let mut left = server_only.into_iter().map(|(_, v)| v).peekable();
    let mut right = from_patch.into_iter().map(|(_, v)| v).peekable();
    let mut out = Vec::new();
    loop {
        let take_left = match (left.peek(), right.peek()) {
            (None, None) => break,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (Some(l), Some(r)) => {
                matches!((position(server, l), position(server, r)), (Some(li), Some(ri)) if li < ri)
            }
        };
        out.extend(if take_left { left.next() } else { right.next() });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn run(kind: PatchKind, resource: &str, original: Value, patch: Value) -> Value {
        apply(kind, resource, &original, patch.to_string().as_bytes()).unwrap()
    }

    fn run_err(kind: PatchKind, resource: &str, original: Value, patch: &str) -> PatchError {
        apply(kind, resource, &original, patch.as_bytes()).unwrap_err()
    }

    fn pod() -> Value {
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"},
                         "finalizers": ["a/x"]},
            "spec": {
                "containers": [
                    {"name": "web", "image": "nginx:1.25",
                     "ports": [{"containerPort": 80, "protocol": "TCP"}],
                     "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]},
                    {"name": "sidecar", "image": "busybox"}
                ],
                "tolerations": [{"key": "k", "operator": "Exists"}],
                "volumes": [{"name": "data", "emptyDir": {}}]
            }
        })
    }

    #[test]
    fn content_types() {
        assert_eq!(
            PatchKind::from_content_type("application/json-patch+json"),
            Some(PatchKind::Json)
        );
        assert_eq!(
            PatchKind::from_content_type("application/merge-patch+json; charset=utf-8"),
            Some(PatchKind::Merge)
        );
        assert_eq!(
            PatchKind::from_content_type("application/strategic-merge-patch+json"),
            Some(PatchKind::StrategicMerge)
        );
        assert_eq!(
            PatchKind::from_content_type("application/apply-patch+yaml"),
            Some(PatchKind::Apply)
        );
        assert_eq!(PatchKind::from_content_type("application/json"), None);
    }

    #[test]
    fn json_patch_ops() {
        let out = run(
            PatchKind::Json,
            "pods",
            pod(),
            json!([
                {"op": "test", "path": "/metadata/name", "value": "web"},
                {"op": "replace", "path": "/spec/containers/0/image", "value": "nginx:1.26"},
                {"op": "add", "path": "/metadata/labels/tier", "value": "front"},
                {"op": "add", "path": "/metadata/finalizers/-", "value": "b/y"},
                {"op": "add", "path": "/metadata/finalizers/0", "value": "first"},
                {"op": "remove", "path": "/spec/tolerations"},
                {"op": "copy", "from": "/metadata/labels/app", "path": "/metadata/labels/copy"},
                {"op": "move", "from": "/metadata/labels/tier", "path": "/metadata/labels/moved"}
            ]),
        );
        assert_eq!(out["spec"]["containers"][0]["image"], "nginx:1.26");
        assert_eq!(
            out["metadata"]["finalizers"],
            json!(["first", "a/x", "b/y"])
        );
        assert!(out["spec"].get("tolerations").is_none());
        assert_eq!(
            out["metadata"]["labels"],
            json!({"app": "web", "copy": "web", "moved": "front"})
        );
    }

    #[test]
    fn json_patch_escaping() {
        let original = json!({"metadata": {"name": "x", "annotations": {"a/b": "1", "c~d": "2"}}});
        let out = run(
            PatchKind::Json,
            "pods",
            original,
            json!([
                {"op": "replace", "path": "/metadata/annotations/a~1b", "value": "one"},
                {"op": "remove", "path": "/metadata/annotations/c~0d"},
                {"op": "add", "path": "/metadata/annotations/e~01", "value": "3"}
            ]),
        );
        assert_eq!(
            out["metadata"]["annotations"],
            json!({"a/b": "one", "e~1": "3"})
        );
    }

    #[test]
    fn json_patch_failures_and_statuses() {
        let e = run_err(
            PatchKind::Json,
            "pods",
            pod(),
            r#"[{"op":"test","path":"/metadata/name","value":"other"}]"#,
        );
        assert_eq!(e.http_status(), 422);
        assert!(e.to_string().contains("test failed"), "{e}");

        let e = run_err(
            PatchKind::Json,
            "pods",
            pod(),
            r#"[{"op":"remove","path":"/spec/nothing"}]"#,
        );
        assert_eq!(e.http_status(), 422);
        assert!(
            e.to_string().contains("/spec/nothing does not exist"),
            "{e}"
        );

        let e = run_err(
            PatchKind::Json,
            "pods",
            pod(),
            r#"[{"op":"frob","path":"/a"}]"#,
        );
        assert_eq!(e.http_status(), 400);
        let e = run_err(PatchKind::Json, "pods", pod(), r#"{"op":"add"}"#);
        assert_eq!(e.http_status(), 400);
        let e = run_err(PatchKind::Json, "pods", pod(), "not json");
        assert_eq!(e.http_status(), 400);
        let e = run_err(
            PatchKind::Json,
            "pods",
            pod(),
            r#"[{"op":"add","path":"/spec/containers/5","value":{}}]"#,
        );
        assert_eq!(e.http_status(), 422);
        // A failing op leaves nothing half-applied: the caller gets an error, not a document.
        let e = run_err(
            PatchKind::Json,
            "pods",
            pod(),
            r#"[{"op":"replace","path":"","value":"scalar"}]"#,
        );
        assert_eq!(e.http_status(), 422);
    }

    #[test]
    fn json_patch_numbers_compare_by_value() {
        let out = run(
            PatchKind::Json,
            "pods",
            json!({"spec": {"n": 1}}),
            json!([{"op": "test", "path": "/spec/n", "value": 1.0}]),
        );
        assert_eq!(out["spec"]["n"], 1);
    }

    #[test]
    fn merge_patch_rfc7386() {
        // The RFC's own example.
        let original = json!({"title": "Goodbye!", "author": {"givenName": "John", "familyName": "Doe"},
                              "tags": ["example", "sample"], "content": "This will be unchanged"});
        let out = run(
            PatchKind::Merge,
            "widgets.example.com",
            original,
            json!({"title": "Hello!", "phoneNumber": "+01-123-456-7890",
                   "author": {"familyName": null}, "tags": ["example"]}),
        );
        assert_eq!(
            out,
            json!({"title": "Hello!", "author": {"givenName": "John"}, "tags": ["example"],
                   "content": "This will be unchanged", "phoneNumber": "+01-123-456-7890"})
        );
    }

    #[test]
    fn merge_patch_kubectl_patch_type_merge() {
        // kubectl patch deploy web --type=merge -p '{"spec":{"replicas":3,"template":{"spec":{"containers":[{"name":"web","image":"nginx:2"}]}}}}'
        let out = run(
            PatchKind::Merge,
            "pods",
            pod(),
            json!({"metadata": {"labels": {"app": null, "v": "2"}},
                   "spec": {"containers": [{"name": "web", "image": "nginx:2"}]}}),
        );
        assert_eq!(out["metadata"]["labels"], json!({"v": "2"}));
        // Lists are replaced wholesale by a merge patch.
        assert_eq!(
            out["spec"]["containers"],
            json!([{"name": "web", "image": "nginx:2"}])
        );
        let e = run_err(PatchKind::Merge, "pods", pod(), "{");
        assert_eq!(e.http_status(), 400);
    }

    #[test]
    fn smp_merges_containers_by_name() {
        // kubectl patch pod web -p '{"spec":{"containers":[{"name":"web","image":"nginx:1.26"}]}}'
        let out = run(
            PatchKind::StrategicMerge,
            "pods",
            pod(),
            json!({"spec": {"containers": [{"name": "web", "image": "nginx:1.26"},
                                           {"name": "new", "image": "alpine"}]}}),
        );
        let c = &out["spec"]["containers"];
        assert_eq!(c[0]["image"], "nginx:1.26");
        assert_eq!(c[0]["ports"][0]["containerPort"], 80);
        // Patch elements keep the patch's order and a new one goes before the server-only
        // elements that follow, as kube-apiserver orders them.
        assert_eq!(names(c), ["web", "new", "sidecar"]);

        let out = run(
            PatchKind::StrategicMerge,
            "pods",
            pod(),
            json!({"spec": {"containers": [{"name": "debug", "image": "busybox"}]}}),
        );
        assert_eq!(
            names(&out["spec"]["containers"]),
            ["debug", "web", "sidecar"]
        );

        let out = run(
            PatchKind::StrategicMerge,
            "pods",
            pod(),
            json!({"spec": {"containers": [{"name": "sidecar", "image": "busybox:2"}]}}),
        );
        assert_eq!(names(&out["spec"]["containers"]), ["web", "sidecar"]);
    }

    fn names(list: &Value) -> Vec<&str> {
        list.as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect()
    }

    #[test]
    fn smp_nested_keys_ports_env_mounts() {
        let out = run(
            PatchKind::StrategicMerge,
            "deployments.apps",
            json!({"spec": {"template": {"spec": {"containers": [{
                "name": "web",
                "ports": [{"containerPort": 80, "name": "http"}],
                "env": [{"name": "A", "value": "1"}],
                "volumeMounts": [{"mountPath": "/data", "name": "d"}]
            }]}}}}),
            json!({"spec": {"template": {"spec": {"containers": [{
                "name": "web",
                "ports": [{"containerPort": 80, "protocol": "TCP"}, {"containerPort": 443}],
                "env": [{"name": "A", "value": "2"}, {"name": "B", "value": "3"}],
                "volumeMounts": [{"mountPath": "/data", "readOnly": true}]
            }]}}}}),
        );
        let c = &out["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(
            c["ports"],
            json!([{"containerPort": 80, "name": "http", "protocol": "TCP"}, {"containerPort": 443}])
        );
        assert_eq!(
            c["env"],
            json!([{"name": "A", "value": "2"}, {"name": "B", "value": "3"}])
        );
        assert_eq!(
            c["volumeMounts"],
            json!([{"mountPath": "/data", "name": "d", "readOnly": true}])
        );
    }

    #[test]
    fn smp_lists_without_key_are_replaced() {
        let out = run(
            PatchKind::StrategicMerge,
            "pods",
            pod(),
            json!({"spec": {"tolerations": [{"key": "other", "operator": "Exists"}]}}),
        );
        assert_eq!(
            out["spec"]["tolerations"],
            json!([{"key": "other", "operator": "Exists"}])
        );
    }

    #[test]
    fn smp_delete_and_replace_directives() {
        let out = run(
            PatchKind::StrategicMerge,
            "pods",
            pod(),
            json!({"spec": {
                "containers": [{"name": "sidecar", "$patch": "delete"},
                               {"name": "web", "env": [{"name": "A", "$patch": "delete"}]}],
                "volumes": [{"$patch": "replace"}, {"name": "only", "emptyDir": {}}]
            }}),
        );
        let c = out["spec"]["containers"].as_array().unwrap();
        assert_eq!(c.len(), 1);
        assert_eq!(c[0]["env"], json!([{"name": "B", "value": "2"}]));
        assert_eq!(
            out["spec"]["volumes"],
            json!([{"name": "only", "emptyDir": {}}])
        );

        let out = run(
            PatchKind::StrategicMerge,
            "pods",
            pod(),
            json!({"metadata": {"labels": {"$patch": "replace", "new": "1"}}}),
        );
        assert_eq!(out["metadata"]["labels"], json!({"new": "1"}));

        let out = run(
            PatchKind::StrategicMerge,
            "pods",
            pod(),
            json!({"metadata": {"labels": {"$patch": "delete"}}}),
        );
        assert!(out["metadata"].get("labels").is_none());

        let e = run_err(
            PatchKind::StrategicMerge,
            "pods",
            pod(),
            r#"{"metadata":{"labels":{"$patch":"frob"}}}"#,
        );
        assert_eq!(e.http_status(), 400);
    }

    #[test]
    fn smp_null_deletes_and_missing_merge_key() {
        let out = run(
            PatchKind::StrategicMerge,
            "pods",
            pod(),
            json!({"metadata": {"labels": {"app": null}}, "spec": {"tolerations": null}}),
        );
        assert_eq!(out["metadata"]["labels"], json!({}));
        assert!(out["spec"].get("tolerations").is_none());
        let e = run_err(
            PatchKind::StrategicMerge,
            "pods",
            pod(),
            r#"{"spec":{"containers":[{"image":"x"}]}}"#,
        );
        assert_eq!(e.http_status(), 422);
        assert!(e.to_string().contains("merge key \"name\""), "{e}");
    }

    #[test]
    fn smp_finalizers_primitive_merge_and_delete_from_primitive_list() {
        let out = run(
            PatchKind::StrategicMerge,
            "pods",
            pod(),
            json!({"metadata": {"finalizers": ["a/x", "b/y"]}}),
        );
        assert_eq!(out["metadata"]["finalizers"], json!(["a/x", "b/y"]));
        let out = run(
            PatchKind::StrategicMerge,
            "pods",
            out,
            json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["a/x"]}}),
        );
        assert_eq!(out["metadata"]["finalizers"], json!(["b/y"]));
        let out = run(
            PatchKind::StrategicMerge,
            "pods",
            out,
            json!({"metadata": {"finalizers": ["c/z"]}}),
        );
        assert_eq!(out["metadata"]["finalizers"], json!(["c/z", "b/y"]));
    }

    #[test]
    fn smp_retain_keys() {
        // kubectl apply switching a deployment from RollingUpdate to Recreate.
        let original = json!({"spec": {"strategy": {"type": "RollingUpdate",
            "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}}}});
        let out = run(
            PatchKind::StrategicMerge,
            "deployments",
            original.clone(),
            json!({"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}}),
        );
        assert_eq!(out["spec"]["strategy"], json!({"type": "Recreate"}));
        let out = run(
            PatchKind::StrategicMerge,
            "deployments",
            original.clone(),
            json!({"spec": {"strategy": {"$retainKeys": ["type"], "rollingUpdate": null,
                                          "type": "Recreate"}}}),
        );
        assert_eq!(out["spec"]["strategy"], json!({"type": "Recreate"}));
        let e = run_err(
            PatchKind::StrategicMerge,
            "deployments",
            original,
            r#"{"spec":{"strategy":{"$retainKeys":["type"],"type":"Recreate","rollingUpdate":{}}}}"#,
        );
        assert_eq!(e.http_status(), 422);
    }

    #[test]
    fn smp_set_element_order() {
        let out = run(
            PatchKind::StrategicMerge,
            "pods",
            pod(),
            json!({"spec": {
                "$setElementOrder/containers": [{"name": "sidecar"}, {"name": "web"}],
                "containers": [{"name": "web", "image": "nginx:1.26"}]
            }}),
        );
        assert_eq!(names(&out["spec"]["containers"]), ["sidecar", "web"]);

        // kubectl apply after the manifest added "init" first and dropped nothing: the order
        // list puts it first, server-only "sidecar" keeps its slot after "web".
        let out = run(
            PatchKind::StrategicMerge,
            "pods",
            pod(),
            json!({"spec": {
                "$setElementOrder/containers": [{"name": "init"}, {"name": "web"}],
                "containers": [{"name": "init", "image": "busybox"}]
            }}),
        );
        assert_eq!(
            names(&out["spec"]["containers"]),
            ["init", "web", "sidecar"]
        );

        // Reordering only, no content change, and a primitive list.
        let out = run(
            PatchKind::StrategicMerge,
            "pods",
            json!({"metadata": {"finalizers": ["a", "b", "c"]}}),
            json!({"metadata": {"$setElementOrder/finalizers": ["c", "a", "b"]}}),
        );
        assert_eq!(out["metadata"]["finalizers"], json!(["c", "a", "b"]));
    }

    #[test]
    fn smp_nested_directives_in_new_values_do_not_leak() {
        let out = run(
            PatchKind::StrategicMerge,
            "pods",
            json!({"metadata": {"name": "p"}}),
            json!({"spec": {
                "$setElementOrder/containers": [{"name": "a"}],
                "containers": [{"name": "a", "env": [{"name": "X", "value": "1"},
                                                     {"name": "Y", "$patch": "delete"}],
                                "securityContext": {"privileged": null, "runAsUser": 0}}]
            }}),
        );
        assert_eq!(
            out["spec"],
            json!({"containers": [{"name": "a", "env": [{"name": "X", "value": "1"}],
                                   "securityContext": {"runAsUser": 0}}]})
        );
    }

    #[test]
    fn smp_list_directive_errors() {
        let e = run_err(
            PatchKind::StrategicMerge,
            "pods",
            pod(),
            r#"{"spec":{"containers":[{"name":"web","$patch":"frob"}]}}"#,
        );
        assert_eq!(e.http_status(), 400);
        let e = run_err(
            PatchKind::StrategicMerge,
            "pods",
            pod(),
            r#"{"spec":{"containers":[{"$patch":"delete"}]}}"#,
        );
        assert_eq!(e.http_status(), 422);
        let e = run_err(
            PatchKind::StrategicMerge,
            "pods",
            pod(),
            r#"{"spec":{"containers":["web"]}}"#,
        );
        assert_eq!(e.http_status(), 400);
        let e = run_err(
            PatchKind::StrategicMerge,
            "pods",
            pod(),
            r#"{"spec":{"$bogus":1}}"#,
        );
        assert_eq!(e.http_status(), 400);
        assert!(e.to_string().contains("at spec"), "{e}");
    }

    #[test]
    fn smp_kubectl_apply_shape() {
        // What `kubectl apply -f deploy.yaml` sends after the image changed, env B was
        // removed from the manifest and a label was dropped.
        let live = json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "default",
                "labels": {"app": "web", "old": "yes"},
                "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{\"old\":true}\n",
                                "deployment.kubernetes.io/revision": "1"}},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "web", "image": "nginx:1.25",
                        "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
                        "terminationMessagePath": "/dev/termination-log"}]}}}
        });
        let patch = json!({
            "metadata": {"annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{\"new\":true}\n"},
                         "labels": {"old": null}},
            "spec": {"template": {"spec": {
                "$setElementOrder/containers": [{"name": "web"}],
                "containers": [{"$setElementOrder/env": [{"name": "A"}],
                                "env": [{"$patch": "delete", "name": "B"}],
                                "image": "nginx:1.26", "name": "web"}]}}}
        });
        let out = run(PatchKind::StrategicMerge, "deployments", live, patch);
        assert_eq!(
            out["metadata"]["annotations"],
            json!({"kubectl.kubernetes.io/last-applied-configuration": "{\"new\":true}\n",
                   "deployment.kubernetes.io/revision": "1"})
        );
        assert_eq!(out["metadata"]["labels"], json!({"app": "web"}));
        let c = &out["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(c["image"], "nginx:1.26");
        assert_eq!(c["env"], json!([{"name": "A", "value": "1"}]));
        assert_eq!(c["terminationMessagePath"], "/dev/termination-log");
        assert_eq!(out["spec"]["replicas"], 2);
    }

    #[test]
    fn smp_other_builtin_keys() {
        let svc = json!({"spec": {"ports": [{"port": 80, "targetPort": 8080}], "selector": {"app": "a"}}});
        let out = run(
            PatchKind::StrategicMerge,
            "services",
            svc,
            json!({"spec": {"ports": [{"port": 80, "name": "http"}, {"port": 443}]}}),
        );
        assert_eq!(
            out["spec"]["ports"],
            json!([{"port": 80, "targetPort": 8080, "name": "http"}, {"port": 443}])
        );

        let node = json!({"status": {"conditions": [{"type": "Ready", "status": "False"},
                                                   {"type": "MemoryPressure", "status": "False"}],
                                     "addresses": [{"type": "InternalIP", "address": "10.0.0.1"}]}});
        let out = run(
            PatchKind::StrategicMerge,
            "nodes/status",
            node,
            json!({"status": {"conditions": [{"type": "Ready", "status": "True"}],
                              "addresses": [{"type": "Hostname", "address": "n1"}]}}),
        );
        assert_eq!(
            out["status"]["conditions"][0],
            json!({"type": "Ready", "status": "True"})
        );
        assert_eq!(out["status"]["conditions"][1]["type"], "MemoryPressure");
        assert_eq!(out["status"]["addresses"].as_array().unwrap().len(), 2);

        let owned = json!({"metadata": {"ownerReferences": [{"uid": "1", "name": "a"}]}});
        let out = run(
            PatchKind::StrategicMerge,
            "replicasets",
            owned,
            json!({"metadata": {"ownerReferences": [{"uid": "2", "name": "b"}]}}),
        );
        assert_eq!(
            out["metadata"]["ownerReferences"].as_array().unwrap().len(),
            2
        );

        assert_eq!(
            list_strategy(
                "cronjobs",
                &[
                    "spec",
                    "jobTemplate",
                    "spec",
                    "template",
                    "spec",
                    "initContainers"
                ]
            ),
            ListStrategy::MergeKey("name")
        );
        assert_eq!(
            list_strategy("daemonsets.apps", &["spec", "template", "spec", "volumes"]),
            ListStrategy::MergeKey("name")
        );
        assert_eq!(
            list_strategy("pods", &["spec", "hostAliases"]),
            ListStrategy::MergeKey("ip")
        );
        assert_eq!(
            list_strategy("pods", &["spec", "containers", "volumeDevices"]),
            ListStrategy::MergeKey("devicePath")
        );
        assert_eq!(
            list_strategy("endpoints", &["subsets"]),
            ListStrategy::Replace
        );
        assert_eq!(
            list_strategy("certificatesigningrequests", &["status", "conditions"]),
            ListStrategy::Replace
        );
        assert_eq!(
            list_strategy("jobs.batch/status", &["status", "conditions"]),
            ListStrategy::MergeKey("type")
        );
    }

    #[test]
    fn smp_refused_for_custom_resources() {
        let e = run_err(
            PatchKind::StrategicMerge,
            "widgets.example.com",
            json!({}),
            r#"{"spec":{}}"#,
        );
        assert_eq!(e.http_status(), 415);
        assert!(e.to_string().contains("--type=merge"), "{e}");
    }

    #[test]
    fn apply_yaml_is_strategic_merge() {
        let yaml = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\n  labels:\n    v: \"2\"\nspec:\n  containers:\n  - name: web\n    image: nginx:1.27\n";
        let out = apply(PatchKind::Apply, "pods", &pod(), yaml.as_bytes()).unwrap();
        assert_eq!(out["metadata"]["labels"], json!({"app": "web", "v": "2"}));
        assert_eq!(out["spec"]["containers"][0]["image"], "nginx:1.27");
        assert_eq!(out["spec"]["containers"][1]["name"], "sidecar");
        let e = apply(PatchKind::Apply, "pods", &pod(), b"a: [").unwrap_err();
        assert_eq!(e.http_status(), 400);
        // Custom resources have no merge keys, so apply behaves like a merge patch there.
        let out = apply(
            PatchKind::Apply,
            "widgets.example.com",
            &json!({"spec": {"a": 1, "l": [1, 2]}}),
            b"spec:\n  b: 2\n  l: [3]\n",
        )
        .unwrap();
        assert_eq!(out["spec"], json!({"a": 1, "b": 2, "l": [3]}));
    }
}
