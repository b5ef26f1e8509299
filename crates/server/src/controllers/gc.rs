//! Garbage collector decisions over the ownerReference graph.
//!
//! Follows `pkg/controller/garbagecollector` (`attemptToDeleteItem`, `processDeletingDependentsItem`,
//! `orphanDependents`): for every object with ownerReferences, its owners are classified as
//! solid (present), dangling (no object with that uid) or waiting for dependents (being deleted
//! with the `foregroundDeletion` finalizer).
//! - some solid owner: the object stays; references to dangling/waiting owners are removed.
//! - no solid owner but an owner waiting for dependents: delete the object in the foreground too.
//! - otherwise (all owners gone): delete it, propagating by its own finalizers (`orphan` →
//!   Orphan, `foregroundDeletion` → Foreground, else Background).
//! - an owner being deleted with the `orphan` finalizer: remove the references to it from all
//!   dependents, then remove the finalizer (apply the reference removals first).
//! - an owner being deleted with `foregroundDeletion`: the finalizer is removed once no dependent
//!   that references it with `blockOwnerDeletion: true` exists any more.
//!
//! Objects are identified by uid; objects without ownerReferences are never collected. The
//! input is the whole graph (every kind the collector watches), as the collector's graph builder
//! keeps it.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

pub const FINALIZER_ORPHAN: &str = "orphan";
pub const FINALIZER_FOREGROUND: &str = "foregroundDeletion";

/// `metav1.DeletionPropagation`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Propagation {
    Background,
    Foreground,
    Orphan,
}

impl Propagation {
    /// The value as written in DeleteOptions.
    pub fn as_str(self) -> &'static str {
        match self {
            Propagation::Background => "Background",
            Propagation::Foreground => "Foreground",
            Propagation::Orphan => "Orphan",
        }
    }
}

/// The finalizer the API server adds when deleting with `propagation` (none for Background).
pub fn finalizer_for(propagation: Propagation) -> Option<&'static str> {
    match propagation {
        Propagation::Background => None,
        Propagation::Foreground => Some(FINALIZER_FOREGROUND),
        Propagation::Orphan => Some(FINALIZER_ORPHAN),
    }
}

/// One delete request the collector issues.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Deletion {
    pub uid: String,
    pub propagation: Propagation,
}

/// What one pass of the collector should do.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GcPlan {
    /// Objects to delete (with a uid precondition), sorted by uid.
    pub delete: Vec<Deletion>,
    /// Per dependent uid, the owner uids whose references must be removed.
    pub remove_owner_refs: BTreeMap<String, Vec<String>>,
    /// (owner uid, finalizer) pairs to remove.
    pub remove_finalizers: Vec<(String, &'static str)>,
}

fn has_finalizer(m: &ObjectMeta, f: &str) -> bool {
    m.finalizers.iter().flatten().any(|x| x == f)
}

fn deleting_with(m: &ObjectMeta, f: &str) -> bool {
    m.deletion_timestamp.is_some() && has_finalizer(m, f)
}

