//! Finding and running one plugin binary: the CNI_* environment, the config on stdin, the
//! result or error on stdout (spec "Section 2: Execution Protocol"). A plugin runs in its own
//! process group with a time limit, so a hung plugin and whatever it spawned (bridge execs
//! host-local) are killed together rather than left behind holding locks.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde::Deserialize;
use serde_json::{Map, Value};
use tokio::io::AsyncWriteExt;

use super::config::{NetworkConfigList, PluginConfig};
use super::error::CniError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Command {
    Add,
    Del,
    Check,
    Status,
    Gc,
}

impl Command {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Command::Add => "ADD",
            Command::Del => "DEL",
            Command::Check => "CHECK",
            Command::Status => "STATUS",
            Command::Gc => "GC",
        }
    }
}

/// Who the call is about; all `None` for the network-wide STATUS and GC.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Target<'a> {
    pub container_id: Option<&'a str>,
    /// `None` leaves CNI_NETNS unset: DEL after the netns is gone (the spec allows it).
    pub netns: Option<&'a Path>,
    pub ifname: Option<&'a str>,
    pub args: Option<&'a str>,
}

/// Where a plugin of the list lives, looked up before anything runs.
#[derive(Debug, Clone)]
pub(crate) struct Resolved {
    pub conf: PluginConfig,
    pub path: PathBuf,
}

/// Find every plugin of `list`. Done up front so that a missing binary fails an ADD before the
/// first plugin has allocated anything.
pub(crate) fn resolve_all(
    list: &NetworkConfigList,
    bin_dirs: &[PathBuf],
) -> Result<Vec<Resolved>, CniError> {
    list.plugins
        .iter()
        .map(|conf| {
            Ok(Resolved {
                path: find_plugin(&conf.plugin_type, bin_dirs, &list.name)?,
                conf: conf.clone(),
            })
        })
        .collect()
}

fn find_plugin(name: &str, bin_dirs: &[PathBuf], network: &str) -> Result<PathBuf, CniError> {
    use std::os::unix::fs::PermissionsExt;
    for dir in bin_dirs {
        let path = dir.join(name);
        if let Ok(meta) = std::fs::metadata(&path) {
            if meta.is_file() && meta.permissions().mode() & 0o111 != 0 {
                return Ok(path);
            }
        }
    }
    Err(CniError::PluginNotFound {
        plugin: name.to_string(),
        network: network.to_string(),
        searched: bin_dirs.to_vec(),
    })
}

/// The plugin's stdin: its own config with the list's `name` and `cniVersion`, the previous
/// result when chaining, and `runtimeConfig` holding only the capability args it declared
/// (libcni's `buildOneConfig` + `injectRuntimeConfig`; a declared capability the runtime has
/// no value for is left out, and an undeclared one is never sent).
pub(crate) fn plugin_stdin(
    list: &NetworkConfigList,
    plugin: &PluginConfig,
    prev_result: Option<&Value>,
    capability_args: &Map<String, Value>,
    extra: Option<(&str, Value)>,
) -> Vec<u8> {
    let mut conf = plugin.raw.clone();
    conf.insert("name".into(), Value::String(list.name.clone()));
    conf.insert(
        "cniVersion".into(),
        Value::String(list.cni_version.as_str().into()),
    );
    match prev_result {
        Some(prev) => {
            conf.insert("prevResult".into(), prev.clone());
        }
        None => {
            conf.remove("prevResult");
        }
    }
    let runtime_config: Map<String, Value> = plugin
        .capabilities
        .iter()
        .filter_map(|cap| capability_args.get(cap).map(|v| (cap.clone(), v.clone())))
        .collect();
    if !runtime_config.is_empty() {
        conf.insert("runtimeConfig".into(), Value::Object(runtime_config));
    }
    if let Some((key, value)) = extra {
        conf.insert(key.into(), value);
    }
    serde_json::to_vec(&Value::Object(conf)).expect("JSON values serialize")
}

/// The spec's error object.
#[derive(Deserialize)]
struct PluginErrorJson {
    #[serde(default)]
    code: u32,
    #[serde(default)]
    msg: String,
    #[serde(default)]
    details: String,
}

/// How much of a crashed plugin's output goes into an error message.
const OUTPUT_LIMIT: usize = 2048;

