use super::*;
use k8s_openapi::api::core::v1::{PodSpec, Probe};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};

pub(crate) fn t(secs: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_700_000_000 + secs, 0).unwrap()
}

pub(crate) fn container(name: &str) -> Container {
    Container {
        name: name.into(),
        image: Some(format!("img/{name}:1")),
        ..Default::default()
    }
}

pub(crate) fn sidecar(name: &str) -> Container {
    Container {
        restart_policy: Some("Always".into()),
        ..container(name)
    }
}

pub(crate) fn pod(policy: &str, inits: Vec<Container>, containers: Vec<Container>) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some("web".into()),
            namespace: Some("default".into()),
            uid: Some("u1".into()),
            ..Default::default()
        },
        spec: Some(PodSpec {
            restart_policy: Some(policy.into()),
            init_containers: (!inits.is_empty()).then_some(inits),
            containers,
            ..Default::default()
        }),
        status: None,
    }
}

pub(crate) fn sandbox() -> SandboxView {
    SandboxView {
        id: "sb1".into(),
        ready: true,
        attempt: 0,
        host_network: false,
        ips: vec!["10.0.0.5".into()],
        created_at: Some(t(0)),
    }
}

fn spec_of<'a>(p: &'a Pod, name: &str) -> &'a Container {
    let s = p.spec.as_ref().unwrap();
    s.containers
        .iter()
        .chain(s.init_containers.iter().flatten())
        .find(|c| c.name == name)
        .unwrap()
}

pub(crate) fn running(p: &Pod, name: &str, attempt: u32) -> ContainerView {
    let c = spec_of(p, name);
    ContainerView {
        id: format!("{name}-{attempt}"),
        name: name.into(),
        state: ContainerRunState::Running,
        exit_code: 0,
        reason: String::new(),
        message: String::new(),
        created_at: Some(t(attempt as i64 * 100)),
        started_at: Some(t(attempt as i64 * 100 + 1)),
        finished_at: None,
        attempt,
        restart_count: attempt as i32,
        hash: Some(container_hash(c)),
        image: c.image.clone().unwrap(),
        image_ref: format!("sha256:{name}"),
    }
}

pub(crate) fn exited(p: &Pod, name: &str, attempt: u32, code: i32, finished: i64) -> ContainerView {
    ContainerView {
        state: ContainerRunState::Exited,
        exit_code: code,
        reason: if code == 0 { "Completed" } else { "Error" }.into(),
        finished_at: Some(t(finished)),
        ..running(p, name, attempt)
    }
}

fn compute(p: &Pod, sb: Option<&SandboxView>, cs: &[ContainerView]) -> PodActions {
    compute_pod_actions(
        p,
        sb,
        cs,
        &Backoff::default(),
        &ProbeResults::default(),
        t(10_000),
    )
}

#[test]
fn new_pod_creates_sandbox_and_starts_containers() {
    let p = pod("Always", vec![], vec![container("a"), container("b")]);
    let a = compute(&p, None, &[]);
    assert!(a.kill_pod && a.create_sandbox);
    assert_eq!(a.attempt, 0);
    assert_eq!(a.containers_to_start, ["a", "b"]);
}

#[test]
fn new_pod_with_init_containers_starts_first_init_only() {
    let p = pod(
        "Always",
        vec![container("i1"), container("i2")],
        vec![container("a")],
    );
    let a = compute(&p, None, &[]);
    assert!(a.create_sandbox);
    assert_eq!(a.init_containers_to_start, ["i1"]);
    assert!(a.containers_to_start.is_empty());
}

#[test]
fn sandbox_not_ready_or_without_ip_is_recreated() {
    let p = pod("Always", vec![], vec![container("a")]);
    let mut sb = sandbox();
    sb.ready = false;
    sb.attempt = 2;
    let a = compute(&p, Some(&sb), &[]);
    assert!(a.kill_pod && a.create_sandbox);
    assert_eq!(a.attempt, 3);
    assert_eq!(a.sandbox_id.as_deref(), Some("sb1"));
    let mut sb = sandbox();
    sb.ips.clear();
    assert!(compute(&p, Some(&sb), &[]).create_sandbox);
    // A host-network sandbox for a pod-network pod: the network namespace changed.
    let mut sb = sandbox();
    sb.host_network = true;
    assert!(compute(&p, Some(&sb), &[]).create_sandbox);
}

