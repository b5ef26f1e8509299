//! Server-side printing: `meta.k8s.io/v1` `Table` responses (`Accept: application/json;as=Table`)
//! with the columns and cell values kube-apiserver produces, so `kubectl get` and
//! `kubectl get -o wide` print what users expect. Columns with priority 1 are the `-o wide` ones;
//! the server always fills them, as upstream does, and kubectl hides them.
//!
//! The table's `metadata` is left empty: the list handler owns `resourceVersion` and `continue`.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Map, Value};

use super::patch::is_builtin_resource;
use super::selector::LabelSelector;

/// The `includeObject` query parameter: what each row's `object` carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IncludeObject {
    None,
    /// Upstream's default: a `PartialObjectMetadata` with the object's metadata.
    #[default]
    Metadata,
    Object,
}

impl IncludeObject {
    /// Parses the query value; `None` for anything upstream would reject with 400.
    pub fn parse(value: &str) -> Option<IncludeObject> {
        match value {
            "None" => Some(IncludeObject::None),
            "Metadata" | "" => Some(IncludeObject::Metadata),
            "Object" => Some(IncludeObject::Object),
            _ => None,
        }
    }
}

/// Builds the `Table` for `objects` of `resource` (plural, optionally `plural.group` or with a
/// `/subresource`). `now` is the reference point for AGE-style cells, so tests are repeatable.
pub fn to_table(
    resource: &str,
    objects: &[Value],
    include_object: IncludeObject,
    now: SystemTime,
) -> Value {
    let printer = printer(resource);
    let rows: Vec<Value> = objects
        .iter()
        .map(|obj| {
            let mut row = Map::new();
            row.insert("cells".into(), Value::Array((printer.row)(obj, now)));
            if let Some(conditions) = row_conditions(plural(resource), obj) {
                row.insert("conditions".into(), conditions);
            }
            let object = match include_object {
                IncludeObject::None => Value::Null,
                IncludeObject::Metadata => json!({
                    "kind": "PartialObjectMetadata",
                    "apiVersion": "meta.k8s.io/v1",
                    "metadata": obj.get("metadata").cloned().unwrap_or_else(|| json!({})),
                }),
                IncludeObject::Object => obj.clone(),
            };
            row.insert("object".into(), object);
            Value::Object(row)
        })
        .collect();
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {},
        "columnDefinitions": printer.columns,
        "rows": rows,
    })
}

fn plural(resource: &str) -> &str {
    let base = resource.split('/').next().unwrap_or(resource);
    base.split('.').next().unwrap_or(base)
}

type RowFn = fn(&Value, SystemTime) -> Vec<Value>;

struct Printer {
    columns: Vec<Value>,
    row: RowFn,
}

struct Col {
    name: &'static str,
    ty: &'static str,
    format: &'static str,
    priority: u8,
    description: &'static str,
}

const fn col(name: &'static str, description: &'static str) -> Col {
    Col {
        name,
        ty: "string",
        format: "",
        priority: 0,
        description,
    }
}

impl Col {
    const fn wide(mut self) -> Col {
        self.priority = 1;
        self
    }

    const fn integer(mut self) -> Col {
        self.ty = "integer";
        self
    }

    const fn boolean(mut self) -> Col {
        self.ty = "boolean";
        self
    }
}

const NAME: Col = Col {
    name: "Name",
    ty: "string",
    format: "name",
    priority: 0,
    description: "Name must be unique within a namespace. It is used to identify the object.",
};
const AGE: Col = col(
    "Age",
    "Time since the object was created (metadata.creationTimestamp).",
);
const CONTAINERS: Col = col("Containers", "Names of each container in the template.").wide();
const IMAGES: Col = col(
    "Images",
    "Images referenced by each container in the template.",
)
.wide();
const SELECTOR: Col = col("Selector", "Label query over the pods this object manages.").wide();

fn columns(cols: Vec<Col>) -> Vec<Value> {
    cols.into_iter()
        .map(|c| {
            json!({
                "name": c.name,
                "type": c.ty,
                "format": c.format,
                "description": c.description,
                "priority": c.priority,
            })
        })
        .collect()
}

