//! Decoding the Kubernetes protobuf encoding of request bodies into JSON.
//!
//! kubectl's typed clients (`kubectl create namespace|configmap|secret|deployment|service`, `drain`, `auth can-i`) send
//! `application/vnd.kubernetes.protobuf` bodies and client-go has no JSON fallback on 415,
//! so the server must read them. Only the messages those commands produce are described
//! here, field by field from k8s.io/api's generated.proto; a field this table does not know
//! is an error (415), never silently dropped. Responses are always JSON, which clients accept.

use base64::Engine;
use serde_json::{Map, Value};

/// The envelope: "k8s\0" then a runtime.Unknown message.
const MAGIC: &[u8] = b"k8s\x00";

#[derive(Debug, thiserror::Error)]
pub enum ProtoError {
    #[error("not a Kubernetes protobuf envelope")]
    NoEnvelope,
    #[error("truncated or malformed protobuf")]
    Malformed,
    #[error("protobuf bodies of kind {0} are not supported; send JSON")]
    UnsupportedKind(String),
    #[error("field {field} of {message} is not supported in protobuf bodies; send JSON")]
    UnknownField { message: &'static str, field: u32 },
}

#[derive(Clone, Copy)]
enum Ty {
    Str,
    /// `bytes`, JSON as base64.
    Bytes,
    Bool,
    Int,
    /// A non-pointer integer whose JSON omits zero (`omitempty`), e.g. nodePort.
    IntOmitZero,
    Msg(&'static Message),
    MapStr,
    MapBytes,
    /// map<string, Quantity>.
    MapQuantity,
    Time,
    IntOrString,
    /// Read and dropped: `status` on create (the server resets it, as upstream does).
    Ignore,
}

struct Field {
    tag: u32,
    name: &'static str,
    ty: Ty,
    repeated: bool,
}

struct Message {
    name: &'static str,
    fields: &'static [Field],
}

const fn f(tag: u32, name: &'static str, ty: Ty) -> Field {
    Field {
        tag,
        name,
        ty,
        repeated: false,
    }
}

const fn r(tag: u32, name: &'static str, ty: Ty) -> Field {
    Field {
        tag,
        name,
        ty,
        repeated: true,
    }
}

static OWNER_REFERENCE: Message = Message {
    name: "OwnerReference",
    fields: &[
        f(1, "kind", Ty::Str),
        f(3, "name", Ty::Str),
        f(4, "uid", Ty::Str),
        f(5, "apiVersion", Ty::Str),
        f(6, "controller", Ty::Bool),
        f(7, "blockOwnerDeletion", Ty::Bool),
    ],
};

static OBJECT_META: Message = Message {
    name: "ObjectMeta",
    fields: &[
        f(1, "name", Ty::Str),
        f(2, "generateName", Ty::Str),
        f(3, "namespace", Ty::Str),
        f(4, "selfLink", Ty::Str),
        f(5, "uid", Ty::Str),
        f(6, "resourceVersion", Ty::Str),
        f(7, "generation", Ty::Int),
        f(8, "creationTimestamp", Ty::Time),
        f(9, "deletionTimestamp", Ty::Time),
        f(10, "deletionGracePeriodSeconds", Ty::Int),
        f(11, "labels", Ty::MapStr),
        f(12, "annotations", Ty::MapStr),
        r(13, "ownerReferences", Ty::Msg(&OWNER_REFERENCE)),
        r(14, "finalizers", Ty::Str),
    ],
};

static NAMESPACE_SPEC: Message = Message {
    name: "NamespaceSpec",
    fields: &[r(1, "finalizers", Ty::Str)],
};

static NAMESPACE: Message = Message {
    name: "Namespace",
    fields: &[
        f(1, "metadata", Ty::Msg(&OBJECT_META)),
        f(2, "spec", Ty::Msg(&NAMESPACE_SPEC)),
        f(3, "status", Ty::Ignore),
    ],
};

static CONFIG_MAP: Message = Message {
    name: "ConfigMap",
    fields: &[
        f(1, "metadata", Ty::Msg(&OBJECT_META)),
        f(2, "data", Ty::MapStr),
        f(3, "binaryData", Ty::MapBytes),
        f(4, "immutable", Ty::Bool),
    ],
};

static SECRET: Message = Message {
    name: "Secret",
    fields: &[
        f(1, "metadata", Ty::Msg(&OBJECT_META)),
        f(2, "data", Ty::MapBytes),
        f(3, "type", Ty::Str),
        f(4, "stringData", Ty::MapStr),
        f(5, "immutable", Ty::Bool),
    ],
};

static LABEL_SELECTOR: Message = Message {
    name: "LabelSelector",
    fields: &[f(1, "matchLabels", Ty::MapStr)],
};

static CONTAINER_PORT: Message = Message {
    name: "ContainerPort",
    fields: &[
        f(1, "name", Ty::Str),
        f(2, "hostPort", Ty::IntOmitZero),
        f(3, "containerPort", Ty::Int),
        f(4, "protocol", Ty::Str),
        f(5, "hostIP", Ty::Str),
    ],
};

static ENV_VAR: Message = Message {
    name: "EnvVar",
    fields: &[f(1, "name", Ty::Str), f(2, "value", Ty::Str)],
};

static RESOURCES: Message = Message {
    name: "ResourceRequirements",
    fields: &[
        f(1, "limits", Ty::MapQuantity),
        f(2, "requests", Ty::MapQuantity),
    ],
};

static CONTAINER: Message = Message {
    name: "Container",
    fields: &[
        f(1, "name", Ty::Str),
        f(2, "image", Ty::Str),
        r(3, "command", Ty::Str),
        r(4, "args", Ty::Str),
        f(5, "workingDir", Ty::Str),
        r(6, "ports", Ty::Msg(&CONTAINER_PORT)),
        r(7, "env", Ty::Msg(&ENV_VAR)),
        f(8, "resources", Ty::Msg(&RESOURCES)),
        f(13, "terminationMessagePath", Ty::Str),
        f(14, "imagePullPolicy", Ty::Str),
        f(16, "stdin", Ty::Bool),
        f(17, "stdinOnce", Ty::Bool),
        f(18, "tty", Ty::Bool),
        f(20, "terminationMessagePolicy", Ty::Str),
    ],
};

static POD_SPEC: Message = Message {
    name: "PodSpec",
    fields: &[
        r(2, "containers", Ty::Msg(&CONTAINER)),
        f(3, "restartPolicy", Ty::Str),
        f(4, "terminationGracePeriodSeconds", Ty::Int),
        f(6, "dnsPolicy", Ty::Str),
        f(7, "nodeSelector", Ty::MapStr),
        f(8, "serviceAccountName", Ty::Str),
        f(9, "serviceAccount", Ty::Str),
        f(10, "nodeName", Ty::Str),
        f(11, "hostNetwork", Ty::Bool),
        f(12, "hostPID", Ty::Bool),
        f(13, "hostIPC", Ty::Bool),
        f(16, "hostname", Ty::Str),
        f(17, "subdomain", Ty::Str),
        f(19, "schedulerName", Ty::Str),
        f(24, "priorityClassName", Ty::Str),
    ],
};

static POD_TEMPLATE_SPEC: Message = Message {
    name: "PodTemplateSpec",
    fields: &[
        f(1, "metadata", Ty::Msg(&OBJECT_META)),
        f(2, "spec", Ty::Msg(&POD_SPEC)),
    ],
};

static ROLLING_UPDATE: Message = Message {
    name: "RollingUpdateDeployment",
    fields: &[
        f(1, "maxUnavailable", Ty::IntOrString),
        f(2, "maxSurge", Ty::IntOrString),
    ],
};

static DEPLOYMENT_STRATEGY: Message = Message {
    name: "DeploymentStrategy",
    fields: &[
        f(1, "type", Ty::Str),
        f(2, "rollingUpdate", Ty::Msg(&ROLLING_UPDATE)),
    ],
};

static DEPLOYMENT_SPEC: Message = Message {
    name: "DeploymentSpec",
    fields: &[
        f(1, "replicas", Ty::Int),
        f(2, "selector", Ty::Msg(&LABEL_SELECTOR)),
        f(3, "template", Ty::Msg(&POD_TEMPLATE_SPEC)),
        f(4, "strategy", Ty::Msg(&DEPLOYMENT_STRATEGY)),
        f(5, "minReadySeconds", Ty::Int),
        f(6, "revisionHistoryLimit", Ty::Int),
        f(7, "paused", Ty::Bool),
        f(9, "progressDeadlineSeconds", Ty::Int),
    ],
};

static DEPLOYMENT: Message = Message {
    name: "Deployment",
    fields: &[
        f(1, "metadata", Ty::Msg(&OBJECT_META)),
        f(2, "spec", Ty::Msg(&DEPLOYMENT_SPEC)),
        f(3, "status", Ty::Ignore),
    ],
};

static SERVICE_PORT: Message = Message {
    name: "ServicePort",
    fields: &[
        f(1, "name", Ty::Str),
        f(2, "protocol", Ty::Str),
        f(3, "port", Ty::Int),
        f(4, "targetPort", Ty::IntOrString),
        f(5, "nodePort", Ty::IntOmitZero),
        f(6, "appProtocol", Ty::Str),
    ],
};

static SERVICE_SPEC: Message = Message {
    name: "ServiceSpec",
    fields: &[
        r(1, "ports", Ty::Msg(&SERVICE_PORT)),
        f(2, "selector", Ty::MapStr),
        f(3, "clusterIP", Ty::Str),
        f(4, "type", Ty::Str),
        r(5, "externalIPs", Ty::Str),
        f(7, "sessionAffinity", Ty::Str),
        f(8, "loadBalancerIP", Ty::Str),
        f(10, "externalName", Ty::Str),
        f(11, "externalTrafficPolicy", Ty::Str),
        f(12, "healthCheckNodePort", Ty::IntOmitZero),
        f(13, "publishNotReadyAddresses", Ty::Bool),
        r(18, "clusterIPs", Ty::Str),
    ],
};

static SERVICE: Message = Message {
    name: "Service",
    fields: &[
        f(1, "metadata", Ty::Msg(&OBJECT_META)),
        f(2, "spec", Ty::Msg(&SERVICE_SPEC)),
        f(3, "status", Ty::Ignore),
    ],
};

static RESOURCE_ATTRIBUTES: Message = Message {
    name: "ResourceAttributes",
    fields: &[
        f(1, "namespace", Ty::Str),
        f(2, "verb", Ty::Str),
        f(3, "group", Ty::Str),
        f(4, "version", Ty::Str),
        f(5, "resource", Ty::Str),
        f(6, "subresource", Ty::Str),
        f(7, "name", Ty::Str),
    ],
};

static NON_RESOURCE_ATTRIBUTES: Message = Message {
    name: "NonResourceAttributes",
    fields: &[f(1, "path", Ty::Str), f(2, "verb", Ty::Str)],
};

static SSAR_SPEC: Message = Message {
    name: "SelfSubjectAccessReviewSpec",
    fields: &[
        f(1, "resourceAttributes", Ty::Msg(&RESOURCE_ATTRIBUTES)),
        f(
            2,
            "nonResourceAttributes",
            Ty::Msg(&NON_RESOURCE_ATTRIBUTES),
        ),
    ],
};

static SELF_SUBJECT_ACCESS_REVIEW: Message = Message {
    name: "SelfSubjectAccessReview",
    fields: &[
        f(1, "metadata", Ty::Msg(&OBJECT_META)),
        f(2, "spec", Ty::Msg(&SSAR_SPEC)),
        f(3, "status", Ty::Ignore),
    ],
};

static PRECONDITIONS: Message = Message {
    name: "Preconditions",
    fields: &[f(1, "uid", Ty::Str), f(2, "resourceVersion", Ty::Str)],
};

static DELETE_OPTIONS: Message = Message {
    name: "DeleteOptions",
    fields: &[
        f(1, "gracePeriodSeconds", Ty::Int),
        f(2, "preconditions", Ty::Msg(&PRECONDITIONS)),
        f(3, "orphanDependents", Ty::Bool),
        f(4, "propagationPolicy", Ty::Str),
        r(5, "dryRun", Ty::Str),
        f(
            6,
            "ignoreStoreReadErrorWithClusterBreakingPotential",
            Ty::Bool,
        ),
    ],
};

static EVICTION: Message = Message {
    name: "Eviction",
    fields: &[
        f(1, "metadata", Ty::Msg(&OBJECT_META)),
        f(2, "deleteOptions", Ty::Msg(&DELETE_OPTIONS)),
    ],
};

static TYPE_META: Message = Message {
    name: "TypeMeta",
    fields: &[f(1, "apiVersion", Ty::Str), f(2, "kind", Ty::Str)],
};

static QUANTITY: Message = Message {
    name: "Quantity",
    fields: &[f(1, "string", Ty::Str)],
};

static INT_OR_STRING: Message = Message {
    name: "IntOrString",
    fields: &[
        f(1, "type", Ty::Int),
        f(2, "intVal", Ty::Int),
        f(3, "strVal", Ty::Str),
    ],
};

static TIME: Message = Message {
    name: "Time",
    fields: &[f(1, "seconds", Ty::Int), f(2, "nanos", Ty::Int)],
};

static MAP_ENTRY_STR: Message = Message {
    name: "map entry",
    fields: &[f(1, "key", Ty::Str), f(2, "value", Ty::Str)],
};

static MAP_ENTRY_BYTES: Message = Message {
    name: "map entry",
    fields: &[f(1, "key", Ty::Str), f(2, "value", Ty::Bytes)],
};

static MAP_ENTRY_QUANTITY: Message = Message {
    name: "map entry",
    fields: &[f(1, "key", Ty::Str), f(2, "value", Ty::Msg(&QUANTITY))],
};

fn message_for(api_version: &str, kind: &str) -> Option<&'static Message> {
    match (api_version, kind) {
        ("v1", "Namespace") => Some(&NAMESPACE),
        ("v1", "ConfigMap") => Some(&CONFIG_MAP),
        ("v1", "Secret") => Some(&SECRET),
        ("v1", "Service") => Some(&SERVICE),
        ("apps/v1", "Deployment") => Some(&DEPLOYMENT),
        ("policy/v1", "Eviction") => Some(&EVICTION),
        // Typed clients send DeleteOptions under whichever group they delete in.
        (_, "DeleteOptions") => Some(&DELETE_OPTIONS),
        ("authorization.k8s.io/v1", "SelfSubjectAccessReview") => Some(&SELF_SUBJECT_ACCESS_REVIEW),
        _ => None,
    }
}

struct Reader<'a> {
    buf: &'a [u8],
}