#[test]
fn never_pod_is_not_rerun_after_sandbox_loss() {
    let p = pod("Never", vec![], vec![container("a")]);
    let mut sb = sandbox();
    sb.ready = false;
    let cs = [exited(&p, "a", 0, 0, 50)];
    let a = compute(&p, Some(&sb), &cs);
    assert!(a.kill_pod);
    assert!(!a.create_sandbox);
}

#[test]
fn on_failure_sandbox_recreation_skips_succeeded_containers() {
    let p = pod("OnFailure", vec![], vec![container("a"), container("b")]);
    let mut sb = sandbox();
    sb.ready = false;
    let cs = [exited(&p, "a", 0, 0, 50), exited(&p, "b", 0, 1, 50)];
    let a = compute(&p, Some(&sb), &cs);
    assert!(a.create_sandbox);
    assert_eq!(a.containers_to_start, ["b"]);
}

#[test]
fn steady_running_pod_does_nothing() {
    let p = pod("Always", vec![], vec![container("a")]);
    let cs = [running(&p, "a", 0)];
    let a = compute(&p, Some(&sandbox()), &cs);
    assert_eq!(
        a,
        PodActions {
            sandbox_id: Some("sb1".into()),
            ..Default::default()
        }
    );
}

#[test]
fn restart_policies_for_exited_containers() {
    for (policy, code, restart) in [
        ("Always", 0, true),
        ("Always", 1, true),
        ("OnFailure", 0, false),
        ("OnFailure", 2, true),
        ("Never", 1, false),
        ("Never", 0, false),
    ] {
        let p = pod(policy, vec![], vec![container("a"), container("b")]);
        let cs = [exited(&p, "a", 0, code, 50), running(&p, "b", 0)];
        let a = compute(&p, Some(&sandbox()), &cs);
        assert_eq!(
            a.containers_to_start.contains(&"a".to_string()),
            restart,
            "{policy} {code}"
        );
        assert!(!a.kill_pod);
    }
}

#[test]
fn all_containers_done_kills_pod() {
    let p = pod("Never", vec![sidecar("s")], vec![container("a")]);
    let cs = [running(&p, "s", 0), exited(&p, "a", 0, 0, 50)];
    let a = compute(&p, Some(&sandbox()), &cs);
    assert!(a.kill_pod);
    assert!(a.init_containers_to_start.is_empty());
}

#[test]
fn liveness_failure_kills_and_restarts_per_policy() {
    let p = pod("Always", vec![], vec![container("a")]);
    let cs = [running(&p, "a", 0)];
    let mut probes = ProbeResults::default();
    probes.liveness.insert("a-0".into(), ProbeResult::Failure);
    let a = compute_pod_actions(
        &p,
        Some(&sandbox()),
        &cs,
        &Backoff::default(),
        &probes,
        t(0),
    );
    assert_eq!(a.containers_to_start, ["a"]);
    assert_eq!(a.containers_to_kill[0].reason, KillReason::LivenessProbe);
    assert_eq!(
        a.containers_to_kill[0].message,
        "Container a failed liveness probe, will be restarted"
    );
    let p = pod("Never", vec![], vec![container("a")]);
    let a = compute_pod_actions(
        &p,
        Some(&sandbox()),
        &cs,
        &Backoff::default(),
        &probes,
        t(0),
    );
    assert!(a.containers_to_start.is_empty());
    assert_eq!(
        a.containers_to_kill[0].message,
        "Container a failed liveness probe"
    );
    assert!(a.kill_pod, "nothing is left running");
}

#[test]
fn startup_failure_kills() {
    let p = pod("Always", vec![], vec![container("a")]);
    let cs = [running(&p, "a", 0)];
    let mut probes = ProbeResults::default();
    probes.startup.insert("a-0".into(), ProbeResult::Failure);
    let a = compute_pod_actions(
        &p,
        Some(&sandbox()),
        &cs,
        &Backoff::default(),
        &probes,
        t(0),
    );
    assert_eq!(a.containers_to_kill[0].reason, KillReason::StartupProbe);
}

