use super::*;
use crate::controllers::testutil::{labels, pod, t};
use k8s_openapi::api::apps::v1::{
    DeploymentSpec, DeploymentStrategy, ReplicaSetStatus, RollingUpdateDeployment,
};
use k8s_openapi::api::core::v1::{Container, PodSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

fn template(image: &str) -> PodTemplateSpec {
    PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some(labels(&[("app", "web")])),
            ..Default::default()
        }),
        spec: Some(PodSpec {
            containers: vec![Container {
                name: "web".into(),
                image: Some(image.into()),
                ..Default::default()
            }],
            ..Default::default()
        }),
    }
}

fn deployment(replicas: i32, image: &str) -> Deployment {
    Deployment {
        metadata: ObjectMeta {
            name: Some("web".into()),
            namespace: Some("default".into()),
            uid: Some("d-uid".into()),
            generation: Some(1),
            ..Default::default()
        },
        spec: Some(DeploymentSpec {
            replicas: Some(replicas),
            selector: LabelSelector {
                match_labels: Some(labels(&[("app", "web")])),
                ..Default::default()
            },
            template: template(image),
            ..Default::default()
        }),
        status: None,
    }
}

/// A ReplicaSet of `d` for `image` at `revision`, with `spec` replicas of which `available`
/// are available (status replicas = spec).
fn rs(d: &Deployment, image: &str, revision: i64, spec: i32, available: i32) -> ReplicaSet {
    let hash = pod_template_hash(&template(image), None);
    let mut tpl = template(image);
    tpl.metadata
        .as_mut()
        .unwrap()
        .labels
        .as_mut()
        .unwrap()
        .insert(POD_TEMPLATE_HASH_LABEL.into(), hash.clone());
    ReplicaSet {
        metadata: ObjectMeta {
            name: Some(format!("web-{hash}")),
            namespace: Some("default".into()),
            uid: Some(format!("rs-{image}")),
            labels: Some(labels(&[("app", "web"), (POD_TEMPLATE_HASH_LABEL, &hash)])),
            annotations: Some(labels(&[(REVISION_ANNOTATION, &revision.to_string())])),
            owner_references: Some(vec![controller_ref("apps/v1", "Deployment", &d.metadata)]),
            creation_timestamp: Some(Time(t(revision))),
            generation: Some(1),
            ..Default::default()
        },
        spec: Some(ReplicaSetSpec {
            replicas: Some(spec),
            selector: LabelSelector {
                match_labels: Some(labels(&[("app", "web"), (POD_TEMPLATE_HASH_LABEL, &hash)])),
                ..Default::default()
            },
            template: Some(tpl),
            ..Default::default()
        }),
        status: Some(ReplicaSetStatus {
            replicas: spec,
            ready_replicas: Some(available),
            available_replicas: Some(available),
            observed_generation: Some(1),
            ..Default::default()
        }),
    }
}

fn replicas(plan_rs: &ReplicaSet) -> i32 {
    plan_rs.spec.as_ref().unwrap().replicas.unwrap()
}

fn cond<'a>(s: &'a DeploymentStatus, type_: &str) -> &'a DeploymentCondition {
    get_condition(s, type_).unwrap()
}

#[test]
fn template_hash_is_stable_and_ignores_its_own_label() {
    let a = pod_template_hash(&template("nginx:1"), None);
    assert_eq!(a, pod_template_hash(&template("nginx:1"), None));
    assert_ne!(a, pod_template_hash(&template("nginx:2"), None));
    assert_ne!(a, pod_template_hash(&template("nginx:1"), Some(1)));
    assert!(a.bytes().all(|b| SAFE_ALPHANUMS.contains(&b)));
    let d = deployment(1, "nginx:1");
    let with_label = rs(&d, "nginx:1", 1, 1, 1).spec.unwrap().template.unwrap();
    assert_eq!(pod_template_hash(&with_label, None), a);
    assert!(equal_ignore_hash(&with_label, &template("nginx:1")));
    assert!(!equal_ignore_hash(&with_label, &template("nginx:2")));
}

