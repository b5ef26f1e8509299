//! Deployment controller decisions: the new ReplicaSet for the current template, how far to
//! scale it and the old ones in this step, revision bookkeeping, history cleanup and status.
//!
//! Follows upstream's `pkg/controller/deployment` one sync at a time (the caller applies the
//! plan; the resulting ReplicaSet events trigger the next sync):
//! - the new ReplicaSet is the oldest owned one whose template equals the Deployment's ignoring
//!   the `pod-template-hash` label; otherwise one is created, named `<deployment>-<hash>`, with the
//!   hash label on its selector, template and labels. The hash is FNV-32a (as upstream) but over
//!   the template's JSON rather than Go's spew dump, so hashes differ from kube-controller-manager's
//!   while being just as stable; a name collision bumps `status.collisionCount`, which feeds the hash.
//! - revisions: the new ReplicaSet gets `deployment.kubernetes.io/revision` = max old revision + 1;
//!   when an old ReplicaSet becomes the new one again (`kubectl rollout undo` patches the template
//!   back) its revision is bumped and the previous value appended to `revision-history`;
//!   the Deployment carries its new ReplicaSet's revision.
//! - RollingUpdate: `maxSurge` rounds up, `maxUnavailable` rounds down, both 0 → 1 unavailable;
//!   scale the new ReplicaSet up within the surge, else scale old ones down: unhealthy replicas
//!   first, then oldest ReplicaSets first, never below `replicas - maxUnavailable` available.
//! - Recreate: scale every old ReplicaSet to 0, wait until their pods are gone, then create/scale
//!   the new one to full size.
//! - once complete, old ReplicaSets beyond `revisionHistoryLimit` (fully scaled down) are deleted.
//! - status and the Available/Progressing conditions with upstream's reasons and messages.
//! - a change of `replicas` (or any change while paused) only scales: the sole active ReplicaSet
//!   takes all replicas, or mid-rollout the difference is spread over the active ReplicaSets in
//!   proportion to their size (upstream's proportional scaling).
//!
//! Unset defaulted fields are treated as their API defaults (replicas 1, RollingUpdate 25%/25%,
//! revisionHistoryLimit 10, progressDeadlineSeconds 600).

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentCondition, DeploymentStatus, ReplicaSet, ReplicaSetSpec,
};
use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::chrono::{DateTime, Duration, Utc};

use super::{controller_of, controller_ref, selector_matches, SelectorError};

pub const REVISION_ANNOTATION: &str = "deployment.kubernetes.io/revision";
pub const REVISION_HISTORY_ANNOTATION: &str = "deployment.kubernetes.io/revision-history";
pub const DESIRED_REPLICAS_ANNOTATION: &str = "deployment.kubernetes.io/desired-replicas";
pub const MAX_REPLICAS_ANNOTATION: &str = "deployment.kubernetes.io/max-replicas";
pub const POD_TEMPLATE_HASH_LABEL: &str = "pod-template-hash";
const LAST_APPLIED_ANNOTATION: &str = "kubectl.kubernetes.io/last-applied-configuration";
const ROLLBACK_TO_ANNOTATION: &str = "deprecated.deployment.rollback.to";

pub const REASON_NEW_RS_CREATED: &str = "NewReplicaSetCreated";
pub const REASON_FOUND_NEW_RS: &str = "FoundNewReplicaSet";
pub const REASON_NEW_RS_AVAILABLE: &str = "NewReplicaSetAvailable";
pub const REASON_RS_UPDATED: &str = "ReplicaSetUpdated";
pub const REASON_TIMED_OUT: &str = "ProgressDeadlineExceeded";
pub const REASON_PAUSED: &str = "DeploymentPaused";
pub const REASON_RESUMED: &str = "DeploymentResumed";
pub const REASON_MIN_AVAILABLE: &str = "MinimumReplicasAvailable";
pub const REASON_MIN_UNAVAILABLE: &str = "MinimumReplicasUnavailable";

const DEFAULT_REVISION_HISTORY_LIMIT: i32 = 10;
const DEFAULT_PROGRESS_DEADLINE_SECONDS: i32 = 600;
const MAX_REVISION_HISTORY_LEN: usize = 2000;

/// A Deployment that cannot be reconciled as it is; the object must be fixed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeploymentError {
    #[error("deployment {name}: {source}")]
    Selector {
        name: String,
        #[source]
        source: SelectorError,
    },
    #[error("deployment {name}: {source}")]
    IntOrPercent {
        name: String,
        #[source]
        source: IntOrPercentError,
    },
    #[error("deployment {name}: too many ReplicaSet name collisions; retry after the conflicting ReplicaSets are gone")]
    Collisions { name: String },
}

/// An int-or-string field that is neither an integer nor a percentage.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid value {value:?} for {field}: must be an integer or a percentage like \"25%\"")]
pub struct IntOrPercentError {
    pub field: &'static str,
    pub value: String,
}

