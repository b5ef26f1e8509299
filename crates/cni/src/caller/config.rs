//! Network config loading, as libcni does it: the lexically first `*.conflist` / `*.conf` /
//! `*.json` in the conf dir is the network; a single-plugin `.conf` is wrapped into a list of one.
//! The file is read on every call (no watcher): the node agent may write it after the runtime
//! starts, and re-reading one small file per pod operation costs nothing next to a plugin exec.

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use super::error::CniError;

/// The spec versions whose result format (interfaces/ips/routes/dns, 0.3.0 onwards) we read.
/// 0.3.x is accepted besides the required 0.4.0/1.0.0/1.1.0 because widely deployed conflists
/// (flannel's among them) still say 0.3.1 and its result format is that of 0.4.0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CniVersion {
    V0_3_0,
    V0_3_1,
    V0_4_0,
    V1_0_0,
    V1_1_0,
}

impl CniVersion {
    pub const SUPPORTED: [CniVersion; 5] = [
        CniVersion::V0_3_0,
        CniVersion::V0_3_1,
        CniVersion::V0_4_0,
        CniVersion::V1_0_0,
        CniVersion::V1_1_0,
    ];

    pub fn parse(s: &str) -> Option<CniVersion> {
        Self::SUPPORTED.into_iter().find(|v| v.as_str() == s)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            CniVersion::V0_3_0 => "0.3.0",
            CniVersion::V0_3_1 => "0.3.1",
            CniVersion::V0_4_0 => "0.4.0",
            CniVersion::V1_0_0 => "1.0.0",
            CniVersion::V1_1_0 => "1.1.0",
        }
    }

    /// CHECK and a prevResult on DEL came with 0.4.0.
    pub fn has_check(self) -> bool {
        self >= CniVersion::V0_4_0
    }

    /// STATUS and GC came with 1.1.0.
    pub fn has_status_and_gc(self) -> bool {
        self >= CniVersion::V1_1_0
    }
}

impl fmt::Display for CniVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One plugin of a list: its `type` (the binary name), the capabilities it declares, and its
/// whole JSON object, passed through to the plugin untouched apart from what the caller injects.
#[derive(Debug, Clone, PartialEq)]
pub struct PluginConfig {
    pub plugin_type: String,
    /// Keys of `"capabilities"` set to true: which runtime args go into its `runtimeConfig`.
    pub capabilities: BTreeSet<String>,
    pub raw: Map<String, Value>,
}

/// A network config list (the spec's "network configuration").
#[derive(Debug, Clone, PartialEq)]
pub struct NetworkConfigList {
    pub name: String,
    pub cni_version: CniVersion,
    pub disable_check: bool,
    pub disable_gc: bool,
    pub plugins: Vec<PluginConfig>,
    /// The file it came from (the conf file, or the result cache for DEL/CHECK).
    pub source: PathBuf,
    /// The list as JSON bytes: what the result cache stores so DEL/CHECK use the same config.
    pub bytes: Vec<u8>,
}

const EXTENSIONS: [&str; 3] = ["conflist", "conf", "json"];

