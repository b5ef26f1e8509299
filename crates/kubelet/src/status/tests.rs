use super::*;
use crate::actions::tests::{container, exited, pod, running, sandbox, sidecar, t};
use k8s_openapi::api::core::v1::{PodReadinessGate, Probe};

struct Fixture {
    probes: ProbeResults,
    waiting: HashMap<String, WaitingReason>,
    host_ips: Vec<String>,
}

impl Fixture {
    fn new() -> Self {
        Fixture {
            probes: ProbeResults::default(),
            waiting: HashMap::new(),
            host_ips: vec!["192.168.1.10".into()],
        }
    }

    fn status(
        &self,
        p: &Pod,
        sb: Option<&SandboxView>,
        cs: &[ContainerView],
        now: i64,
    ) -> PodStatus {
        generate_pod_status(&StatusInput {
            pod: p,
            sandbox: sb,
            containers: cs,
            probes: &self.probes,
            previous: None,
            waiting_reasons: &self.waiting,
            runtime_name: "deckhand",
            host_ips: &self.host_ips,
            pod_is_terminal: false,
            now: t(now),
        })
    }
}

fn condition<'a>(s: &'a PodStatus, ty: &str) -> &'a PodCondition {
    s.conditions
        .as_ref()
        .unwrap()
        .iter()
        .find(|c| c.type_ == ty)
        .unwrap()
}

fn cstatus<'a>(s: &'a PodStatus, name: &str) -> &'a ContainerStatus {
    s.container_statuses
        .iter()
        .chain(s.init_container_statuses.iter())
        .flatten()
        .find(|c| c.name == name)
        .unwrap()
}

#[test]
fn new_pod_is_pending_with_container_creating() {
    let p = pod("Always", vec![], vec![container("a")]);
    let f = Fixture::new();
    let s = f.status(&p, None, &[], 0);
    assert_eq!(s.phase.as_deref(), Some("Pending"));
    let a = cstatus(&s, "a");
    assert_eq!(
        a.state
            .as_ref()
            .unwrap()
            .waiting
            .as_ref()
            .unwrap()
            .reason
            .as_deref(),
        Some("ContainerCreating")
    );
    assert_eq!(a.image, "img/a:1");
    assert_eq!(condition(&s, POD_READY_TO_START_CONTAINERS).status, "False");
    assert_eq!(condition(&s, POD_SCHEDULED).status, "True");
    assert_eq!(s.qos_class.as_deref(), Some("BestEffort"));
    assert_eq!(s.start_time, Some(Time(t(0))));
    assert_eq!(s.host_ip.as_deref(), Some("192.168.1.10"));
    assert_eq!(s.pod_ip, None);
}

#[test]
fn running_pod_is_ready() {
    let p = pod("Always", vec![], vec![container("a")]);
    let f = Fixture::new();
    let cs = [running(&p, "a", 0)];
    let s = f.status(&p, Some(&sandbox()), &cs, 5);
    assert_eq!(s.phase.as_deref(), Some("Running"));
    let a = cstatus(&s, "a");
    assert_eq!(a.container_id.as_deref(), Some("deckhand://a-0"));
    assert_eq!(a.image_id, "sha256:a");
    assert!(a.ready);
    assert_eq!(a.started, Some(true));
    assert_eq!(
        a.state
            .as_ref()
            .unwrap()
            .running
            .as_ref()
            .unwrap()
            .started_at,
        Some(Time(t(1)))
    );
    for c in [
        POD_READY_TO_START_CONTAINERS,
        POD_INITIALIZED,
        CONTAINERS_READY,
        POD_READY,
    ] {
        assert_eq!(condition(&s, c).status, "True", "{c}");
    }
    assert_eq!(s.pod_ip.as_deref(), Some("10.0.0.5"));
    assert_eq!(s.pod_ips.as_ref().unwrap().len(), 1);
}