/// What one sync of a Deployment should do.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DeploymentPlan {
    /// Orphan ReplicaSets (by name) to adopt: add the Deployment's controller ownerReference.
    pub adopt: Vec<String>,
    /// Owned ReplicaSets (by name) that no longer match the selector: remove the ownerReference.
    pub release: Vec<String>,
    /// The new ReplicaSet to create.
    pub create: Option<ReplicaSet>,
    /// Existing ReplicaSets whose spec.replicas, minReadySeconds or annotations changed
    /// (the whole updated object; write with the resourceVersion it carries).
    pub update: Vec<ReplicaSet>,
    /// Old ReplicaSets (by name) to delete: history beyond revisionHistoryLimit.
    pub delete: Vec<String>,
    /// The value to set on the Deployment's revision annotation, when it changes.
    pub revision: Option<String>,
    /// The Deployment status to write.
    pub status: DeploymentStatus,
    /// Sync again after this long to check the progress deadline (`requeueStuckDeployment`).
    pub requeue_after: Option<std::time::Duration>,
}

/// Upstream's `rand.SafeEncodeString` alphabet (no vowels, no confusable characters).
const SAFE_ALPHANUMS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

fn fnv32a(hash: u32, bytes: &[u8]) -> u32 {
    bytes
        .iter()
        .fold(hash, |h, b| (h ^ u32::from(*b)).wrapping_mul(0x0100_0193))
}

/// The `pod-template-hash` for a template (`controller.ComputeHash`): FNV-32a over the template
/// (JSON; any existing hash label removed) and the collision count, the decimal digits then
/// mapped through the safe alphabet.
pub fn pod_template_hash(template: &PodTemplateSpec, collision_count: Option<i32>) -> String {
    let stripped = strip_hash(template);
    let json = serde_json::to_vec(&stripped).unwrap_or_default();
    let mut h = fnv32a(0x811c_9dc5, &json);
    if let Some(c) = collision_count {
        let mut bytes = [0u8; 8];
        bytes[..4].copy_from_slice(&(c as u32).to_le_bytes());
        h = fnv32a(h, &bytes);
    }
    h.to_string()
        .bytes()
        .map(|b| SAFE_ALPHANUMS[usize::from(b) % SAFE_ALPHANUMS.len()] as char)
        .collect()
}

fn strip_hash(t: &PodTemplateSpec) -> PodTemplateSpec {
    let mut t = t.clone();
    if let Some(labels) = t.metadata.as_mut().and_then(|m| m.labels.as_mut()) {
        labels.remove(POD_TEMPLATE_HASH_LABEL);
        if labels.is_empty() {
            t.metadata.as_mut().unwrap().labels = None;
        }
    }
    if t.metadata
        .as_ref()
        .is_some_and(|m| *m == ObjectMeta::default())
    {
        t.metadata = None;
    }
    t
}

/// Whether two templates are equal ignoring the `pod-template-hash` label (`EqualIgnoreHash`).
pub fn equal_ignore_hash(a: &PodTemplateSpec, b: &PodTemplateSpec) -> bool {
    strip_hash(a) == strip_hash(b)
}

/// An int-or-percent scaled against `total` (`intstr.GetScaledValueFromIntOrPercent`).
pub fn scaled_value(v: &IntOrString, total: i32, round_up: bool) -> Option<i32> {
    match v {
        IntOrString::Int(i) => Some(*i),
        IntOrString::String(s) => {
            let pct: i64 = s.strip_suffix('%')?.parse().ok()?;
            let num = pct * i64::from(total);
            let val = if round_up {
                (num + 99).div_euclid(100)
            } else {
                num.div_euclid(100)
            };
            i32::try_from(val).ok()
        }
    }
}

/// (maxSurge, maxUnavailable) for `desired` replicas (`ResolveFenceposts`): surge rounds up,
/// unavailable rounds down, and both zero means one may be unavailable.
pub fn resolve_fenceposts(
    max_surge: Option<&IntOrString>,
    max_unavailable: Option<&IntOrString>,
    desired: i32,
) -> Result<(i32, i32), IntOrPercentError> {
    let default = IntOrString::String("25%".into());
    let resolve = |v: Option<&IntOrString>, field: &'static str, up: bool| {
        let v = v.unwrap_or(&default);
        scaled_value(v, desired, up).ok_or_else(|| {
            let s = match v {
                IntOrString::Int(i) => i.to_string(),
                IntOrString::String(s) => s.clone(),
            };
            IntOrPercentError { field, value: s }
        })
    };
    let surge = resolve(max_surge, "spec.strategy.rollingUpdate.maxSurge", true)?;
    let unavailable = resolve(
        max_unavailable,
        "spec.strategy.rollingUpdate.maxUnavailable",
        false,
    )?;
    if surge == 0 && unavailable == 0 {
        return Ok((0, 1));
    }
    Ok((surge, unavailable))
}

fn replicas_of(rs: &ReplicaSet) -> i32 {
    rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
}

fn set_replicas(rs: &mut ReplicaSet, n: i32) {
    rs.spec.get_or_insert_with(Default::default).replicas = Some(n);
}

fn status_of(rs: &ReplicaSet) -> (i32, i32, i32) {
    rs.status
        .as_ref()
        .map(|s| {
            (
                s.replicas,
                s.ready_replicas.unwrap_or(0),
                s.available_replicas.unwrap_or(0),
            )
        })
        .unwrap_or((0, 0, 0))
}

fn revision_of(meta: &ObjectMeta) -> i64 {
    meta.annotations
        .as_ref()
        .and_then(|a| a.get(REVISION_ANNOTATION))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn creation_key(rs: &ReplicaSet) -> (Option<DateTime<Utc>>, String) {
    (
        rs.metadata.creation_timestamp.as_ref().map(|t| t.0),
        rs.metadata.name.clone().unwrap_or_default(),
    )
}

fn nz(v: i32) -> Option<i32> {
    (v != 0).then_some(v)
}

struct Ctx<'a> {
    d: &'a Deployment,
    name: String,
    desired: i32,
    rolling: bool,
    max_surge: i32,
    max_unavailable: i32,
}

