//! configMap and secret volumes: the object's keys (or the listed items) as files, written with
//! the atomic writer. A missing object or key fails the setup unless the volume is optional.

use std::path::Path;

use k8s_openapi::api::core::v1::{
    ConfigMap, ConfigMapVolumeSource, KeyToPath, Pod, Secret, SecretVolumeSource,
};

use super::{LookupError, ObjectLookup, VolumeError};
use crate::atomic_writer::{AtomicWriter, FileProjection, FsGroup, Payload};

pub(super) const DEFAULT_MODE: i32 = 0o644;

pub(super) fn namespace(pod: &Pod) -> &str {
    pod.metadata.namespace.as_deref().unwrap_or("default")
}

fn lookup_err(context: &str, source: LookupError) -> VolumeError {
    VolumeError::Lookup {
        context: context.to_string(),
        source,
    }
}

fn missing(context: &str, message: String) -> VolumeError {
    VolumeError::Missing {
        context: context.to_string(),
        message,
    }
}

/// The files of a configMap (`Ok(None)`: missing and optional, nothing to project).
pub(super) fn config_map_files(
    pod: &Pod,
    name: &str,
    items: Option<&[KeyToPath]>,
    default_mode: i32,
    optional: bool,
    objects: &dyn ObjectLookup,
    context: &str,
) -> Result<Option<Payload>, VolumeError> {
    let ns = namespace(pod);
    let cm: Option<ConfigMap> = objects
        .config_map(ns, name)
        .map_err(|e| lookup_err(context, e))?;
    let Some(cm) = cm else {
        if optional {
            return Ok(None);
        }
        return Err(missing(
            context,
            format!("configmap \"{ns}/{name}\" not found (the volume is not optional)"),
        ));
    };
    let data = cm.data.unwrap_or_default();
    let binary = cm.binary_data.unwrap_or_default();
    let mut keys: Vec<(String, Vec<u8>)> =
        data.into_iter().map(|(k, v)| (k, v.into_bytes())).collect();
    keys.extend(binary.into_iter().map(|(k, v)| (k, v.0)));
    make_payload(keys, items, default_mode, optional, context, |k| {
        format!("configmap \"{ns}/{name}\" references non-existent config key: {k}")
    })
    .map(Some)
}

/// The files of a secret (`Ok(None)`: missing and optional).
pub(super) fn secret_files(
    pod: &Pod,
    name: &str,
    items: Option<&[KeyToPath]>,
    default_mode: i32,
    optional: bool,
    objects: &dyn ObjectLookup,
    context: &str,
) -> Result<Option<Payload>, VolumeError> {
    let ns = namespace(pod);
    let secret: Option<Secret> = objects
        .secret(ns, name)
        .map_err(|e| lookup_err(context, e))?;
    let Some(secret) = secret else {
        if optional {
            return Ok(None);
        }
        return Err(missing(
            context,
            format!("secret \"{ns}/{name}\" not found (the volume is not optional)"),
        ));
    };
    let mut keys: Vec<(String, Vec<u8>)> = secret
        .data
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, v.0))
        .collect();
    // stringData is write-only in the API, but a cache fed from manifests may still carry it.
    keys.extend(
        secret
            .string_data
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, v.into_bytes())),
    );
    make_payload(keys, items, default_mode, optional, context, |k| {
        format!("secret \"{ns}/{name}\" references non-existent secret key: {k}")
    })
    .map(Some)
}

/// Upstream's `MakePayload`: every key under its own name, or just the items, each at its
/// path with its mode (or the default mode).
fn make_payload(
    keys: Vec<(String, Vec<u8>)>,
    items: Option<&[KeyToPath]>,
    default_mode: i32,
    optional: bool,
    context: &str,
    missing_key: impl Fn(&str) -> String,
) -> Result<Payload, VolumeError> {
    let mut payload = Payload::new();
    match items {
        None | Some([]) => {
            for (k, v) in keys {
                payload.insert(k, FileProjection::new(v, default_mode as u32));
            }
        }
        Some(items) => {
            for item in items {
                let Some((_, v)) = keys.iter().find(|(k, _)| *k == item.key) else {
                    if optional {
                        continue;
                    }
                    return Err(missing(context, missing_key(&item.key)));
                };
                let mode = item.mode.unwrap_or(default_mode);
                payload.insert(
                    item.path.clone(),
                    FileProjection::new(v.clone(), mode as u32),
                );
            }
        }
    }
    Ok(payload)
}

pub(super) fn config_map_payload(
    pod: &Pod,
    src: &ConfigMapVolumeSource,
    objects: &dyn ObjectLookup,
    context: &str,
) -> Result<Payload, VolumeError> {
    let files = config_map_files(
        pod,
        &src.name,
        src.items.as_deref(),
        src.default_mode.unwrap_or(DEFAULT_MODE),
        src.optional.unwrap_or(false),
        objects,
        context,
    )?;
    Ok(files.unwrap_or_default())
}

pub(super) fn secret_payload(
    pod: &Pod,
    src: &SecretVolumeSource,
    objects: &dyn ObjectLookup,
    context: &str,
) -> Result<Payload, VolumeError> {
    let Some(name) = src.secret_name.as_deref() else {
        return Err(VolumeError::Invalid {
            context: context.to_string(),
            message: "secret volume without secretName".into(),
        });
    };
    let files = secret_files(
        pod,
        name,
        src.items.as_deref(),
        src.default_mode.unwrap_or(DEFAULT_MODE),
        src.optional.unwrap_or(false),
        objects,
        context,
    )?;
    Ok(files.unwrap_or_default())
}

pub(super) fn write(
    dir: &Path,
    payload: &Payload,
    fs_group: Option<FsGroup>,
    context: &str,
) -> Result<(), VolumeError> {
    AtomicWriter::new(dir, context).write(payload, fs_group)?;
    Ok(())
}