fn printer(resource: &str) -> Printer {
    let (cols, row): (Vec<Col>, RowFn) = match plural(resource) {
        "pods" => (
            vec![
                NAME,
                col(
                    "Ready",
                    "Ready containers out of all containers in the pod.",
                ),
                col("Status", "The aggregate status of the pod's containers."),
                col(
                    "Restarts",
                    "Container restarts in the pod and how long ago the last one was.",
                ),
                AGE,
                col("IP", "The pod's IP address.").wide(),
                col("Node", "The node the pod is bound to.").wide(),
                col(
                    "Nominated Node",
                    "The node the scheduler nominated for preemption.",
                )
                .wide(),
                col(
                    "Readiness Gates",
                    "Readiness gates that are true out of all.",
                )
                .wide(),
            ],
            pod_row,
        ),
        "nodes" => (
            vec![
                NAME,
                col("Status", "Readiness and schedulability of the node."),
                col("Roles", "Roles from node-role.kubernetes.io/<role> labels."),
                AGE,
                col("Version", "Kubelet version reported by the node."),
                col("Internal-IP", "The node's internal IP address.").wide(),
                col("External-IP", "The node's external IP address.").wide(),
                col("OS-Image", "OS image reported by the node.").wide(),
                col("Kernel-Version", "Kernel version reported by the node.").wide(),
                col("Container-Runtime", "Container runtime and version.").wide(),
            ],
            node_row,
        ),
        "namespaces" => (
            vec![NAME, col("Status", "The namespace's lifecycle phase."), AGE],
            |o, now| vec![s(o, "/metadata/name"), s(o, "/status/phase"), age(o, now)],
        ),
        "services" => (
            vec![
                NAME,
                col("Type", "How the service is exposed."),
                col("Cluster-IP", "The service's cluster IP."),
                col("External-IP", "External IPs or load balancer ingress."),
                col("Port(s)", "Service ports, with node ports where allocated."),
                AGE,
                col("Selector", "Label query over the pods backing the service.").wide(),
            ],
            service_row,
        ),
        "endpoints" => (
            vec![
                NAME,
                col(
                    "Endpoints",
                    "The first addresses and ports of the endpoints.",
                ),
                AGE,
            ],
            |o, now| {
                vec![
                    s(o, "/metadata/name"),
                    format_endpoints(o).into(),
                    age(o, now),
                ]
            },
        ),
        "endpointslices" => (
            vec![
                NAME,
                col("AddressType", "The type of address the slice carries."),
                col("Ports", "The slice's ports."),
                col("Endpoints", "The first addresses in the slice."),
                AGE,
            ],
            endpointslice_row,
        ),
        "configmaps" => (
            vec![
                NAME,
                col("Data", "Number of data and binaryData keys."),
                AGE,
            ],
            |o, now| {
                let n = len_at(o, "/data") + len_at(o, "/binaryData");
                vec![s(o, "/metadata/name"), n.into(), age(o, now)]
            },
        ),
        "secrets" => (
            vec![
                NAME,
                col("Type", "The secret's type."),
                col("Data", "Number of data keys."),
                AGE,
            ],
            |o, now| {
                vec![
                    s(o, "/metadata/name"),
                    s(o, "/type"),
                    len_at(o, "/data").into(),
                    age(o, now),
                ]
            },
        ),
        "serviceaccounts" => (
            vec![NAME, col("Secrets", "Number of referenced secrets."), AGE],
            |o, now| {
                vec![
                    s(o, "/metadata/name"),
                    len_at(o, "/secrets").into(),
                    age(o, now),
                ]
            },
        ),
        "events" => (
            vec![
                col("Last Seen", "Time since the event was last observed."),
                col("Type", "Normal or Warning."),
                col("Reason", "Short machine-readable reason."),
                col("Object", "The object the event is about."),
                col("Subobject", "The part of the object the event is about.").wide(),
                col("Source", "The component that reported the event.").wide(),
                col("Message", "Human-readable description."),
                col("First Seen", "Time since the event was first observed.").wide(),
                col("Count", "How many times the event occurred.").wide(),
                Col {
                    priority: 1,
                    ..NAME
                },
            ],
            event_row,
        ),
        "deployments" => (
            vec![
                NAME,
                col("Ready", "Ready replicas out of desired replicas."),
                col("Up-to-date", "Replicas updated to the current template."),
                col("Available", "Replicas available to users."),
                AGE,
                CONTAINERS,
                IMAGES,
                SELECTOR,
            ],
            deployment_row,
        ),
        "replicasets" | "replicationcontrollers" => (
            vec![
                NAME,
                col("Desired", "Desired replicas.").integer(),
                col("Current", "Observed replicas.").integer(),
                col("Ready", "Ready replicas.").integer(),
                AGE,
                CONTAINERS,
                IMAGES,
                SELECTOR,
            ],
            replicaset_row,
        ),
        "daemonsets" => (
            vec![
                NAME,
                col("Desired", "Nodes that should run the daemon pod.").integer(),
                col("Current", "Nodes running at least one daemon pod.").integer(),
                col("Ready", "Nodes with a ready daemon pod.").integer(),
                col("Up-to-date", "Nodes running the updated daemon pod.").integer(),
                col("Available", "Nodes with an available daemon pod.").integer(),
                col("Node Selector", "The pod template's node selector."),
                AGE,
                CONTAINERS,
                IMAGES,
                SELECTOR,
            ],
            daemonset_row,
        ),
        "statefulsets" => (
            vec![
                NAME,
                col("Ready", "Ready replicas out of desired replicas."),
                AGE,
                CONTAINERS,
                IMAGES,
            ],
            |o, now| {
                let mut cells = vec![
                    s(o, "/metadata/name"),
                    format!("{}/{}", int(o, "/status/readyReplicas"), replicas(o)).into(),
                    age(o, now),
                ];
                cells.extend(container_cells(o, "/spec/template/spec"));
                cells
            },
        ),
        "jobs" => (
            vec![
                NAME,
                col("Status", "The job's state."),
                col("Completions", "Succeeded pods out of desired completions."),
                col("Duration", "Time the job took or has been running."),
                AGE,
                CONTAINERS,
                IMAGES,
                SELECTOR,
            ],
            job_row,
        ),
        "cronjobs" => (
            vec![
                NAME,
                col("Schedule", "The cron schedule."),
                col("Timezone", "The schedule's time zone."),
                col("Suspend", "Whether new runs are suspended.").boolean(),
                col("Active", "Number of running jobs.").integer(),
                col("Last Schedule", "Time since the job was last scheduled."),
                AGE,
                CONTAINERS,
                IMAGES,
                SELECTOR,
            ],
            cronjob_row,
        ),
        "leases" => (
            vec![NAME, col("Holder", "The current holder of the lease."), AGE],
            |o, now| {
                vec![
                    s(o, "/metadata/name"),
                    s(o, "/spec/holderIdentity"),
                    age(o, now),
                ]
            },
        ),
        "persistentvolumes" => (
            vec![
                NAME,
                col("Capacity", "The volume's storage capacity."),
                col("Access Modes", "RWO, ROX, RWX, RWOP."),
                col(
                    "Reclaim Policy",
                    "What happens to the volume when released.",
                ),
                col("Status", "The volume's phase."),
                col("Claim", "The claim bound to the volume."),
                col("StorageClass", "The volume's storage class."),
                col("VolumeAttributesClass", "The volume's attributes class."),
                col("Reason", "Why the volume is in its phase."),
                AGE,
                col("VolumeMode", "Filesystem or Block.").wide(),
            ],
            pv_row,
        ),
        "persistentvolumeclaims" => (
            vec![
                NAME,
                col("Status", "The claim's phase."),
                col("Volume", "The volume bound to the claim."),
                col("Capacity", "Capacity of the bound volume."),
                col("Access Modes", "RWO, ROX, RWX, RWOP."),
                col("StorageClass", "The claim's storage class."),
                col("VolumeAttributesClass", "The claim's attributes class."),
                AGE,
                col("VolumeMode", "Filesystem or Block.").wide(),
            ],
            pvc_row,
        ),
        "storageclasses" => (
            vec![
                NAME,
                col("Provisioner", "The volume plugin that provisions volumes."),
                col("ReclaimPolicy", "Reclaim policy of provisioned volumes."),
                col(
                    "VolumeBindingMode",
                    "When volumes are bound and provisioned.",
                ),
                col("AllowVolumeExpansion", "Whether volumes can be expanded."),
                AGE,
            ],
            storageclass_row,
        ),
        "certificatesigningrequests" => (
            vec![
                NAME,
                AGE,
                col("SignerName", "The signer asked to sign the request."),
                col("Requestor", "The user who created the request."),
                col("RequestedDuration", "The requested certificate lifetime."),
                col("Condition", "Approval and issuance state."),
            ],
            csr_row,
        ),
        "networkpolicies" => (
            vec![
                NAME,
                col("Pod-Selector", "Pods the policy applies to."),
                AGE,
            ],
            |o, now| {
                let sel = match o.pointer("/spec/podSelector") {
                    // A missing podSelector is the empty selector: the policy selects every pod.
                    None | Some(Value::Null) => "<none>".to_string(),
                    Some(_) => format_label_selector(o, "/spec/podSelector"),
                };
                vec![s(o, "/metadata/name"), sel.into(), age(o, now)]
            },
        ),
        "rolebindings" | "clusterrolebindings" => (
            vec![
                NAME,
                col("Role", "The referenced role, as Kind/name."),
                AGE,
                col("Users", "Users bound.").wide(),
                col("Groups", "Groups bound.").wide(),
                col(
                    "ServiceAccounts",
                    "Service accounts bound, as namespace/name.",
                )
                .wide(),
            ],
            rolebinding_row,
        ),
        "ingresses" => (
            vec![
                NAME,
                col("Class", "The ingress class."),
                col("Hosts", "Hosts the rules match."),
                col("Address", "Load balancer ingress points."),
                col("Ports", "Ports the ingress serves."),
                AGE,
            ],
            ingress_row,
        ),
        "ingressclasses" => (
            vec![
                NAME,
                col("Controller", "The controller that implements the class."),
                col("Parameters", "The resource holding the class's parameters."),
                AGE,
            ],
            |o, now| {
                let parameters = match o.pointer("/spec/parameters") {
                    Some(p) if p.is_object() => {
                        let mut out = str_of(p, "/kind").to_string();
                        if let Some(group) = p.get("apiGroup").and_then(Value::as_str) {
                            out = format!("{out}.{group}");
                        }
                        format!("{out}/{}", str_of(p, "/name"))
                    }
                    _ => "<none>".into(),
                };
                vec![
                    s(o, "/metadata/name"),
                    s(o, "/spec/controller"),
                    parameters.into(),
                    age(o, now),
                ]
            },
        ),
        "priorityclasses" => (
            vec![
                NAME,
                col("Value", "The priority value.").integer(),
                col("Global-Default", "Whether this is the default class.").boolean(),
                AGE,
                col(
                    "PreemptionPolicy",
                    "Whether pods of this class preempt others.",
                ),
            ],
            |o, now| {
                vec![
                    s(o, "/metadata/name"),
                    int(o, "/value").into(),
                    o.get("globalDefault")
                        .and_then(Value::as_bool)
                        .unwrap_or(false)
                        .into(),
                    age(o, now),
                    s(o, "/preemptionPolicy"),
                ]
            },
        ),
        "runtimeclasses" => (
            vec![NAME, col("Handler", "The CRI handler."), AGE],
            |o, now| vec![s(o, "/metadata/name"), s(o, "/handler"), age(o, now)],
        ),
        "poddisruptionbudgets" => (
            vec![
                NAME,
                col("Min Available", "Pods that must stay available."),
                col("Max Unavailable", "Pods that may be unavailable."),
                col("Allowed Disruptions", "Disruptions allowed right now.").integer(),
                AGE,
            ],
            |o, now| {
                let int_or_string = |ptr: &str| -> Value {
                    match o.pointer(ptr) {
                        Some(Value::Number(n)) => n.to_string().into(),
                        Some(Value::String(v)) => v.as_str().into(),
                        _ => "N/A".into(),
                    }
                };
                vec![
                    s(o, "/metadata/name"),
                    int_or_string("/spec/minAvailable"),
                    int_or_string("/spec/maxUnavailable"),
                    int(o, "/status/disruptionsAllowed").into(),
                    age(o, now),
                ]
            },
        ),
        "controllerrevisions" => (
            vec![
                NAME,
                col("Controller", "The owning controller, as kind.group/name."),
                col("Revision", "The revision number."),
                AGE,
            ],
            |o, now| {
                let controller = arr(o, "/metadata/ownerReferences")
                    .iter()
                    .find(|r| r.get("controller").and_then(Value::as_bool) == Some(true))
                    .map(|r| {
                        let group = str_of(r, "/apiVersion")
                            .rsplit_once('/')
                            .map(|(g, _)| g)
                            .unwrap_or("");
                        let kind = str_of(r, "/kind");
                        let gk = if group.is_empty() {
                            kind.to_string()
                        } else {
                            format!("{kind}.{group}")
                        };
                        if gk.is_empty() {
                            str_of(r, "/name").to_string()
                        } else {
                            format!("{}/{}", gk.to_lowercase(), str_of(r, "/name"))
                        }
                    })
                    .unwrap_or_else(|| "<none>".into());
                vec![
                    s(o, "/metadata/name"),
                    controller.into(),
                    int(o, "/revision").into(),
                    age(o, now),
                ]
            },
        ),
        "mutatingwebhookconfigurations" | "validatingwebhookconfigurations" => (
            vec![NAME, col("Webhooks", "Number of webhooks.").integer(), AGE],
            |o, now| {
                vec![
                    s(o, "/metadata/name"),
                    len_at(o, "/webhooks").into(),
                    age(o, now),
                ]
            },
        ),
        "csinodes" => (
            vec![
                NAME,
                col("Drivers", "Number of CSI drivers on the node.").integer(),
                AGE,
            ],
            |o, now| {
                vec![
                    s(o, "/metadata/name"),
                    len_at(o, "/spec/drivers").into(),
                    age(o, now),
                ]
            },
        ),
        "volumeattachments" => (
            vec![
                NAME,
                Col {
                    format: "name",
                    ..col("Attacher", "The volume driver that attaches.")
                },
                col("PV", "The attached persistent volume."),
                col("Node", "The node the volume is attached to."),
                col("Attached", "Whether the volume is attached.").boolean(),
                AGE,
            ],
            |o, now| {
                vec![
                    s(o, "/metadata/name"),
                    s(o, "/spec/attacher"),
                    s(o, "/spec/source/persistentVolumeName"),
                    s(o, "/spec/nodeName"),
                    o.pointer("/status/attached")
                        .and_then(Value::as_bool)
                        .unwrap_or(false)
                        .into(),
                    age(o, now),
                ]
            },
        ),
        "podtemplates" => (
            vec![
                NAME,
                col("Containers", "Names of each container in the template."),
                col(
                    "Images",
                    "Images referenced by each container in the template.",
                ),
                col("Pod Labels", "The labels of the pod template."),
            ],
            |o, _| {
                let mut cells = vec![s(o, "/metadata/name")];
                cells.extend(container_cells(o, "/template/spec"));
                cells.push(format_labels(&string_map(o, "/template/metadata/labels")).into());
                cells
            },
        ),
        // Custom resources without printer columns: kube-apiserver's CRD default is an Age
        // column of type date whose cell is already a human duration.
        _ if !is_builtin_resource(resource) => (vec![NAME, Col { ty: "date", ..AGE }], |o, now| {
            vec![s(o, "/metadata/name"), age(o, now)]
        }),
        // Built-in types without a printer (roles, clusterroles, CRDs, ...) get the generic
        // convertor's "Created At" column, an RFC 3339 timestamp.
        _ => (
            vec![
                NAME,
                Col {
                    ty: "date",
                    ..col("Created At", "When the object was created.")
                },
            ],
            |o, _| {
                let created = time_at(o, "/metadata/creationTimestamp")
                    .map(format_rfc3339)
                    .unwrap_or_else(|| "0001-01-01T00:00:00Z".into());
                vec![s(o, "/metadata/name"), created.into()]
            },
        ),
    };
    Printer {
        columns: columns(cols),
        row,
    }
}

// ---------------------------------------------------------------------------------------------
// Value helpers: missing fields read as Go zero values, because upstream prints typed structs.

fn str_of<'a>(o: &'a Value, ptr: &str) -> &'a str {
    o.pointer(ptr).and_then(Value::as_str).unwrap_or("")
}

fn s(o: &Value, ptr: &str) -> Value {
    Value::String(str_of(o, ptr).to_string())
}

fn int(o: &Value, ptr: &str) -> i64 {
    o.pointer(ptr).and_then(Value::as_i64).unwrap_or(0)
}

fn arr<'a>(o: &'a Value, ptr: &str) -> &'a [Value] {
    o.pointer(ptr)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

fn len_at(o: &Value, ptr: &str) -> i64 {
    match o.pointer(ptr) {
        Some(Value::Object(m)) => m.len() as i64,
        Some(Value::Array(a)) => a.len() as i64,
        _ => 0,
    }
}

/// upstream's `printBoolPtr`: `True`/`False`, `<unset>` when absent.
fn bool_ptr(o: &Value, ptr: &str) -> Value {
    match o.pointer(ptr).and_then(Value::as_bool) {
        Some(true) => "True".into(),
        Some(false) => "False".into(),
        None => "<unset>".into(),
    }
}

fn or_none(v: &str) -> Value {
    if v.is_empty() { "<none>" } else { v }.into()
}

