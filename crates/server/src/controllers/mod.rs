//! The controllers' decision logic: pure, deterministic functions over k8s-openapi types that
//! compute the desired state and the difference to apply, one module per upstream controller.
//!
//! The wiring (informers, an internal client, work queues, expectations for writes not yet seen
//! in the cache, periodic resync) lives elsewhere and stays thin: it feeds these functions the
//! observed objects and the current time, then applies what they return. Keeping the logic free
//! of IO and clocks is what makes each decision unit-testable.

pub mod allocator;
pub mod daemonset;
pub mod deployment;
pub mod endpoints;
pub mod endpointslice;
pub mod gc;
pub mod namespace;
pub mod nodeipam;
pub mod nodelifecycle;
pub mod replicaset;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use k8s_openapi::chrono::{DateTime, Utc};
use std::collections::BTreeMap;

/// Why a label selector cannot be used. The object is invalid; retrying will not help.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectorError {
    #[error("invalid label selector operator {0:?} (want In, NotIn, Exists or DoesNotExist)")]
    Operator(String),
    #[error("label selector operator {operator} on key {key:?} needs at least one value")]
    MissingValues { key: String, operator: String },
}

/// Whether `labels` match a `metav1.LabelSelector` (matchLabels and matchExpressions ANDed).
/// An empty selector matches everything, as `metav1.LabelSelectorAsSelector` makes it.
pub fn selector_matches(
    selector: &LabelSelector,
    labels: Option<&BTreeMap<String, String>>,
) -> Result<bool, SelectorError> {
    let get = |k: &str| labels.and_then(|l| l.get(k));
    for (k, v) in selector.match_labels.iter().flatten() {
        if get(k) != Some(v) {
            return Ok(false);
        }
    }
    for e in selector.match_expressions.iter().flatten() {
        let values = e.values.as_deref().unwrap_or(&[]);
        let value = get(&e.key);
        let ok = match e.operator.as_str() {
            "In" | "NotIn" if values.is_empty() => {
                return Err(SelectorError::MissingValues {
                    key: e.key.clone(),
                    operator: e.operator.clone(),
                })
            }
            "In" => value.is_some_and(|v| values.contains(v)),
            "NotIn" => !value.is_some_and(|v| values.contains(v)),
            "Exists" => value.is_some(),
            "DoesNotExist" => value.is_none(),
            other => return Err(SelectorError::Operator(other.to_string())),
        };
        if !ok {
            return Ok(false);
        }
    }
    Ok(true)
}

/// The object's controller ownerReference (`metav1.GetControllerOf`).
pub fn controller_of(meta: &ObjectMeta) -> Option<&OwnerReference> {
    meta.owner_references
        .iter()
        .flatten()
        .find(|o| o.controller == Some(true))
}

/// A controller ownerReference to `owner` with blockOwnerDeletion, as controllers set on what
/// they create (`metav1.NewControllerRef`).
pub fn controller_ref(api_version: &str, kind: &str, owner: &ObjectMeta) -> OwnerReference {
    OwnerReference {
        api_version: api_version.into(),
        kind: kind.into(),
        name: owner.name.clone().unwrap_or_default(),
        uid: owner.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// The pod's phase (`""` when unset).
pub fn pod_phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

/// Whether the pod is neither terminal nor being deleted (`controller.IsPodActive`).
pub fn is_pod_active(pod: &Pod) -> bool {
    !matches!(pod_phase(pod), "Succeeded" | "Failed") && pod.metadata.deletion_timestamp.is_none()
}

/// The pod's `Ready` condition: (is it True, when did it last transition).
pub fn pod_ready(pod: &Pod) -> (bool, Option<DateTime<Utc>>) {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .into_iter()
        .flatten()
        .find(|c| c.type_ == "Ready")
        .map(|c| {
            (
                c.status == "True",
                c.last_transition_time.as_ref().map(|t| t.0),
            )
        })
        .unwrap_or((false, None))
}

/// Whether the pod has been Ready for at least `min_ready_seconds` at `now`
/// (`podutil.IsPodAvailable`).
pub fn pod_available(pod: &Pod, min_ready_seconds: i32, now: DateTime<Utc>) -> bool {
    match pod_ready(pod) {
        (false, _) => false,
        (true, _) if min_ready_seconds <= 0 => true,
        (true, Some(since)) => {
            since + k8s_openapi::chrono::Duration::seconds(i64::from(min_ready_seconds)) <= now
        }
        (true, None) => false,
    }
}

#[cfg(test)]
pub(crate) mod testutil {
    use k8s_openapi::api::core::v1::{Pod, PodCondition, PodSpec, PodStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
    use k8s_openapi::chrono::{DateTime, TimeZone, Utc};
    use std::collections::BTreeMap;

    pub fn t(secs: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_700_000_000 + secs, 0).unwrap()
    }

    pub fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// A running, Ready (since `ready_since`) pod in "default" with the given labels.
    pub fn pod(name: &str, lbls: &[(&str, &str)], ready_since: Option<i64>) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("default".into()),
                uid: Some(format!("uid-{name}")),
                labels: Some(labels(lbls)),
                creation_timestamp: Some(Time(t(0))),
                ..Default::default()
            },
            spec: Some(PodSpec {
                node_name: Some("node-a".into()),
                ..Default::default()
            }),
            status: Some(PodStatus {
                phase: Some("Running".into()),
                conditions: Some(vec![PodCondition {
                    type_: "Ready".into(),
                    status: if ready_since.is_some() {
                        "True"
                    } else {
                        "False"
                    }
                    .into(),
                    last_transition_time: Some(Time(t(ready_since.unwrap_or(0)))),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;
    use testutil::labels;

    #[test]
    fn label_selectors() {
        let l = labels(&[("app", "web"), ("tier", "fe")]);
        let sel = |ml: &[(&str, &str)], exprs: Vec<(&str, &str, &[&str])>| LabelSelector {
            match_labels: Some(labels(ml)),
            match_expressions: Some(
                exprs
                    .into_iter()
                    .map(|(k, op, v)| LabelSelectorRequirement {
                        key: k.into(),
                        operator: op.into(),
                        values: Some(v.iter().map(|s| s.to_string()).collect()),
                    })
                    .collect(),
            ),
        };
        assert_eq!(selector_matches(&sel(&[], vec![]), Some(&l)), Ok(true));
        assert_eq!(
            selector_matches(&sel(&[("app", "web")], vec![]), Some(&l)),
            Ok(true)
        );
        assert_eq!(
            selector_matches(&sel(&[("app", "db")], vec![]), Some(&l)),
            Ok(false)
        );
        assert_eq!(
            selector_matches(&sel(&[], vec![("tier", "In", &["fe", "be"])]), Some(&l)),
            Ok(true)
        );
        assert_eq!(
            selector_matches(&sel(&[], vec![("tier", "NotIn", &["fe"])]), Some(&l)),
            Ok(false)
        );
        assert_eq!(
            selector_matches(&sel(&[], vec![("x", "DoesNotExist", &[])]), Some(&l)),
            Ok(true)
        );
        assert_eq!(
            selector_matches(&sel(&[], vec![("x", "Exists", &[])]), None),
            Ok(false)
        );
        assert!(selector_matches(&sel(&[], vec![("x", "Gt", &["1"])]), Some(&l)).is_err());
        assert!(selector_matches(&sel(&[], vec![("x", "In", &[])]), Some(&l)).is_err());
    }
}