#[test]
fn image_change_restarts_even_under_never() {
    let p = pod("Never", vec![], vec![container("a")]);
    let cs = [running(&p, "a", 0)];
    let mut p2 = p.clone();
    p2.spec.as_mut().unwrap().containers[0].image = Some("img/a:2".into());
    let a = compute(&p2, Some(&sandbox()), &cs);
    assert_eq!(a.containers_to_kill[0].reason, KillReason::SpecChanged);
    assert_eq!(
        a.containers_to_kill[0].message,
        "Container a definition changed, will be restarted"
    );
    assert_eq!(a.containers_to_start, ["a"]);
}

#[test]
fn hash_is_stable_and_covers_name_and_image() {
    let a = container("a");
    assert_eq!(container_hash(&a), container_hash(&a.clone()));
    let mut b = a.clone();
    b.image = Some("other".into());
    assert_ne!(container_hash(&a), container_hash(&b));
    let mut c = a.clone();
    c.args = Some(vec!["x".into()]);
    assert_eq!(container_hash(&a), container_hash(&c));
    assert_eq!(
        container_hash_label(&a),
        format!("{:x}", container_hash(&a))
    );
}

#[test]
fn init_containers_run_in_order() {
    let p = pod(
        "Always",
        vec![container("i1"), container("i2")],
        vec![container("a")],
    );
    let sb = sandbox();
    let a = compute(&p, Some(&sb), &[]);
    assert_eq!(a.init_containers_to_start, ["i1"]);
    let running_i1 = [running(&p, "i1", 0)];
    let a = compute(&p, Some(&sb), &running_i1);
    assert!(a.init_containers_to_start.is_empty() && a.containers_to_start.is_empty());
    assert!(!a.kill_pod);
    let done_i1 = [exited(&p, "i1", 0, 0, 10)];
    assert_eq!(
        compute(&p, Some(&sb), &done_i1).init_containers_to_start,
        ["i2"]
    );
    let done = [exited(&p, "i1", 0, 0, 10), exited(&p, "i2", 0, 0, 20)];
    let a = compute(&p, Some(&sb), &done);
    assert!(a.init_containers_to_start.is_empty());
    assert_eq!(a.containers_to_start, ["a"]);
    // i1 garbage-collected: i2 done is enough.
    let a = compute(&p, Some(&sb), &done[1..]);
    assert_eq!(a.containers_to_start, ["a"]);
}

#[test]
fn failed_init_container_restarts_or_fails_pod() {
    let p = pod("OnFailure", vec![container("i1")], vec![container("a")]);
    let cs = [exited(&p, "i1", 0, 1, 10)];
    let a = compute(&p, Some(&sandbox()), &cs);
    assert_eq!(a.init_containers_to_start, ["i1"]);
    assert!(!a.pod_failed);
    let p = pod("Never", vec![container("i1")], vec![container("a")]);
    let a = compute(&p, Some(&sandbox()), &cs);
    assert!(a.kill_pod && a.pod_failed);
    assert!(a.init_containers_to_start.is_empty() && a.containers_to_start.is_empty());
}

#[test]
fn sidecars_start_in_order_and_do_not_block() {
    let p = pod(
        "Always",
        vec![sidecar("s"), container("i")],
        vec![container("a")],
    );
    let sb = sandbox();
    assert_eq!(compute(&p, Some(&sb), &[]).init_containers_to_start, ["s"]);
    // Sidecar running (no startup probe): the next init container starts.
    let cs = [running(&p, "s", 0)];
    assert_eq!(compute(&p, Some(&sb), &cs).init_containers_to_start, ["i"]);
    // Init done: containers start, sidecar stays.
    let cs = [running(&p, "s", 0), exited(&p, "i", 0, 0, 30)];
    let a = compute(&p, Some(&sb), &cs);
    assert!(a.init_containers_to_start.is_empty());
    assert_eq!(a.containers_to_start, ["a"]);
    // Sidecar exited after init: restarted, alongside the running container.
    let cs = [
        exited(&p, "s", 0, 1, 40),
        exited(&p, "i", 0, 0, 30),
        running(&p, "a", 0),
    ];
    let a = compute(&p, Some(&sb), &cs);
    assert_eq!(a.init_containers_to_start, ["s"]);
    assert!(!a.kill_pod);
    // Sidecar gone from the runtime after init: restarted too.
    let cs = [running(&p, "a", 0)];
    assert_eq!(compute(&p, Some(&sb), &cs).init_containers_to_start, ["s"]);
}