impl Ctx<'_> {
    fn new(d: &Deployment) -> Result<Ctx<'_>, DeploymentError> {
        let name = d.metadata.name.clone().unwrap_or_default();
        let spec = d.spec.as_ref();
        let desired = spec.and_then(|s| s.replicas).unwrap_or(1);
        let strategy = spec.and_then(|s| s.strategy.as_ref());
        let rolling = strategy.and_then(|s| s.type_.as_deref()) != Some("Recreate");
        let ru = strategy.and_then(|s| s.rolling_update.as_ref());
        let (max_surge, mut max_unavailable) = if rolling {
            resolve_fenceposts(
                ru.and_then(|r| r.max_surge.as_ref()),
                ru.and_then(|r| r.max_unavailable.as_ref()),
                desired,
            )
            .map_err(|source| DeploymentError::IntOrPercent {
                name: name.clone(),
                source,
            })?
        } else {
            (0, 0)
        };
        // `MaxUnavailable`: never more than the replicas, 0 when there are none.
        if desired == 0 {
            max_unavailable = 0;
        }
        max_unavailable = max_unavailable.min(desired);
        Ok(Ctx {
            d,
            name,
            desired,
            rolling,
            max_surge,
            max_unavailable,
        })
    }

    fn progress_deadline(&self) -> Option<i32> {
        let v = self
            .d
            .spec
            .as_ref()
            .and_then(|s| s.progress_deadline_seconds)
            .unwrap_or(DEFAULT_PROGRESS_DEADLINE_SECONDS);
        (v != i32::MAX).then_some(v)
    }

    fn min_ready_seconds(&self) -> Option<i32> {
        self.d.spec.as_ref().and_then(|s| s.min_ready_seconds)
    }
}

/// Copies the Deployment's annotations onto the ReplicaSet except the controller's own ones.
fn copy_annotations(d: &Deployment, rs: &mut ReplicaSet) -> bool {
    let mut changed = false;
    for (k, v) in d.metadata.annotations.iter().flatten() {
        if matches!(
            k.as_str(),
            LAST_APPLIED_ANNOTATION
                | REVISION_ANNOTATION
                | REVISION_HISTORY_ANNOTATION
                | DESIRED_REPLICAS_ANNOTATION
                | MAX_REPLICAS_ANNOTATION
                | ROLLBACK_TO_ANNOTATION
        ) {
            continue;
        }
        let annotations = rs.metadata.annotations.get_or_insert_with(BTreeMap::new);
        if annotations.get(k) != Some(v) {
            annotations.insert(k.clone(), v.clone());
            changed = true;
        }
    }
    changed
}

/// Sets desired-replicas/max-replicas; returns whether anything changed.
fn set_replicas_annotations(rs: &mut ReplicaSet, desired: i32, max: i32) -> bool {
    let a = rs.metadata.annotations.get_or_insert_with(BTreeMap::new);
    let mut changed = false;
    for (k, v) in [
        (DESIRED_REPLICAS_ANNOTATION, desired.to_string()),
        (MAX_REPLICAS_ANNOTATION, max.to_string()),
    ] {
        if a.get(k) != Some(&v) {
            a.insert(k.to_string(), v);
            changed = true;
        }
    }
    changed
}

/// `SetNewReplicaSetAnnotations`: copies annotations and moves the revision forward, keeping
/// the superseded revision in the history when an old ReplicaSet is reused (rollback).
fn set_new_rs_annotations(ctx: &Ctx, rs: &mut ReplicaSet, new_revision: i64, exists: bool) -> bool {
    let mut changed = copy_annotations(ctx.d, rs);
    let annotations = rs.metadata.annotations.get_or_insert_with(BTreeMap::new);
    let old = annotations.get(REVISION_ANNOTATION).cloned();
    let old_int = match old.as_deref().map(str::parse::<i64>) {
        None => 0,
        Some(Ok(v)) => v,
        Some(Err(_)) => return changed,
    };
    if old_int < new_revision {
        annotations.insert(REVISION_ANNOTATION.into(), new_revision.to_string());
        changed = true;
        if let Some(old) = old {
            let history = annotations
                .get(REVISION_HISTORY_ANNOTATION)
                .filter(|h| !h.is_empty())
                .map(|h| format!("{h},{old}"))
                .unwrap_or(old);
            // Keep the most recent entries within the length cap.
            let mut parts: Vec<&str> = history.split(',').collect();
            while parts.join(",").len() > MAX_REVISION_HISTORY_LEN && parts.len() > 1 {
                parts.remove(0);
            }
            annotations.insert(REVISION_HISTORY_ANNOTATION.into(), parts.join(","));
        }
    }
    if !exists && set_replicas_annotations(rs, ctx.desired, ctx.desired + ctx.max_surge) {
        changed = true;
    }
    changed
}

fn condition(
    type_: &str,
    status: &str,
    reason: &str,
    message: String,
    now: DateTime<Utc>,
) -> DeploymentCondition {
    DeploymentCondition {
        type_: type_.into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message),
        last_update_time: Some(Time(now)),
        last_transition_time: Some(Time(now)),
    }
}

fn get_condition<'a>(s: &'a DeploymentStatus, type_: &str) -> Option<&'a DeploymentCondition> {
    s.conditions.iter().flatten().find(|c| c.type_ == type_)
}

