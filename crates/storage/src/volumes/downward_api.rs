//! downwardAPI: pod metadata and container resources as files. Labels and annotations render
//! as upstream's `FormatMap`: `key="value"` lines sorted by key, values Go-quoted.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    DownwardAPIVolumeFile, DownwardAPIVolumeSource, ObjectFieldSelector, Pod, ResourceFieldSelector,
};

use super::objects::DEFAULT_MODE;
use super::{NodeAllocatable, VolumeContext, VolumeError};
use crate::atomic_writer::{FileProjection, Payload};
use crate::quantity;

pub(super) fn payload(
    pod: &Pod,
    src: &DownwardAPIVolumeSource,
    ctx: &VolumeContext<'_>,
    context: &str,
) -> Result<Payload, VolumeError> {
    items_payload(
        pod,
        src.items.as_deref().unwrap_or_default(),
        src.default_mode.unwrap_or(DEFAULT_MODE),
        &ctx.node_allocatable,
        context,
    )
}

pub(super) fn items_payload(
    pod: &Pod,
    items: &[DownwardAPIVolumeFile],
    default_mode: i32,
    node: &NodeAllocatable,
    context: &str,
) -> Result<Payload, VolumeError> {
    let mut payload = Payload::new();
    for item in items {
        let data =
            render_downward_api_item(pod, item, node).map_err(|message| VolumeError::Invalid {
                context: context.to_string(),
                message: format!("item {:?}: {message}", item.path),
            })?;
        let mode = item.mode.unwrap_or(default_mode) as u32;
        payload.insert(item.path.clone(), FileProjection::new(data, mode));
    }
    Ok(payload)
}

/// The content of one downwardAPI item.
pub fn render_downward_api_item(
    pod: &Pod,
    item: &DownwardAPIVolumeFile,
    node: &NodeAllocatable,
) -> Result<String, String> {
    match (&item.field_ref, &item.resource_field_ref) {
        (Some(f), None) => field_value(pod, f),
        (None, Some(r)) => resource_value(pod, r, node),
        _ => Err("exactly one of fieldRef and resourceFieldRef must be set".into()),
    }
}

fn field_value(pod: &Pod, f: &ObjectFieldSelector) -> Result<String, String> {
    let m = &pod.metadata;
    let empty = BTreeMap::new();
    let path = f.field_path.as_str();
    if let Some((map, key)) = subscript(path) {
        let values = match map {
            "metadata.labels" => m.labels.as_ref(),
            _ => m.annotations.as_ref(),
        };
        return Ok(values.and_then(|v| v.get(key)).cloned().unwrap_or_default());
    }
    Ok(match path {
        "metadata.name" => m.name.clone().unwrap_or_default(),
        "metadata.namespace" => m.namespace.clone().unwrap_or_default(),
        "metadata.uid" => m.uid.clone().unwrap_or_default(),
        "metadata.labels" => format_map(m.labels.as_ref().unwrap_or(&empty)),
        "metadata.annotations" => format_map(m.annotations.as_ref().unwrap_or(&empty)),
        other => return Err(format!("unsupported fieldPath: {other}")),
    })
}

/// `metadata.labels['key']` → ("metadata.labels", "key").
fn subscript(path: &str) -> Option<(&str, &str)> {
    for map in ["metadata.labels", "metadata.annotations"] {
        if let Some(rest) = path.strip_prefix(map) {
            if let Some(key) = rest.strip_prefix("['").and_then(|r| r.strip_suffix("']")) {
                return Some((map, key));
            }
        }
    }
    None
}

fn resource_value(
    pod: &Pod,
    r: &ResourceFieldSelector,
    node: &NodeAllocatable,
) -> Result<String, String> {
    let name = r
        .container_name
        .as_deref()
        .ok_or("resourceFieldRef needs containerName in a volume")?;
    let spec = pod.spec.as_ref().ok_or("pod has no spec")?;
    let container = spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .find(|c| c.name == name)
        .ok_or_else(|| format!("container {name} not found"))?;
    let res = container.resources.as_ref();
    let (kind, resource) = r
        .resource
        .split_once('.')
        .ok_or_else(|| format!("unsupported container resource : {}", r.resource))?;
    let listed = match kind {
        "limits" => res.and_then(|r| r.limits.as_ref()),
        "requests" => res.and_then(|r| r.requests.as_ref()),
        _ => return Err(format!("unsupported container resource : {}", r.resource)),
    }
    .and_then(|m| m.get(resource));
    let bad = |e: quantity::QuantityError| e.to_string();
    let divisor = r.divisor.as_ref();
    match resource {
        "cpu" => {
            let millis: i128 = match listed {
                Some(q) => quantity::milli_value(q).map_err(bad)?,
                None if kind == "limits" => node.cpu_millis.unwrap_or(0) as i128,
                None => 0,
            };
            let d = match divisor {
                Some(d) => quantity::milli_value(d).map_err(bad)?,
                None => 1000,
            };
            divide(millis, d)
        }
        "memory" | "ephemeral-storage" => {
            let bytes: i128 = match listed {
                Some(q) => quantity::value(q).map_err(bad)?,
                None if kind == "limits" => {
                    let n = if resource == "memory" {
                        node.memory_bytes
                    } else {
                        node.ephemeral_storage_bytes
                    };
                    n.unwrap_or(0) as i128
                }
                None => 0,
            };
            let d = match divisor {
                Some(d) => quantity::value(d).map_err(bad)?,
                None => 1,
            };
            divide(bytes, d)
        }
        _ => Err(format!("unsupported container resource : {}", r.resource)),
    }
}

fn divide(v: i128, divisor: i128) -> Result<String, String> {
    if divisor <= 0 {
        return Err("divisor must be positive".into());
    }
    Ok(quantity::ceil_div(v, divisor).to_string())
}

/// `k="v"` lines sorted by key, no trailing newline; values quoted as Go's `%q`.
pub fn format_map(m: &BTreeMap<String, String>) -> String {
    m.iter()
        .map(|(k, v)| format!("{k}={}", go_quote(v)))
        .collect::<Vec<_>>()
        .join("\n")
}

fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c if c.is_control() => {
                if (c as u32) <= 0xffff {
                    out.push_str(&format!("\\u{:04x}", c as u32))
                } else {
                    out.push_str(&format!("\\U{:08x}", c as u32))
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}