#[test]
fn sidecar_with_startup_probe_blocks_until_started() {
    let mut s = sidecar("s");
    s.startup_probe = Some(Probe::default());
    let p = pod("Always", vec![s, container("i")], vec![container("a")]);
    let cs = [running(&p, "s", 0)];
    let sb = sandbox();
    assert!(compute(&p, Some(&sb), &cs)
        .init_containers_to_start
        .is_empty());
    let mut probes = ProbeResults::default();
    probes.startup.insert("s-0".into(), ProbeResult::Success);
    let a = compute_pod_actions(&p, Some(&sb), &cs, &Backoff::default(), &probes, t(0));
    assert_eq!(a.init_containers_to_start, ["i"]);
    probes.startup.insert("s-0".into(), ProbeResult::Failure);
    let a = compute_pod_actions(&p, Some(&sb), &cs, &Backoff::default(), &probes, t(0));
    assert_eq!(a.init_containers_to_start, ["s"]);
    assert_eq!(
        a.containers_to_kill[0].message,
        "Init container s failed startup probe"
    );
}

#[test]
fn deleted_pod_restarts_nothing() {
    let mut p = pod("Always", vec![], vec![container("a")]);
    p.metadata.deletion_timestamp = Some(Time(t(0)));
    let cs = [exited(&p, "a", 0, 1, 10)];
    let a = compute(&p, Some(&sandbox()), &cs);
    assert!(a.containers_to_start.is_empty());
    assert!(a.kill_pod);
}

#[test]
fn backoff_doubles_caps_and_resets() {
    let mut b = Backoff::default();
    let k = ("u1".to_string(), "a".to_string());
    // Failed at 0, restarted at 1.
    b.next(k.clone(), t(0), t(1));
    assert_eq!(b.delay_secs(&k), 10);
    let mut now = 1;
    for want in [20, 40, 80, 160, 300, 300] {
        // Fails 5 s after each restart, restarted once the delay passed.
        b.next(k.clone(), t(now + 5), t(now + 400));
        now += 400;
        assert_eq!(b.delay_secs(&k), want);
    }
    // Finished 5 s after the last restart: in back-off for 300 s from then.
    assert!(b.is_in_backoff_since(&k, t(now + 5), t(now + 300)));
    assert!(!b.is_in_backoff_since(&k, t(now + 5), t(now + 305)));
    // Ran for more than 10 minutes after the last restart: no back-off, delay starts over.
    assert!(!b.is_in_backoff_since(&k, t(now + 601), t(now + 602)));
    b.next(k.clone(), t(now + 601), t(now + 602));
    assert_eq!(b.delay_secs(&k), 10);
    b.gc(t(now + 602 + 600));
    assert_eq!(b.delay_secs(&k), 10, "kept up to 10 minutes");
    b.gc(t(now + 602 + 601));
    assert_eq!(b.delay_secs(&k), 0);
}

#[test]
fn crash_loop_back_off_gates_restart() {
    let p = pod("Always", vec![], vec![container("a")]);
    let cs = [exited(&p, "a", 1, 1, 100)];
    let sb = sandbox();
    let probes = ProbeResults::default();
    let mut b = Backoff::default();
    // First failure: restart at once and start the clock.
    let a = compute_pod_actions(&p, Some(&sb), &cs, &b, &probes, t(101));
    assert_eq!(a.containers_to_start, ["a"]);
    assert_eq!(
        a.backoff_updates,
        [(("u1".to_string(), "a".to_string()), t(100))]
    );
    a.record_backoff(&mut b, t(101));
    assert_eq!(b.delay_secs(&("u1".into(), "a".into())), 10);
    // Second failure 10 s after the restart: in back-off for 10 s.
    let cs = [exited(&p, "a", 2, 1, 111)];
    let a = compute_pod_actions(&p, Some(&sb), &cs, &b, &probes, t(112));
    assert_eq!(a.containers_to_start, Vec::<String>::new());
    assert!(!a.kill_pod, "a pod in back-off is not killed");
    assert_eq!(a.backed_off.len(), 1);
    assert_eq!(a.backed_off[0].reason, "CrashLoopBackOff");
    assert_eq!(
        a.backed_off[0].message,
        "back-off 10s restarting failed container=a pod=web_default(u1)"
    );
    let a = compute_pod_actions(&p, Some(&sb), &cs, &b, &probes, t(122));
    assert_eq!(a.containers_to_start, ["a"]);
    a.record_backoff(&mut b, t(122));
    let cs = [exited(&p, "a", 3, 1, 124)];
    let a = compute_pod_actions(&p, Some(&sb), &cs, &b, &probes, t(125));
    assert_eq!(
        a.backed_off[0].message,
        "back-off 20s restarting failed container=a pod=web_default(u1)"
    );
    // A container that ran 10 minutes before failing restarts at once.
    let cs = [exited(&p, "a", 3, 1, 122 + 601)];
    let a = compute_pod_actions(&p, Some(&sb), &cs, &b, &probes, t(122 + 602));
    assert_eq!(a.containers_to_start, ["a"]);
}