/// Computes the collector's actions for the whole object graph.
pub fn plan(objects: &[ObjectMeta]) -> GcPlan {
    let mut out = GcPlan::default();
    let by_uid: BTreeMap<&str, &ObjectMeta> = objects
        .iter()
        .filter_map(|m| m.uid.as_deref().map(|u| (u, m)))
        .collect();
    // owner uid → dependents (uid, blockOwnerDeletion)
    let mut dependents: BTreeMap<&str, Vec<(&str, bool)>> = BTreeMap::new();
    for (uid, m) in &by_uid {
        for r in m.owner_references.iter().flatten() {
            dependents
                .entry(r.uid.as_str())
                .or_default()
                .push((uid, r.block_owner_deletion == Some(true)));
        }
    }
    let mut deletions: BTreeSet<Deletion> = BTreeSet::new();

    for (uid, m) in &by_uid {
        // Owners being deleted: orphaning and foreground bookkeeping.
        if deleting_with(m, FINALIZER_ORPHAN) {
            for (dep, _) in dependents.get(uid).into_iter().flatten() {
                out.remove_owner_refs
                    .entry(dep.to_string())
                    .or_default()
                    .push(uid.to_string());
            }
            out.remove_finalizers
                .push((uid.to_string(), FINALIZER_ORPHAN));
        } else if deleting_with(m, FINALIZER_FOREGROUND) {
            let blocking = dependents
                .get(uid)
                .into_iter()
                .flatten()
                .any(|(_, block)| *block);
            if !blocking {
                out.remove_finalizers
                    .push((uid.to_string(), FINALIZER_FOREGROUND));
            }
        }

        // The object as a dependent.
        let refs = m.owner_references.as_deref().unwrap_or(&[]);
        if refs.is_empty() {
            continue;
        }
        // Already being deleted and not waiting on its own dependents: nothing to do.
        if m.deletion_timestamp.is_some() {
            continue;
        }
        let mut solid = false;
        let mut to_remove = Vec::new();
        let mut waiting = false;
        for r in refs {
            match by_uid.get(r.uid.as_str()) {
                None => to_remove.push(r.uid.clone()),
                Some(owner) if deleting_with(owner, FINALIZER_FOREGROUND) => {
                    waiting = true;
                    to_remove.push(r.uid.clone());
                }
                Some(_) => solid = true,
            }
        }
        if solid {
            if !to_remove.is_empty() {
                let e = out.remove_owner_refs.entry(uid.to_string()).or_default();
                e.extend(to_remove);
            }
        } else if waiting && dependents.get(uid).is_some_and(|d| !d.is_empty()) {
            deletions.insert(Deletion {
                uid: uid.to_string(),
                propagation: Propagation::Foreground,
            });
        } else {
            let propagation = if has_finalizer(m, FINALIZER_ORPHAN) {
                Propagation::Orphan
            } else if has_finalizer(m, FINALIZER_FOREGROUND) {
                Propagation::Foreground
            } else {
                Propagation::Background
            };
            deletions.insert(Deletion {
                uid: uid.to_string(),
                propagation,
            });
        }
    }
    for v in out.remove_owner_refs.values_mut() {
        v.sort();
        v.dedup();
    }
    out.delete = deletions.into_iter().collect();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controllers::testutil::t;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{OwnerReference, Time};

    fn obj(uid: &str, owners: &[(&str, bool)]) -> ObjectMeta {
        ObjectMeta {
            uid: Some(uid.into()),
            name: Some(uid.into()),
            owner_references: (!owners.is_empty()).then(|| {
                owners
                    .iter()
                    .map(|(o, block)| OwnerReference {
                        api_version: "v1".into(),
                        kind: "X".into(),
                        name: o.to_string(),
                        uid: o.to_string(),
                        controller: Some(true),
                        block_owner_deletion: Some(*block),
                    })
                    .collect()
            }),
            ..Default::default()
        }
    }

    fn deleting(mut m: ObjectMeta, finalizer: Option<&str>) -> ObjectMeta {
        m.deletion_timestamp = Some(Time(t(0)));
        m.finalizers = finalizer.map(|f| vec![f.to_string()]);
        m
    }

    fn del(uid: &str, p: Propagation) -> Deletion {
        Deletion {
            uid: uid.into(),
            propagation: p,
        }
    }

    #[test]
    fn background_deletes_dependents_of_missing_owners() {
        let objects = [
            obj("deploy", &[]),
            obj("rs", &[("deploy", true)]),
            obj("pod-of-gone-rs", &[("gone", true)]),
            obj("lonely", &[]),
        ];
        let p = plan(&objects);
        assert_eq!(
            p.delete,
            vec![del("pod-of-gone-rs", Propagation::Background)]
        );
        assert!(p.remove_owner_refs.is_empty() && p.remove_finalizers.is_empty());
    }

    #[test]
    fn owner_being_deleted_in_background_keeps_dependents_until_gone() {
        let objects = [deleting(obj("rs", &[]), None), obj("pod", &[("rs", true)])];
        assert_eq!(plan(&objects), GcPlan::default());
    }

    #[test]
    fn dependents_with_another_live_owner_only_lose_the_dangling_ref() {
        let objects = [obj("a", &[]), obj("dep", &[("a", false), ("gone", false)])];
        let p = plan(&objects);
        assert!(p.delete.is_empty());
        assert_eq!(p.remove_owner_refs["dep"], vec!["gone"]);
    }

    #[test]
    fn orphan_removes_refs_then_finalizer() {
        let objects = [
            deleting(obj("rs", &[]), Some(FINALIZER_ORPHAN)),
            obj("p1", &[("rs", true)]),
            obj("p2", &[("rs", true)]),
        ];
        let p = plan(&objects);
        assert!(p.delete.is_empty());
        assert_eq!(p.remove_owner_refs["p1"], vec!["rs"]);
        assert_eq!(p.remove_owner_refs["p2"], vec!["rs"]);
        assert_eq!(
            p.remove_finalizers,
            vec![("rs".to_string(), FINALIZER_ORPHAN)]
        );
    }

    #[test]
    fn foreground_deletes_dependents_and_waits_for_blocking_ones() {
        let objects = [
            deleting(obj("deploy", &[]), Some(FINALIZER_FOREGROUND)),
            obj("rs", &[("deploy", true)]),
            obj("pod", &[("rs", true)]),
        ];
        let p = plan(&objects);
        // The RS has dependents itself, so it is deleted in the foreground as well.
        assert_eq!(p.delete, vec![del("rs", Propagation::Foreground)]);
        assert!(p.remove_finalizers.is_empty());

        // The RS is now deleting in the foreground; its pod goes; the deployment still waits.
        let objects = [
            deleting(obj("deploy", &[]), Some(FINALIZER_FOREGROUND)),
            deleting(obj("rs", &[("deploy", true)]), Some(FINALIZER_FOREGROUND)),
            obj("pod", &[("rs", true)]),
        ];
        let p = plan(&objects);
        assert_eq!(p.delete, vec![del("pod", Propagation::Background)]);
        assert!(p.remove_finalizers.is_empty());

        // The pod is gone: the RS's finalizer comes off; then the RS goes, then the deployment's.
        let objects = [
            deleting(obj("deploy", &[]), Some(FINALIZER_FOREGROUND)),
            deleting(obj("rs", &[("deploy", true)]), Some(FINALIZER_FOREGROUND)),
        ];
        assert_eq!(
            plan(&objects).remove_finalizers,
            vec![("rs".to_string(), FINALIZER_FOREGROUND)]
        );
        let objects = [deleting(obj("deploy", &[]), Some(FINALIZER_FOREGROUND))];
        assert_eq!(
            plan(&objects).remove_finalizers,
            vec![("deploy".to_string(), FINALIZER_FOREGROUND)]
        );
    }

    #[test]
    fn non_blocking_dependents_do_not_hold_the_owner() {
        let objects = [
            deleting(obj("owner", &[]), Some(FINALIZER_FOREGROUND)),
            obj("dep", &[("owner", false)]),
        ];
        let p = plan(&objects);
        assert_eq!(p.delete, vec![del("dep", Propagation::Background)]);
        assert_eq!(
            p.remove_finalizers,
            vec![("owner".to_string(), FINALIZER_FOREGROUND)]
        );
    }

    #[test]
    fn propagation_follows_the_dependents_own_finalizers() {
        let mut dep = obj("dep", &[("gone", true)]);
        dep.finalizers = Some(vec![FINALIZER_ORPHAN.into()]);
        assert_eq!(plan(&[dep]).delete, vec![del("dep", Propagation::Orphan)]);
        assert_eq!(
            finalizer_for(Propagation::Foreground),
            Some(FINALIZER_FOREGROUND)
        );
        assert_eq!(finalizer_for(Propagation::Background), None);
        assert_eq!(Propagation::Orphan.as_str(), "Orphan");
    }
}