#[test]
fn fenceposts_round_as_upstream() {
    let pct = |s: &str| IntOrString::String(s.into());
    assert_eq!(resolve_fenceposts(None, None, 10), Ok((3, 2)));
    assert_eq!(resolve_fenceposts(None, None, 4), Ok((1, 1)));
    assert_eq!(resolve_fenceposts(None, None, 1), Ok((1, 0)));
    assert_eq!(
        resolve_fenceposts(Some(&pct("50%")), Some(&pct("50%")), 3),
        Ok((2, 1))
    );
    assert_eq!(
        resolve_fenceposts(Some(&IntOrString::Int(0)), Some(&IntOrString::Int(0)), 3),
        Ok((0, 1))
    );
    assert_eq!(
        resolve_fenceposts(Some(&IntOrString::Int(2)), Some(&pct("0%")), 3),
        Ok((2, 0))
    );
    assert!(resolve_fenceposts(Some(&pct("abc")), None, 3).is_err());
    let mut d = deployment(3, "nginx:1");
    d.spec.as_mut().unwrap().strategy = Some(DeploymentStrategy {
        type_: Some("RollingUpdate".into()),
        rolling_update: Some(RollingUpdateDeployment {
            max_surge: Some(pct("x")),
            max_unavailable: None,
        }),
    });
    assert!(matches!(
        reconcile(&d, &[], &[], t(0)),
        Err(DeploymentError::IntOrPercent { .. })
    ));
}

#[test]
fn first_sync_creates_the_new_replicaset() {
    let d = deployment(3, "nginx:1");
    let plan = reconcile(&d, &[], &[], t(0)).unwrap();
    let new = plan.create.expect("new replicaset");
    let hash = pod_template_hash(&template("nginx:1"), None);
    assert_eq!(new.metadata.name, Some(format!("web-{hash}")));
    assert_eq!(replicas(&new), 3);
    let ann = new.metadata.annotations.as_ref().unwrap();
    assert_eq!(ann[REVISION_ANNOTATION], "1");
    assert_eq!(ann[DESIRED_REPLICAS_ANNOTATION], "3");
    assert_eq!(ann[MAX_REPLICAS_ANNOTATION], "4");
    let sel = new
        .spec
        .as_ref()
        .unwrap()
        .selector
        .match_labels
        .as_ref()
        .unwrap();
    assert_eq!(sel[POD_TEMPLATE_HASH_LABEL], hash);
    let tl = new.spec.as_ref().unwrap().template.as_ref().unwrap();
    assert_eq!(
        tl.metadata.as_ref().unwrap().labels.as_ref().unwrap()[POD_TEMPLATE_HASH_LABEL],
        hash
    );
    let oref = &new.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (oref.kind.as_str(), oref.controller),
        ("Deployment", Some(true))
    );
    assert_eq!(plan.revision.as_deref(), Some("1"));
    let p = cond(&plan.status, "Progressing");
    assert_eq!(p.reason.as_deref(), Some(REASON_NEW_RS_CREATED));
    assert_eq!(
        p.message.as_deref(),
        Some(format!("Created new replica set \"web-{hash}\"").as_str())
    );
    assert_eq!(cond(&plan.status, "Available").status, "False");
    assert_eq!(plan.status.unavailable_replicas, Some(3));
}