#[test]
fn go_durations() {
    assert_eq!(go_duration(10), "10s");
    assert_eq!(go_duration(80), "1m20s");
    assert_eq!(go_duration(300), "5m0s");
}

#[test]
fn views_from_cri() {
    let mut s = k8s_cri::v1::ContainerStatus {
        id: "abc".into(),
        metadata: Some(k8s_cri::v1::ContainerMetadata {
            name: "meta".into(),
            attempt: 3,
        }),
        state: k8s_cri::v1::ContainerState::ContainerExited as i32,
        created_at: 1_000_000_000,
        started_at: 2_000_000_000,
        finished_at: 3_000_000_000,
        exit_code: 137,
        reason: "OOMKilled".into(),
        image: Some(k8s_cri::v1::ImageSpec {
            image: "busybox".into(),
            ..Default::default()
        }),
        image_ref: "sha256:1".into(),
        ..Default::default()
    };
    s.labels.insert(CONTAINER_NAME_LABEL.into(), "web".into());
    s.annotations
        .insert(CONTAINER_HASH_LABEL.into(), "ff".into());
    s.annotations
        .insert(CONTAINER_RESTART_COUNT_LABEL.into(), "4".into());
    let v = ContainerView::from(&s);
    assert_eq!(v.name, "web");
    assert_eq!(v.state, ContainerRunState::Exited);
    assert_eq!((v.attempt, v.restart_count, v.hash), (3, 4, Some(255)));
    assert_eq!(v.finished_at, Some(Utc.timestamp_opt(3, 0).unwrap()));
    assert_eq!(v.reason, "OOMKilled");
    assert_eq!(v.image, "busybox");

    let sb = k8s_cri::v1::PodSandboxStatus {
        id: "sb".into(),
        state: k8s_cri::v1::PodSandboxState::SandboxReady as i32,
        metadata: Some(k8s_cri::v1::PodSandboxMetadata {
            attempt: 1,
            ..Default::default()
        }),
        network: Some(k8s_cri::v1::PodSandboxNetworkStatus {
            ip: "10.0.0.2".into(),
            additional_ips: vec![k8s_cri::v1::PodIp {
                ip: "fd00::2".into(),
            }],
        }),
        ..Default::default()
    };
    let v = SandboxView::from(&sb);
    assert!(v.ready && !v.host_network);
    assert_eq!(v.ips, ["10.0.0.2", "fd00::2"]);
    assert_eq!(v.attempt, 1);
}

#[test]
fn labels_round_trip_through_cri() {
    let mut p = pod("Always", vec![], vec![container("a")]);
    p.spec.as_mut().unwrap().termination_grace_period_seconds = Some(30);
    let c = &p.spec.as_ref().unwrap().containers[0];
    let (labels, annotations) = container_labels(&p, c, 3);
    assert_eq!(labels[POD_UID_LABEL], "u1");
    assert_eq!(annotations[POD_TERMINATION_GRACE_PERIOD_LABEL], "30");
    assert_eq!(
        annotations[CONTAINER_TERMINATION_MESSAGE_PATH_LABEL],
        "/dev/termination-log"
    );
    let s = k8s_cri::v1::ContainerStatus {
        id: "x".into(),
        state: k8s_cri::v1::ContainerState::ContainerRunning as i32,
        labels: labels.into_iter().collect(),
        annotations: annotations.into_iter().collect(),
        ..Default::default()
    };
    let v = ContainerView::from(&s);
    assert_eq!(v.name, "a");
    assert_eq!(v.restart_count, 3);
    assert_eq!(v.hash, Some(container_hash(c)));
    assert!(!spec_changed(c, &v));
    assert_eq!(next_restart_count(&[v], "a"), Some(4));
    assert_eq!(next_restart_count(&[], "a"), None);
}