fn replicas(o: &Value) -> i64 {
    // API defaulting sets replicas to 1 when the client omits it.
    o.pointer("/spec/replicas")
        .and_then(Value::as_i64)
        .unwrap_or(1)
}

fn string_map(o: &Value, ptr: &str) -> BTreeMap<String, String> {
    o.pointer(ptr)
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

/// `k=v,k2=v2` sorted by key, `<none>` when empty (upstream's `labels.FormatLabels`).
fn format_labels(m: &BTreeMap<String, String>) -> String {
    if m.is_empty() {
        return "<none>".into();
    }
    m.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// A `metav1.LabelSelector` as a selector string; `""` when it is null or empty (what a
/// deployment row shows), `<invalid>` when it cannot be converted.
fn selector_string(o: &Value, ptr: &str) -> String {
    match o.pointer(ptr) {
        None | Some(Value::Null) => String::new(),
        Some(v) => LabelSelector::from_k8s(v)
            .map(|s| s.to_string())
            .unwrap_or_else(|_| "<invalid>".into()),
    }
}

/// upstream's `metav1.FormatLabelSelector`: like [`selector_string`] but `<none>` when empty.
fn format_label_selector(o: &Value, ptr: &str) -> String {
    match o.pointer(ptr) {
        None | Some(Value::Null) => "<none>".into(),
        Some(v) => match LabelSelector::from_k8s(v) {
            Ok(s) if s.is_everything() => "<none>".into(),
            Ok(s) => s.to_string(),
            Err(_) => "<error>".into(),
        },
    }
}

fn container_cells(o: &Value, pod_spec: &str) -> [Value; 2] {
    let containers = arr(o, &format!("{pod_spec}/containers"));
    let names: Vec<&str> = containers.iter().map(|c| str_of(c, "/name")).collect();
    let images: Vec<&str> = containers.iter().map(|c| str_of(c, "/image")).collect();
    [names.join(",").into(), images.join(",").into()]
}

fn condition<'a>(o: &'a Value, ptr: &str, ty: &str) -> Option<&'a Value> {
    arr(o, ptr).iter().find(|c| str_of(c, "/type") == ty)
}

fn condition_true(o: &Value, ptr: &str, ty: &str) -> bool {
    condition(o, ptr, ty).is_some_and(|c| str_of(c, "/status") == "True")
}

// ---------------------------------------------------------------------------------------------
// Time

fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Parses the RFC 3339 timestamps Kubernetes stores (`Time` and `MicroTime`).
pub fn parse_time(text: &str) -> Option<SystemTime> {
    let b = text.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let part = text.get(r)?;
        part.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| part.parse().ok())?
    };
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[13] != b':' || b[16] != b':' {
        return None;
    }
    if !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 {
        return None;
    }
    let mut i = 19;
    let mut nanos: u32 = 0;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        let frac = &text[start..i];
        if frac.is_empty() {
            return None;
        }
        let digits: String = frac.chars().chain(std::iter::repeat('0')).take(9).collect();
        nanos = digits.parse().ok()?;
    }
    let offset = match b.get(i)? {
        b'Z' | b'z' if i + 1 == b.len() => 0,
        sign @ (b'+' | b'-') if i + 6 == b.len() && b[i + 3] == b':' => {
            let secs = num(i + 1..i + 3)? * 3600 + num(i + 4..i + 6)? * 60;
            if *sign == b'+' {
                secs
            } else {
                -secs
            }
        }
        _ => return None,
    };
    let secs =
        days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second - offset;
    let t = if secs >= 0 {
        UNIX_EPOCH + Duration::new(secs.unsigned_abs(), nanos)
    } else {
        UNIX_EPOCH - Duration::from_secs(secs.unsigned_abs()) + Duration::from_nanos(nanos.into())
    };
    Some(t)
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// Seconds-precision UTC RFC 3339, the form `metav1.Time` serializes to.
pub fn format_rfc3339(t: SystemTime) -> String {
    let secs: i64 = match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_secs() as i64,
        Err(e) => -(e.duration().as_secs_f64().ceil() as i64),
    };
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Signed nanoseconds from `then` to `now`.
fn since(then: SystemTime, now: SystemTime) -> i128 {
    match now.duration_since(then) {
        Ok(d) => d.as_nanos() as i128,
        Err(e) => -(e.duration().as_nanos() as i128),
    }
}

/// kubectl's compact duration (`apimachinery/pkg/util/duration.HumanDuration`): precise while
/// short, coarser as it grows, so AGE columns stay narrow.
pub fn human_duration_nanos(nanos: i128) -> String {
    const SEC: i128 = 1_000_000_000;
    let seconds = nanos / SEC;
    if seconds < -1 {
        return "<invalid>".into();
    } else if seconds < 0 {
        return "0s".into();
    } else if seconds < 60 * 2 {
        return format!("{seconds}s");
    }
    let minutes = seconds / 60;
    if minutes < 10 {
        let s = seconds % 60;
        return if s == 0 {
            format!("{minutes}m")
        } else {
            format!("{minutes}m{s}s")
        };
    } else if minutes < 60 * 3 {
        return format!("{minutes}m");
    }
    let hours = minutes / 60;
    if hours < 8 {
        let m = minutes % 60;
        return if m == 0 {
            format!("{hours}h")
        } else {
            format!("{hours}h{m}m")
        };
    } else if hours < 48 {
        return format!("{hours}h");
    } else if hours < 24 * 8 {
        let h = hours % 24;
        return if h == 0 {
            format!("{}d", hours / 24)
        } else {
            format!("{}d{h}h", hours / 24)
        };
    } else if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    } else if hours < 24 * 365 * 8 {
        let dy = (hours / 24) % 365;
        return if dy == 0 {
            format!("{}y", hours / 24 / 365)
        } else {
            format!("{}y{dy}d", hours / 24 / 365)
        };
    }
    format!("{}y", hours / 24 / 365)
}

pub fn human_duration(d: Duration) -> String {
    human_duration_nanos(d.as_nanos() as i128)
}

fn time_at(o: &Value, ptr: &str) -> Option<SystemTime> {
    parse_time(str_of(o, ptr))
}

/// Time since the timestamp at `ptr`, `<unknown>` when it is unset (upstream's zero time).
fn since_at(o: &Value, ptr: &str, now: SystemTime) -> String {
    match time_at(o, ptr) {
        Some(t) => human_duration_nanos(since(t, now)),
        None => "<unknown>".into(),
    }
}

fn age(o: &Value, now: SystemTime) -> Value {
    since_at(o, "/metadata/creationTimestamp", now).into()
}

// ---------------------------------------------------------------------------------------------
// Pods

fn pod_row(pod: &Value, now: SystemTime) -> Vec<Value> {
    let status = pod_status(pod);
    let restarts = if status.restarts != 0 {
        match status.last_restart {
            Some(t) => format!(
                "{} ({} ago)",
                status.restarts,
                human_duration_nanos(since(t, now))
            ),
            None => status.restarts.to_string(),
        }
    } else {
        "0".to_string()
    };
    let mut ip = str_of(pod, "/status/podIPs/0/ip");
    if ip.is_empty() {
        ip = str_of(pod, "/status/podIP");
    }
    let gates = arr(pod, "/spec/readinessGates");
    let readiness = if gates.is_empty() {
        "<none>".to_string()
    } else {
        let ok = gates
            .iter()
            .filter(|g| condition_true(pod, "/status/conditions", str_of(g, "/conditionType")))
            .count();
        format!("{ok}/{}", gates.len())
    };
    vec![
        s(pod, "/metadata/name"),
        format!("{}/{}", status.ready, status.total).into(),
        status.reason.into(),
        restarts.into(),
        age(pod, now),
        or_none(ip),
        or_none(str_of(pod, "/spec/nodeName")),
        or_none(str_of(pod, "/status/nominatedNodeName")),
        readiness.into(),
    ]
}

struct PodStatus {
    reason: String,
    ready: usize,
    total: usize,
    restarts: i64,
    last_restart: Option<SystemTime>,
}

fn later(a: Option<SystemTime>, b: Option<SystemTime>) -> Option<SystemTime> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

/// kubectl's STATUS column: the phase, refined by the pod's reason, the first init container
/// that has not succeeded, then the first app container that is waiting or terminated.
fn pod_status(pod: &Value) -> PodStatus {
    let init_specs = arr(pod, "/spec/initContainers");
    let is_sidecar = |name: &str| {
        init_specs
            .iter()
            .any(|c| str_of(c, "/name") == name && str_of(c, "/restartPolicy") == "Always")
    };
    let total = arr(pod, "/spec/containers").len()
        + init_specs
            .iter()
            .filter(|c| str_of(c, "/restartPolicy") == "Always")
            .count();
    let mut ready = 0;
    let mut restarts = 0;
    let mut last_restart = None;
    let mut sidecar_restarts = 0;
    let mut sidecar_last_restart = None;

    let mut reason = str_of(pod, "/status/phase").to_string();
    let pod_reason = str_of(pod, "/status/reason");
    if !pod_reason.is_empty() {
        reason = pod_reason.to_string();
    }
    if condition(pod, "/status/conditions", "PodScheduled")
        .is_some_and(|c| str_of(c, "/reason") == "SchedulingGated")
    {
        reason = "SchedulingGated".into();
    }

    let mut initializing = false;
    for (i, c) in arr(pod, "/status/initContainerStatuses").iter().enumerate() {
        let count = int(c, "/restartCount");
        let finished = time_at(c, "/lastState/terminated/finishedAt");
        restarts += count;
        last_restart = later(last_restart, finished);
        let sidecar = is_sidecar(str_of(c, "/name"));
        if sidecar {
            sidecar_restarts += count;
            sidecar_last_restart = later(sidecar_last_restart, finished);
        }
        let terminated = c.pointer("/state/terminated").filter(|t| t.is_object());
        let waiting_reason = str_of(c, "/state/waiting/reason");
        if terminated.is_some_and(|t| int(t, "/exitCode") == 0) {
            continue;
        }
        if sidecar && c.get("started").and_then(Value::as_bool) == Some(true) {
            if c.get("ready").and_then(Value::as_bool) == Some(true) {
                ready += 1;
            }
            continue;
        }
        if let Some(t) = terminated {
            let r = str_of(t, "/reason");
            reason = if !r.is_empty() {
                format!("Init:{r}")
            } else if int(t, "/signal") != 0 {
                format!("Init:Signal:{}", int(t, "/signal"))
            } else {
                format!("Init:ExitCode:{}", int(t, "/exitCode"))
            };
        } else if !waiting_reason.is_empty() && waiting_reason != "PodInitializing" {
            reason = format!("Init:{waiting_reason}");
        } else {
            reason = format!("Init:{i}/{}", init_specs.len());
        }
        initializing = true;
        break;
    }

    if !initializing || condition_true(pod, "/status/conditions", "Initialized") {
        restarts = sidecar_restarts;
        last_restart = sidecar_last_restart;
        let mut has_running = false;
        for c in arr(pod, "/status/containerStatuses").iter().rev() {
            restarts += int(c, "/restartCount");
            last_restart = later(last_restart, time_at(c, "/lastState/terminated/finishedAt"));
            let terminated = c.pointer("/state/terminated").filter(|t| t.is_object());
            let waiting = str_of(c, "/state/waiting/reason");
            if !waiting.is_empty() {
                reason = waiting.to_string();
            } else if let Some(t) = terminated {
                let r = str_of(t, "/reason");
                reason = if !r.is_empty() {
                    r.to_string()
                } else if int(t, "/signal") != 0 {
                    format!("Signal:{}", int(t, "/signal"))
                } else {
                    format!("ExitCode:{}", int(t, "/exitCode"))
                };
            } else if c.get("ready").and_then(Value::as_bool) == Some(true)
                && c.pointer("/state/running").is_some_and(Value::is_object)
            {
                has_running = true;
                ready += 1;
            }
        }
        // A pod whose finished containers say Completed while others still run is not done.
        if reason == "Completed" && has_running {
            reason = if condition_true(pod, "/status/conditions", "Ready") {
                "Running".into()
            } else {
                "NotReady".into()
            };
        }
    }

    let deleting = pod
        .pointer("/metadata/deletionTimestamp")
        .is_some_and(|v| !v.is_null());
    let phase = str_of(pod, "/status/phase");
    if deleting && pod_reason == "NodeLost" {
        reason = "Unknown".into();
    } else if deleting && phase != "Succeeded" && phase != "Failed" {
        reason = "Terminating".into();
    }
    PodStatus {
        reason,
        ready,
        total,
        restarts,
        last_restart,
    }
}

