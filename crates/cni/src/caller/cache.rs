//! The result cache, in libcni's format and place (`<cache_dir>/results/<network>-<container>-
//! <ifname>`, kind `cniCacheV1`, the config as base64), so DEL and CHECK run with the config and
//! prevResult of the ADD even after the conf dir changed, and so tools that read libcni's cache
//! (or a runtime swapped in for ours) understand it.
//!
//! Files are tiny and local; they are read and written with blocking std::fs like the conf
//! file, which costs nothing next to the plugin execs around them.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::config::NetworkConfigList;
use super::error::CniError;

const KIND: &str = "cniCacheV1";

#[derive(Serialize, Deserialize)]
struct Wire {
    kind: String,
    #[serde(rename = "containerId")]
    container_id: String,
    /// Go's `[]byte` marshals as base64.
    config: String,
    #[serde(rename = "ifName")]
    if_name: String,
    #[serde(rename = "networkName")]
    network_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    netns: Option<String>,
    #[serde(rename = "cniArgs", default, skip_serializing_if = "Vec::is_empty")]
    cni_args: Vec<[String; 2]>,
    #[serde(
        rename = "capabilityArgs",
        default,
        skip_serializing_if = "Map::is_empty"
    )]
    capability_args: Map<String, Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    result: Option<Value>,
}

/// One cached attachment.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub path: PathBuf,
    pub list: NetworkConfigList,
    pub container_id: String,
    pub ifname: String,
    /// Informational (libcni records it too); DEL takes the netns from its caller.
    pub netns: Option<String>,
    pub capability_args: Map<String, Value>,
    pub cni_args: Vec<[String; 2]>,
    pub result: Option<Value>,
}

fn results_dir(cache_dir: &Path) -> PathBuf {
    cache_dir.join("results")
}

pub(crate) fn path(cache_dir: &Path, network: &str, container_id: &str, ifname: &str) -> PathBuf {
    results_dir(cache_dir).join(format!("{network}-{container_id}-{ifname}"))
}

pub(crate) fn write(cache_dir: &Path, entry: &Entry) -> Result<(), CniError> {
    let wire = Wire {
        kind: KIND.into(),
        container_id: entry.container_id.clone(),
        config: base64::engine::general_purpose::STANDARD.encode(&entry.list.bytes),
        if_name: entry.ifname.clone(),
        network_name: entry.list.name.clone(),
        netns: entry.netns.clone(),
        cni_args: entry.cni_args.clone(),
        capability_args: entry.capability_args.clone(),
        result: entry.result.clone(),
    };
    let cache_err = |source| CniError::Cache {
        path: entry.path.clone(),
        source,
    };
    std::fs::create_dir_all(results_dir(cache_dir)).map_err(cache_err)?;
    // Write then rename: a crash leaves the old entry or the new one, never half of one.
    let tmp = entry.path.with_file_name(format!(
        ".{}.tmp",
        entry.path.file_name().unwrap_or_default().to_string_lossy()
    ));
    let bytes = serde_json::to_vec(&wire).expect("JSON values serialize");
    std::fs::write(&tmp, bytes).map_err(cache_err)?;
    std::fs::rename(&tmp, &entry.path).map_err(cache_err)
}

pub(crate) fn read(path: &Path) -> Result<Option<Entry>, CniError> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(CniError::Cache {
                path: path.to_path_buf(),
                source,
            })
        }
    };
    let corrupt = |reason: String| CniError::CorruptCache {
        path: path.to_path_buf(),
        reason,
    };
    let wire: Wire = serde_json::from_slice(&bytes).map_err(|e| corrupt(e.to_string()))?;
    if wire.kind != KIND {
        return Err(corrupt(format!("kind {:?}, expected {KIND:?}", wire.kind)));
    }
    let config = base64::engine::general_purpose::STANDARD
        .decode(&wire.config)
        .map_err(|e| corrupt(format!("config is not base64: {e}")))?;
    let list = NetworkConfigList::from_cache(&config, path)?;
    Ok(Some(Entry {
        path: path.to_path_buf(),
        list,
        container_id: wire.container_id,
        ifname: wire.if_name,
        netns: wire.netns,
        capability_args: wire.capability_args,
        cni_args: wire.cni_args,
        result: wire.result,
    }))
}

pub(crate) fn remove(path: &Path) -> Result<(), CniError> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(CniError::Cache {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Every cached attachment whose file name ends in `suffix` (`-<container>-<ifname>` or
/// nothing for all) and, when given, belongs to `network`. File names alone are ambiguous
/// (network names and container IDs may contain '-'), so entries are matched on their content.
pub(crate) fn scan(
    cache_dir: &Path,
    network: Option<&str>,
    attachment: Option<(&str, &str)>,
) -> Result<Vec<Entry>, CniError> {
    let dir = results_dir(cache_dir);
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(CniError::Cache { path: dir, source }),
    };
    let suffix = attachment.map(|(c, i)| format!("-{c}-{i}"));
    let mut found = Vec::new();
    for dirent in entries {
        let dirent = dirent.map_err(|source| CniError::Cache {
            path: dir.clone(),
            source,
        })?;
        let name = dirent.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') {
            continue;
        }
        if let Some(suffix) = &suffix {
            if !name.ends_with(suffix.as_str()) {
                continue;
            }
        }
        if let Some(net) = network {
            if !name.starts_with(&format!("{net}-")) {
                continue;
            }
        }
        let entry = match read(&dirent.path()) {
            Ok(Some(e)) => e,
            Ok(None) => continue,
            Err(e) => {
                // One bad file must not block teardown of every other pod.
                tracing::warn!(error = %e, "skipping unreadable CNI cache entry");
                continue;
            }
        };
        let matches_attachment =
            attachment.is_none_or(|(c, i)| entry.container_id == c && entry.ifname == i);
        let matches_network = network.is_none_or(|n| entry.list.name == n);
        if matches_attachment && matches_network {
            found.push(entry);
        }
    }
    found.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(found)
}