fn remove_condition(s: &mut DeploymentStatus, type_: &str) {
    if let Some(c) = s.conditions.as_mut() {
        c.retain(|c| c.type_ != type_);
    }
}

/// `SetDeploymentCondition`: no-op for the same status and reason; keeps lastTransitionTime
/// when only the reason changes; the condition moves to the end of the list.
fn set_condition(s: &mut DeploymentStatus, mut c: DeploymentCondition) {
    if let Some(cur) = get_condition(s, &c.type_) {
        if cur.status == c.status && cur.reason == c.reason {
            return;
        }
        if cur.status == c.status {
            c.last_transition_time = cur.last_transition_time.clone();
        }
    }
    remove_condition(s, &c.type_);
    s.conditions.get_or_insert_with(Vec::new).push(c);
}

/// Mutable view of the ReplicaSets while planning; remembers which existing ones changed.
struct Working {
    rss: Vec<ReplicaSet>,
    changed: Vec<bool>,
    new_idx: Option<usize>,
    created: bool,
}

impl Working {
    fn scale(&mut self, i: usize, n: i32, ctx: &Ctx) -> bool {
        // `scaleReplicaSetAndRecordEvent`: nothing to do at the same size; otherwise the size
        // and the desired/max-replicas annotations are written together.
        let rs = &mut self.rss[i];
        if replicas_of(rs) == n {
            return false;
        }
        set_replicas_annotations(rs, ctx.desired, ctx.desired + ctx.max_surge);
        set_replicas(rs, n);
        self.changed[i] = true;
        true
    }

    /// `scaleReplicaSet`: writes when the size or the replicas annotations differ.
    fn scale_always(&mut self, i: usize, n: i32, ctx: &Ctx) {
        let rs = &mut self.rss[i];
        let ann = set_replicas_annotations(rs, ctx.desired, ctx.desired + ctx.max_surge);
        if ann || replicas_of(rs) != n {
            set_replicas(rs, n);
            self.changed[i] = true;
        }
    }

    fn old_indices_by_creation(&self) -> Vec<usize> {
        let mut v: Vec<usize> = (0..self.rss.len())
            .filter(|i| Some(*i) != self.new_idx)
            .collect();
        v.sort_by_key(|i| creation_key(&self.rss[*i]));
        v
    }

    fn total_spec(&self) -> i32 {
        self.rss.iter().map(replicas_of).sum()
    }
}

/// One sync of `d`, given the ReplicaSets and pods in its namespace, at `now`.
pub fn reconcile(
    d: &Deployment,
    replica_sets: &[ReplicaSet],
    pods: &[Pod],
    now: DateTime<Utc>,
) -> Result<DeploymentPlan, DeploymentError> {
    let ctx = Ctx::new(d)?;
    let mut plan = DeploymentPlan::default();
    let spec = d.spec.as_ref();
    let default_selector = Default::default();
    let selector = spec.map(|s| &s.selector).unwrap_or(&default_selector);
    let uid = d.metadata.uid.as_deref().unwrap_or("");
    let deleting = d.metadata.deletion_timestamp.is_some();
    let sel_err = |source| DeploymentError::Selector {
        name: ctx.name.clone(),
        source,
    };

    // Claim ReplicaSets as ControllerRefManager does.
    let mut owned: Vec<ReplicaSet> = Vec::new();
    for rs in replica_sets
        .iter()
        .filter(|rs| rs.metadata.namespace == d.metadata.namespace)
    {
        let matches = selector_matches(selector, rs.metadata.labels.as_ref()).map_err(sel_err)?;
        let name = rs.metadata.name.clone().unwrap_or_default();
        match controller_of(&rs.metadata) {
            Some(c) if c.uid == uid => {
                if matches {
                    owned.push(rs.clone());
                } else if !deleting {
                    plan.release.push(name);
                }
            }
            Some(_) => {}
            None if matches && !deleting && rs.metadata.deletion_timestamp.is_none() => {
                plan.adopt.push(name);
                owned.push(rs.clone());
            }
            None => {}
        }
    }
    owned.sort_by_key(creation_key);
    let mut status = d.status.clone().unwrap_or_default();
    let template = spec.map(|s| s.template.clone()).unwrap_or_default();
    let new_idx = owned.iter().position(|rs| {
        rs.spec
            .as_ref()
            .and_then(|s| s.template.as_ref())
            .is_some_and(|t| equal_ignore_hash(t, &template))
    });
    let mut w = Working {
        changed: vec![false; owned.len()],
        rss: owned,
        new_idx,
        created: false,
    };

    if deleting {
        plan.status = calculate_status(&ctx, &w, &status, now);
        return Ok(plan);
    }

    let paused = spec.and_then(|s| s.paused) == Some(true);
    // checkPausedConditions
    if ctx.progress_deadline().is_some() {
        let cur = get_condition(&status, "Progressing").and_then(|c| c.reason.clone());
        if paused && cur.as_deref() != Some(REASON_PAUSED) {
            set_condition(
                &mut status,
                condition(
                    "Progressing",
                    "Unknown",
                    REASON_PAUSED,
                    "Deployment is paused".into(),
                    now,
                ),
            );
        } else if !paused && cur.as_deref() == Some(REASON_PAUSED) {
            set_condition(
                &mut status,
                condition(
                    "Progressing",
                    "Unknown",
                    REASON_RESUMED,
                    "Deployment is resumed".into(),
                    now,
                ),
            );
        }
    }

    sync_new_rs(&ctx, &mut w, &mut status, &mut plan, false, now)?;

    if paused || is_scaling_event(&ctx, &w) {
        // `sync`: scaling only (proportionally across active ReplicaSets), no rollout step.
        proportional_scale(&ctx, &mut w);
        if paused {
            cleanup(&ctx, &w, &mut plan);
        }
        plan.status = calculate_status(&ctx, &w, &status, now);
    } else {
        if ctx.rolling {
            rollout_rolling(&ctx, &mut w, &mut status, &mut plan, now)?;
        } else {
            rollout_recreate(&ctx, &mut w, &mut status, &mut plan, pods, now)?;
        }
        plan.status = sync_rollout_status(&ctx, &w, &status, now);
    }
    plan.requeue_after = requeue_stuck(&ctx, &plan.status, now);
    for (i, rs) in w.rss.iter().enumerate() {
        if w.changed[i] && !(w.created && Some(i) == w.new_idx) {
            plan.update.push(rs.clone());
        }
    }
    if w.created {
        plan.create = w.new_idx.map(|i| w.rss[i].clone());
    }
    Ok(plan)
}

