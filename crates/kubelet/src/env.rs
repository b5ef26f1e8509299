//! A container's environment: service links, `envFrom`, `env` with `valueFrom`, and `$(VAR)`
//! expansion in env values, command and args.
//!
//! Follows upstream `pkg/kubelet/kubelet_pods.go` (`makeEnvironmentVariables`,
//! `getServiceEnvVarMap`, `podFieldSelectorRuntimeValue`), `pkg/kubelet/envvars/envvars.go`
//! (docker-link style service variables), `pkg/api/v1/resource` (`ExtractContainerResourceValue`,
//! limits defaulting to node allocatable), `pkg/fieldpath` (`ExtractFieldPathAsString`,
//! `FormatMap`) and `third_party/forked/golang/expansion` (`$(VAR)`, `$$` escapes, unknown
//! references left as written).

use std::collections::{BTreeMap, HashMap};

use k8s_openapi::api::core::v1::{ConfigMap, Container, Pod, Secret, Service};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use crate::qos::{parse_milli, parse_value};

/// The namespace of the API server's own service, always linked.
pub const MASTER_SERVICE_NAMESPACE: &str = "default";
/// The API server's own service name.
pub const MASTER_SERVICE_NAME: &str = "kubernetes";

/// Why a container's environment could not be built. None of these resolve by retrying at once;
/// they clear when the referenced object changes (the sync loop retries on its own).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvError {
    #[error("configmap {namespace}/{name} not found")]
    ConfigMapNotFound { namespace: String, name: String },
    #[error("secret {namespace}/{name} not found")]
    SecretNotFound { namespace: String, name: String },
    #[error("couldn't find key {key} in ConfigMap {namespace}/{name}")]
    ConfigMapKeyNotFound {
        namespace: String,
        name: String,
        key: String,
    },
    #[error("couldn't find key {key} in Secret {namespace}/{name}")]
    SecretKeyNotFound {
        namespace: String,
        name: String,
        key: String,
    },
    #[error("env {var}: unsupported fieldPath {path:?}")]
    UnsupportedFieldPath { var: String, path: String },
    #[error("env {var}: unsupported container resource {resource:?}")]
    UnsupportedResource { var: String, resource: String },
    #[error("env {var}: container {container:?} not found in the pod")]
    ContainerNotFound { var: String, container: String },
    #[error("env {var}: invalid divisor {divisor:?}")]
    InvalidDivisor { var: String, divisor: String },
}

/// Where ConfigMaps, Secrets and Services come from. Called synchronously from the pod worker
/// while it builds a container config: implementations answer from an in-memory cache and must
/// not block.
pub trait EnvSources {
    fn config_map(&self, namespace: &str, name: &str) -> Option<&ConfigMap>;
    fn secret(&self, namespace: &str, name: &str) -> Option<&Secret>;
    /// Every service the node knows of, all namespaces.
    fn services(&self) -> &[Service];
}

/// [`EnvSources`] over plain maps keyed by (namespace, name).
#[derive(Debug, Clone, Default)]
pub struct MapSources {
    pub config_maps: BTreeMap<(String, String), ConfigMap>,
    pub secrets: BTreeMap<(String, String), Secret>,
    pub services: Vec<Service>,
}

impl EnvSources for MapSources {
    fn config_map(&self, namespace: &str, name: &str) -> Option<&ConfigMap> {
        self.config_maps
            .get(&(namespace.to_string(), name.to_string()))
    }
    fn secret(&self, namespace: &str, name: &str) -> Option<&Secret> {
        self.secrets.get(&(namespace.to_string(), name.to_string()))
    }
    fn services(&self) -> &[Service] {
        &self.services
    }
}

/// Node facts the environment needs.
#[derive(Debug, Clone, Default)]
pub struct NodeEnv {
    /// The node's IPs, primary first (`status.hostIP`, `status.hostIPs`).
    pub host_ips: Vec<String>,
    /// Node allocatable, the default for unset limits in `resourceFieldRef`.
    pub allocatable: BTreeMap<String, Quantity>,
}