#[test]
fn readiness_probe_drives_ready_and_transition_time_is_kept() {
    let mut c = container("a");
    c.readiness_probe = Some(Probe::default());
    let mut p = pod("Always", vec![], vec![c]);
    let mut f = Fixture::new();
    let cs = [running(&p, "a", 0)];
    let s = f.status(&p, Some(&sandbox()), &cs, 5);
    assert!(!cstatus(&s, "a").ready, "not probed yet");
    let ready = condition(&s, POD_READY);
    assert_eq!(ready.status, "False");
    assert_eq!(ready.reason.as_deref(), Some("ContainersNotReady"));
    assert_eq!(
        ready.message.as_deref(),
        Some("containers with unready status: [a]")
    );
    assert_eq!(ready.last_transition_time, Some(Time(t(5))));
    p.status = Some(s);
    let s = f.status(&p, Some(&sandbox()), &cs, 9);
    assert_eq!(
        condition(&s, POD_READY).last_transition_time,
        Some(Time(t(5)))
    );
    assert_eq!(s.start_time, Some(Time(t(5))), "startTime is set once");
    f.probes
        .readiness
        .insert("a-0".into(), ProbeResult::Success);
    p.status = Some(s);
    let s = f.status(&p, Some(&sandbox()), &cs, 12);
    assert_eq!(condition(&s, POD_READY).status, "True");
    assert_eq!(
        condition(&s, POD_READY).last_transition_time,
        Some(Time(t(12)))
    );
    assert_eq!(
        condition(&s, POD_INITIALIZED).last_transition_time,
        Some(Time(t(5)))
    );
}

#[test]
fn startup_probe_gates_started() {
    let mut c = container("a");
    c.startup_probe = Some(Probe::default());
    let p = pod("Always", vec![], vec![c]);
    let mut f = Fixture::new();
    let cs = [running(&p, "a", 0)];
    let s = f.status(&p, Some(&sandbox()), &cs, 5);
    assert_eq!(cstatus(&s, "a").started, Some(false));
    assert!(!cstatus(&s, "a").ready);
    f.probes.startup.insert("a-0".into(), ProbeResult::Success);
    let s = f.status(&p, Some(&sandbox()), &cs, 5);
    assert_eq!(cstatus(&s, "a").started, Some(true));
    assert!(cstatus(&s, "a").ready);
}

#[test]
fn readiness_gates() {
    let mut p = pod("Always", vec![], vec![container("a")]);
    p.spec.as_mut().unwrap().readiness_gates = Some(vec![PodReadinessGate {
        condition_type: "lb/ready".into(),
    }]);
    let f = Fixture::new();
    let cs = [running(&p, "a", 0)];
    let s = f.status(&p, Some(&sandbox()), &cs, 5);
    let r = condition(&s, POD_READY);
    assert_eq!(r.reason.as_deref(), Some("ReadinessGatesNotReady"));
    assert_eq!(
        r.message.as_deref(),
        Some("corresponding condition of pod readiness gate \"lb/ready\" does not exist.")
    );
    let mut prev = s.clone();
    prev.conditions.as_mut().unwrap().push(PodCondition {
        type_: "lb/ready".into(),
        status: "True".into(),
        ..Default::default()
    });
    p.status = Some(prev);
    let s = f.status(&p, Some(&sandbox()), &cs, 6);
    assert_eq!(condition(&s, POD_READY).status, "True");
    assert_eq!(
        condition(&s, "lb/ready").status,
        "True",
        "foreign conditions are kept"
    );
}

#[test]
fn restart_shows_last_state_and_crash_loop() {
    let p = pod("Always", vec![], vec![container("a")]);
    let mut f = Fixture::new();
    let mut e = exited(&p, "a", 1, 1, 150);
    e.message = "boom".into();
    let cs = [exited(&p, "a", 0, 2, 50), e];
    f.waiting.insert(
        "a".into(),
        WaitingReason {
            reason: "CrashLoopBackOff".into(),
            message: "back-off 10s restarting failed container=a pod=web_default(u1)".into(),
        },
    );
    let s = f.status(&p, Some(&sandbox()), &cs, 155);
    let a = cstatus(&s, "a");
    let w = a.state.as_ref().unwrap().waiting.as_ref().unwrap();
    assert_eq!(w.reason.as_deref(), Some("CrashLoopBackOff"));
    let last = a.last_state.as_ref().unwrap().terminated.as_ref().unwrap();
    assert_eq!(
        (
            last.exit_code,
            last.reason.as_deref(),
            last.message.as_deref()
        ),
        (1, Some("Error"), Some("boom"))
    );
    assert_eq!(last.container_id.as_deref(), Some("deckhand://a-1"));
    assert_eq!(a.restart_count, 1);
    assert_eq!(
        s.phase.as_deref(),
        Some("Running"),
        "restarting under Always"
    );
    assert_eq!(condition(&s, POD_READY).status, "False");
}

#[test]
fn exited_without_waiting_reason_reports_terminated_then_previous_as_last_state() {
    let p = pod("Always", vec![], vec![container("a")]);
    let f = Fixture::new();
    let cs = [exited(&p, "a", 0, 137, 50), running(&p, "a", 1)];
    let s = f.status(&p, Some(&sandbox()), &cs, 155);
    let a = cstatus(&s, "a");
    assert!(a.state.as_ref().unwrap().running.is_some());
    assert_eq!(
        a.last_state
            .as_ref()
            .unwrap()
            .terminated
            .as_ref()
            .unwrap()
            .exit_code,
        137
    );
}