/// `getAllReplicaSetsAndSyncRevision`: updates an existing new ReplicaSet's revision and
/// annotations, or creates it when `create` is set.
fn sync_new_rs(
    ctx: &Ctx,
    w: &mut Working,
    status: &mut DeploymentStatus,
    plan: &mut DeploymentPlan,
    create: bool,
    now: DateTime<Utc>,
) -> Result<(), DeploymentError> {
    let max_old = (0..w.rss.len())
        .filter(|i| Some(*i) != w.new_idx)
        .map(|i| revision_of(&w.rss[i].metadata))
        .max()
        .unwrap_or(0);
    let new_revision = max_old + 1;
    if let Some(i) = w.new_idx {
        let mut rs = w.rss[i].clone();
        let ann = set_new_rs_annotations(ctx, &mut rs, new_revision, true);
        let mrs = ctx.min_ready_seconds();
        let rs_mrs = rs.spec.as_ref().and_then(|s| s.min_ready_seconds);
        if ann || rs_mrs.unwrap_or(0) != mrs.unwrap_or(0) {
            rs.spec
                .get_or_insert_with(Default::default)
                .min_ready_seconds = mrs;
            w.rss[i] = rs;
            w.changed[i] = true;
        }
        set_deployment_revision(ctx, plan, &w.rss[i]);
        if ctx.progress_deadline().is_some() && get_condition(status, "Progressing").is_none() {
            let name = w.rss[i].metadata.name.clone().unwrap_or_default();
            set_condition(
                status,
                condition(
                    "Progressing",
                    "True",
                    REASON_FOUND_NEW_RS,
                    format!("Found new replica set {name:?}"),
                    now,
                ),
            );
        }
        return Ok(());
    }
    if !create {
        return Ok(());
    }
    let d = ctx.d;
    let spec = d.spec.as_ref();
    let mut collision = status.collision_count;
    let template = spec.map(|s| s.template.clone()).unwrap_or_default();
    let (hash, name) = loop {
        let hash = pod_template_hash(&template, collision);
        let name = format!("{}-{hash}", ctx.name);
        // A ReplicaSet of that name with another template: bump the collision count, rehash.
        if w.rss
            .iter()
            .any(|rs| rs.metadata.name.as_deref() == Some(&name))
        {
            collision = Some(collision.unwrap_or(0) + 1);
            if collision.unwrap_or(0) > 1000 {
                return Err(DeploymentError::Collisions {
                    name: ctx.name.clone(),
                });
            }
            continue;
        }
        break (hash, name);
    };
    status.collision_count = collision;
    let mut labels = template
        .metadata
        .as_ref()
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    labels.insert(POD_TEMPLATE_HASH_LABEL.into(), hash.clone());
    let mut rs_template = template.clone();
    rs_template
        .metadata
        .get_or_insert_with(Default::default)
        .labels = Some(labels.clone());
    let mut selector = spec.map(|s| s.selector.clone()).unwrap_or_default();
    selector
        .match_labels
        .get_or_insert_with(BTreeMap::new)
        .insert(POD_TEMPLATE_HASH_LABEL.into(), hash);
    let mut rs = ReplicaSet {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            namespace: d.metadata.namespace.clone(),
            labels: Some(labels),
            owner_references: Some(vec![controller_ref("apps/v1", "Deployment", &d.metadata)]),
            ..Default::default()
        },
        spec: Some(ReplicaSetSpec {
            replicas: Some(0),
            min_ready_seconds: ctx.min_ready_seconds(),
            selector,
            template: Some(rs_template),
        }),
        status: None,
    };
    w.rss.push(rs.clone());
    w.changed.push(true);
    let idx = w.rss.len() - 1;
    w.new_idx = Some(idx);
    w.created = true;
    let n = new_rs_new_replicas(ctx, w);
    set_replicas(&mut rs, n);
    set_new_rs_annotations(ctx, &mut rs, new_revision, false);
    w.rss[idx] = rs;
    set_deployment_revision(ctx, plan, &w.rss[idx]);
    if ctx.progress_deadline().is_some() {
        set_condition(
            status,
            condition(
                "Progressing",
                "True",
                REASON_NEW_RS_CREATED,
                format!("Created new replica set {name:?}"),
                now,
            ),
        );
    }
    Ok(())
}

