//! The table of resources the API server serves: for each one its group, version, plural,
//! kind, scope, short names, verbs and subresources, and the k8s-openapi type that checks a
//! body's shape. Discovery, OpenAPI and the REST handlers are all generated from this table,
//! so adding a resource is one line here.

use std::any::TypeId;

use k8s_openapi::api::{
    apps, authorization, certificates, coordination, core, discovery, networking, storage,
};
use k8s_openapi::{NamespaceResourceScope, Resource};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

/// The verbs every resource here supports (the order kubectl prints them in).
pub const ALL_VERBS: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

/// Why a body could not be decoded into its typed form. `path` is a dotted field path
/// (`spec.containers[0].ports[0].containerPort`), empty for the root.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{path}: {message}")]
pub struct DecodeError {
    pub path: String,
    pub message: String,
    /// A required field is absent (upstream answers 422 Invalid, not 400).
    pub missing_field: bool,
}

/// Decode `value` into the resource's k8s-openapi type and back: the result is the object
/// with the shape upstream would store (unknown fields dropped, types normalised).
pub type Normalize = fn(&Value) -> Result<Value, DecodeError>;

#[derive(Debug)]
pub struct ResourceInfo {
    pub group: &'static str,
    pub version: &'static str,
    /// The plural, as in URLs and store keys (`pods`).
    pub resource: &'static str,
    pub singular: String,
    pub kind: &'static str,
    pub list_kind: String,
    pub namespaced: bool,
    pub short_names: &'static [&'static str],
    pub categories: &'static [&'static str],
    /// `status`, `scale` (apps workloads), `binding` and `eviction` (pods), `finalize`
    /// (namespaces).
    pub subresources: &'static [&'static str],
    /// What may be done to it: [`ALL_VERBS`] for stored resources, `create` alone for
    /// reviews, which are answered and never stored.
    pub verbs: &'static [&'static str],
    pub normalize: Normalize,
    /// Adds the type's OpenAPI schema (and those it refers to) to a generator, for the
    /// OpenAPI v3 documents `kubectl explain` reads.
    pub schema: fn(&mut schemars::gen::SchemaGenerator) -> schemars::schema::Schema,
}

/// The kind a subresource answers with, and the verbs it takes (as upstream's discovery).
pub fn subresource_kind(
    info: &ResourceInfo,
    sub: &str,
) -> (
    &'static str,
    &'static str,
    &'static str,
    &'static [&'static str],
) {
    match sub {
        "scale" => ("autoscaling", "v1", "Scale", &["get", "patch", "update"]),
        "binding" => ("", "v1", "Binding", &["create"]),
        "eviction" => ("policy", "v1", "Eviction", &["create"]),
        "finalize" => (info.group, info.version, info.kind, &["update"]),
        _ => (
            info.group,
            info.version,
            info.kind,
            &["get", "patch", "update"],
        ),
    }
}

impl ResourceInfo {
    /// `v1` or `apps/v1`.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// `pods` or `deployments.apps`: how kube-apiserver names the resource in messages.
    pub fn qualified(&self) -> String {
        if self.group.is_empty() {
            self.resource.to_string()
        } else {
            format!("{}.{}", self.resource, self.group)
        }
    }

    pub fn has_status(&self) -> bool {
        self.subresources.contains(&"status")
    }

    /// The store prefix for this resource, optionally narrowed to one namespace.
    pub fn prefix(&self, namespace: Option<&str>) -> String {
        match namespace {
            Some(ns) if self.namespaced => format!("/registry/{}/{}/", self.resource, ns),
            _ => format!("/registry/{}/", self.resource),
        }
    }

    pub fn key(&self, namespace: Option<&str>, name: &str) -> String {
        format!("{}{}", self.prefix(namespace), name)
    }
}

fn normalize<T: DeserializeOwned + Serialize>(value: &Value) -> Result<Value, DecodeError> {
    let typed: T = serde_path_to_error::deserialize(value.clone()).map_err(|e| {
        let message = e.inner().to_string();
        // serde reports a missing field at its parent's path; name the field itself.
        let missing = message
            .strip_prefix("missing field `")
            .and_then(|m| m.strip_suffix('`'));
        let mut path = e.path().to_string();
        if path == "." {
            path.clear();
        }
        match missing {
            Some(field) => DecodeError {
                path: if path.is_empty() {
                    field.to_string()
                } else {
                    format!("{path}.{field}")
                },
                message: "Required value".to_string(),
                missing_field: true,
            },
            None => DecodeError {
                path,
                message,
                missing_field: false,
            },
        }
    })?;
    serde_json::to_value(typed).map_err(|e| DecodeError {
        path: String::new(),
        message: e.to_string(),
        missing_field: false,
    })
}

fn schema<T: schemars::JsonSchema>(
    gen: &mut schemars::gen::SchemaGenerator,
) -> schemars::schema::Schema {
    gen.subschema_for::<T>()
}

fn entry<T>(
    short_names: &'static [&'static str],
    categories: &'static [&'static str],
    subresources: &'static [&'static str],
) -> ResourceInfo
where
    T: Resource + DeserializeOwned + Serialize + schemars::JsonSchema + 'static,
    T::Scope: 'static,
{
    ResourceInfo {
        group: T::GROUP,
        version: T::VERSION,
        resource: T::URL_PATH_SEGMENT,
        singular: T::KIND.to_ascii_lowercase(),
        kind: T::KIND,
        list_kind: format!("{}List", T::KIND),
        namespaced: TypeId::of::<T::Scope>() == TypeId::of::<NamespaceResourceScope>(),
        short_names,
        categories,
        subresources,
        verbs: ALL_VERBS,
        normalize: normalize::<T>,
        schema: schema::<T>,
    }
}