#[test]
fn phases_by_restart_policy() {
    for (policy, codes, want) in [
        ("Never", vec![0, 0], "Succeeded"),
        ("Never", vec![0, 1], "Failed"),
        ("OnFailure", vec![0, 0], "Succeeded"),
        ("OnFailure", vec![0, 1], "Running"),
        ("Always", vec![0, 0], "Running"),
    ] {
        let p = pod(policy, vec![], vec![container("a"), container("b")]);
        let f = Fixture::new();
        let cs = [
            exited(&p, "a", 0, codes[0], 50),
            exited(&p, "b", 0, codes[1], 50),
        ];
        let s = f.status(&p, Some(&sandbox()), &cs, 60);
        assert_eq!(s.phase.as_deref(), Some(want), "{policy} {codes:?}");
        if want == "Succeeded" {
            assert_eq!(
                condition(&s, POD_READY).reason.as_deref(),
                Some("PodCompleted")
            );
        }
        if want == "Failed" {
            assert_eq!(
                condition(&s, CONTAINERS_READY).reason.as_deref(),
                Some("PodFailed")
            );
        }
    }
}

#[test]
fn terminal_pod_phase_from_exit_codes() {
    let p = pod("Always", vec![], vec![container("a")]);
    let f = Fixture::new();
    let cs = [exited(&p, "a", 0, 0, 50)];
    let s = generate_pod_status(&StatusInput {
        pod: &p,
        sandbox: Some(&sandbox()),
        containers: &cs,
        probes: &f.probes,
        previous: None,
        waiting_reasons: &f.waiting,
        runtime_name: "containerd",
        host_ips: &f.host_ips,
        pod_is_terminal: true,
        now: t(60),
    });
    assert_eq!(s.phase.as_deref(), Some("Succeeded"));
    assert_eq!(
        cstatus(&s, "a").container_id.as_deref(),
        Some("containerd://a-0")
    );
}

#[test]
fn init_containers_pending_and_failed() {
    let p = pod("Always", vec![container("i")], vec![container("a")]);
    let f = Fixture::new();
    let cs = [running(&p, "i", 0)];
    let s = f.status(&p, Some(&sandbox()), &cs, 5);
    assert_eq!(s.phase.as_deref(), Some("Pending"));
    let a = cstatus(&s, "a");
    assert_eq!(
        a.state
            .as_ref()
            .unwrap()
            .waiting
            .as_ref()
            .unwrap()
            .reason
            .as_deref(),
        Some("PodInitializing")
    );
    let init = condition(&s, POD_INITIALIZED);
    assert_eq!(init.reason.as_deref(), Some("ContainersNotInitialized"));
    assert_eq!(
        init.message.as_deref(),
        Some("containers with incomplete status: [i]")
    );
    // Init done.
    let cs = [exited(&p, "i", 0, 0, 10), running(&p, "a", 0)];
    let s = f.status(&p, Some(&sandbox()), &cs, 20);
    assert_eq!(s.phase.as_deref(), Some("Running"));
    assert!(cstatus(&s, "i").ready);
    assert_eq!(condition(&s, POD_INITIALIZED).status, "True");
    // Failed init under Never: Failed.
    let p = pod("Never", vec![container("i")], vec![container("a")]);
    let cs = [exited(&p, "i", 0, 3, 10)];
    let s = f.status(&p, Some(&sandbox()), &cs, 20);
    assert_eq!(s.phase.as_deref(), Some("Failed"));
    // Failed init under OnFailure: Pending while it restarts.
    let p = pod("OnFailure", vec![container("i")], vec![container("a")]);
    let s = f.status(&p, Some(&sandbox()), &cs, 20);
    assert_eq!(s.phase.as_deref(), Some("Pending"));
}

#[test]
fn sidecar_counts_for_readiness_and_init() {
    let p = pod("Always", vec![sidecar("s")], vec![container("a")]);
    let f = Fixture::new();
    let cs = [running(&p, "s", 0), running(&p, "a", 0)];
    let s = f.status(&p, Some(&sandbox()), &cs, 5);
    assert_eq!(s.phase.as_deref(), Some("Running"));
    assert_eq!(condition(&s, POD_INITIALIZED).status, "True");
    assert_eq!(condition(&s, CONTAINERS_READY).status, "True");
    assert!(cstatus(&s, "s").ready);
    // Sidecar crashed after the pod ran: still Running, not ready.
    let cs = [exited(&p, "s", 0, 1, 4), running(&p, "a", 0)];
    let s = f.status(&p, Some(&sandbox()), &cs, 5);
    assert_eq!(s.phase.as_deref(), Some("Running"));
    assert_eq!(
        condition(&s, CONTAINERS_READY).message.as_deref(),
        Some("containers with unready status: [s]")
    );
}