enum Wire<'a> {
    Varint(u64),
    Len(&'a [u8]),
    Fixed,
}

impl<'a> Reader<'a> {
    fn varint(&mut self) -> Result<u64, ProtoError> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let (&b, rest) = self.buf.split_first().ok_or(ProtoError::Malformed)?;
            self.buf = rest;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(ProtoError::Malformed)
    }

    fn next(&mut self) -> Result<Option<(u32, Wire<'a>)>, ProtoError> {
        if self.buf.is_empty() {
            return Ok(None);
        }
        let key = self.varint()?;
        let tag = u32::try_from(key >> 3).map_err(|_| ProtoError::Malformed)?;
        let wire = match key & 7 {
            0 => Wire::Varint(self.varint()?),
            1 | 5 => {
                let n = if key & 7 == 1 { 8 } else { 4 };
                if self.buf.len() < n {
                    return Err(ProtoError::Malformed);
                }
                self.buf = &self.buf[n..];
                Wire::Fixed
            }
            2 => {
                let n = usize::try_from(self.varint()?).map_err(|_| ProtoError::Malformed)?;
                if self.buf.len() < n {
                    return Err(ProtoError::Malformed);
                }
                let (v, rest) = self.buf.split_at(n);
                self.buf = rest;
                Wire::Len(v)
            }
            _ => return Err(ProtoError::Malformed),
        };
        Ok(Some((tag, wire)))
    }
}