#[test]
fn rolling_update_steps() {
    let d = deployment(4, "nginx:2"); // 25%/25% of 4 → surge 1, unavailable 1
    let old = rs(&d, "nginx:1", 1, 4, 4);
    // Step 1: create the new RS at 1 (surge) and scale the old one to 3 (one may be unavailable).
    let plan = reconcile(&d, std::slice::from_ref(&old), &[], t(10)).unwrap();
    let new = plan.create.clone().unwrap();
    assert_eq!(replicas(&new), 1);
    assert_eq!(
        new.metadata.annotations.as_ref().unwrap()[REVISION_ANNOTATION],
        "2"
    );
    assert_eq!(plan.update.len(), 1);
    assert_eq!(replicas(&plan.update[0]), 3);
    assert_eq!(plan.revision.as_deref(), Some("2"));

    // Step 2: the new pod is available → scale the new RS up within the surge first.
    let mut new = rs(&d, "nginx:2", 2, 1, 1);
    let old = rs(&d, "nginx:1", 1, 3, 3);
    let plan = reconcile(&d, &[old.clone(), new.clone()], &[], t(20)).unwrap();
    assert!(plan.create.is_none());
    assert_eq!(plan.update.len(), 1);
    assert_eq!(plan.update[0].metadata.name, new.metadata.name);
    assert_eq!(replicas(&plan.update[0]), 2);

    // Step 3: new RS at 2 with one not yet available: old may only go down so that 3 stay available.
    new = rs(&d, "nginx:2", 2, 2, 1);
    let plan = reconcile(&d, &[old, new], &[], t(30)).unwrap();
    let olds: Vec<_> = plan
        .update
        .iter()
        .filter(|r| r.metadata.uid.as_deref() == Some("rs-nginx:1"))
        .collect();
    assert_eq!(replicas(olds[0]), 2);
    assert_eq!(plan.status.updated_replicas, Some(2));
    assert_eq!(plan.status.replicas, Some(5));
}

#[test]
fn unhealthy_old_replicas_are_removed_first() {
    let d = deployment(4, "nginx:2");
    let older = rs(&d, "nginx:0", 1, 2, 0); // two unavailable replicas
    let old = rs(&d, "nginx:1", 2, 2, 2);
    let new = rs(&d, "nginx:2", 3, 1, 1);
    // total 5, minAvailable 3, new unavailable 0 → may scale down 2: both from the unhealthy RS.
    let plan = reconcile(&d, &[older, old, new], &[], t(30)).unwrap();
    assert_eq!(plan.update.len(), 1);
    assert_eq!(plan.update[0].metadata.uid.as_deref(), Some("rs-nginx:0"));
    assert_eq!(replicas(&plan.update[0]), 0);
}

#[test]
fn complete_rollout_status_and_history_cleanup() {
    let mut d = deployment(2, "nginx:4");
    d.spec.as_mut().unwrap().revision_history_limit = Some(1);
    d.status = Some(DeploymentStatus {
        observed_generation: Some(1),
        replicas: Some(2),
        updated_replicas: Some(2),
        ready_replicas: Some(2),
        available_replicas: Some(2),
        ..Default::default()
    });
    let rss = [
        rs(&d, "nginx:1", 1, 0, 0),
        rs(&d, "nginx:2", 2, 0, 0),
        rs(&d, "nginx:3", 3, 0, 0),
        rs(&d, "nginx:4", 4, 2, 2),
    ];
    let plan = reconcile(&d, &rss, &[], t(100)).unwrap();
    assert!(plan.create.is_none());
    assert_eq!(
        plan.delete,
        vec![
            rss[0].metadata.name.clone().unwrap(),
            rss[1].metadata.name.clone().unwrap()
        ]
    );
    let s = &plan.status;
    assert_eq!(
        (
            s.replicas,
            s.updated_replicas,
            s.available_replicas,
            s.unavailable_replicas
        ),
        (Some(2), Some(2), Some(2), None)
    );
    let p = cond(s, "Progressing");
    assert_eq!(p.reason.as_deref(), Some(REASON_NEW_RS_AVAILABLE));
    assert_eq!(
        p.message.as_deref(),
        Some(
            format!(
                "ReplicaSet {:?} has successfully progressed.",
                rss[3].metadata.name.as_deref().unwrap()
            )
            .as_str()
        )
    );
    let a = cond(s, "Available");
    assert_eq!(
        (a.status.as_str(), a.reason.as_deref()),
        ("True", Some(REASON_MIN_AVAILABLE))
    );

    // A second sync with that status changes nothing in the conditions (no churn).
    let mut d2 = d.clone();
    d2.status = Some(plan.status.clone());
    let again = reconcile(&d2, &rss, &[], t(200)).unwrap();
    assert_eq!(again.status, plan.status);
}