fn set_deployment_revision(ctx: &Ctx, plan: &mut DeploymentPlan, new_rs: &ReplicaSet) {
    let rev = new_rs
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(REVISION_ANNOTATION));
    let cur = ctx
        .d
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(REVISION_ANNOTATION));
    if let Some(rev) = rev {
        if cur != Some(rev) {
            plan.revision = Some(rev.clone());
        }
    }
}

fn desired_annotation(rs: &ReplicaSet) -> Option<i32> {
    rs.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(DESIRED_REPLICAS_ANNOTATION))
        .and_then(|v| v.parse().ok())
}

/// `isScalingEvent`: an active ReplicaSet was sized for a different `replicas`.
fn is_scaling_event(ctx: &Ctx, w: &Working) -> bool {
    w.rss
        .iter()
        .filter(|rs| replicas_of(rs) > 0)
        .filter_map(desired_annotation)
        .any(|d| d != ctx.desired)
}

/// `scale`: the only active (or the newest) ReplicaSet takes all replicas; a saturated new
/// ReplicaSet means the old ones go to zero; otherwise, for rolling updates, the difference to
/// `replicas + maxSurge` is spread over the active ReplicaSets in proportion to their size
/// (`GetReplicaSetProportion`), leftovers to the largest.
fn proportional_scale(ctx: &Ctx, w: &mut Working) {
    let mut olds_newest_first = w.old_indices_by_creation();
    olds_newest_first.reverse();
    let active: Vec<usize> = olds_newest_first
        .iter()
        .copied()
        .chain(w.new_idx)
        .filter(|i| replicas_of(&w.rss[*i]) > 0)
        .collect();
    let active_or_latest = match active.as_slice() {
        [] => w.new_idx.or(olds_newest_first.first().copied()),
        [one] => Some(*one),
        _ => None,
    };
    if let Some(i) = active_or_latest {
        if replicas_of(&w.rss[i]) != ctx.desired {
            w.scale(i, ctx.desired, ctx);
        }
        return;
    }
    if let Some(n) = w.new_idx {
        let rs = &w.rss[n];
        let saturated = desired_annotation(rs) == Some(ctx.desired)
            && replicas_of(rs) == ctx.desired
            && status_of(rs).2 == ctx.desired;
        if saturated {
            for &i in &active {
                if i != n {
                    w.scale(i, 0, ctx);
                }
            }
            return;
        }
    }
    if !ctx.rolling {
        return;
    }
    let total: i32 = active.iter().map(|i| replicas_of(&w.rss[*i])).sum();
    let allowed = if ctx.desired > 0 {
        ctx.desired + ctx.max_surge
    } else {
        0
    };
    let to_add = allowed - total;
    let mut order = active.clone();
    // Larger first; among equals newer first when growing, older first when shrinking.
    order.sort_by(|a, b| {
        let (ra, rb) = (&w.rss[*a], &w.rss[*b]);
        replicas_of(rb).cmp(&replicas_of(ra)).then_with(|| {
            let by_age = creation_key(ra).cmp(&creation_key(rb));
            if to_add > 0 {
                by_age.reverse()
            } else {
                by_age
            }
        })
    });
    let status_replicas = ctx.d.status.as_ref().and_then(|s| s.replicas).unwrap_or(0);
    let mut added = 0;
    let mut sizes: Vec<i32> = Vec::with_capacity(order.len());
    for &i in &order {
        let rs = &w.rss[i];
        let cur = replicas_of(rs);
        let proportion = if to_add == 0 || cur == 0 || to_add == added {
            0
        } else {
            // getReplicaSetFraction
            let fraction = if ctx.desired == 0 {
                -cur
            } else {
                let annotated = rs
                    .metadata
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get(MAX_REPLICAS_ANNOTATION))
                    .and_then(|v| v.parse::<i32>().ok())
                    .unwrap_or(status_replicas);
                if annotated == 0 {
                    0
                } else {
                    let size = f64::from(cur) * f64::from(allowed) / f64::from(annotated);
                    size.round() as i32 - cur
                }
            };
            let room = to_add - added;
            if to_add > 0 {
                fraction.min(room)
            } else {
                fraction.max(room)
            }
        };
        sizes.push(cur + proportion);
        added += proportion;
    }
    if let Some(first) = sizes.first_mut() {
        if to_add != 0 {
            *first = (*first + to_add - added).max(0);
        }
    }
    for (k, &i) in order.iter().enumerate() {
        w.scale_always(i, sizes[k], ctx);
    }
}

/// `requeueStuckDeployment`: when an unfinished rollout's progress deadline will pass.
fn requeue_stuck(
    ctx: &Ctx,
    status: &DeploymentStatus,
    now: DateTime<Utc>,
) -> Option<std::time::Duration> {
    let deadline = ctx.progress_deadline()?;
    let cond = get_condition(status, "Progressing")?;
    if cond.status != "True" || cond.reason.as_deref() == Some(REASON_NEW_RS_AVAILABLE) {
        return None;
    }
    if deployment_complete(ctx, status.clone()) {
        return None;
    }
    let at = cond.last_update_time.as_ref()?.0 + Duration::seconds(i64::from(deadline));
    Some((at - now).to_std().unwrap_or_default())
}

