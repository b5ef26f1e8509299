//! The caller's one error type. Every variant names the object it failed on (file, plugin,
//! command, container) and, where there is one, the fix; [`CniError::is_retryable`] says whether
//! calling again without changing anything can help.

use std::path::PathBuf;
use std::time::Duration;

use super::result::ResultError;

#[derive(Debug, thiserror::Error)]
pub enum CniError {
    /// The conf dir holds no `*.conflist`, `*.conf` or `*.json` file (yet). Retryable: the
    /// node agent writes the conflist once it knows the pod CIDR.
    #[error(
        "no CNI network config in {dir}: write a .conflist (or .conf/.json) file there; \
         the node agent does this once it knows the node's pod CIDR"
    )]
    NoConfig { dir: PathBuf },

    #[error("cannot read CNI conf dir {dir}: {source}")]
    ReadConfDir {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// The chosen config file is unusable; `reason` says what is wrong and how to fix it.
    #[error("CNI network config {file}: {reason}")]
    InvalidConfig { file: PathBuf, reason: String },

    /// A plugin binary named by the config is in none of the bin dirs.
    #[error(
        "CNI plugin {plugin:?} (network {network:?}) not found in {}: install it there or fix \
         the \"type\" in the network config",
        display_dirs(searched)
    )]
    PluginNotFound {
        plugin: String,
        network: String,
        searched: Vec<PathBuf>,
    },

    /// The caller's own input is wrong (empty container ID, bad interface name, ...).
    #[error("invalid CNI attachment for container {container_id:?}: {reason}")]
    InvalidAttachment {
        container_id: String,
        reason: String,
    },

    /// The plugin ran and reported an error in the CNI error format (spec: "Error" section).
    #[error(
        "CNI plugin {plugin} {command} for {}failed: {msg} (code {code}){}",
        for_container(container_id),
        if details.is_empty() { String::new() } else { format!(": {details}") }
    )]
    Plugin {
        plugin: String,
        command: &'static str,
        container_id: Option<String>,
        code: u32,
        msg: String,
        details: String,
    },

    /// The plugin failed without a parseable CNI error (crashed, printed only to stderr).
    #[error(
        "CNI plugin {plugin} {command} for {}failed ({status}): {output}",
        for_container(container_id)
    )]
    PluginCrashed {
        plugin: String,
        command: &'static str,
        container_id: Option<String>,
        status: String,
        output: String,
    },

    #[error("cannot run CNI plugin {path} ({command}): {source}")]
    PluginExec {
        path: PathBuf,
        command: &'static str,
        #[source]
        source: std::io::Error,
    },

    /// The plugin did not finish in time; it and its children were killed.
    #[error(
        "CNI plugin {plugin} {command} for {}did not finish within {timeout:?}; it was killed \
         (a hung plugin usually waits on a lock or a missing kernel feature)",
        for_container(container_id)
    )]
    PluginTimeout {
        plugin: String,
        command: &'static str,
        container_id: Option<String>,
        timeout: Duration,
    },

    /// The plugin succeeded but its result is not a CNI result we can read.
    #[error(
        "CNI plugin {plugin} {command} for {}returned an unusable result: {source}",
        for_container(container_id)
    )]
    BadResult {
        plugin: String,
        command: &'static str,
        container_id: Option<String>,
        #[source]
        source: ResultError,
    },

    /// The network's cniVersion does not have this command (CHECK < 0.4.0, GC/STATUS < 1.1.0).
    #[error("network {network:?} has cniVersion {version}, which has no {command}; {hint}")]
    Unsupported {
        network: String,
        version: &'static str,
        command: &'static str,
        hint: &'static str,
    },

    /// CHECK needs the result of the ADD, which is cached; there is none.
    #[error(
        "no cached ADD result for container {container_id:?} interface {ifname} on network \
         {network:?} (in {dir}): CHECK can only verify an attachment this node made"
    )]
    NotAttached {
        network: String,
        container_id: String,
        ifname: String,
        dir: PathBuf,
    },

    #[error("CNI result cache {path}: {source}")]
    Cache {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error(
        "CNI result cache {path} is corrupt ({reason}); remove it and DEL the container again"
    )]
    CorruptCache { path: PathBuf, reason: String },

    /// GC ran every step; these are the ones that failed (the rest were done).
    #[error("CNI GC of network {network:?}: {}", join_errors(errors))]
    Gc {
        network: String,
        errors: Vec<CniError>,
    },
}

impl CniError {
    /// Whether calling again, unchanged, can succeed: a config or plugin may appear later, a
    /// plugin may be transiently busy (CNI code 11 "try again later") or time out once.
    /// Invalid input or an unsupported command will fail the same way every time.
    pub fn is_retryable(&self) -> bool {
        match self {
            CniError::NoConfig { .. }
            | CniError::ReadConfDir { .. }
            | CniError::PluginNotFound { .. }
            | CniError::PluginTimeout { .. }
            | CniError::PluginCrashed { .. }
            | CniError::PluginExec { .. }
            | CniError::Cache { .. } => true,
            // Spec error codes: 11 = "try again later"; plugin-specific codes (>= 100) are
            // unknown to us, so let the caller retry; 1-10 describe a wrong request.
            CniError::Plugin { code, .. } => *code == 11 || *code >= 100,
            CniError::Gc { errors, .. } => errors.iter().any(CniError::is_retryable),
            CniError::InvalidConfig { .. }
            | CniError::InvalidAttachment { .. }
            | CniError::BadResult { .. }
            | CniError::Unsupported { .. }
            | CniError::NotAttached { .. }
            | CniError::CorruptCache { .. } => false,
        }
    }
}

fn display_dirs(dirs: &[PathBuf]) -> String {
    if dirs.is_empty() {
        return "no bin dirs (CniConfig::bin_dirs is empty)".into();
    }
    dirs.iter()
        .map(|d| d.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

fn for_container(id: &Option<String>) -> String {
    match id {
        Some(id) => format!("container {id} "),
        None => "the network ".into(),
    }
}

fn join_errors(errors: &[CniError]) -> String {
    errors
        .iter()
        .map(|e| e.to_string())
        .collect::<Vec<_>>()
        .join("; ")
}