fn decode_message(msg: &'static Message, buf: &[u8]) -> Result<Map<String, Value>, ProtoError> {
    let mut out = Map::new();
    let mut reader = Reader { buf };
    while let Some((tag, wire)) = reader.next()? {
        let field = msg
            .fields
            .iter()
            .find(|f| f.tag == tag)
            .ok_or(ProtoError::UnknownField {
                message: msg.name,
                field: tag,
            })?;
        let value = match (field.ty, wire) {
            (Ty::Ignore, _) => continue,
            (Ty::Str, Wire::Len(b)) => {
                Value::String(String::from_utf8(b.to_vec()).map_err(|_| ProtoError::Malformed)?)
            }
            (Ty::Bytes, Wire::Len(b)) => {
                Value::String(base64::engine::general_purpose::STANDARD.encode(b))
            }
            (Ty::Bool, Wire::Varint(v)) => Value::Bool(v != 0),
            // int32 negatives are sign-extended to 64 bits on the wire, so `as i64` is right.
            (Ty::Int, Wire::Varint(v)) => Value::from(v as i64),
            (Ty::IntOmitZero, Wire::Varint(0)) => continue,
            (Ty::IntOmitZero, Wire::Varint(v)) => Value::from(v as i64),
            (Ty::Msg(m), Wire::Len(b)) => Value::Object(decode_message(m, b)?),
            (Ty::Time, Wire::Len(b)) => {
                let t = decode_message(&TIME, b)?;
                let secs = t.get("seconds").and_then(Value::as_i64).unwrap_or(0);
                if secs == 0 {
                    continue;
                }
                let when =
                    chrono::DateTime::from_timestamp(secs, 0).ok_or(ProtoError::Malformed)?;
                Value::String(when.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
            }
            (Ty::IntOrString, Wire::Len(b)) => {
                let v = decode_message(&INT_OR_STRING, b)?;
                if v.get("type").and_then(Value::as_i64) == Some(1) {
                    v.get("strVal")
                        .cloned()
                        .unwrap_or(Value::String(String::new()))
                } else {
                    v.get("intVal").cloned().unwrap_or(Value::from(0))
                }
            }
            (Ty::MapStr | Ty::MapBytes | Ty::MapQuantity, Wire::Len(b)) => {
                let entry_msg = match field.ty {
                    Ty::MapStr => &MAP_ENTRY_STR,
                    Ty::MapBytes => &MAP_ENTRY_BYTES,
                    _ => &MAP_ENTRY_QUANTITY,
                };
                let e = decode_message(entry_msg, b)?;
                let key = e
                    .get("key")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string();
                let value = match e.get("value") {
                    Some(Value::Object(q)) => q.get("string").cloned().unwrap_or(Value::Null),
                    Some(v) => v.clone(),
                    None => Value::String(String::new()),
                };
                let map = out
                    .entry(field.name)
                    .or_insert_with(|| Value::Object(Map::new()));
                if let Value::Object(m) = map {
                    m.insert(key, value);
                }
                continue;
            }
            (_, Wire::Fixed) | (_, _) => return Err(ProtoError::Malformed),
        };
        // Go's protobuf writes every non-pointer scalar; its JSON omits the empty ones, and
        // an empty string or false means "unset" to the API either way.
        let unset_generation = field.name == "generation" && value.as_i64() == Some(0);
        if !field.repeated && matches!(&value, Value::Bool(false))
            || value.as_str() == Some("")
            || unset_generation
        {
            continue;
        }
        if field.repeated {
            let list = out
                .entry(field.name)
                .or_insert_with(|| Value::Array(Vec::new()));
            if let Value::Array(a) = list {
                a.push(value);
            }
        } else {
            out.insert(field.name.to_string(), value);
        }
    }
    Ok(out)
}

/// Decode an enveloped protobuf body into the JSON object it encodes.
pub fn decode(body: &[u8]) -> Result<Value, ProtoError> {
    let rest = body.strip_prefix(MAGIC).ok_or(ProtoError::NoEnvelope)?;
    let mut reader = Reader { buf: rest };
    let (mut type_meta, mut raw) = (Map::new(), None);
    while let Some((tag, wire)) = reader.next()? {
        match (tag, wire) {
            (1, Wire::Len(b)) => type_meta = decode_message(&TYPE_META, b)?,
            (2, Wire::Len(b)) => raw = Some(b),
            _ => {}
        }
    }
    let api_version = type_meta
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let kind = type_meta
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let msg = message_for(&api_version, &kind)
        .ok_or_else(|| ProtoError::UnsupportedKind(format!("{api_version}/{kind}")))?;
    let mut obj = decode_message(msg, raw.unwrap_or_default())?;
    obj.insert("apiVersion".into(), Value::String(api_version));
    obj.insert("kind".into(), Value::String(kind));
    Ok(Value::Object(obj))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn len_field(tag: u32, bytes: &[u8]) -> Vec<u8> {
        let mut out = vec![((tag << 3) | 2) as u8, bytes.len() as u8];
        out.extend_from_slice(bytes);
        out
    }

    #[test]
    fn decodes_a_namespace() {
        let meta = len_field(1, b"demo");
        let labels = [len_field(1, b"a"), len_field(2, b"b")].concat();
        let meta = [meta, len_field(11, &labels)].concat();
        let ns = len_field(1, &meta);
        let tm = [len_field(1, b"v1"), len_field(2, b"Namespace")].concat();
        let body = [MAGIC.to_vec(), len_field(1, &tm), len_field(2, &ns)].concat();
        let v = decode(&body).unwrap();
        assert_eq!(v["metadata"]["name"], "demo");
        assert_eq!(v["metadata"]["labels"]["a"], "b");
        assert_eq!(v["kind"], "Namespace");
    }
}