#[test]
fn rollback_reuses_the_old_replicaset_and_bumps_its_revision() {
    let d = deployment(2, "nginx:1");
    let v1 = rs(&d, "nginx:1", 1, 0, 0);
    let v2 = rs(&d, "nginx:2", 2, 2, 2);
    let plan = reconcile(&d, &[v1.clone(), v2], &[], t(50)).unwrap();
    assert!(plan.create.is_none());
    let reused = plan
        .update
        .iter()
        .find(|r| r.metadata.name == v1.metadata.name)
        .unwrap();
    let ann = reused.metadata.annotations.as_ref().unwrap();
    assert_eq!(ann[REVISION_ANNOTATION], "3");
    assert_eq!(ann[REVISION_HISTORY_ANNOTATION], "1");
    assert_eq!(replicas(reused), 1); // scaled up within the surge
    assert_eq!(plan.revision.as_deref(), Some("3"));
}

#[test]
fn recreate_scales_down_waits_then_creates() {
    let mut d = deployment(2, "nginx:2");
    d.spec.as_mut().unwrap().strategy = Some(DeploymentStrategy {
        type_: Some("Recreate".into()),
        rolling_update: None,
    });
    let old = rs(&d, "nginx:1", 1, 2, 2);
    let plan = reconcile(&d, std::slice::from_ref(&old), &[], t(0)).unwrap();
    assert!(plan.create.is_none());
    assert_eq!(replicas(&plan.update[0]), 0);

    // Scaled down, but a pod of the old RS is still terminating.
    let mut old0 = rs(&d, "nginx:1", 1, 0, 0);
    let mut lingering = pod("web-old-1", &[("app", "web")], None);
    lingering.metadata.owner_references = Some(vec![controller_ref(
        "apps/v1",
        "ReplicaSet",
        &old0.metadata,
    )]);
    let plan = reconcile(&d, std::slice::from_ref(&old0), &[lingering], t(1)).unwrap();
    assert!(plan.create.is_none() && plan.update.is_empty());

    // Gone: the new RS is created at full size.
    old0.status.as_mut().unwrap().replicas = 0;
    let plan = reconcile(&d, &[old0], &[], t(2)).unwrap();
    assert_eq!(replicas(plan.create.as_ref().unwrap()), 2);
}

#[test]
fn progress_deadline_exceeded() {
    let mut d = deployment(2, "nginx:2");
    d.spec.as_mut().unwrap().progress_deadline_seconds = Some(60);
    let new = rs(&d, "nginx:2", 2, 2, 0);
    d.status = Some(DeploymentStatus {
        observed_generation: Some(1),
        replicas: Some(2),
        updated_replicas: Some(2),
        conditions: Some(vec![condition(
            "Progressing",
            "True",
            REASON_RS_UPDATED,
            "x".into(),
            t(0),
        )]),
        ..Default::default()
    });
    let plan = reconcile(&d, std::slice::from_ref(&new), &[], t(30)).unwrap();
    assert_eq!(
        cond(&plan.status, "Progressing").reason.as_deref(),
        Some(REASON_RS_UPDATED)
    );
    let plan = reconcile(&d, &[new], &[], t(61)).unwrap();
    let p = cond(&plan.status, "Progressing");
    assert_eq!(
        (p.status.as_str(), p.reason.as_deref()),
        ("False", Some(REASON_TIMED_OUT))
    );
}