/// `NewRSNewReplicas`: how big the new ReplicaSet may be now.
fn new_rs_new_replicas(ctx: &Ctx, w: &Working) -> i32 {
    let Some(i) = w.new_idx else { return 0 };
    let cur = replicas_of(&w.rss[i]);
    if !ctx.rolling {
        return ctx.desired;
    }
    let max_total = ctx.desired + ctx.max_surge;
    let current = w.total_spec();
    if current >= max_total {
        return cur;
    }
    cur + (max_total - current).min(ctx.desired - cur)
}

fn rollout_rolling(
    ctx: &Ctx,
    w: &mut Working,
    status: &mut DeploymentStatus,
    plan: &mut DeploymentPlan,
    now: DateTime<Utc>,
) -> Result<(), DeploymentError> {
    sync_new_rs(ctx, w, status, plan, true, now)?;
    let Some(new) = w.new_idx else { return Ok(()) };
    // reconcileNewReplicaSet
    let new_replicas = replicas_of(&w.rss[new]);
    if new_replicas != ctx.desired {
        let target = if new_replicas > ctx.desired {
            ctx.desired
        } else {
            new_rs_new_replicas(ctx, w)
        };
        if w.scale(new, target, ctx) {
            return Ok(());
        }
    }
    // reconcileOldReplicaSets
    let olds = w.old_indices_by_creation();
    let old_count: i32 = olds.iter().map(|i| replicas_of(&w.rss[*i])).sum();
    if old_count > 0 {
        let min_available = ctx.desired - ctx.max_unavailable;
        let new_unavailable = replicas_of(&w.rss[new]) - status_of(&w.rss[new]).2;
        let max_scaled_down = w.total_spec() - min_available - new_unavailable;
        if max_scaled_down <= 0 {
            return Ok(());
        }
        // cleanupUnhealthyReplicas
        let mut cleaned = 0;
        for &i in &olds {
            if cleaned >= max_scaled_down {
                break;
            }
            let (spec_n, avail) = (replicas_of(&w.rss[i]), status_of(&w.rss[i]).2);
            if spec_n == 0 || spec_n == avail {
                continue;
            }
            let down = (max_scaled_down - cleaned).min(spec_n - avail);
            w.scale(i, spec_n - down, ctx);
            cleaned += down;
        }
        // scaleDownOldReplicaSetsForRollingUpdate
        let available: i32 = w.rss.iter().map(|rs| status_of(rs).2).sum();
        let mut scaled = 0;
        if available > min_available {
            let total = available - min_available;
            for &i in &olds {
                if scaled >= total {
                    break;
                }
                let spec_n = replicas_of(&w.rss[i]);
                if spec_n == 0 {
                    continue;
                }
                let down = spec_n.min(total - scaled);
                w.scale(i, spec_n - down, ctx);
                scaled += down;
            }
        }
        if cleaned + scaled > 0 {
            return Ok(());
        }
    }
    if deployment_complete(ctx, ctx.d.status.as_ref().cloned().unwrap_or_default()) {
        cleanup(ctx, w, plan);
    }
    Ok(())
}

fn rollout_recreate(
    ctx: &Ctx,
    w: &mut Working,
    status: &mut DeploymentStatus,
    plan: &mut DeploymentPlan,
    pods: &[Pod],
    now: DateTime<Utc>,
) -> Result<(), DeploymentError> {
    let olds = w.old_indices_by_creation();
    let mut scaled_down = false;
    for &i in &olds {
        if replicas_of(&w.rss[i]) > 0 && w.scale(i, 0, ctx) {
            scaled_down = true;
        }
    }
    if scaled_down {
        return Ok(());
    }
    // oldPodsRunning: any old ReplicaSet still reports pods, or any of its pods is not terminal.
    let old_uids: Vec<&str> = olds
        .iter()
        .filter_map(|i| w.rss[*i].metadata.uid.as_deref())
        .collect();
    let old_running = olds.iter().any(|i| status_of(&w.rss[*i]).0 > 0)
        || pods.iter().any(|p| {
            controller_of(&p.metadata).is_some_and(|c| old_uids.contains(&c.uid.as_str()))
                && !matches!(super::pod_phase(p), "Succeeded" | "Failed")
        });
    if old_running {
        return Ok(());
    }
    if w.new_idx.is_none() {
        sync_new_rs(ctx, w, status, plan, true, now)?;
    }
    if let Some(i) = w.new_idx {
        w.scale(i, ctx.desired, ctx);
    }
    if deployment_complete(ctx, ctx.d.status.as_ref().cloned().unwrap_or_default()) {
        cleanup(ctx, w, plan);
    }
    Ok(())
}

/// `cleanupDeployment`: delete the oldest revisions beyond revisionHistoryLimit, only those
/// fully scaled down and observed.
fn cleanup(ctx: &Ctx, w: &Working, plan: &mut DeploymentPlan) {
    let limit = ctx
        .d
        .spec
        .as_ref()
        .and_then(|s| s.revision_history_limit)
        .unwrap_or(DEFAULT_REVISION_HISTORY_LIMIT);
    let mut cleanable: Vec<&ReplicaSet> = (0..w.rss.len())
        .filter(|i| Some(*i) != w.new_idx)
        .map(|i| &w.rss[i])
        .filter(|rs| rs.metadata.deletion_timestamp.is_none())
        .collect();
    let diff = cleanable.len() as i64 - i64::from(limit);
    if diff <= 0 {
        return;
    }
    cleanable.sort_by_key(|rs| (revision_of(&rs.metadata), creation_key(rs)));
    for rs in cleanable.into_iter().take(diff as usize) {
        let observed = rs
            .status
            .as_ref()
            .and_then(|s| s.observed_generation)
            .unwrap_or(0);
        if status_of(rs).0 != 0
            || replicas_of(rs) != 0
            || rs.metadata.generation.unwrap_or(0) > observed
        {
            continue;
        }
        plan.delete
            .push(rs.metadata.name.clone().unwrap_or_default());
    }
}