/// A create-only resource answered on the spot (SelfSubjectAccessReview).
fn review<T>() -> ResourceInfo
where
    T: Resource + DeserializeOwned + Serialize + schemars::JsonSchema + 'static,
    T::Scope: 'static,
{
    ResourceInfo {
        verbs: &["create"],
        ..entry::<T>(&[], &[], &[])
    }
}

/// The one registry the server uses (built once: it never changes at run time).
pub fn registry() -> &'static Registry {
    static REGISTRY: std::sync::LazyLock<Registry> = std::sync::LazyLock::new(Registry::new);
    &REGISTRY
}

/// All served resources.
#[derive(Debug)]
pub struct Registry {
    resources: Vec<ResourceInfo>,
}

impl Default for Registry {
    fn default() -> Self {
        Self::new()
    }
}

impl Registry {
    pub fn new() -> Self {
        const ALL: &[&str] = &["all"];
        const STATUS: &[&str] = &["status"];
        const NONE: &[&str] = &[];
        const SCALABLE: &[&str] = &["status", "scale"];
        const POD: &[&str] = &["status", "binding", "eviction"];
        let resources = vec![
            entry::<core::v1::Namespace>(&["ns"], NONE, &["status", "finalize"]),
            entry::<core::v1::Pod>(&["po"], ALL, POD),
            entry::<core::v1::Node>(&["no"], NONE, STATUS),
            entry::<core::v1::Service>(&["svc"], ALL, STATUS),
            entry::<core::v1::Endpoints>(&["ep"], NONE, NONE),
            entry::<core::v1::ConfigMap>(&["cm"], NONE, NONE),
            entry::<core::v1::Secret>(NONE, NONE, NONE),
            entry::<core::v1::ServiceAccount>(&["sa"], NONE, NONE),
            entry::<core::v1::Event>(&["ev"], NONE, NONE),
            entry::<core::v1::PersistentVolume>(&["pv"], NONE, STATUS),
            entry::<core::v1::PersistentVolumeClaim>(&["pvc"], NONE, STATUS),
            entry::<apps::v1::Deployment>(&["deploy"], ALL, SCALABLE),
            entry::<apps::v1::ReplicaSet>(&["rs"], ALL, SCALABLE),
            entry::<apps::v1::DaemonSet>(&["ds"], ALL, STATUS),
            entry::<discovery::v1::EndpointSlice>(NONE, NONE, NONE),
            entry::<coordination::v1::Lease>(NONE, NONE, NONE),
            entry::<networking::v1::NetworkPolicy>(&["netpol"], NONE, NONE),
            entry::<storage::v1::StorageClass>(&["sc"], NONE, NONE),
            entry::<storage::v1::CSIDriver>(NONE, NONE, NONE),
            entry::<storage::v1::CSINode>(NONE, NONE, NONE),
            entry::<storage::v1::VolumeAttachment>(NONE, NONE, STATUS),
            entry::<certificates::v1::CertificateSigningRequest>(&["csr"], NONE, STATUS),
            review::<authorization::v1::SelfSubjectAccessReview>(),
        ];
        Registry { resources }
    }

    pub fn all(&self) -> &[ResourceInfo] {
        &self.resources
    }

    pub fn find(&self, group: &str, version: &str, resource: &str) -> Option<&ResourceInfo> {
        // (returns a borrow of self; through registry() that is 'static)
        self.resources
            .iter()
            .find(|r| r.group == group && r.version == version && r.resource == resource)
    }

    pub fn find_kind(&self, group: &str, kind: &str) -> Option<&ResourceInfo> {
        self.resources
            .iter()
            .find(|r| r.group == group && r.kind == kind)
    }

    /// The served groups in discovery order (core first), each with its one version.
    pub fn groups(&self) -> Vec<(&'static str, &'static str)> {
        let mut out: Vec<(&'static str, &'static str)> = Vec::new();
        for r in &self.resources {
            if !out.iter().any(|(g, v)| *g == r.group && *v == r.version) {
                out.push((r.group, r.version));
            }
        }
        out
    }

    pub fn in_group(&self, group: &str, version: &str) -> impl Iterator<Item = &ResourceInfo> {
        let (group, version) = (group.to_string(), version.to_string());
        self.resources
            .iter()
            .filter(move |r| r.group == group && r.version == version)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_generated_from_types() {
        let reg = Registry::new();
        let pods = reg.find("", "v1", "pods").unwrap();
        assert!(pods.namespaced);
        assert_eq!(pods.kind, "Pod");
        assert_eq!(
            pods.key(Some("default"), "web"),
            "/registry/pods/default/web"
        );
        let nodes = reg.find("", "v1", "nodes").unwrap();
        assert!(!nodes.namespaced);
        assert_eq!(nodes.key(None, "n1"), "/registry/nodes/n1");
        let deploy = reg.find("apps", "v1", "deployments").unwrap();
        assert_eq!(deploy.qualified(), "deployments.apps");
        assert_eq!(reg.groups()[0], ("", "v1"));
    }

    #[test]
    fn decode_errors_name_the_field() {
        let reg = Registry::new();
        let pods = reg.find("", "v1", "pods").unwrap();
        let bad = serde_json::json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x"},
            "spec": {"containers": [{"name": "c", "ports": [{"containerPort": "eighty"}]}]}});
        let err = (pods.normalize)(&bad).unwrap_err();
        assert_eq!(err.path, "spec.containers[0].ports[0].containerPort");
        // k8s-openapi fills absent required fields with defaults; validate.rs reports them.
        let missing = serde_json::json!({"metadata": {"name": "x"},
            "spec": {"containers": [{"image": "busybox"}]}});
        let ok = (pods.normalize)(&missing).unwrap();
        assert_eq!(ok["spec"]["containers"][0]["name"], "");
    }
}