#[test]
fn vanished_running_container_is_reported_terminated_unknown() {
    let p0 = pod("Always", vec![], vec![container("a")]);
    let f = Fixture::new();
    let cs = [running(&p0, "a", 0)];
    let mut p = p0.clone();
    p.status = Some(f.status(&p0, Some(&sandbox()), &cs, 5));
    let s = f.status(&p, Some(&sandbox()), &[], 10);
    let a = cstatus(&s, "a");
    let last = a.last_state.as_ref().unwrap().terminated.as_ref().unwrap();
    assert_eq!(last.reason.as_deref(), Some("ContainerStatusUnknown"));
    assert_eq!(last.exit_code, 137);
    assert_eq!(a.restart_count, 1);
    assert_eq!(s.phase.as_deref(), Some("Running"));
}

#[test]
fn terminal_phase_is_sticky_and_ips_kept() {
    let mut p = pod("Always", vec![], vec![container("a")]);
    let f = Fixture::new();
    p.status = Some(PodStatus {
        phase: Some("Failed".into()),
        pod_ips: Some(vec![PodIP {
            ip: "10.0.0.9".into(),
        }]),
        ..Default::default()
    });
    let cs = [running(&p, "a", 0)];
    let s = f.status(&p, None, &cs, 5);
    assert_eq!(s.phase.as_deref(), Some("Failed"));
    assert_eq!(s.pod_ip.as_deref(), Some("10.0.0.9"));
}

#[test]
fn host_network_pod_gets_host_ips() {
    let mut p = pod("Always", vec![], vec![container("a")]);
    p.spec.as_mut().unwrap().host_network = Some(true);
    let f = Fixture::new();
    let mut sb = sandbox();
    sb.host_network = true;
    sb.ips.clear();
    let s = f.status(&p, Some(&sb), &[], 5);
    assert_eq!(s.pod_ip.as_deref(), Some("192.168.1.10"));
    assert_eq!(condition(&s, POD_READY_TO_START_CONTAINERS).status, "True");
}

#[test]
fn termination_messages() {
    let mut c = container("a");
    assert_eq!(
        termination_message(&c, 1, "Error", Some("bye"), Some("log")),
        "bye"
    );
    assert_eq!(
        termination_message(&c, 1, "Error", Some(""), Some("log")),
        ""
    );
    c.termination_message_policy = Some("FallbackToLogsOnError".into());
    assert_eq!(
        termination_message(&c, 1, "Error", None, Some("l1\nl2")),
        "l1\nl2"
    );
    assert_eq!(
        termination_message(&c, 1, "Error", Some(""), Some("l1")),
        "l1"
    );
    assert_eq!(
        termination_message(&c, 0, "Completed", None, Some("l1")),
        ""
    );
    assert_eq!(
        termination_message(&c, 128, "ContainerCannotRun", None, Some("l1")),
        ""
    );
    let long: String = (0..100).map(|i| format!("line{i}\n")).collect();
    let m = termination_message(&c, 1, "Error", None, Some(&long));
    assert!(m.starts_with("line20\n") && m.ends_with("line99"), "{m}");
    let big = "x".repeat(5000);
    assert_eq!(
        termination_message(&c, 1, "Error", Some(&big), None).len(),
        4096
    );
    let huge: String = (0..80).map(|_| format!("{}\n", "y".repeat(100))).collect();
    assert_eq!(
        termination_message(&c, 1, "Error", None, Some(&huge)).len(),
        2048
    );
    assert_eq!(exited_message("", "bye"), "bye");
    assert_eq!(exited_message("oom", "bye"), "oom: bye");
    assert_eq!(exited_message("oom", ""), "oom");
}

#[test]
fn active_deadline_fails_the_pod() {
    let mut p = pod("Always", vec![], vec![container("a")]);
    p.spec.as_mut().unwrap().active_deadline_seconds = Some(30);
    let f = Fixture::new();
    let cs = [running(&p, "a", 0)];
    let s = f.status(&p, Some(&sandbox()), &cs, 5);
    assert_eq!(s.phase.as_deref(), Some("Running"));
    p.status = Some(s);
    let s = f.status(&p, Some(&sandbox()), &cs, 35);
    assert_eq!(s.phase.as_deref(), Some("Failed"));
    assert_eq!(s.reason.as_deref(), Some("DeadlineExceeded"));
    assert_eq!(condition(&s, POD_READY).status, "False");
}
