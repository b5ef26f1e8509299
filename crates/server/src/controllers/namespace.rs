//! Namespace lifecycle and default ServiceAccount decisions.
//!
//! Follows the namespace controller (`pkg/controller/namespace/deletion`): for a namespace being
//! deleted, every namespaced resource that still has objects in it is deleted as a collection;
//! the status conditions say what remains (`NamespaceContentRemaining`,
//! `NamespaceFinalizersRemaining`, with upstream's reasons and messages, and the discovery,
//! group-version and content-failure conditions reported healthy); once nothing remains the
//! `kubernetes` finalizer is removed from `spec.finalizers` (the `/finalize` subresource) so the
//! API server can delete the namespace. And the ServiceAccount controller: every active namespace
//! has a `default` ServiceAccount.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Namespace, NamespaceCondition, ServiceAccount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::chrono::{DateTime, Utc};

/// The finalizer the API server puts in `spec.finalizers` of every namespace.
pub const FINALIZER_KUBERNETES: &str = "kubernetes";
pub const DEFAULT_SERVICE_ACCOUNT: &str = "default";

/// What is left of one resource in the namespace.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResourceContent {
    /// The group resource as upstream prints it: `pods`, `deployments.apps`.
    pub resource: String,
    /// How many objects remain.
    pub remaining: usize,
    /// Finalizers on those objects, with how many objects carry each.
    pub finalizers: BTreeMap<String, usize>,
}

/// What one sync of a terminating namespace should do.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NamespacePlan {
    /// Resources to delete as a collection in the namespace (those with objects left).
    pub delete_collections: Vec<String>,
    /// The new `status.conditions`.
    pub conditions: Vec<NamespaceCondition>,
    /// Remove the `kubernetes` finalizer: the namespace is empty.
    pub finalize: bool,
}

fn condition(
    type_: &str,
    status: &str,
    reason: &str,
    message: String,
    existing: &[NamespaceCondition],
    now: DateTime<Utc>,
) -> NamespaceCondition {
    let c = NamespaceCondition {
        type_: type_.into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message),
        last_transition_time: Some(Time(now)),
    };
    // An unchanged condition keeps its transition time (upstream `updateConditions`).
    match existing.iter().find(|e| e.type_ == type_) {
        Some(e) if e.status == c.status && e.reason == c.reason && e.message == c.message => {
            e.clone()
        }
        _ => c,
    }
}

/// The plan for a namespace being deleted, or `None` if it is not being deleted.
pub fn reconcile_deleting(
    ns: &Namespace,
    content: &[ResourceContent],
    now: DateTime<Utc>,
) -> Option<NamespacePlan> {
    ns.metadata.deletion_timestamp.as_ref()?;
    let existing = ns
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_deref())
        .unwrap_or(&[]);
    let mut remaining: Vec<&ResourceContent> = content.iter().filter(|c| c.remaining > 0).collect();
    remaining.sort_by(|a, b| a.resource.cmp(&b.resource));
    let mut by_finalizer: BTreeMap<&str, usize> = BTreeMap::new();
    for c in &remaining {
        for (f, n) in &c.finalizers {
            *by_finalizer.entry(f.as_str()).or_default() += n;
        }
    }
    let mut conditions = vec![
        condition(
            "NamespaceDeletionDiscoveryFailure",
            "False",
            "ResourcesDiscovered",
            "All resources successfully discovered".into(),
            existing,
            now,
        ),
        condition(
            "NamespaceDeletionGroupVersionParsingFailure",
            "False",
            "ParsedGroupVersions",
            "All legacy kube types successfully parsed".into(),
            existing,
            now,
        ),
        condition(
            "NamespaceDeletionContentFailure",
            "False",
            "ContentDeleted",
            "All content successfully deleted, may be waiting on finalization".into(),
            existing,
            now,
        ),
    ];
    if remaining.is_empty() {
        conditions.push(condition(
            "NamespaceContentRemaining",
            "False",
            "ContentRemoved",
            "All content successfully removed".into(),
            existing,
            now,
        ));
    } else {
        let list: Vec<String> = remaining
            .iter()
            .map(|c| format!("{} has {} resource instances", c.resource, c.remaining))
            .collect();
        conditions.push(condition(
            "NamespaceContentRemaining",
            "True",
            "SomeResourcesRemain",
            format!("Some resources are remaining: {}", list.join(", ")),
            existing,
            now,
        ));
    }
    if by_finalizer.is_empty() {
        conditions.push(condition(
            "NamespaceFinalizersRemaining",
            "False",
            "ContentHasNoFinalizers",
            "All content-preserving finalizers finished".into(),
            existing,
            now,
        ));
    } else {
        let list: Vec<String> = by_finalizer
            .iter()
            .map(|(f, n)| format!("{f} in {n} resource instances"))
            .collect();
        conditions.push(condition(
            "NamespaceFinalizersRemaining",
            "True",
            "SomeFinalizersRemain",
            format!(
                "Some content in the namespace has finalizers remaining: {}",
                list.join(", ")
            ),
            existing,
            now,
        ));
    }
    let has_finalizer = ns
        .spec
        .as_ref()
        .and_then(|s| s.finalizers.as_ref())
        .is_some_and(|f| f.iter().any(|f| f == FINALIZER_KUBERNETES));
    Some(NamespacePlan {
        delete_collections: remaining.iter().map(|c| c.resource.clone()).collect(),
        conditions,
        finalize: remaining.is_empty() && has_finalizer,
    })
}

