//! Helpers on objects held as JSON: metadata access, the store encoding (resourceVersion is
//! never stored: it is the store revision, filled in on every read), uids and timestamps.

use std::collections::BTreeMap;

use rand::Rng;
use serde_json::{Map, Value};

use crate::registry::ResourceInfo;
use crate::store::{KeyValue, Revision};

use super::status::{ApiError, ApiResult};

pub fn meta(obj: &Value) -> &Value {
    &obj["metadata"]
}

/// `metadata` as a mutable map, created when absent or not an object.
pub fn meta_mut(obj: &mut Value) -> &mut Map<String, Value> {
    if !obj.is_object() {
        *obj = Value::Object(Map::new());
    }
    let Value::Object(root) = obj else {
        unreachable!("made an object just above")
    };
    let m = root
        .entry("metadata")
        .or_insert_with(|| Value::Object(Map::new()));
    if !m.is_object() {
        *m = Value::Object(Map::new());
    }
    match m {
        Value::Object(m) => m,
        _ => unreachable!("made an object just above"),
    }
}

pub fn name(obj: &Value) -> &str {
    meta(obj)["name"].as_str().unwrap_or_default()
}

pub fn namespace(obj: &Value) -> Option<&str> {
    meta(obj)["namespace"].as_str().filter(|s| !s.is_empty())
}

pub fn resource_version(obj: &Value) -> Option<&str> {
    meta(obj)["resourceVersion"]
        .as_str()
        .filter(|s| !s.is_empty())
}

pub fn labels(obj: &Value) -> BTreeMap<String, String> {
    meta(obj)["labels"]
        .as_object()
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

pub fn finalizers(obj: &Value) -> Vec<String> {
    meta(obj)["finalizers"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Whether the object is a Namespace, whose `spec.finalizers` also hold its deletion.
pub fn is_namespace(info: &ResourceInfo) -> bool {
    info.group.is_empty() && info.resource == "namespaces"
}

/// Everything that keeps an object marked for deletion from going away: its finalizers and,
/// for a namespace, `spec.finalizers` (the namespace controller's `kubernetes`).
pub fn pending_finalizers(info: &ResourceInfo, obj: &Value) -> Vec<String> {
    let mut all = finalizers(obj);
    if is_namespace(info) {
        if let Some(spec) = obj["spec"]["finalizers"].as_array() {
            all.extend(spec.iter().filter_map(|v| v.as_str().map(str::to_string)));
        }
    }
    all
}

pub fn set_resource_version(obj: &mut Value, rev: Revision) {
    meta_mut(obj).insert("resourceVersion".into(), Value::String(rev.to_string()));
}

/// Decode a stored value: the object with its resourceVersion, apiVersion and kind.
pub fn decode(info: &ResourceInfo, kv: &KeyValue) -> ApiResult<Value> {
    let mut obj: Value = serde_json::from_slice(&kv.value)
        .map_err(|e| ApiError::internal(format!("stored object {} is corrupt: {e}", kv.key)))?;
    set_type(info, &mut obj);
    set_resource_version(&mut obj, kv.mod_revision);
    Ok(obj)
}

pub fn set_type(info: &ResourceInfo, obj: &mut Value) {
    if let Value::Object(m) = obj {
        m.insert("apiVersion".into(), Value::String(info.api_version()));
        m.insert("kind".into(), Value::String(info.kind.to_string()));
    }
}

/// The bytes to store: the object without its resourceVersion (the revision is the truth).
pub fn encode(obj: &Value) -> Vec<u8> {
    let mut obj = obj.clone();
    meta_mut(&mut obj).remove("resourceVersion");
    serde_json::to_vec(&obj).unwrap_or_default()
}

/// RFC 3339 with seconds, as metav1.Time serializes.
pub fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

pub fn time_after(seconds: i64) -> String {
    (chrono::Utc::now() + chrono::Duration::seconds(seconds))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// A random (version 4) UUID.
pub fn new_uid() -> String {
    let mut b: [u8; 16] = rand::thread_rng().gen();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex(&b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The 5-character suffix upstream appends to generateName (consonants and digits that
/// cannot spell words).
pub fn name_suffix() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut rng = rand::thread_rng();
    (0..5)
        .map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uid_shape() {
        let u = new_uid();
        assert_eq!(u.len(), 36);
        assert_eq!(&u[14..15], "4");
        assert_eq!(name_suffix().len(), 5);
    }
}