/// Run `plugin` once; its stdout on success.
pub(crate) async fn exec(
    plugin: &Resolved,
    command: Command,
    target: Target<'_>,
    stdin: Vec<u8>,
    bin_dirs: &[PathBuf],
    timeout: Duration,
) -> Result<Vec<u8>, CniError> {
    let name = &plugin.conf.plugin_type;
    let cni_path = std::env::join_paths(bin_dirs)
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut cmd = tokio::process::Command::new(&plugin.path);
    cmd.env("CNI_COMMAND", command.as_str())
        .env("CNI_PATH", cni_path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        // Own group: the timeout kills the plugin's children too, and a terminal's ^C aimed at
        // the runtime does not kill a plugin halfway through.
        .process_group(0);
    // Set or clear every CNI_* variable: a stray one inherited from our own environment would
    // otherwise reach the plugin.
    let netns = target.netns.map(|p| p.as_os_str().to_owned());
    let vars = [
        ("CNI_CONTAINERID", target.container_id.map(Into::into)),
        ("CNI_NETNS", netns),
        ("CNI_IFNAME", target.ifname.map(Into::into)),
        ("CNI_ARGS", target.args.map(Into::into)),
    ];
    for (key, value) in vars {
        match value {
            Some(v) => cmd.env(key, v),
            None => cmd.env_remove(key),
        };
    }
    let mut child = cmd.spawn().map_err(|source| CniError::PluginExec {
        path: plugin.path.clone(),
        command: command.as_str(),
        source,
    })?;
    // Armed until the plugin has exited: a timeout or a dropped (cancelled) call kills the
    // whole group.
    let mut group = GroupKill {
        pid: child.id().and_then(|p| i32::try_from(p).ok()),
        plugin: name,
    };
    let mut pipe = child.stdin.take().expect("stdin is piped");
    let feed = async move {
        // A plugin may exit without reading stdin (e.g. on a bad environment): EPIPE then is
        // not our error, its exit status tells the story.
        let _ = pipe.write_all(&stdin).await;
        drop(pipe);
    };
    let run = async { tokio::join!(feed, child.wait_with_output()).1 };
    let container_id = target.container_id.map(str::to_string);
    let output = match tokio::time::timeout(timeout, run).await {
        Ok(Ok(output)) => output,
        Ok(Err(source)) => {
            return Err(CniError::PluginExec {
                path: plugin.path.clone(),
                command: command.as_str(),
                source,
            })
        }
        Err(_) => {
            return Err(CniError::PluginTimeout {
                plugin: name.clone(),
                command: command.as_str(),
                container_id,
                timeout,
            });
        }
    };
    group.disarm();
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !stderr.trim().is_empty() {
        tracing::debug!(plugin = %name, command = command.as_str(), stderr = %stderr.trim(), "CNI plugin stderr");
    }
    if output.status.success() {
        return Ok(output.stdout);
    }
    if let Ok(err) = serde_json::from_slice::<PluginErrorJson>(&output.stdout) {
        if !err.msg.is_empty() || err.code != 0 {
            return Err(CniError::Plugin {
                plugin: name.clone(),
                command: command.as_str(),
                container_id,
                code: err.code,
                msg: err.msg,
                details: err.details,
            });
        }
    }
    let text = if output.stdout.iter().any(|b| !b.is_ascii_whitespace()) {
        String::from_utf8_lossy(&output.stdout).into_owned()
    } else if !stderr.trim().is_empty() {
        stderr.into_owned()
    } else {
        "no output".to_string()
    };
    Err(CniError::PluginCrashed {
        plugin: name.clone(),
        command: command.as_str(),
        container_id,
        status: output.status.to_string(),
        output: truncate(text.trim(), OUTPUT_LIMIT),
    })
}

/// Kills a plugin's process group (the plugin and the delegates it spawned, e.g. host-local
/// under bridge) when dropped armed. `kill_on_drop` alone would reach only the plugin itself.
struct GroupKill<'a> {
    pid: Option<i32>,
    plugin: &'a str,
}

impl GroupKill<'_> {
    /// The plugin exited by itself; whatever it left in its group is its business.
    fn disarm(&mut self) {
        self.pid = None;
    }
}

impl Drop for GroupKill<'_> {
    fn drop(&mut self) {
        let Some(pid) = self.pid else { return };
        // Signals belong in deckhand-sys; move this there once it exports a group kill.
        let group = nix::unistd::Pid::from_raw(pid);
        match nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL) {
            Ok(()) | Err(nix::errno::Errno::ESRCH) => {}
            Err(e) => {
                tracing::warn!(plugin = %self.plugin, error = %e, "cannot kill CNI plugin's process group")
            }
        }
    }
}

fn truncate(s: &str, limit: usize) -> String {
    if s.len() <= limit {
        return s.to_string();
    }
    let mut end = limit;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &s[..end])
}