/// The `default` ServiceAccount to create in `ns`, if it is active and lacks one.
pub fn default_service_account(
    ns: &Namespace,
    existing: &[ServiceAccount],
) -> Option<ServiceAccount> {
    let name = ns.metadata.name.as_deref()?;
    let terminating = ns.metadata.deletion_timestamp.is_some()
        || ns.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Terminating");
    if terminating {
        return None;
    }
    let present = existing.iter().any(|sa| {
        sa.metadata.namespace.as_deref() == Some(name)
            && sa.metadata.name.as_deref() == Some(DEFAULT_SERVICE_ACCOUNT)
    });
    (!present).then(|| ServiceAccount {
        metadata: ObjectMeta {
            name: Some(DEFAULT_SERVICE_ACCOUNT.into()),
            namespace: Some(name.into()),
            ..Default::default()
        },
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controllers::testutil::t;
    use k8s_openapi::api::core::v1::{NamespaceSpec, NamespaceStatus};

    fn ns(deleting: bool) -> Namespace {
        Namespace {
            metadata: ObjectMeta {
                name: Some("team".into()),
                deletion_timestamp: deleting.then(|| Time(t(0))),
                ..Default::default()
            },
            spec: Some(NamespaceSpec {
                finalizers: Some(vec![FINALIZER_KUBERNETES.into()]),
            }),
            status: Some(NamespaceStatus {
                phase: Some(if deleting { "Terminating" } else { "Active" }.into()),
                conditions: None,
            }),
        }
    }

    fn cond<'a>(p: &'a NamespacePlan, type_: &str) -> &'a NamespaceCondition {
        p.conditions.iter().find(|c| c.type_ == type_).unwrap()
    }

    #[test]
    fn active_namespaces_are_left_alone() {
        assert!(reconcile_deleting(&ns(false), &[], t(0)).is_none());
    }

    #[test]
    fn deletes_remaining_content_and_reports_it() {
        let content = [
            ResourceContent {
                resource: "pods".into(),
                remaining: 2,
                finalizers: BTreeMap::from([("example.com/keep".to_string(), 1)]),
            },
            ResourceContent {
                resource: "deployments.apps".into(),
                remaining: 1,
                ..Default::default()
            },
            ResourceContent {
                resource: "configmaps".into(),
                remaining: 0,
                ..Default::default()
            },
        ];
        let p = reconcile_deleting(&ns(true), &content, t(5)).unwrap();
        assert_eq!(p.delete_collections, ["deployments.apps", "pods"]);
        assert!(!p.finalize);
        let c = cond(&p, "NamespaceContentRemaining");
        assert_eq!(
            c.message.as_deref(),
            Some("Some resources are remaining: deployments.apps has 1 resource instances, pods has 2 resource instances")
        );
        let f = cond(&p, "NamespaceFinalizersRemaining");
        assert_eq!(
            (f.status.as_str(), f.message.as_deref()),
            (
                "True",
                Some("Some content in the namespace has finalizers remaining: example.com/keep in 1 resource instances")
            )
        );
        assert_eq!(p.conditions.len(), 5);
    }

    #[test]
    fn empty_namespace_is_finalized_and_conditions_are_stable() {
        let p = reconcile_deleting(&ns(true), &[], t(5)).unwrap();
        assert!(p.finalize && p.delete_collections.is_empty());
        assert_eq!(
            cond(&p, "NamespaceContentRemaining").reason.as_deref(),
            Some("ContentRemoved")
        );
        let mut again = ns(true);
        again.status.as_mut().unwrap().conditions = Some(p.conditions.clone());
        let p2 = reconcile_deleting(&again, &[], t(50)).unwrap();
        assert_eq!(p2.conditions, p.conditions);
        // Already finalized: nothing more to remove.
        again.spec.as_mut().unwrap().finalizers = Some(vec![]);
        assert!(!reconcile_deleting(&again, &[], t(60)).unwrap().finalize);
    }

    #[test]
    fn default_service_account_per_active_namespace() {
        let sa = default_service_account(&ns(false), &[]).unwrap();
        assert_eq!(sa.metadata.name.as_deref(), Some("default"));
        assert_eq!(sa.metadata.namespace.as_deref(), Some("team"));
        assert!(default_service_account(&ns(false), &[sa]).is_none());
        assert!(default_service_account(&ns(true), &[]).is_none());
    }
}