/// The environment of one container, in order, plus warnings worth a
/// `InvalidEnvironmentVariableNames` event.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContainerEnv {
    pub vars: Vec<(String, String)>,
    pub warnings: Vec<String>,
}

impl ContainerEnv {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.vars
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// An ordered map where a later set replaces the value but keeps the first position.
#[derive(Default)]
struct OrderedEnv {
    vars: Vec<(String, String)>,
    index: HashMap<String, usize>,
}

impl OrderedEnv {
    fn set(&mut self, k: String, v: String) {
        match self.index.get(&k) {
            Some(&i) => self.vars[i].1 = v,
            None => {
                self.index.insert(k.clone(), self.vars.len());
                self.vars.push((k, v));
            }
        }
    }
    fn get(&self, k: &str) -> Option<&str> {
        self.index.get(k).map(|&i| self.vars[i].1.as_str())
    }
}

/// Upstream `IsEnvVarName`: `[-._a-zA-Z][-._a-zA-Z0-9]*`.
pub fn is_env_var_name(s: &str) -> bool {
    let mut chars = s.chars();
    let Some(first) = chars.next() else {
        return false;
    };
    (first.is_ascii_alphabetic() || "-._".contains(first))
        && chars.all(|c| c.is_ascii_alphanumeric() || "-._".contains(c))
}

/// Expands `$(VAR)` references as upstream `expansion.Expand`: `$$` is a literal `$`, a
/// reference to an unknown variable (or an unclosed `$(`) is left as written.
pub fn expand(input: &str, lookup: &dyn Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        match after.chars().next() {
            Some('$') => {
                out.push('$');
                rest = &after[1..];
            }
            Some('(') => match after.find(')') {
                Some(close) => {
                    let name = &after[1..close];
                    match lookup(name) {
                        Some(v) => out.push_str(&v),
                        None => {
                            out.push_str("$(");
                            out.push_str(name);
                            out.push(')');
                        }
                    }
                    rest = &after[close + 1..];
                }
                None => {
                    out.push('$');
                    out.push_str(after);
                    rest = "";
                }
            },
            Some(c) => {
                out.push('$');
                out.push(c);
                rest = &after[c.len_utf8()..];
            }
            None => {
                out.push('$');
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

fn env_name(service: &str) -> String {
    service.to_uppercase().replace('-', "_")
}

fn join_host_port(host: &str, port: i32) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// The docker-link style variables of services (upstream `envvars.FromServices`), services with
/// no cluster IP (headless, `None`) skipped.
pub fn service_env_vars(services: &[&Service]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for svc in services {
        let Some(spec) = svc.spec.as_ref() else {
            continue;
        };
        let ip = spec.cluster_ip.as_deref().unwrap_or_default();
        if ip.is_empty() || ip == "None" {
            continue;
        }
        let prefix = env_name(svc.metadata.name.as_deref().unwrap_or_default());
        let ports = spec.ports.as_deref().unwrap_or(&[]);
        out.push((format!("{prefix}_SERVICE_HOST"), ip.to_string()));
        if let Some(first) = ports.first() {
            out.push((format!("{prefix}_SERVICE_PORT"), first.port.to_string()));
        }
        for p in ports {
            if let Some(n) = p.name.as_deref().filter(|n| !n.is_empty()) {
                out.push((
                    format!("{prefix}_SERVICE_PORT_{}", env_name(n)),
                    p.port.to_string(),
                ));
            }
        }
        for (i, p) in ports.iter().enumerate() {
            let proto = p.protocol.as_deref().unwrap_or("TCP");
            let url = format!("{}://{}", proto.to_lowercase(), join_host_port(ip, p.port));
            if i == 0 {
                out.push((format!("{prefix}_PORT"), url.clone()));
            }
            let pp = format!("{prefix}_PORT_{}_{}", p.port, proto.to_uppercase());
            out.push((pp.clone(), url));
            out.push((format!("{pp}_PROTO"), proto.to_lowercase()));
            out.push((format!("{pp}_PORT"), p.port.to_string()));
            out.push((format!("{pp}_ADDR"), ip.to_string()));
        }
    }
    out
}

/// Upstream `getServiceEnvVarMap`: `kubernetes` in `default` always; the pod's namespace's
/// services when `enableServiceLinks` (default true), a same-named one replacing `kubernetes`.
fn pod_service_env(pod: &Pod, sources: &dyn EnvSources) -> Vec<(String, String)> {
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let links = pod
        .spec
        .as_ref()
        .and_then(|s| s.enable_service_links)
        .unwrap_or(true);
    let mut chosen: BTreeMap<String, &Service> = BTreeMap::new();
    for svc in sources.services() {
        let ip = svc.spec.as_ref().and_then(|s| s.cluster_ip.as_deref());
        if matches!(ip, None | Some("") | Some("None")) {
            continue;
        }
        let name = svc.metadata.name.clone().unwrap_or_default();
        let svc_ns = svc.metadata.namespace.as_deref().unwrap_or("default");
        if svc_ns == MASTER_SERVICE_NAMESPACE && name == MASTER_SERVICE_NAME {
            chosen.entry(name).or_insert(svc);
        } else if svc_ns == ns && links {
            chosen.insert(name, svc);
        }
    }
    let list: Vec<&Service> = chosen.into_values().collect();
    service_env_vars(&list)
}

/// Upstream `FormatMap`: `key="value"` lines, keys sorted.
fn format_map(m: Option<&BTreeMap<String, String>>) -> String {
    m.into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={}", serde_json::Value::from(v.as_str())))
        .collect::<Vec<_>>()
        .join("\n")
}

fn subscript<'a>(path: &'a str, field: &str) -> Option<&'a str> {
    let rest = path.strip_prefix(field)?.strip_prefix("['")?;
    rest.strip_suffix("']")
}

/// A downward API `fieldRef` value (upstream `podFieldSelectorRuntimeValue`).
pub fn field_ref_value(
    var: &str,
    path: &str,
    pod: &Pod,
    pod_ips: &[String],
    node: &NodeEnv,
) -> Result<String, EnvError> {
    let meta = &pod.metadata;
    let spec = pod.spec.as_ref();
    let v = match path {
        "metadata.name" => meta.name.clone().unwrap_or_default(),
        "metadata.namespace" => meta.namespace.clone().unwrap_or_default(),
        "metadata.uid" => meta.uid.clone().unwrap_or_default(),
        "metadata.labels" => format_map(meta.labels.as_ref()),
        "metadata.annotations" => format_map(meta.annotations.as_ref()),
        "spec.nodeName" => spec.and_then(|s| s.node_name.clone()).unwrap_or_default(),
        "spec.serviceAccountName" => spec
            .and_then(|s| s.service_account_name.clone())
            .unwrap_or_default(),
        "status.hostIP" => node.host_ips.first().cloned().unwrap_or_default(),
        "status.hostIPs" => node.host_ips.join(","),
        "status.podIP" => pod_ips.first().cloned().unwrap_or_default(),
        "status.podIPs" => pod_ips.join(","),
        p => {
            if let Some(k) = subscript(p, "metadata.labels") {
                meta.labels
                    .as_ref()
                    .and_then(|l| l.get(k))
                    .cloned()
                    .unwrap_or_default()
            } else if let Some(k) = subscript(p, "metadata.annotations") {
                meta.annotations
                    .as_ref()
                    .and_then(|a| a.get(k))
                    .cloned()
                    .unwrap_or_default()
            } else {
                return Err(EnvError::UnsupportedFieldPath {
                    var: var.into(),
                    path: p.into(),
                });
            }
        }
    };
    Ok(v)
}

/// A `resourceFieldRef` value (upstream `ExtractContainerResourceValue`): cpu rounds up to the
/// divisor in milli-units, memory and ephemeral-storage in bytes; unset limits are the node's
/// allocatable.
pub fn resource_field_value(
    var: &str,
    resource: &str,
    divisor: Option<&Quantity>,
    container: &Container,
    node: &NodeEnv,
) -> Result<String, EnvError> {
    let (kind, name) = resource
        .split_once('.')
        .filter(|(k, n)| {
            matches!(*k, "limits" | "requests")
                && matches!(*n, "cpu" | "memory" | "ephemeral-storage")
        })
        .ok_or_else(|| EnvError::UnsupportedResource {
            var: var.into(),
            resource: resource.into(),
        })?;
    let res = container.resources.as_ref();
    let from_spec = if kind == "limits" {
        res.and_then(|r| r.limits.as_ref())
    } else {
        res.and_then(|r| r.requests.as_ref())
    }
    .and_then(|m| m.get(name));
    let q = match (from_spec, kind) {
        (Some(q), _) => Some(q),
        (None, "limits") => node.allocatable.get(name),
        (None, _) => None,
    };
    let q = q.map(|q| q.0.as_str()).unwrap_or("0");
    let bad_divisor = || EnvError::InvalidDivisor {
        var: var.into(),
        divisor: divisor.map(|d| d.0.clone()).unwrap_or_default(),
    };
    let divisor = divisor
        .map(|d| d.0.as_str())
        .filter(|d| parse_milli(d).is_ok_and(|m| m != 0));
    let divisor = divisor.unwrap_or("1");
    let (amount, div) = if name == "cpu" {
        (
            parse_milli(q).unwrap_or(0),
            parse_milli(divisor).map_err(|_| bad_divisor())?,
        )
    } else {
        (
            parse_value(q).unwrap_or(0),
            parse_value(divisor).map_err(|_| bad_divisor())?,
        )
    };
    if div <= 0 {
        return Err(bad_divisor());
    }
    Ok(((amount + div - 1).div_euclid(div)).to_string())
}

fn all_containers(pod: &Pod) -> impl Iterator<Item = &Container> {
    pod.spec.iter().flat_map(|s| {
        s.containers
            .iter()
            .chain(s.init_containers.iter().flatten())
    })
}

/// Builds a container's environment as upstream `makeEnvironmentVariables`: `envFrom` sources in
/// order (later keys win, invalid names skipped with a warning), then `env` in order (each value
/// `$(VAR)`-expanded against what came before and the service variables), then the service
/// variables the container did not set. `pod_ips` are the sandbox's, primary first.
pub fn make_environment(
    pod: &Pod,
    container: &Container,
    pod_ips: &[String],
    node: &NodeEnv,
    sources: &dyn EnvSources,
) -> Result<ContainerEnv, EnvError> {
    let ns = pod
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| "default".into());
    let service_env = pod_service_env(pod, sources);
    let mut env = OrderedEnv::default();
    let mut warnings = Vec::new();

    for from in container.env_from.iter().flatten() {
        let prefix = from.prefix.clone().unwrap_or_default();
        let (kind, name, data): (&str, String, BTreeMap<String, String>) =
            if let Some(r) = &from.config_map_ref {
                let name = r.name.clone();
                match sources.config_map(&ns, &name) {
                    Some(cm) => ("configMap", name, cm.data.clone().unwrap_or_default()),
                    None if r.optional == Some(true) => continue,
                    None => {
                        return Err(EnvError::ConfigMapNotFound {
                            namespace: ns,
                            name,
                        })
                    }
                }
            } else if let Some(r) = &from.secret_ref {
                let name = r.name.clone();
                match sources.secret(&ns, &name) {
                    Some(s) => (
                        "secret",
                        name,
                        s.data
                            .iter()
                            .flatten()
                            .map(|(k, v)| (k.clone(), String::from_utf8_lossy(&v.0).into_owned()))
                            .collect(),
                    ),
                    None if r.optional == Some(true) => continue,
                    None => {
                        return Err(EnvError::SecretNotFound {
                            namespace: ns,
                            name,
                        })
                    }
                }
            } else {
                continue;
            };
        let mut invalid = Vec::new();
        for (k, v) in data {
            let k = format!("{prefix}{k}");
            if !is_env_var_name(&k) {
                invalid.push(k);
                continue;
            }
            env.set(k, v);
        }
        if !invalid.is_empty() {
            invalid.sort();
            warnings.push(format!(
                "Keys [{}] from the EnvFrom {kind} {ns}/{name} were skipped since they are considered invalid environment variable names.",
                invalid.join(", ")
            ));
        }
    }

    let pod_ips_owned: Vec<String> = pod_ips.to_vec();
    for var in container.env.iter().flatten() {
        let value = if let Some(v) = var.value.as_deref().filter(|v| !v.is_empty()) {
            let lookup = |name: &str| {
                env.get(name).map(str::to_string).or_else(|| {
                    service_env
                        .iter()
                        .find(|(k, _)| k == name)
                        .map(|(_, v)| v.clone())
                })
            };
            expand(v, &lookup)
        } else if let Some(from) = &var.value_from {
            if let Some(f) = &from.field_ref {
                field_ref_value(&var.name, &f.field_path, pod, &pod_ips_owned, node)?
            } else if let Some(r) = &from.resource_field_ref {
                let target = match r.container_name.as_deref().filter(|n| !n.is_empty()) {
                    None => container,
                    Some(n) => all_containers(pod).find(|c| c.name == n).ok_or_else(|| {
                        EnvError::ContainerNotFound {
                            var: var.name.clone(),
                            container: n.into(),
                        }
                    })?,
                };
                resource_field_value(&var.name, &r.resource, r.divisor.as_ref(), target, node)?
            } else if let Some(r) = &from.config_map_key_ref {
                let optional = r.optional == Some(true);
                let Some(cm) = sources.config_map(&ns, &r.name) else {
                    if optional {
                        continue;
                    }
                    return Err(EnvError::ConfigMapNotFound {
                        namespace: ns,
                        name: r.name.clone(),
                    });
                };
                let found = cm
                    .data
                    .as_ref()
                    .and_then(|d| d.get(&r.key))
                    .cloned()
                    .or_else(|| {
                        cm.binary_data
                            .as_ref()
                            .and_then(|d| d.get(&r.key))
                            .map(|b| String::from_utf8_lossy(&b.0).into_owned())
                    });
                match found {
                    Some(v) => v,
                    None if optional => continue,
                    None => {
                        return Err(EnvError::ConfigMapKeyNotFound {
                            namespace: ns,
                            name: r.name.clone(),
                            key: r.key.clone(),
                        })
                    }
                }
            } else if let Some(r) = &from.secret_key_ref {
                let optional = r.optional == Some(true);
                let Some(s) = sources.secret(&ns, &r.name) else {
                    if optional {
                        continue;
                    }
                    return Err(EnvError::SecretNotFound {
                        namespace: ns,
                        name: r.name.clone(),
                    });
                };
                match s.data.as_ref().and_then(|d| d.get(&r.key)) {
                    Some(v) => String::from_utf8_lossy(&v.0).into_owned(),
                    None if optional => continue,
                    None => {
                        return Err(EnvError::SecretKeyNotFound {
                            namespace: ns,
                            name: r.name.clone(),
                            key: r.key.clone(),
                        })
                    }
                }
            } else {
                String::new()
            }
        } else {
            String::new()
        };
        env.set(var.name.clone(), value);
    }

    for (k, v) in service_env {
        if env.get(&k).is_none() {
            env.set(k, v);
        }
    }
    Ok(ContainerEnv {
        vars: env.vars,
        warnings,
    })
}

/// `$(VAR)`-expands a container's command and args against its final environment (upstream
/// `ExpandContainerCommandAndArgs`).
pub fn expand_command_and_args(
    container: &Container,
    env: &ContainerEnv,
) -> (Vec<String>, Vec<String>) {
    let map: HashMap<&str, &str> = env
        .vars
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let lookup = |n: &str| map.get(n).map(|v| v.to_string());
    let ex = |v: &Option<Vec<String>>| -> Vec<String> {
        v.iter().flatten().map(|s| expand(s, &lookup)).collect()
    };
    (ex(&container.command), ex(&container.args))
}

#[cfg(test)]
mod tests;
