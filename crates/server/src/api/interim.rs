//! Small stand-ins for the patch, table and selector modules (being written on another branch)
//! with the same signatures, so the REST layer compiles and is testable before they land.
//! Removed when those modules are merged.

pub mod patch {
    use serde_json::Value;

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum PatchKind {
        Json,
        Merge,
        StrategicMerge,
        Apply,
    }

    #[derive(Debug, thiserror::Error)]
    pub enum PatchError {
        #[error("the patch is not valid JSON: {0}")]
        Malformed(String),
        #[error("{0}")]
        Invalid(String),
    }

    fn merge(target: &mut Value, patch: &Value) {
        match patch {
            Value::Object(p) => {
                if !target.is_object() {
                    *target = Value::Object(Default::default());
                }
                if let Value::Object(t) = target {
                    for (k, v) in p {
                        if v.is_null() {
                            t.remove(k);
                        } else {
                            merge(t.entry(k.clone()).or_insert(Value::Null), v);
                        }
                    }
                }
            }
            other => *target = other.clone(),
        }
    }

    fn pointer_parent<'a>(
        doc: &'a mut Value,
        path: &str,
    ) -> Result<(&'a mut Value, String), PatchError> {
        let (parent, last) = path
            .rsplit_once('/')
            .ok_or_else(|| PatchError::Invalid(format!("bad path {path:?}")))?;
        let last = last.replace("~1", "/").replace("~0", "~");
        let target = doc
            .pointer_mut(parent)
            .ok_or_else(|| PatchError::Invalid(format!("path {parent:?} not found")))?;
        Ok((target, last))
    }

    fn json_patch(doc: &mut Value, ops: &Value) -> Result<(), PatchError> {
        let ops = ops
            .as_array()
            .ok_or_else(|| PatchError::Invalid("a JSON patch must be an array".into()))?;
        for op in ops {
            let kind = op["op"].as_str().unwrap_or_default();
            let path = op["path"].as_str().unwrap_or_default();
            match kind {
                "add" | "replace" => {
                    let value = op["value"].clone();
                    let (parent, last) = pointer_parent(doc, path)?;
                    match parent {
                        Value::Object(m) => {
                            m.insert(last, value);
                        }
                        Value::Array(a) if last == "-" => a.push(value),
                        Value::Array(a) => {
                            let i: usize = last
                                .parse()
                                .map_err(|_| PatchError::Invalid(format!("bad index {last}")))?;
                            if kind == "add" && i <= a.len() {
                                a.insert(i, value);
                            } else if i < a.len() {
                                a[i] = value;
                            } else {
                                return Err(PatchError::Invalid(format!("index {i} out of range")));
                            }
                        }
                        _ => return Err(PatchError::Invalid(format!("path {path:?} not found"))),
                    }
                }
                "remove" => {
                    let (parent, last) = pointer_parent(doc, path)?;
                    match parent {
                        Value::Object(m) => {
                            m.remove(&last);
                        }
                        Value::Array(a) => {
                            if let Ok(i) = last.parse::<usize>() {
                                if i < a.len() {
                                    a.remove(i);
                                }
                            }
                        }
                        _ => {}
                    }
                }
                "test" => {
                    if doc.pointer(path) != Some(&op["value"]) {
                        return Err(PatchError::Invalid(format!("test failed at {path}")));
                    }
                }
                other => return Err(PatchError::Invalid(format!("unsupported op {other:?}"))),
            }
        }
        Ok(())
    }

    pub fn apply(
        kind: PatchKind,
        _resource: &str,
        original: &Value,
        patch: &[u8],
    ) -> Result<Value, PatchError> {
        let patch: Value = match kind {
            PatchKind::Apply => {
                serde_yaml::from_slice(patch).map_err(|e| PatchError::Malformed(e.to_string()))?
            }
            _ => serde_json::from_slice(patch).map_err(|e| PatchError::Malformed(e.to_string()))?,
        };
        let mut out = original.clone();
        match kind {
            PatchKind::Json => json_patch(&mut out, &patch)?,
            PatchKind::Merge | PatchKind::StrategicMerge | PatchKind::Apply => {
                merge(&mut out, &patch)
            }
        }
        Ok(out)
    }
}

pub mod table {
    use serde_json::{json, Value};