#[test]
fn paused_deployment_does_not_roll_out() {
    let mut d = deployment(2, "nginx:2");
    d.spec.as_mut().unwrap().paused = Some(true);
    let old = rs(&d, "nginx:1", 1, 2, 2);
    let plan = reconcile(&d, &[old], &[], t(0)).unwrap();
    assert!(plan.create.is_none() && plan.update.is_empty());
    let p = cond(&plan.status, "Progressing");
    assert_eq!(
        (p.status.as_str(), p.reason.as_deref()),
        ("Unknown", Some(REASON_PAUSED))
    );
}

#[test]
fn orphan_replicasets_are_adopted() {
    let d = deployment(1, "nginx:1");
    let mut orphan = rs(&d, "nginx:1", 1, 1, 1);
    orphan.metadata.owner_references = None;
    let plan = reconcile(&d, &[orphan.clone()], &[], t(0)).unwrap();
    assert_eq!(plan.adopt, vec![orphan.metadata.name.unwrap()]);
    assert!(plan.create.is_none());
}

fn with_replica_annotations(mut r: ReplicaSet, desired: i32, max: i32) -> ReplicaSet {
    let a = r.metadata.annotations.get_or_insert_with(Default::default);
    a.insert(DESIRED_REPLICAS_ANNOTATION.into(), desired.to_string());
    a.insert(MAX_REPLICAS_ANNOTATION.into(), max.to_string());
    r
}

#[test]
fn scaling_a_single_active_replicaset() {
    let d = deployment(5, "nginx:1");
    let only = with_replica_annotations(rs(&d, "nginx:1", 1, 3, 3), 3, 4);
    let plan = reconcile(&d, &[only], &[], t(0)).unwrap();
    assert_eq!(plan.update.len(), 1);
    assert_eq!(replicas(&plan.update[0]), 5);
    let a = plan.update[0].metadata.annotations.as_ref().unwrap();
    assert_eq!(a[DESIRED_REPLICAS_ANNOTATION], "5");
    assert_eq!(a[MAX_REPLICAS_ANNOTATION], "7"); // 25% of 5 rounds up to 2
}

#[test]
fn proportional_scaling_mid_rollout() {
    // Mid-rollout at replicas 10 (surge 3): old 8, new 5 = 13 = 10 + 3. Scale to 20 (surge 5).
    let mut d = deployment(20, "nginx:2");
    d.status = Some(DeploymentStatus {
        replicas: Some(13),
        ..Default::default()
    });
    let old = with_replica_annotations(rs(&d, "nginx:1", 1, 8, 8), 10, 13);
    let new = with_replica_annotations(rs(&d, "nginx:2", 2, 5, 0), 10, 13);
    let plan = reconcile(&d, &[old, new], &[], t(0)).unwrap();
    assert!(plan.create.is_none());
    let size = |uid: &str| {
        plan.update
            .iter()
            .find(|r| r.metadata.uid.as_deref() == Some(uid))
            .map(replicas)
            .unwrap()
    };
    // 25 allowed: old 8·25/13 ≈ 15, new 5·25/13 ≈ 10; total 25.
    assert_eq!(size("rs-nginx:1") + size("rs-nginx:2"), 25);
    assert_eq!(size("rs-nginx:1"), 15);
    assert_eq!(size("rs-nginx:2"), 10);
}

#[test]
fn stuck_rollouts_requeue_at_the_deadline() {
    let mut d = deployment(2, "nginx:2");
    d.spec.as_mut().unwrap().progress_deadline_seconds = Some(60);
    let new = rs(&d, "nginx:2", 2, 2, 0);
    d.status = Some(DeploymentStatus {
        observed_generation: Some(1),
        replicas: Some(2),
        updated_replicas: Some(2),
        conditions: Some(vec![condition(
            "Progressing",
            "True",
            REASON_RS_UPDATED,
            "x".into(),
            t(0),
        )]),
        ..Default::default()
    });
    let plan = reconcile(&d, &[new], &[], t(20)).unwrap();
    assert_eq!(plan.requeue_after, Some(std::time::Duration::from_secs(40)));
}