/// `DeploymentComplete`: every replica updated and available, and the spec observed.
fn deployment_complete(ctx: &Ctx, s: DeploymentStatus) -> bool {
    s.updated_replicas.unwrap_or(0) == ctx.desired
        && s.replicas.unwrap_or(0) == ctx.desired
        && s.available_replicas.unwrap_or(0) == ctx.desired
        && s.observed_generation.unwrap_or(0) >= ctx.d.metadata.generation.unwrap_or(0)
}

/// `calculateStatus`: counts from the ReplicaSets plus the Available condition.
fn calculate_status(
    ctx: &Ctx,
    w: &Working,
    base: &DeploymentStatus,
    now: DateTime<Utc>,
) -> DeploymentStatus {
    let sum = |f: &dyn Fn(&ReplicaSet) -> i32| w.rss.iter().map(f).sum::<i32>();
    let available = sum(&|rs| status_of(rs).2);
    let total = sum(&replicas_of);
    let mut s = DeploymentStatus {
        observed_generation: ctx.d.metadata.generation,
        replicas: nz(sum(&|rs| status_of(rs).0)),
        updated_replicas: nz(w.new_idx.map(|i| status_of(&w.rss[i]).0).unwrap_or(0)),
        ready_replicas: nz(sum(&|rs| status_of(rs).1)),
        available_replicas: nz(available),
        unavailable_replicas: nz((total - available).max(0)),
        collision_count: base.collision_count,
        conditions: base.conditions.clone(),
    };
    let c = if available >= ctx.desired - ctx.max_unavailable {
        condition(
            "Available",
            "True",
            REASON_MIN_AVAILABLE,
            "Deployment has minimum availability.".into(),
            now,
        )
    } else {
        condition(
            "Available",
            "False",
            REASON_MIN_UNAVAILABLE,
            "Deployment does not have minimum availability.".into(),
            now,
        )
    };
    set_condition(&mut s, c);
    s
}

/// `syncRolloutStatus`: status plus the Progressing condition.
fn sync_rollout_status(
    ctx: &Ctx,
    w: &Working,
    base: &DeploymentStatus,
    now: DateTime<Utc>,
) -> DeploymentStatus {
    let mut s = calculate_status(ctx, w, base, now);
    let Some(deadline) = ctx.progress_deadline() else {
        remove_condition(&mut s, "Progressing");
        return s;
    };
    let paused = ctx.d.spec.as_ref().and_then(|s| s.paused) == Some(true);
    if paused {
        return s;
    }
    let current = get_condition(base, "Progressing").cloned();
    let complete_before = s.replicas == s.updated_replicas
        && current.as_ref().and_then(|c| c.reason.as_deref()) == Some(REASON_NEW_RS_AVAILABLE);
    if complete_before {
        return s;
    }
    let rs_name = w
        .new_idx
        .and_then(|i| w.rss[i].metadata.name.clone())
        .map(|n| format!("ReplicaSet {n:?}"))
        .unwrap_or_else(|| format!("Deployment {:?}", ctx.name));
    let old = ctx.d.status.clone().unwrap_or_default();
    let g = |v: Option<i32>| v.unwrap_or(0);
    let progressing = g(s.updated_replicas) > g(old.updated_replicas)
        || (g(s.replicas) - g(s.updated_replicas)) < (g(old.replicas) - g(old.updated_replicas))
        || g(s.ready_replicas) > g(old.ready_replicas)
        || g(s.available_replicas) > g(old.available_replicas);
    if deployment_complete(ctx, s.clone()) {
        set_condition(
            &mut s,
            condition(
                "Progressing",
                "True",
                REASON_NEW_RS_AVAILABLE,
                format!("{rs_name} has successfully progressed."),
                now,
            ),
        );
    } else if progressing {
        let mut c = condition(
            "Progressing",
            "True",
            REASON_RS_UPDATED,
            format!("{rs_name} is progressing."),
            now,
        );
        // Progress refreshes lastUpdateTime even with an unchanged reason.
        if let Some(cur) = get_condition(&s, "Progressing") {
            if cur.status == "True" {
                c.last_transition_time = cur.last_transition_time.clone();
            }
            remove_condition(&mut s, "Progressing");
        }
        set_condition(&mut s, c);
    } else if let Some(cur) = get_condition(&s, "Progressing") {
        let timed_out = match cur.reason.as_deref() {
            Some(REASON_NEW_RS_AVAILABLE) => false,
            Some(REASON_TIMED_OUT) => true,
            _ => cur
                .last_update_time
                .as_ref()
                .is_some_and(|t| t.0 + Duration::seconds(i64::from(deadline)) < now),
        };
        if timed_out {
            set_condition(
                &mut s,
                condition(
                    "Progressing",
                    "False",
                    REASON_TIMED_OUT,
                    format!("{rs_name} has timed out progressing."),
                    now,
                ),
            );
        }
    }
    s
}

#[cfg(test)]
mod tests;