/// Row conditions mark a pod that reached a terminal phase as `Completed`, so table clients can
/// set finished pods apart without reading the object; only pods carry them upstream.
fn row_conditions(plural: &str, obj: &Value) -> Option<Value> {
    if plural != "pods" {
        return None;
    }
    let (reason, message) = match str_of(obj, "/status/phase") {
        "Succeeded" => ("Succeeded", "The pod has completed successfully."),
        "Failed" => ("Failed", "The pod failed."),
        _ => return None,
    };
    Some(json!([{
        "type": "Completed",
        "status": "True",
        "reason": reason,
        "message": message,
    }]))
}

// ---------------------------------------------------------------------------------------------
// Nodes

fn node_row(node: &Value, now: SystemTime) -> Vec<Value> {
    let mut status = Vec::new();
    if let Some(c) = condition(node, "/status/conditions", "Ready") {
        status.push(if str_of(c, "/status") == "True" {
            "Ready"
        } else {
            "NotReady"
        });
    }
    if status.is_empty() {
        status.push("Unknown");
    }
    if node.pointer("/spec/unschedulable").and_then(Value::as_bool) == Some(true) {
        status.push("SchedulingDisabled");
    }
    let mut roles = BTreeSet::new();
    for (k, v) in string_map(node, "/metadata/labels") {
        if let Some(role) = k.strip_prefix("node-role.kubernetes.io/") {
            if !role.is_empty() {
                roles.insert(role.to_string());
            }
        } else if k == "kubernetes.io/role" && !v.is_empty() {
            roles.insert(v);
        }
    }
    let roles = if roles.is_empty() {
        "<none>".to_string()
    } else {
        roles.into_iter().collect::<Vec<_>>().join(",")
    };
    let address = |ty: &str| {
        or_none(
            arr(node, "/status/addresses")
                .iter()
                .find(|a| str_of(a, "/type") == ty)
                .map(|a| str_of(a, "/address"))
                .unwrap_or(""),
        )
    };
    let info = |field: &str| -> Value {
        let v = str_of(node, &format!("/status/nodeInfo/{field}"));
        if v.is_empty() { "<unknown>" } else { v }.into()
    };
    vec![
        s(node, "/metadata/name"),
        status.join(",").into(),
        roles.into(),
        age(node, now),
        s(node, "/status/nodeInfo/kubeletVersion"),
        address("InternalIP"),
        address("ExternalIP"),
        info("osImage"),
        info("kernelVersion"),
        info("containerRuntimeVersion"),
    ]
}

// ---------------------------------------------------------------------------------------------
// Services and endpoints

fn service_row(svc: &Value, now: SystemTime) -> Vec<Value> {
    let ty = str_of(svc, "/spec/type");
    let external_ips: Vec<&str> = arr(svc, "/spec/externalIPs")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let external = match ty {
        "ClusterIP" | "NodePort" | "" => {
            if external_ips.is_empty() {
                "<none>".to_string()
            } else {
                external_ips.join(",")
            }
        }
        "LoadBalancer" => {
            let mut all: Vec<&str> = load_balancer_ingress(svc).into_iter().collect();
            all.extend(external_ips);
            if all.is_empty() {
                "<pending>".to_string()
            } else {
                all.join(",")
            }
        }
        "ExternalName" => str_of(svc, "/spec/externalName").to_string(),
        _ => "<unknown>".to_string(),
    };
    let ports: Vec<String> = arr(svc, "/spec/ports")
        .iter()
        .map(|p| {
            let protocol = match str_of(p, "/protocol") {
                "" => "TCP",
                other => other,
            };
            let node_port = int(p, "/nodePort");
            if node_port != 0 {
                format!("{}:{node_port}/{protocol}", int(p, "/port"))
            } else {
                format!("{}/{protocol}", int(p, "/port"))
            }
        })
        .collect();
    let ports = if ports.is_empty() {
        "<none>".to_string()
    } else {
        ports.join(",")
    };
    let mut cluster_ip = str_of(svc, "/spec/clusterIPs/0");
    if cluster_ip.is_empty() {
        cluster_ip = str_of(svc, "/spec/clusterIP");
    }
    vec![
        s(svc, "/metadata/name"),
        ty.into(),
        or_none(cluster_ip),
        external.into(),
        ports.into(),
        age(svc, now),
        format_labels(&string_map(svc, "/spec/selector")).into(),
    ]
}

/// Load balancer ingress points (IP, else hostname), sorted and deduplicated as upstream.
fn load_balancer_ingress(o: &Value) -> BTreeSet<&str> {
    arr(o, "/status/loadBalancer/ingress")
        .iter()
        .map(|i| {
            let ip = str_of(i, "/ip");
            if ip.is_empty() {
                str_of(i, "/hostname")
            } else {
                ip
            }
        })
        .filter(|s| !s.is_empty())
        .collect()
}

fn join_host_port(ip: &str, port: i64) -> String {
    if ip.contains(':') {
        format!("[{ip}]:{port}")
    } else {
        format!("{ip}:{port}")
    }
}

/// Up to three ready `ip:port` pairs, then `+ N more...`, as kubectl shows them.
fn format_endpoints(ep: &Value) -> String {
    const MAX: usize = 3;
    let subsets = arr(ep, "/subsets");
    if subsets.is_empty() {
        return "<none>".into();
    }
    let mut list = Vec::new();
    let mut count = 0;
    let mut more = false;
    for ss in subsets {
        let addresses = arr(ss, "/addresses");
        let ports = arr(ss, "/ports");
        if ports.is_empty() {
            // Headless services may publish addresses without ports.
            count += addresses.len();
            for a in addresses {
                if list.len() == MAX {
                    more = true;
                    break;
                }
                list.push(str_of(a, "/ip").to_string());
            }
        } else {
            for p in ports {
                count += addresses.len();
                for a in addresses {
                    if list.len() == MAX {
                        more = true;
                        break;
                    }
                    list.push(join_host_port(str_of(a, "/ip"), int(p, "/port")));
                }
            }
        }
    }
    let joined = list.join(",");
    if more {
        format!("{joined} + {} more...", count - MAX)
    } else {
        joined
    }
}

fn list_with_more(list: Vec<String>, count: usize) -> String {
    const MAX: usize = 3;
    let joined = list.join(",");
    if count > MAX {
        format!("{joined} + {} more...", count - MAX)
    } else if joined.is_empty() {
        "<unset>".into()
    } else {
        joined
    }
}

fn endpointslice_row(o: &Value, now: SystemTime) -> Vec<Value> {
    let ports = arr(o, "/ports");
    let port_list: Vec<String> = ports
        .iter()
        .take(3)
        .map(|p| match p.get("port").and_then(Value::as_i64) {
            Some(n) => n.to_string(),
            None => "*".to_string(),
        })
        .collect();
    let addresses: Vec<&str> = arr(o, "/endpoints")
        .iter()
        .flat_map(|e| arr(e, "/addresses").iter().filter_map(Value::as_str))
        .collect();
    let addr_list: Vec<String> = addresses.iter().take(3).map(|a| a.to_string()).collect();
    vec![
        s(o, "/metadata/name"),
        s(o, "/addressType"),
        list_with_more(port_list, ports.len()).into(),
        list_with_more(addr_list, addresses.len()).into(),
        age(o, now),
    ]
}

// ---------------------------------------------------------------------------------------------
// Events

fn event_row(ev: &Value, now: SystemTime) -> Vec<Value> {
    let first = if time_at(ev, "/firstTimestamp").is_some() {
        since_at(ev, "/firstTimestamp", now)
    } else {
        since_at(ev, "/eventTime", now)
    };
    let mut last = if time_at(ev, "/lastTimestamp").is_some() {
        since_at(ev, "/lastTimestamp", now)
    } else {
        first.clone()
    };
    let mut count = int(ev, "/count");
    if ev.get("series").is_some_and(Value::is_object) {
        last = since_at(ev, "/series/lastObservedTime", now);
        count = int(ev, "/series/count");
    } else if count == 0 {
        // Events from the events.k8s.io API are singletons without a count.
        count = 1;
    }
    let kind = str_of(ev, "/involvedObject/kind").to_lowercase();
    let name = str_of(ev, "/involvedObject/name");
    let target = if name.is_empty() {
        kind
    } else {
        format!("{kind}/{name}")
    };
    let pick = |a: &str, b: &str| -> String {
        let v = str_of(ev, a);
        if v.is_empty() { str_of(ev, b) } else { v }.to_string()
    };
    let component = pick("/source/component", "/reportingComponent");
    let instance = pick("/source/host", "/reportingInstance");
    let source = if instance.is_empty() {
        component
    } else {
        format!("{component}, {instance}")
    };
    vec![
        last.into(),
        s(ev, "/type"),
        s(ev, "/reason"),
        target.into(),
        s(ev, "/involvedObject/fieldPath"),
        source.into(),
        str_of(ev, "/message").trim().into(),
        first.into(),
        count.into(),
        s(ev, "/metadata/name"),
    ]
}

// ---------------------------------------------------------------------------------------------
// Workloads

fn deployment_row(o: &Value, now: SystemTime) -> Vec<Value> {
    let mut cells = vec![
        s(o, "/metadata/name"),
        format!("{}/{}", int(o, "/status/readyReplicas"), replicas(o)).into(),
        int(o, "/status/updatedReplicas").into(),
        int(o, "/status/availableReplicas").into(),
        age(o, now),
    ];
    cells.extend(container_cells(o, "/spec/template/spec"));
    cells.push(selector_string(o, "/spec/selector").into());
    cells
}