    pub fn to_table(_resource: &str, objects: &[Value], include_object: bool) -> Value {
        let rows: Vec<Value> = objects
            .iter()
            .map(|o| {
                let object = if include_object {
                    o.clone()
                } else {
                    json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                           "metadata": o["metadata"].clone()})
                };
                json!({"cells": [o["metadata"]["name"].clone(),
                                 o["metadata"]["creationTimestamp"].clone()],
                       "object": object})
            })
            .collect();
        json!({
            "kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": {},
            "columnDefinitions": [
                {"name": "Name", "type": "string", "format": "name", "description": "Name", "priority": 0},
                {"name": "Created At", "type": "date", "format": "", "description": "Creation time", "priority": 0},
            ],
            "rows": rows,
        })
    }
}

pub mod selector {
    use std::collections::BTreeMap;

    use serde_json::Value;

    #[derive(Debug, thiserror::Error)]
    #[error("unable to parse requirement: {0}")]
    pub struct SelectorError(String);

    #[derive(Debug, Clone)]
    enum Req {
        Eq(String, String),
        Ne(String, String),
        Exists(String),
        NotExists(String),
        In(String, Vec<String>),
        NotIn(String, Vec<String>),
    }

    #[derive(Debug, Clone, Default)]
    pub struct LabelSelector(Vec<Req>);

    fn split_top(s: &str) -> Vec<String> {
        let (mut out, mut cur, mut depth) = (Vec::new(), String::new(), 0);
        for c in s.chars() {
            match c {
                '(' => depth += 1,
                ')' => depth -= 1,
                ',' if depth == 0 => {
                    out.push(std::mem::take(&mut cur));
                    continue;
                }
                _ => {}
            }
            cur.push(c);
        }
        if !cur.trim().is_empty() {
            out.push(cur);
        }
        out
    }

    fn set(s: &str) -> Vec<String> {
        s.trim()
            .trim_start_matches('(')
            .trim_end_matches(')')
            .split(',')
            .map(|v| v.trim().to_string())
            .collect()
    }

    impl LabelSelector {
        pub fn parse(s: &str) -> Result<Self, SelectorError> {
            let mut reqs = Vec::new();
            for part in split_top(s) {
                let p = part.trim();
                let req = if let Some((k, v)) = p.split_once("!=") {
                    Req::Ne(k.trim().into(), v.trim().into())
                } else if let Some((k, v)) = p.split_once("==") {
                    Req::Eq(k.trim().into(), v.trim().into())
                } else if let Some((k, v)) = p.split_once('=') {
                    Req::Eq(k.trim().into(), v.trim().into())
                } else if let Some((k, v)) = p.split_once(" notin ") {
                    Req::NotIn(k.trim().into(), set(v))
                } else if let Some((k, v)) = p.split_once(" in ") {
                    Req::In(k.trim().into(), set(v))
                } else if let Some(k) = p.strip_prefix('!') {
                    Req::NotExists(k.trim().into())
                } else if !p.is_empty() && !p.contains(' ') {
                    Req::Exists(p.into())
                } else {
                    return Err(SelectorError(p.to_string()));
                };
                reqs.push(req);
            }
            Ok(LabelSelector(reqs))
        }

        pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
            self.0.iter().all(|r| match r {
                Req::Eq(k, v) => labels.get(k) == Some(v),
                Req::Ne(k, v) => labels.get(k) != Some(v),
                Req::Exists(k) => labels.contains_key(k),
                Req::NotExists(k) => !labels.contains_key(k),
                Req::In(k, vs) => labels.get(k).is_some_and(|l| vs.contains(l)),
                Req::NotIn(k, vs) => labels.get(k).is_none_or(|l| !vs.contains(l)),
            })
        }
    }

    #[derive(Debug, Clone, Default)]
    pub struct FieldSelector(Vec<(String, bool, String)>);

    impl FieldSelector {
        pub fn parse(s: &str) -> Result<Self, SelectorError> {
            let mut reqs = Vec::new();
            for p in s.split(',').filter(|p| !p.trim().is_empty()) {
                if let Some((k, v)) = p.split_once("!=") {
                    reqs.push((k.trim().to_string(), false, v.trim().to_string()));
                } else if let Some((k, v)) = p.split_once("==").or_else(|| p.split_once('=')) {
                    reqs.push((k.trim().to_string(), true, v.trim().to_string()));
                } else {
                    return Err(SelectorError(p.to_string()));
                }
            }
            Ok(FieldSelector(reqs))
        }

        pub fn matches(&self, object: &Value) -> bool {
            self.0.iter().all(|(path, eq, want)| {
                let mut v = object;
                for part in path.split('.') {
                    v = &v[part];
                }
                let have = match v {
                    Value::String(s) => s.clone(),
                    Value::Null => String::new(),
                    other => other.to_string(),
                };
                (have == *want) == *eq
            })
        }
    }
}