impl NetworkConfigList {
    /// The network of `dir`: its lexically first config file, parsed and validated.
    /// The first file is the network even if it is invalid (libcni does the same): silently
    /// falling through to the next file would put pods on a network nobody meant.
    pub fn load_dir(dir: &Path) -> Result<NetworkConfigList, CniError> {
        let read_err = |source| CniError::ReadConfDir {
            dir: dir.to_path_buf(),
            source,
        };
        let entries = match std::fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(CniError::NoConfig {
                    dir: dir.to_path_buf(),
                })
            }
            Err(e) => return Err(read_err(e)),
        };
        let mut files = Vec::new();
        for entry in entries {
            let entry = entry.map_err(read_err)?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            // Hidden files are editors' and atomic writers' temp files, never a network.
            if name.starts_with('.') {
                continue;
            }
            let path = entry.path();
            let ext_ok = path
                .extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| EXTENSIONS.contains(&e));
            if ext_ok && !path.is_dir() {
                files.push(path);
            }
        }
        files.sort();
        let Some(first) = files.into_iter().next() else {
            return Err(CniError::NoConfig {
                dir: dir.to_path_buf(),
            });
        };
        let bytes = std::fs::read(&first).map_err(|e| CniError::InvalidConfig {
            file: first.clone(),
            reason: format!("cannot read it: {e}"),
        })?;
        let is_list = first.extension().and_then(|e| e.to_str()) == Some("conflist");
        if is_list {
            Self::parse_list(&bytes, &first)
        } else {
            Self::parse_single(&bytes, &first)
        }
    }

    /// A `.conflist`: `{"cniVersion", "name", "plugins": [...]}`.
    pub fn parse_list(bytes: &[u8], file: &Path) -> Result<NetworkConfigList, CniError> {
        let invalid = |reason: String| CniError::InvalidConfig {
            file: file.to_path_buf(),
            reason,
        };
        let value: Value = serde_json::from_slice(bytes)
            .map_err(|e| invalid(format!("not valid JSON ({e}); fix the syntax")))?;
        let Value::Object(obj) = value else {
            return Err(invalid("the top level must be a JSON object".into()));
        };
        let name = required_str(&obj, "name")
            .map_err(|r| invalid(format!("{r}: a conflist needs a network name")))?;
        validate_name(&name).map_err(&invalid)?;
        let version_str = required_str(&obj, "cniVersion").map_err(|r| {
            invalid(format!(
                "{r}: set \"cniVersion\" to one of {}",
                supported_list()
            ))
        })?;
        let cni_version = CniVersion::parse(&version_str).ok_or_else(|| {
            invalid(format!(
                "cniVersion {version_str:?} is not supported; use one of {}",
                supported_list()
            ))
        })?;
        let flag = |key: &str| -> Result<bool, CniError> {
            match obj.get(key) {
                None | Some(Value::Null) => Ok(false),
                Some(Value::Bool(b)) => Ok(*b),
                // libcni accepts the strings too ("disableCheck": "true").
                Some(Value::String(s)) if s.eq_ignore_ascii_case("true") => Ok(true),
                Some(Value::String(s)) if s.eq_ignore_ascii_case("false") => Ok(false),
                Some(other) => Err(invalid(format!(
                    "{key:?} must be true or false, not {other}"
                ))),
            }
        };
        let disable_check = flag("disableCheck")?;
        let disable_gc = flag("disableGC")?;
        let plugins = match obj.get("plugins") {
            Some(Value::Array(list)) if !list.is_empty() => list,
            Some(Value::Array(_)) => return Err(invalid(
                "\"plugins\" is empty: list at least one plugin, e.g. {\"type\": \"bridge\", ...}"
                    .into(),
            )),
            Some(_) => {
                return Err(invalid(
                    "\"plugins\" must be an array of plugin objects".into(),
                ))
            }
            None => {
                return Err(invalid(
                    "no \"plugins\" array: a .conflist lists its plugins in \"plugins\" \
                     (a single plugin belongs in a .conf file)"
                        .into(),
                ))
            }
        };
        let plugins = plugins
            .iter()
            .enumerate()
            .map(|(i, p)| parse_plugin(p).map_err(|r| invalid(format!("plugins[{i}]: {r}"))))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(NetworkConfigList {
            name,
            cni_version,
            disable_check,
            disable_gc,
            plugins,
            source: file.to_path_buf(),
            bytes: bytes.to_vec(),
        })
    }

    /// A `.conf`/`.json`: one plugin with `name` and `cniVersion`, wrapped into a list of one
    /// (libcni's `ConfListFromConf`).
    pub fn parse_single(bytes: &[u8], file: &Path) -> Result<NetworkConfigList, CniError> {
        let invalid = |reason: String| CniError::InvalidConfig {
            file: file.to_path_buf(),
            reason,
        };
        let value: Value = serde_json::from_slice(bytes)
            .map_err(|e| invalid(format!("not valid JSON ({e}); fix the syntax")))?;
        let Value::Object(obj) = value else {
            return Err(invalid("the top level must be a JSON object".into()));
        };
        if obj.contains_key("plugins") {
            return Err(invalid(
                "it has a \"plugins\" list: rename it to .conflist, or keep one plugin".into(),
            ));
        }
        let mut list = Map::new();
        for key in ["cniVersion", "name"] {
            if let Some(v) = obj.get(key) {
                list.insert(key.into(), v.clone());
            }
        }
        list.insert("plugins".into(), Value::Array(vec![Value::Object(obj)]));
        let wrapped = serde_json::to_vec(&Value::Object(list)).expect("JSON values serialize");
        Self::parse_list(&wrapped, file)
    }

    /// A list stored in the result cache by a previous ADD.
    pub(crate) fn from_cache(bytes: &[u8], file: &Path) -> Result<NetworkConfigList, CniError> {
        Self::parse_list(bytes, file)
    }
}

fn supported_list() -> String {
    CniVersion::SUPPORTED
        .iter()
        .map(|v| v.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

fn required_str(obj: &Map<String, Value>, key: &str) -> Result<String, String> {
    match obj.get(key) {
        Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
        Some(Value::String(_)) => Err(format!("{key:?} is empty")),
        Some(other) => Err(format!("{key:?} must be a string, not {other}")),
        None => Err(format!("{key:?} is missing")),
    }
}

/// The network name becomes part of file names (cache, host-local's dataDir): the spec limits
/// it to `[a-zA-Z0-9][a-zA-Z0-9_.-]*`, which also keeps it free of `/`.
fn validate_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
    let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if first_ok && rest_ok {
        Ok(())
    } else {
        Err(format!(
            "network name {name:?} is invalid: use letters, digits, '_', '.', '-', starting with \
             a letter or digit"
        ))
    }
}

fn parse_plugin(value: &Value) -> Result<PluginConfig, String> {
    let Value::Object(obj) = value else {
        return Err("a plugin must be a JSON object".into());
    };
    let plugin_type = required_str(obj, "type")
        .map_err(|r| format!("{r}: \"type\" names the plugin binary, e.g. \"bridge\""))?;
    // The type is looked up as a file name in the bin dirs; a path would escape them.
    if plugin_type.contains('/') || plugin_type == "." || plugin_type == ".." {
        return Err(format!(
            "\"type\" {plugin_type:?} must be a plain binary name, not a path"
        ));
    }
    let mut capabilities = BTreeSet::new();
    match obj.get("capabilities") {
        None | Some(Value::Null) => {}
        Some(Value::Object(caps)) => {
            for (k, v) in caps {
                match v {
                    Value::Bool(true) => {
                        capabilities.insert(k.clone());
                    }
                    Value::Bool(false) => {}
                    other => {
                        return Err(format!(
                            "capability {k:?} must be true or false, not {other}"
                        ))
                    }
                }
            }
        }
        Some(other) => {
            return Err(format!(
                "\"capabilities\" must be an object like {{\"portMappings\": true}}, not {other}"
            ))
        }
    }
    Ok(PluginConfig {
        plugin_type,
        capabilities,
        raw: obj.clone(),
    })
}