fn replicaset_row(o: &Value, now: SystemTime) -> Vec<Value> {
    let mut cells = vec![
        s(o, "/metadata/name"),
        replicas(o).into(),
        int(o, "/status/replicas").into(),
        int(o, "/status/readyReplicas").into(),
        age(o, now),
    ];
    cells.extend(container_cells(o, "/spec/template/spec"));
    // ReplicationControllers carry a plain label map, ReplicaSets a LabelSelector; the kind
    // (or, failing that, the selector's shape) tells them apart.
    let is_rc = match str_of(o, "/kind") {
        "ReplicationController" => true,
        "ReplicaSet" => false,
        _ => {
            let sel = o.pointer("/spec/selector");
            sel.is_some_and(|v| {
                v.get("matchLabels").is_none()
                    && v.get("matchExpressions").is_none()
                    && v.as_object().is_some_and(|m| !m.is_empty())
            })
        }
    };
    let selector = if is_rc {
        format_labels(&string_map(o, "/spec/selector"))
    } else {
        format_label_selector(o, "/spec/selector")
    };
    cells.push(selector.into());
    cells
}

fn daemonset_row(o: &Value, now: SystemTime) -> Vec<Value> {
    let mut cells = vec![
        s(o, "/metadata/name"),
        int(o, "/status/desiredNumberScheduled").into(),
        int(o, "/status/currentNumberScheduled").into(),
        int(o, "/status/numberReady").into(),
        int(o, "/status/updatedNumberScheduled").into(),
        int(o, "/status/numberAvailable").into(),
        format_labels(&string_map(o, "/spec/template/spec/nodeSelector")).into(),
        age(o, now),
    ];
    cells.extend(container_cells(o, "/spec/template/spec"));
    cells.push(format_label_selector(o, "/spec/selector").into());
    cells
}

fn job_row(o: &Value, now: SystemTime) -> Vec<Value> {
    let succeeded = int(o, "/status/succeeded");
    let completions = match o.pointer("/spec/completions").and_then(Value::as_i64) {
        Some(c) => format!("{succeeded}/{c}"),
        None => {
            let parallelism = int(o, "/spec/parallelism");
            if parallelism > 1 {
                format!("{succeeded}/1 of {parallelism}")
            } else {
                format!("{succeeded}/1")
            }
        }
    };
    let duration = match (
        time_at(o, "/status/startTime"),
        time_at(o, "/status/completionTime"),
    ) {
        (None, _) => String::new(),
        (Some(start), None) => human_duration_nanos(since(start, now)),
        (Some(start), Some(end)) => human_duration_nanos(since(start, end)),
    };
    let has = |ty: &str| condition_true(o, "/status/conditions", ty);
    let deleting = o
        .pointer("/metadata/deletionTimestamp")
        .is_some_and(|v| !v.is_null());
    let status = if has("Complete") {
        "Complete"
    } else if has("Failed") {
        "Failed"
    } else if deleting {
        "Terminating"
    } else if has("Suspended") {
        "Suspended"
    } else if has("FailureTarget") {
        "FailureTarget"
    } else {
        "Running"
    };
    let mut cells = vec![
        s(o, "/metadata/name"),
        status.into(),
        completions.into(),
        duration.into(),
        age(o, now),
    ];
    cells.extend(container_cells(o, "/spec/template/spec"));
    cells.push(format_label_selector(o, "/spec/selector").into());
    cells
}

fn cronjob_row(o: &Value, now: SystemTime) -> Vec<Value> {
    let last = if time_at(o, "/status/lastScheduleTime").is_some() {
        since_at(o, "/status/lastScheduleTime", now)
    } else {
        "<none>".to_string()
    };
    let mut cells = vec![
        s(o, "/metadata/name"),
        s(o, "/spec/schedule"),
        or_none(str_of(o, "/spec/timeZone")),
        bool_ptr(o, "/spec/suspend"),
        len_at(o, "/status/active").into(),
        last.into(),
        age(o, now),
    ];
    cells.extend(container_cells(o, "/spec/jobTemplate/spec/template/spec"));
    cells.push(format_label_selector(o, "/spec/jobTemplate/spec/selector").into());
    cells
}

// ---------------------------------------------------------------------------------------------
// RBAC and networking

fn rolebinding_row(o: &Value, now: SystemTime) -> Vec<Value> {
    let mut users = Vec::new();
    let mut groups = Vec::new();
    let mut sas = Vec::new();
    for subject in arr(o, "/subjects") {
        let name = str_of(subject, "/name");
        match str_of(subject, "/kind") {
            "ServiceAccount" => sas.push(format!("{}/{name}", str_of(subject, "/namespace"))),
            "User" => users.push(name.to_string()),
            "Group" => groups.push(name.to_string()),
            _ => {}
        }
    }
    vec![
        s(o, "/metadata/name"),
        format!(
            "{}/{}",
            str_of(o, "/roleRef/kind"),
            str_of(o, "/roleRef/name")
        )
        .into(),
        age(o, now),
        users.join(", ").into(),
        groups.join(", ").into(),
        sas.join(", ").into(),
    ]
}

fn ingress_row(o: &Value, now: SystemTime) -> Vec<Value> {
    const MAX: usize = 3;
    let rules = arr(o, "/spec/rules");
    let hosts: Vec<&str> = rules
        .iter()
        .take(MAX)
        .map(|r| str_of(r, "/host"))
        .filter(|h| !h.is_empty())
        .collect();
    let hosts = if hosts.is_empty() {
        "*".to_string()
    } else if rules.len() > MAX {
        format!("{} + {} more...", hosts.join(","), rules.len() - MAX)
    } else {
        hosts.join(",")
    };
    let ports = if arr(o, "/spec/tls").is_empty() {
        "80"
    } else {
        "80, 443"
    };
    let class = match o.pointer("/spec/ingressClassName") {
        Some(Value::String(c)) => c.clone(),
        _ => "<none>".into(),
    };
    vec![
        s(o, "/metadata/name"),
        class.into(),
        hosts.into(),
        load_balancer_ingress(o)
            .into_iter()
            .collect::<Vec<_>>()
            .join(",")
            .into(),
        ports.into(),
        age(o, now),
    ]
}

// ---------------------------------------------------------------------------------------------
// Storage and certificates

fn access_modes(o: &Value, ptr: &str) -> String {
    let modes: Vec<&str> = arr(o, ptr).iter().filter_map(Value::as_str).collect();
    [
        ("ReadWriteOnce", "RWO"),
        ("ReadOnlyMany", "ROX"),
        ("ReadWriteMany", "RWX"),
        ("ReadWriteOncePod", "RWOP"),
    ]
    .iter()
    .filter(|(m, _)| modes.contains(m))
    .map(|(_, short)| *short)
    .collect::<Vec<_>>()
    .join(",")
}

fn storage_class(o: &Value) -> String {
    let beta = str_of(
        o,
        "/metadata/annotations/volume.beta.kubernetes.io~1storage-class",
    );
    if o.pointer("/metadata/annotations/volume.beta.kubernetes.io~1storage-class")
        .is_some()
    {
        return beta.to_string();
    }
    str_of(o, "/spec/storageClassName").to_string()
}

fn quantity(o: &Value, ptr: &str) -> String {
    match o.pointer(ptr) {
        Some(Value::String(q)) => q.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => "0".into(),
    }
}

fn unset_or(o: &Value, ptr: &str) -> Value {
    match o.pointer(ptr) {
        Some(Value::String(v)) => v.as_str().into(),
        _ => "<unset>".into(),
    }
}

fn phase_or_terminating(o: &Value) -> String {
    if o.pointer("/metadata/deletionTimestamp")
        .is_some_and(|v| !v.is_null())
    {
        "Terminating".into()
    } else {
        str_of(o, "/status/phase").to_string()
    }
}

fn pv_row(o: &Value, now: SystemTime) -> Vec<Value> {
    let claim = if o.pointer("/spec/claimRef").is_some_and(Value::is_object) {
        format!(
            "{}/{}",
            str_of(o, "/spec/claimRef/namespace"),
            str_of(o, "/spec/claimRef/name")
        )
    } else {
        String::new()
    };
    vec![
        s(o, "/metadata/name"),
        quantity(o, "/spec/capacity/storage").into(),
        access_modes(o, "/spec/accessModes").into(),
        s(o, "/spec/persistentVolumeReclaimPolicy"),
        phase_or_terminating(o).into(),
        claim.into(),
        storage_class(o).into(),
        unset_or(o, "/spec/volumeAttributesClassName"),
        s(o, "/status/reason"),
        age(o, now),
        unset_or(o, "/spec/volumeMode"),
    ]
}

fn pvc_row(o: &Value, now: SystemTime) -> Vec<Value> {
    let bound = !str_of(o, "/spec/volumeName").is_empty();
    let (capacity, modes) = if bound {
        (
            quantity(o, "/status/capacity/storage"),
            access_modes(o, "/status/accessModes"),
        )
    } else {
        (String::new(), String::new())
    };
    vec![
        s(o, "/metadata/name"),
        phase_or_terminating(o).into(),
        s(o, "/spec/volumeName"),
        capacity.into(),
        modes.into(),
        storage_class(o).into(),
        unset_or(o, "/spec/volumeAttributesClassName"),
        age(o, now),
        unset_or(o, "/spec/volumeMode"),
    ]
}

fn storageclass_row(o: &Value, now: SystemTime) -> Vec<Value> {
    let annotations = string_map(o, "/metadata/annotations");
    let is_default = [
        "storageclass.kubernetes.io/is-default-class",
        "storageclass.beta.kubernetes.io/is-default-class",
    ]
    .iter()
    .any(|k| annotations.get(*k).map(String::as_str) == Some("true"));
    let mut name = str_of(o, "/metadata/name").to_string();
    if is_default {
        name.push_str(" (default)");
    }
    let or = |ptr: &str, default: &str| -> Value {
        match str_of(o, ptr) {
            "" => default.into(),
            v => v.into(),
        }
    };
    vec![
        name.into(),
        s(o, "/provisioner"),
        or("/reclaimPolicy", "Delete"),
        or("/volumeBindingMode", "Immediate"),
        o.get("allowVolumeExpansion")
            .and_then(Value::as_bool)
            .unwrap_or(false)
            .into(),
        age(o, now),
    ]
}

fn csr_row(o: &Value, now: SystemTime) -> Vec<Value> {
    let has = |ty: &str| condition(o, "/status/conditions", ty).is_some();
    let mut status = if has("Denied") {
        "Denied".to_string()
    } else if has("Approved") {
        "Approved".to_string()
    } else {
        "Pending".to_string()
    };
    if has("Failed") {
        status.push_str(",Failed");
    }
    if !str_of(o, "/status/certificate").is_empty() {
        status.push_str(",Issued");
    }
    let requested = match o.pointer("/spec/expirationSeconds").and_then(Value::as_i64) {
        Some(secs) => human_duration_nanos(i128::from(secs) * 1_000_000_000),
        None => "<none>".to_string(),
    };
    vec![
        s(o, "/metadata/name"),
        age(o, now),
        or_none(str_of(o, "/spec/signerName")),
        s(o, "/spec/username"),
        requested.into(),
        status.into(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> SystemTime {
        parse_time(text).unwrap()
    }

    const NOW: &str = "2024-05-10T12:00:00Z";

    fn table(resource: &str, objects: Vec<Value>) -> Value {
        to_table(resource, &objects, IncludeObject::Metadata, at(NOW))
    }

    fn cells(resource: &str, object: Value) -> Vec<Value> {
        table(resource, vec![object])["rows"][0]["cells"]
            .as_array()
            .unwrap()
            .clone()
    }

    fn names(t: &Value) -> Vec<(String, u64)> {
        t["columnDefinitions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                (
                    c["name"].as_str().unwrap().to_string(),
                    c["priority"].as_u64().unwrap(),
                )
            })
            .collect()
    }

    #[test]
    fn human_durations_match_kubectl() {
        let d = |s: u64| human_duration(Duration::from_secs(s));
        assert_eq!(d(0), "0s");
        assert_eq!(d(5), "5s");
        assert_eq!(d(119), "119s");
        assert_eq!(d(120), "2m");
        assert_eq!(d(200), "3m20s");
        assert_eq!(d(600), "10m");
        assert_eq!(d(3 * 3600 - 1), "179m");
        assert_eq!(d(3 * 3600), "3h");
        assert_eq!(d(5 * 3600 + 7 * 60), "5h7m");
        assert_eq!(d(30 * 3600), "30h");
        assert_eq!(d(51 * 3600), "2d3h");
        assert_eq!(d(3 * 86400), "3d");
        assert_eq!(d(100 * 86400), "100d");
        assert_eq!(d(800 * 86400), "2y70d");
        assert_eq!(d(9 * 365 * 86400), "9y");
        assert_eq!(human_duration_nanos(-1_500_000_000), "0s");
        assert_eq!(human_duration_nanos(-3_000_000_000), "<invalid>");
    }

    #[test]
    fn rfc3339_parsing() {
        let base = at("2024-05-10T12:00:00Z");
        assert_eq!(
            base.duration_since(UNIX_EPOCH).unwrap().as_secs(),
            1_715_342_400
        );
        assert_eq!(at("2024-05-10T14:00:00+02:00"), base);
        assert_eq!(
            at("2024-05-10T12:00:00.250000Z")
                .duration_since(base)
                .unwrap(),
            Duration::from_millis(250)
        );
        assert!(parse_time("").is_none());
        assert!(parse_time("2024-05-10").is_none());
        assert!(parse_time("2024-13-10T12:00:00Z").is_none());
    }

    #[test]
    fn table_envelope_and_include_object() {
        let pod = json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "a", "namespace": "default", "creationTimestamp": "2024-05-10T11:59:55Z"},
            "spec": {"containers": [{"name": "c"}]}, "status": {"phase": "Pending"}});
        let t = table("pods", vec![pod.clone()]);
        assert_eq!(t["kind"], "Table");
        assert_eq!(t["apiVersion"], "meta.k8s.io/v1");
        let first = &t["columnDefinitions"][0];
        assert_eq!(
            first,
            &json!({"name": "Name", "type": "string", "format": "name",
                    "description": NAME.description, "priority": 0})
        );
        assert_eq!(
            t["rows"][0]["object"],
            json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                   "metadata": pod["metadata"]})
        );
        let t = to_table(
            "pods",
            std::slice::from_ref(&pod),
            IncludeObject::Object,
            at(NOW),
        );
        assert_eq!(t["rows"][0]["object"], pod);
        let t = to_table("pods", &[pod], IncludeObject::None, at(NOW));
        assert_eq!(t["rows"][0]["object"], Value::Null);
        assert_eq!(IncludeObject::parse("Object"), Some(IncludeObject::Object));
        assert_eq!(IncludeObject::parse("bogus"), None);
    }

    fn running_pod() -> Value {
        json!({
            "metadata": {"name": "web-1", "namespace": "default",
                         "creationTimestamp": "2024-05-08T09:00:00Z"},
            "spec": {"nodeName": "node-a", "containers": [{"name": "web"}, {"name": "log"}]},
            "status": {
                "phase": "Running", "podIP": "10.244.0.7", "podIPs": [{"ip": "10.244.0.7"}],
                "conditions": [{"type": "Ready", "status": "True"}],
                "containerStatuses": [
                    {"name": "web", "ready": true, "restartCount": 5,
                     "state": {"running": {"startedAt": "2024-05-10T11:55:00Z"}},
                     "lastState": {"terminated": {"exitCode": 1, "finishedAt": "2024-05-10T11:55:00Z"}}},
                    {"name": "log", "ready": true, "restartCount": 0,
                     "state": {"running": {"startedAt": "2024-05-08T09:00:10Z"}}}
                ]
            }
        })
    }

    #[test]
    fn pod_columns_and_running_row() {
        let t = table("pods", vec![running_pod()]);
        let cols: Vec<(String, u64)> = names(&t);
        assert_eq!(
            cols,
            [
                ("Name", 0),
                ("Ready", 0),
                ("Status", 0),
                ("Restarts", 0),
                ("Age", 0),
                ("IP", 1),
                ("Node", 1),
                ("Nominated Node", 1),
                ("Readiness Gates", 1)
            ]
            .map(|(n, p)| (n.to_string(), p))
        );
        assert_eq!(
            t["rows"][0]["cells"],
            json!([
                "web-1",
                "2/2",
                "Running",
                "5 (5m ago)",
                "2d3h",
                "10.244.0.7",
                "node-a",
                "<none>",
                "<none>"
            ])
        );
        assert!(t["rows"][0].get("conditions").is_none());
    }

    #[test]
    fn pod_status_variants() {
        let status = |pod: Value| cells("pods", pod)[2].as_str().unwrap().to_string();

        let mut crash = running_pod();
        crash["status"]["containerStatuses"][0]["ready"] = json!(false);
        crash["status"]["containerStatuses"][0]["state"] =
            json!({"waiting": {"reason": "CrashLoopBackOff"}});
        assert_eq!(status(crash.clone()), "CrashLoopBackOff");
        assert_eq!(cells("pods", crash)[1], "1/2");

        let pending = json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c"}]},
                             "status": {"phase": "Pending"}});
        assert_eq!(status(pending), "Pending");

        let pulling = json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c"}]},
            "status": {"phase": "Pending", "containerStatuses": [
                {"name": "c", "ready": false, "restartCount": 0,
                 "state": {"waiting": {"reason": "ContainerCreating"}}}]}});
        assert_eq!(status(pulling), "ContainerCreating");

        let init = json!({"metadata": {"name": "p"},
            "spec": {"initContainers": [{"name": "i1"}, {"name": "i2"}], "containers": [{"name": "c"}]},
            "status": {"phase": "Pending",
                "initContainerStatuses": [
                    {"name": "i1", "restartCount": 0, "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}},
                    {"name": "i2", "restartCount": 0, "state": {"running": {}}}],
                "containerStatuses": [{"name": "c", "restartCount": 0,
                    "state": {"waiting": {"reason": "PodInitializing"}}}]}});
        assert_eq!(status(init), "Init:1/2");

        let init_crash = json!({"metadata": {"name": "p"},
            "spec": {"initContainers": [{"name": "i1"}], "containers": [{"name": "c"}]},
            "status": {"phase": "Pending", "initContainerStatuses": [
                {"name": "i1", "restartCount": 3, "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]}});
        assert_eq!(status(init_crash.clone()), "Init:CrashLoopBackOff");
        assert_eq!(cells("pods", init_crash)[3], "3");

        let init_failed = json!({"metadata": {"name": "p"},
            "spec": {"initContainers": [{"name": "i1"}], "containers": [{"name": "c"}]},
            "status": {"phase": "Pending", "initContainerStatuses": [
                {"name": "i1", "restartCount": 0, "state": {"terminated": {"exitCode": 2}}}]}});
        assert_eq!(status(init_failed), "Init:ExitCode:2");

        let completed = json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c"}]},
            "status": {"phase": "Succeeded", "containerStatuses": [{"name": "c", "ready": false,
                "restartCount": 0, "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}]}});
        assert_eq!(status(completed.clone()), "Completed");
        let t = table("pods", vec![completed]);
        assert_eq!(t["rows"][0]["conditions"][0]["type"], "Completed");
        assert_eq!(t["rows"][0]["conditions"][0]["reason"], "Succeeded");

        let killed = json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c"}]},
            "status": {"phase": "Failed", "containerStatuses": [{"name": "c", "restartCount": 0,
                "state": {"terminated": {"exitCode": 137, "signal": 9}}}]}});
        assert_eq!(status(killed), "Signal:9");

        let mut terminating = running_pod();
        terminating["metadata"]["deletionTimestamp"] = json!("2024-05-10T11:59:00Z");
        assert_eq!(status(terminating), "Terminating");

        let evicted = json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c"}]},
            "status": {"phase": "Failed", "reason": "Evicted"}});
        assert_eq!(status(evicted), "Evicted");

        let gated = json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c"}]},
            "status": {"phase": "Pending", "conditions": [
                {"type": "PodScheduled", "status": "False", "reason": "SchedulingGated"}]}});
        assert_eq!(status(gated), "SchedulingGated");

        // A native sidecar (restartable init container) counts towards READY.
        let sidecar = json!({"metadata": {"name": "p"},
            "spec": {"initContainers": [{"name": "proxy", "restartPolicy": "Always"}],
                     "containers": [{"name": "c"}]},
            "status": {"phase": "Running",
                "conditions": [{"type": "Initialized", "status": "True"}, {"type": "Ready", "status": "True"}],
                "initContainerStatuses": [{"name": "proxy", "ready": true, "started": true,
                    "restartCount": 1, "state": {"running": {}}}],
                "containerStatuses": [{"name": "c", "ready": true, "restartCount": 0,
                    "state": {"running": {}}}]}});
        let c = cells("pods", sidecar);
        assert_eq!(c[1], "2/2");
        assert_eq!(c[2], "Running");
        assert_eq!(c[3], "1");
    }

    #[test]
    fn pod_readiness_gates_wide() {
        let mut pod = running_pod();
        pod["spec"]["readinessGates"] = json!([{"conditionType": "example.com/lb"},
                                               {"conditionType": "example.com/dns"}]);
        pod["status"]["conditions"]
            .as_array_mut()
            .unwrap()
            .push(json!({"type": "example.com/lb", "status": "True"}));
        pod["status"]["nominatedNodeName"] = json!("node-b");
        let c = cells("pods", pod);
        assert_eq!(c[7], "node-b");
        assert_eq!(c[8], "1/2");
    }

    #[test]
    fn node_rows() {
        let node = json!({
            "metadata": {"name": "node-a", "creationTimestamp": "2024-05-10T11:56:40Z",
                "labels": {"node-role.kubernetes.io/control-plane": "", "kubernetes.io/role": "worker",
                           "kubernetes.io/hostname": "node-a"}},
            "spec": {"unschedulable": true},
            "status": {"conditions": [{"type": "MemoryPressure", "status": "False"},
                                      {"type": "Ready", "status": "True"}],
                "addresses": [{"type": "InternalIP", "address": "192.168.1.10"},
                              {"type": "Hostname", "address": "node-a"}],
                "nodeInfo": {"kubeletVersion": "v1.32.0", "osImage": "Debian GNU/Linux 12 (bookworm)",
                             "kernelVersion": "6.1.0-18-amd64", "containerRuntimeVersion": "deckhand://0.1.0"}}
        });
        let t = table("nodes", vec![node]);
        assert_eq!(
            t["rows"][0]["cells"],
            json!([
                "node-a",
                "Ready,SchedulingDisabled",
                "control-plane,worker",
                "3m20s",
                "v1.32.0",
                "192.168.1.10",
                "<none>",
                "Debian GNU/Linux 12 (bookworm)",
                "6.1.0-18-amd64",
                "deckhand://0.1.0"
            ])
        );
        let bare = json!({"metadata": {"name": "n"}});
        assert_eq!(
            cells("nodes", bare),
            json!([
                "n",
                "Unknown",
                "<none>",
                "<unknown>",
                "",
                "<none>",
                "<none>",
                "<unknown>",
                "<unknown>",
                "<unknown>"
            ])
            .as_array()
            .unwrap()
            .clone()
        );
        let not_ready = json!({"metadata": {"name": "n"},
            "status": {"conditions": [{"type": "Ready", "status": "Unknown"}]}});
        assert_eq!(cells("nodes", not_ready)[1], "NotReady");
    }

    #[test]
    fn service_rows() {
        let svc = json!({"metadata": {"name": "kube-dns", "creationTimestamp": "2024-05-05T12:00:00Z"},
            "spec": {"type": "ClusterIP", "clusterIP": "10.96.0.10",
                "selector": {"k8s-app": "kube-dns"},
                "ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"},
                          {"port": 9153, "protocol": "TCP"}]}});
        assert_eq!(
            Value::Array(cells("services", svc)),
            json!([
                "kube-dns",
                "ClusterIP",
                "10.96.0.10",
                "<none>",
                "53/UDP,53/TCP,9153/TCP",
                "5d",
                "k8s-app=kube-dns"
            ])
        );
        let np = json!({"metadata": {"name": "web"},
            "spec": {"type": "NodePort", "clusterIP": "10.96.3.4",
                "ports": [{"port": 80, "nodePort": 30080, "protocol": "TCP"}]}});
        let c = cells("services", np);
        assert_eq!(c[4], "80:30080/TCP");
        assert_eq!(c[6], "<none>");
        let lb = json!({"metadata": {"name": "lb"},
            "spec": {"type": "LoadBalancer", "clusterIP": "10.96.3.5", "clusterIPs": ["10.96.3.5"],
                     "ports": []}});
        let c = cells("services", lb.clone());
        assert_eq!(c[3], "<pending>");
        assert_eq!(c[4], "<none>");
        let mut lb = lb;
        lb["status"] = json!({"loadBalancer": {"ingress": [{"ip": "203.0.113.7"}, {"ip": "198.51.100.1"},
                                                           {"ip": "203.0.113.7"}]}});
        lb["spec"]["externalIPs"] = json!(["192.0.2.1"]);
        assert_eq!(
            cells("services", lb)[3],
            "198.51.100.1,203.0.113.7,192.0.2.1"
        );
        let headless = json!({"metadata": {"name": "h"},
            "spec": {"type": "ClusterIP", "clusterIP": "None", "ports": [{"port": 80, "protocol": "TCP"}]}});
        assert_eq!(cells("services", headless)[2], "None");
        let ext = json!({"metadata": {"name": "e"},
            "spec": {"type": "ExternalName", "externalName": "example.com"}});
        let c = cells("services", ext);
        assert_eq!(c[2], "<none>");
        assert_eq!(c[3], "example.com");
    }

    #[test]
    fn endpoints_and_slices() {
        let ep = json!({"metadata": {"name": "kube-dns"}, "subsets": [{
            "addresses": [{"ip": "10.1.0.20"}, {"ip": "10.1.0.21"}],
            "ports": [{"name": "dns", "port": 53, "protocol": "UDP"},
                      {"name": "dns-tcp", "port": 53, "protocol": "TCP"},
                      {"name": "metrics", "port": 9153, "protocol": "TCP"}]}]});
        assert_eq!(
            cells("endpoints", ep)[1],
            "10.1.0.20:53,10.1.0.21:53,10.1.0.20:53 + 3 more..."
        );
        let empty = json!({"metadata": {"name": "x"}});
        assert_eq!(cells("endpoints", empty)[1], "<none>");
        let v6 = json!({"metadata": {"name": "x"}, "subsets": [{"addresses": [{"ip": "fd00::1"}],
            "ports": [{"port": 80}]}]});
        assert_eq!(cells("endpoints", v6)[1], "[fd00::1]:80");

        let slice = json!({"metadata": {"name": "web-abc12", "creationTimestamp": "2024-05-10T11:00:00Z"},
            "addressType": "IPv4", "ports": [{"name": "http", "port": 80, "protocol": "TCP"}],
            "endpoints": [{"addresses": ["10.0.0.1"]}, {"addresses": ["10.0.0.2"]},
                          {"addresses": ["10.0.0.3"]}, {"addresses": ["10.0.0.4"]}]});
        assert_eq!(
            Value::Array(cells("endpointslices", slice)),
            json!([
                "web-abc12",
                "IPv4",
                "80",
                "10.0.0.1,10.0.0.2,10.0.0.3 + 1 more...",
                "60m"
            ])
        );
        let empty = json!({"metadata": {"name": "s"}, "addressType": "IPv4"});
        let c = cells("endpointslices", empty);
        assert_eq!(c[2], "<unset>");
        assert_eq!(c[3], "<unset>");
    }

    #[test]
    fn config_and_identity_rows() {
        let cm = json!({"metadata": {"name": "kube-root-ca.crt", "creationTimestamp": "2024-05-10T11:59:30Z"},
                        "data": {"ca.crt": "x"}, "binaryData": {"b": "eA=="}});
        assert_eq!(
            Value::Array(cells("configmaps", cm)),
            json!(["kube-root-ca.crt", 2, "30s"])
        );
        let secret = json!({"metadata": {"name": "tls"}, "type": "kubernetes.io/tls",
                            "data": {"tls.crt": "", "tls.key": ""}});
        assert_eq!(
            Value::Array(cells("secrets", secret)),
            json!(["tls", "kubernetes.io/tls", 2, "<unknown>"])
        );
        let sa = json!({"metadata": {"name": "default"}});
        assert_eq!(cells("serviceaccounts", sa)[1], 0);
        let ns = json!({"metadata": {"name": "default", "creationTimestamp": "2024-04-10T12:00:00Z"},
                        "status": {"phase": "Active"}});
        assert_eq!(
            Value::Array(cells("namespaces", ns)),
            json!(["default", "Active", "30d"])
        );
        let lease = json!({"metadata": {"name": "node-a"}, "spec": {"holderIdentity": "node-a"}});
        assert_eq!(cells("leases", lease)[1], "node-a");
    }

    #[test]
    fn event_rows() {
        let ev = json!({"metadata": {"name": "web-1.17c", "namespace": "default"},
            "involvedObject": {"kind": "Pod", "name": "web-1", "fieldPath": "spec.containers{web}"},
            "reason": "BackOff", "type": "Warning",
            "message": "Back-off restarting failed container\n",
            "source": {"component": "kubelet", "host": "node-a"},
            "firstTimestamp": "2024-05-10T11:00:00Z", "lastTimestamp": "2024-05-10T11:58:00Z",
            "count": 12});
        let t = table("events", vec![ev]);
        assert_eq!(
            names(&t)
                .iter()
                .map(|(n, _)| n.as_str())
                .collect::<Vec<_>>(),
            [
                "Last Seen",
                "Type",
                "Reason",
                "Object",
                "Subobject",
                "Source",
                "Message",
                "First Seen",
                "Count",
                "Name"
            ]
        );
        assert_eq!(
            t["rows"][0]["cells"],
            json!([
                "2m",
                "Warning",
                "BackOff",
                "pod/web-1",
                "spec.containers{web}",
                "kubelet, node-a",
                "Back-off restarting failed container",
                "60m",
                12,
                "web-1.17c"
            ])
        );
        let new_api = json!({"metadata": {"name": "e"}, "involvedObject": {"kind": "Node"},
            "reason": "Starting", "type": "Normal", "eventTime": "2024-05-10T11:59:50.000000Z",
            "reportingComponent": "kube-proxy", "reportingInstance": "kube-proxy-node-a"});
        let c = cells("events", new_api);
        assert_eq!(c[0], "10s");
        assert_eq!(c[3], "node");
        assert_eq!(c[5], "kube-proxy, kube-proxy-node-a");
        assert_eq!(c[8], 1);
    }

    fn template() -> Value {
        json!({"metadata": {"labels": {"app": "web"}},
               "spec": {"containers": [{"name": "web", "image": "nginx:1.27"},
                                       {"name": "log", "image": "busybox"}],
                        "nodeSelector": {"kubernetes.io/os": "linux"}}})
    }

    #[test]
    fn workload_rows() {
        let deploy = json!({"metadata": {"name": "web", "creationTimestamp": "2024-05-10T11:00:00Z"},
            "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}}, "template": template()},
            "status": {"readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2}});
        let t = table("deployments.apps", vec![deploy]);
        assert_eq!(
            names(&t)
                .iter()
                .map(|(n, _)| n.as_str())
                .collect::<Vec<_>>(),
            [
                "Name",
                "Ready",
                "Up-to-date",
                "Available",
                "Age",
                "Containers",
                "Images",
                "Selector"
            ]
        );
        assert_eq!(
            t["rows"][0]["cells"],
            json!([
                "web",
                "2/3",
                3,
                2,
                "60m",
                "web,log",
                "nginx:1.27,busybox",
                "app=web"
            ])
        );

        let rs = json!({"metadata": {"name": "web-5d4f"},
            "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web", "pod-template-hash": "5d4f"}},
                     "template": template()},
            "status": {"replicas": 3, "readyReplicas": 1}});
        assert_eq!(
            Value::Array(cells("replicasets", rs)),
            json!([
                "web-5d4f",
                3,
                3,
                1,
                "<unknown>",
                "web,log",
                "nginx:1.27,busybox",
                "app=web,pod-template-hash=5d4f"
            ])
        );

        let ds = json!({"metadata": {"name": "kube-proxy"},
            "spec": {"selector": {"matchLabels": {"k8s-app": "kube-proxy"}}, "template": template()},
            "status": {"desiredNumberScheduled": 2, "currentNumberScheduled": 2, "numberReady": 1,
                       "updatedNumberScheduled": 2, "numberAvailable": 1}});
        assert_eq!(
            Value::Array(cells("daemonsets", ds)),
            json!([
                "kube-proxy",
                2,
                2,
                1,
                2,
                1,
                "kubernetes.io/os=linux",
                "<unknown>",
                "web,log",
                "nginx:1.27,busybox",
                "k8s-app=kube-proxy"
            ])
        );

        let sts = json!({"metadata": {"name": "db"}, "spec": {"template": template()},
                         "status": {"readyReplicas": 1}});
        assert_eq!(cells("statefulsets", sts)[1], "1/1");
    }

    #[test]
    fn job_and_cronjob_rows() {
        let job = json!({"metadata": {"name": "pi"},
            "spec": {"completions": 1, "selector": {"matchLabels": {"batch.kubernetes.io/controller-uid": "u1"}},
                     "template": template()},
            "status": {"succeeded": 1, "startTime": "2024-05-10T11:00:00Z",
                       "completionTime": "2024-05-10T11:00:42Z",
                       "conditions": [{"type": "Complete", "status": "True"}]}});
        let c = cells("jobs", job);
        assert_eq!(c[1], "Complete");
        assert_eq!(c[2], "1/1");
        assert_eq!(c[3], "42s");
        assert_eq!(c[7], "batch.kubernetes.io/controller-uid=u1");
        let running = json!({"metadata": {"name": "p"}, "spec": {"parallelism": 2},
            "status": {"startTime": "2024-05-10T11:59:00Z"}});
        let c = cells("jobs", running);
        assert_eq!(c[1], "Running");
        assert_eq!(c[2], "0/1 of 2");
        assert_eq!(c[3], "60s");

        let cj = json!({"metadata": {"name": "hello"},
            "spec": {"schedule": "*/1 * * * *", "jobTemplate": {"spec": {"template": template()}}},
            "status": {"lastScheduleTime": "2024-05-10T11:59:00Z", "active": [{"name": "hello-1"}]}});
        assert_eq!(
            Value::Array(cells("cronjobs", cj)),
            json!([
                "hello",
                "*/1 * * * *",
                "<none>",
                "<unset>",
                1,
                "60s",
                "<unknown>",
                "web,log",
                "nginx:1.27,busybox",
                "<none>"
            ])
        );
        let suspended = json!({"metadata": {"name": "c"},
            "spec": {"schedule": "@daily", "timeZone": "Etc/UTC", "suspend": true}});
        let c = cells("cronjobs", suspended);
        assert_eq!(c[2], "Etc/UTC");
        assert_eq!(c[3], "True");
        assert_eq!(c[5], "<none>");
    }

    #[test]
    fn storage_rows() {
        let pv = json!({"metadata": {"name": "pv1"},
            "spec": {"capacity": {"storage": "10Gi"}, "accessModes": ["ReadWriteMany", "ReadWriteOnce"],
                     "persistentVolumeReclaimPolicy": "Retain", "storageClassName": "local",
                     "claimRef": {"namespace": "default", "name": "data"}},
            "status": {"phase": "Bound"}});
        assert_eq!(
            Value::Array(cells("persistentvolumes", pv)),
            json!([
                "pv1",
                "10Gi",
                "RWO,RWX",
                "Retain",
                "Bound",
                "default/data",
                "local",
                "<unset>",
                "",
                "<unknown>",
                "<unset>"
            ])
        );
        let pvc = json!({"metadata": {"name": "data"},
            "spec": {"volumeName": "pv1", "storageClassName": "local", "volumeMode": "Filesystem",
                     "resources": {"requests": {"storage": "5Gi"}}},
            "status": {"phase": "Bound", "capacity": {"storage": "10Gi"}, "accessModes": ["ReadWriteOnce"]}});
        assert_eq!(
            Value::Array(cells("persistentvolumeclaims", pvc)),
            json!([
                "data",
                "Bound",
                "pv1",
                "10Gi",
                "RWO",
                "local",
                "<unset>",
                "<unknown>",
                "Filesystem"
            ])
        );
        let pending = json!({"metadata": {"name": "p"}, "spec": {"storageClassName": "local"},
                             "status": {"phase": "Pending"}});
        let c = cells("persistentvolumeclaims", pending);
        assert_eq!(c[2], "");
        assert_eq!(c[3], "");
        let sc = json!({"metadata": {"name": "local",
                "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
            "provisioner": "rancher.io/local-path", "volumeBindingMode": "WaitForFirstConsumer"});
        assert_eq!(
            Value::Array(cells("storageclasses.storage.k8s.io", sc)),
            json!([
                "local (default)",
                "rancher.io/local-path",
                "Delete",
                "WaitForFirstConsumer",
                false,
                "<unknown>"
            ])
        );
    }

    #[test]
    fn csr_and_networkpolicy_rows() {
        let csr = json!({"metadata": {"name": "csr-abc"},
            "spec": {"signerName": "kubernetes.io/kube-apiserver-client-kubelet",
                     "username": "system:node:node-a", "expirationSeconds": 86400},
            "status": {"conditions": [{"type": "Approved", "status": "True"}], "certificate": "LS0t"}});
        assert_eq!(
            Value::Array(cells("certificatesigningrequests", csr)),
            json!([
                "csr-abc",
                "<unknown>",
                "kubernetes.io/kube-apiserver-client-kubelet",
                "system:node:node-a",
                "24h",
                "Approved,Issued"
            ])
        );
        let pending = json!({"metadata": {"name": "c"}, "spec": {}});
        let c = cells("certificatesigningrequests", pending);
        assert_eq!(c[4], "<none>");
        assert_eq!(c[5], "Pending");

        let np = json!({"metadata": {"name": "deny"}, "spec": {"podSelector": {}}});
        assert_eq!(cells("networkpolicies", np)[1], "<none>");
        let np = json!({"metadata": {"name": "web"},
            "spec": {"podSelector": {"matchLabels": {"app": "web"}}}});
        assert_eq!(cells("networkpolicies", np)[1], "app=web");
    }

    #[test]
    fn default_columns() {
        let obj = json!({"metadata": {"name": "w", "creationTimestamp": "2024-05-10T11:59:00Z"}});
        let t = table("widgets.example.com", vec![obj.clone()]);
        assert_eq!(names(&t), [("Name".to_string(), 0), ("Age".to_string(), 0)]);
        assert_eq!(t["columnDefinitions"][1]["type"], "date");
        assert_eq!(t["rows"][0]["cells"], json!(["w", "60s"]));

        // `kubectl get clusterroles` prints NAME and CREATED AT.
        let t = table("clusterroles.rbac.authorization.k8s.io", vec![obj]);
        assert_eq!(
            names(&t),
            [("Name".to_string(), 0), ("Created At".to_string(), 0)]
        );
        assert_eq!(t["rows"][0]["cells"], json!(["w", "2024-05-10T11:59:00Z"]));
        let t = table("roles", vec![json!({"metadata": {"name": "r"}})]);
        assert_eq!(t["rows"][0]["cells"], json!(["r", "0001-01-01T00:00:00Z"]));
    }

    #[test]
    fn rfc3339_round_trip() {
        for text in [
            "2024-05-10T12:00:00Z",
            "1970-01-01T00:00:00Z",
            "2000-02-29T23:59:59Z",
            "1969-12-31T23:59:59Z",
            "0001-01-01T00:00:00Z",
        ] {
            assert_eq!(format_rfc3339(at(text)), text);
        }
        assert_eq!(
            format_rfc3339(at("2024-05-10T14:30:00.5+02:00")),
            "2024-05-10T12:30:00Z"
        );
    }

    #[test]
    fn rbac_networking_and_misc_rows() {
        let rb = json!({"metadata": {"name": "admins"},
            "roleRef": {"kind": "ClusterRole", "name": "admin", "apiGroup": "rbac.authorization.k8s.io"},
            "subjects": [{"kind": "User", "name": "alice"}, {"kind": "Group", "name": "ops"},
                         {"kind": "ServiceAccount", "name": "ci", "namespace": "tools"},
                         {"kind": "User", "name": "bob"}]});
        assert_eq!(
            Value::Array(cells("rolebindings", rb)),
            json!([
                "admins",
                "ClusterRole/admin",
                "<unknown>",
                "alice, bob",
                "ops",
                "tools/ci"
            ])
        );

        let ing = json!({"metadata": {"name": "web"},
            "spec": {"ingressClassName": "nginx", "rules": [{"host": "a.example.com"}, {"host": "b.example.com"}],
                     "tls": [{"hosts": ["a.example.com"]}]},
            "status": {"loadBalancer": {"ingress": [{"ip": "203.0.113.9"}, {"hostname": "lb.example.com"}]}}});
        assert_eq!(
            Value::Array(cells("ingresses", ing)),
            json!([
                "web",
                "nginx",
                "a.example.com,b.example.com",
                "203.0.113.9,lb.example.com",
                "80, 443",
                "<unknown>"
            ])
        );
        let bare = json!({"metadata": {"name": "x"}, "spec": {"defaultBackend": {}}});
        let c = cells("ingresses", bare);
        assert_eq!(c[1], "<none>");
        assert_eq!(c[2], "*");
        assert_eq!(c[4], "80");

        let pdb = json!({"metadata": {"name": "p"}, "spec": {"minAvailable": 2},
                         "status": {"disruptionsAllowed": 1}});
        assert_eq!(
            Value::Array(cells("poddisruptionbudgets", pdb)),
            json!(["p", "2", "N/A", 1, "<unknown>"])
        );

        let pc = json!({"metadata": {"name": "system-node-critical"}, "value": 2000001000,
                        "preemptionPolicy": "PreemptLowerPriority"});
        assert_eq!(
            Value::Array(cells("priorityclasses.scheduling.k8s.io", pc)),
            json!([
                "system-node-critical",
                2000001000,
                false,
                "<unknown>",
                "PreemptLowerPriority"
            ])
        );

        let rev = json!({"metadata": {"name": "web-7c5", "ownerReferences": [
                {"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "web", "controller": true}]},
            "revision": 3});
        assert_eq!(
            Value::Array(cells("controllerrevisions", rev)),
            json!(["web-7c5", "statefulset.apps/web", 3, "<unknown>"])
        );

        let tmpl = json!({"metadata": {"name": "t"}, "template": template()});
        assert_eq!(
            Value::Array(cells("podtemplates", tmpl)),
            json!(["t", "web,log", "nginx:1.27,busybox", "app=web"])
        );
        let wh = json!({"metadata": {"name": "w"}, "webhooks": [{}, {}]});
        assert_eq!(cells("validatingwebhookconfigurations", wh)[1], 2);
    }
}
