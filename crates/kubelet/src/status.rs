//! The pod status the kubelet reports: phase, conditions and container statuses.
//!
//! Follows upstream `pkg/kubelet/kubelet_pods.go` (`generateAPIPodStatus`, `getPhase`,
//! `convertToAPIContainerStatuses`, `convertContainerStatus`), `pkg/kubelet/status/generate.go`
//! (the Initialized / ContainersReady / Ready / PodReadyToStartContainers conditions and their
//! reasons), `pkg/kubelet/prober/prober_manager.go` (`UpdatePodStatus`: `ready` and `started`),
//! `pkg/kubelet/status/status_manager.go` (`lastTransitionTime` kept while a condition's status
//! holds) and `pkg/kubelet/kuberuntime/kuberuntime_container.go` (termination messages).

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::{
    Container, ContainerState, ContainerStateRunning, ContainerStateTerminated,
    ContainerStateWaiting, ContainerStatus, HostIP, Pod, PodCondition, PodIP, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::actions::{
    is_sidecar, latest, should_container_be_restarted, ContainerRunState, ContainerView,
    ProbeResult, ProbeResults, SandboxView,
};
use crate::lifecycle::active_deadline_exceeded;
use crate::qos::pod_qos_class;

pub const POD_SCHEDULED: &str = "PodScheduled";
pub const POD_INITIALIZED: &str = "Initialized";
pub const CONTAINERS_READY: &str = "ContainersReady";
pub const POD_READY: &str = "Ready";
pub const POD_READY_TO_START_CONTAINERS: &str = "PodReadyToStartContainers";

/// Largest termination message read from the file, in bytes (upstream `maxMsgSize` is 4 KiB).
pub const MAX_TERMINATION_MESSAGE_BYTES: usize = 4096;
/// Largest termination message taken from the log, in bytes.
pub const MAX_TERMINATION_LOG_BYTES: usize = 2048;
/// Log lines a `FallbackToLogsOnError` termination message takes.
pub const MAX_TERMINATION_LOG_LINES: usize = 80;

/// Why a container that should run is waiting instead (upstream reason cache: the last start
/// failure, e.g. `CrashLoopBackOff`, `ErrImagePull`, `CreateContainerConfigError`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WaitingReason {
    pub reason: String,
    pub message: String,
}

/// Everything the pod status is computed from.
#[derive(Debug, Clone, Copy)]
pub struct StatusInput<'a> {
    pub pod: &'a Pod,
    pub sandbox: Option<&'a SandboxView>,
    /// Every runtime container of the pod (all attempts the runtime still has).
    pub containers: &'a [ContainerView],
    pub probes: &'a ProbeResults,
    /// The previous status; `pod.status` when `None`.
    pub previous: Option<&'a PodStatus>,
    /// Last start failure per container name.
    pub waiting_reasons: &'a HashMap<String, WaitingReason>,
    /// Prefix of container IDs: `deckhand` or the CRI runtime's name (`containerd`).
    pub runtime_name: &'a str,
    /// The node's IPs, primary first.
    pub host_ips: &'a [String],
    /// The pod worker finished the pod: containers will not be restarted.
    pub pod_is_terminal: bool,
    pub now: DateTime<Utc>,
}

/// The termination message per `terminationMessagePolicy` (upstream
/// `convertToKubeContainerStatus`): the file content (`None` when the file does not exist),
/// truncated to 4 KiB; with `FallbackToLogsOnError`, a failed container (not `ContainerCannotRun`)
/// whose file is missing or empty gets the log's last 80 lines instead (at most 2 KiB, the tail
/// kept).
pub fn termination_message(
    container: &Container,
    exit_code: i32,
    cri_reason: &str,
    file_content: Option<&str>,
    log_tail: Option<&str>,
) -> String {
    let from_file = file_content
        .map(|s| truncate_start(s, MAX_TERMINATION_MESSAGE_BYTES))
        .unwrap_or_default();
    if !from_file.is_empty() {
        return from_file;
    }
    let fallback = container.termination_message_policy.as_deref() == Some("FallbackToLogsOnError")
        && exit_code != 0
        && cri_reason != "ContainerCannotRun";
    match log_tail {
        Some(log) if fallback => {
            let lines: Vec<&str> = log.lines().collect();
            let tail = lines[lines.len().saturating_sub(MAX_TERMINATION_LOG_LINES)..].join("\n");
            tail_bytes(&tail, MAX_TERMINATION_LOG_BYTES)
        }
        _ => String::new(),
    }
}

/// The message of an exited container: the runtime's own message, then the termination message
/// after `": "` (upstream appends it the same way). Put the result in [`ContainerView::message`].
pub fn exited_message(cri_message: &str, termination_message: &str) -> String {
    match (cri_message.is_empty(), termination_message.is_empty()) {
        (_, true) => cri_message.to_string(),
        (true, false) => termination_message.to_string(),
        (false, false) => format!("{cri_message}: {termination_message}"),
    }
}

fn truncate_start(s: &str, max: usize) -> String {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

fn tail_bytes(s: &str, max: usize) -> String {
    let mut start = s.len().saturating_sub(max);
    while !s.is_char_boundary(start) {
        start += 1;
    }
    s[start..].to_string()
}

fn waiting(reason: &str) -> ContainerState {
    ContainerState {
        waiting: Some(ContainerStateWaiting {
            reason: (!reason.is_empty()).then(|| reason.to_string()),
            message: None,
        }),
        ..Default::default()
    }
}

fn is_waiting_with(state: &Option<ContainerState>, reason: &str) -> bool {
    state
        .as_ref()
        .and_then(|s| s.waiting.as_ref())
        .is_some_and(|w| w.reason.as_deref() == Some(reason))
}

fn terminated_of(s: &ContainerStatus) -> Option<&ContainerStateTerminated> {
    s.state.as_ref()?.terminated.as_ref()
}

fn last_terminated_of(s: &ContainerStatus) -> Option<&ContainerStateTerminated> {
    s.last_state.as_ref()?.terminated.as_ref()
}

fn running_of(s: &ContainerStatus) -> bool {
    s.state.as_ref().is_some_and(|s| s.running.is_some())
}

/// Upstream `convertContainerStatus`: one runtime instance as an API container status.
fn convert(
    input: &StatusInput,
    cs: &ContainerView,
    spec_image: &str,
    old: Option<&ContainerStatus>,
) -> ContainerStatus {
    let cid = format!("{}://{}", input.runtime_name, cs.id);
    let time = |t: Option<DateTime<Utc>>| t.map(Time);
    let mut status = ContainerStatus {
        name: cs.name.clone(),
        restart_count: cs.restart_count,
        image: if cs.image.is_empty() {
            spec_image.to_string()
        } else {
            cs.image.clone()
        },
        image_id: cs.image_ref.clone(),
        container_id: Some(cid.clone()),
        ..Default::default()
    };
    let state = match cs.state {
        ContainerRunState::Running => ContainerState {
            running: Some(ContainerStateRunning {
                started_at: time(cs.started_at),
            }),
            ..Default::default()
        },
        ContainerRunState::Exited => ContainerState {
            terminated: Some(ContainerStateTerminated {
                exit_code: cs.exit_code,
                reason: (!cs.reason.is_empty()).then(|| cs.reason.clone()),
                message: (!cs.message.is_empty()).then(|| cs.message.clone()),
                started_at: time(cs.started_at),
                finished_at: time(cs.finished_at),
                container_id: Some(cid),
                signal: None,
            }),
            ..Default::default()
        },
        ContainerRunState::Unknown if old.is_some_and(running_of) => {
            // Deleted out of band while running: report it as killed.
            if input.pod.metadata.deletion_timestamp.is_none() {
                status.restart_count += 1;
            }
            ContainerState {
                terminated: Some(ContainerStateTerminated {
                    exit_code: 137,
                    reason: Some("ContainerStatusUnknown".into()),
                    message: Some(
                        "The container could not be located when the pod was terminated".into(),
                    ),
                    ..Default::default()
                }),
                ..Default::default()
            }
        }
        // Created-but-not-running and unknown containers wait.
        _ => waiting(""),
    };
    status.state = Some(state);
    status
}

/// Upstream `convertToAPIContainerStatuses` for the init or the regular containers of a pod.
fn container_statuses(
    input: &StatusInput,
    specs: &[Container],
    old_statuses: &[ContainerStatus],
    is_init: bool,
) -> Vec<ContainerStatus> {
    let pod = input.pod;
    let has_init = pod
        .spec
        .as_ref()
        .and_then(|s| s.init_containers.as_ref())
        .is_some_and(|i| !i.is_empty());
    let default_reason = if has_init {
        "PodInitializing"
    } else {
        "ContainerCreating"
    };
    let old: HashMap<&str, &ContainerStatus> =
        old_statuses.iter().map(|s| (s.name.as_str(), s)).collect();
    let mut statuses: BTreeMap<String, ContainerStatus> = BTreeMap::new();
    for c in specs {
        let image = c.image.clone().unwrap_or_default();
        let mut st = ContainerStatus {
            name: c.name.clone(),
            image,
            state: Some(waiting(default_reason)),
            ..Default::default()
        };
        if let Some(o) = old.get(c.name.as_str()) {
            if terminated_of(o).is_some() {
                st = (*o).clone();
            } else {
                st.restart_count = o.restart_count;
                st.last_state = o.last_state.clone();
            }
        }
        statuses.insert(c.name.clone(), st);
    }

    // A container that was running and vanished from the runtime: it terminated, we just do not
    // know how; saying so keeps the pod from looking Pending again.
    for c in specs {
        if input.containers.iter().any(|v| v.name == c.name) {
            continue;
        }
        let Some(o) = old.get(c.name.as_str()) else {
            continue;
        };
        if terminated_of(o).is_some() || !running_of(o) {
            continue;
        }
        let st = statuses.get_mut(&c.name).expect("inserted above");
        if !is_waiting_with(&st.state, default_reason) || last_terminated_of(st).is_some() {
            continue;
        }
        st.last_state = Some(ContainerState {
            terminated: Some(ContainerStateTerminated {
                exit_code: 137,
                reason: Some("ContainerStatusUnknown".into()),
                message: Some(
                    "The container could not be located when the pod was deleted.  The container used to be Running"
                        .into(),
                ),
                ..Default::default()
            }),
            ..Default::default()
        });
        if pod.metadata.deletion_timestamp.is_none() {
            st.restart_count += 1;
        }
    }

    // Newest instance is the state, the one before it is lastState.
    let mut instances: Vec<&ContainerView> = input.containers.iter().collect();
    instances.sort_by_key(|c| std::cmp::Reverse((c.created_at, c.attempt)));
    let mut seen: HashMap<&str, u32> = HashMap::new();
    for cs in instances {
        let Some(spec) = specs.iter().find(|c| c.name == cs.name) else {
            continue;
        };
        let n = seen.entry(cs.name.as_str()).or_default();
        if *n >= 2 {
            continue;
        }
        let converted = convert(
            input,
            cs,
            spec.image.as_deref().unwrap_or_default(),
            old.get(cs.name.as_str()).copied(),
        );
        let st = statuses.get_mut(&cs.name).expect("inserted above");
        if *n == 0 {
            *st = converted;
        } else {
            st.last_state = converted.state;
        }
        *n += 1;
    }

    // Containers that will be restarted wait, with the last start failure as the reason.
    for c in specs {
        if is_init {
            if let Some(s) = latest(input.containers, &c.name) {
                if s.state == ContainerRunState::Exited && s.exit_code == 0 {
                    continue;
                }
            }
        }
        if !should_container_be_restarted(pod, c, input.containers) {
            continue;
        }
        let Some(w) = input.waiting_reasons.get(&c.name) else {
            continue;
        };
        let st = statuses.get_mut(&c.name).expect("inserted above");
        if st.state.as_ref().is_some_and(|s| s.terminated.is_some()) {
            st.last_state = st.state.take();
        }
        st.state = Some(ContainerState {
            waiting: Some(ContainerStateWaiting {
                reason: Some(w.reason.clone()),
                message: (!w.message.is_empty()).then(|| w.message.clone()),
            }),
            ..Default::default()
        });
    }

    // Init containers in spec order, regular ones by name, as upstream sorts them.
    let mut out: Vec<ContainerStatus> = if is_init {
        specs
            .iter()
            .filter_map(|c| statuses.remove(&c.name))
            .collect()
    } else {
        statuses.into_values().collect()
    };
    set_ready_and_started(input, specs, &mut out, is_init);
    out
}

/// Upstream prober `UpdatePodStatus`: `started` from the startup probe (true once running when
/// there is none), `ready` from the readiness probe (true once started when there is none); a
/// regular init container is ready once it exited 0.
fn set_ready_and_started(
    input: &StatusInput,
    specs: &[Container],
    statuses: &mut [ContainerStatus],
    is_init: bool,
) {
    for st in statuses.iter_mut() {
        let Some(spec) = specs.iter().find(|c| c.name == st.name) else {
            continue;
        };
        let id = st
            .container_id
            .as_deref()
            .and_then(|c| c.split_once("://"))
            .map(|(_, id)| id.to_string())
            .unwrap_or_default();
        let running = running_of(st);
        let started = running
            && match input.probes.startup.get(&id) {
                Some(r) => *r == ProbeResult::Success,
                None => spec.startup_probe.is_none(),
            };
        st.started = Some(started);
        if is_init && !is_sidecar(spec) {
            st.ready = terminated_of(st).is_some_and(|t| t.exit_code == 0);
            continue;
        }
        st.ready = started
            && match input.probes.readiness.get(&id) {
                Some(r) => *r == ProbeResult::Success,
                None => spec.readiness_probe.is_none(),
            };
    }
}

fn find<'a>(statuses: &'a [ContainerStatus], name: &str) -> Option<&'a ContainerStatus> {
    statuses.iter().find(|s| s.name == name)
}

fn any_regular_started(specs: &[Container], statuses: &[ContainerStatus]) -> bool {
    specs.iter().any(|c| {
        find(statuses, &c.name).is_some_and(|s| {
            let st = s.state.as_ref();
            st.is_some_and(|st| st.running.is_some() || st.terminated.is_some())
                || last_terminated_of(s).is_some()
        })
    })
}

/// Upstream `getPhase`.
pub fn get_phase(
    pod: &Pod,
    init_statuses: &[ContainerStatus],
    statuses: &[ContainerStatus],
    pod_is_terminal: bool,
) -> &'static str {
    let empty = Default::default();
    let spec = pod.spec.as_ref().unwrap_or(&empty);
    let inits: &[Container] = spec.init_containers.as_deref().unwrap_or(&[]);
    let policy = spec.restart_policy.as_deref().unwrap_or("Always");
    let (mut pending_sidecars, mut pending_inits, mut failed_init) = (0, 0, 0);
    for c in inits.iter().filter(|c| !is_sidecar(c)) {
        let Some(s) = find(init_statuses, &c.name) else {
            pending_inits += 1;
            continue;
        };
        let st = s.state.clone().unwrap_or_default();
        if st.running.is_some() {
            pending_inits += 1;
        } else if let Some(t) = &st.terminated {
            if t.exit_code != 0 {
                failed_init += 1;
            }
        } else if st.waiting.is_some() {
            match last_terminated_of(s) {
                Some(t) if t.exit_code != 0 => failed_init += 1,
                Some(_) => {}
                None => pending_inits += 1,
            }
        } else {
            pending_inits += 1;
        }
    }
    let (mut unknown, mut running, mut waiting_n, mut stopped, mut succeeded) = (0, 0, 0, 0, 0);
    for c in inits.iter().filter(|c| is_sidecar(c)) {
        let Some(s) = find(init_statuses, &c.name) else {
            unknown += 1;
            continue;
        };
        let st = s.state.clone().unwrap_or_default();
        if st.running.is_some() {
            if s.started != Some(true) {
                pending_sidecars += 1;
            }
            running += 1;
        } else if st.terminated.is_some() {
        } else if st.waiting.is_some() {
            if last_terminated_of(s).is_none() {
                pending_sidecars += 1;
                waiting_n += 1;
            }
        } else {
            pending_sidecars += 1;
            unknown += 1;
        }
    }
    for c in &spec.containers {
        let Some(s) = find(statuses, &c.name) else {
            unknown += 1;
            continue;
        };
        let st = s.state.clone().unwrap_or_default();
        if st.running.is_some() {
            running += 1;
        } else if let Some(t) = &st.terminated {
            stopped += 1;
            if t.exit_code == 0 {
                succeeded += 1;
            }
        } else if st.waiting.is_some() {
            if last_terminated_of(s).is_some() {
                stopped += 1;
            } else {
                waiting_n += 1;
            }
        } else {
            unknown += 1;
        }
    }
    if failed_init > 0 && policy == "Never" {
        return "Failed";
    }
    if pending_inits > 0
        || (pending_sidecars > 0 && !any_regular_started(&spec.containers, statuses))
        || waiting_n > 0
    {
        return "Pending";
    }
    if running > 0 && unknown == 0 {
        return "Running";
    }
    if running == 0 && stopped > 0 && unknown == 0 {
        let static_pod = pod.metadata.annotations.as_ref().is_some_and(|a| {
            a.get("kubernetes.io/config.source")
                .is_some_and(|s| s != "api")
        });
        if pod_is_terminal && !static_pod {
            return if stopped == succeeded {
                "Succeeded"
            } else {
                "Failed"
            };
        }
        if policy == "Always" {
            return "Running";
        }
        if stopped == succeeded {
            return "Succeeded";
        }
        if policy == "Never" {
            return "Failed";
        }
        return "Running";
    }
    "Pending"
}

fn cond(type_: &str, ok: bool, reason: Option<&str>, message: Option<String>) -> PodCondition {
    PodCondition {
        type_: type_.into(),
        status: if ok { "True" } else { "False" }.into(),
        reason: reason.map(str::to_string),
        message,
        ..Default::default()
    }
}

fn list(names: &[String]) -> String {
    format!("[{}]", names.join(" "))
}

/// Upstream `GeneratePodInitializedCondition`.
fn initialized_condition(
    pod: &Pod,
    init_statuses: &[ContainerStatus],
    statuses: &[ContainerStatus],
    phase: &str,
) -> PodCondition {
    let empty = Default::default();
    let spec = pod.spec.as_ref().unwrap_or(&empty);
    let inits: &[Container] = spec.init_containers.as_deref().unwrap_or(&[]);
    if inits.is_empty() {
        return cond(POD_INITIALIZED, true, None, None);
    }
    let (mut unknown, mut incomplete) = (Vec::new(), Vec::new());
    for c in inits {
        let Some(s) = find(init_statuses, &c.name) else {
            unknown.push(c.name.clone());
            continue;
        };
        let done = if is_sidecar(c) {
            s.started == Some(true)
        } else {
            terminated_of(s).is_some_and(|t| t.exit_code == 0)
        };
        if !done {
            incomplete.push(c.name.clone());
        }
    }
    if phase == "Succeeded" && unknown.is_empty() {
        return cond(POD_INITIALIZED, true, Some("PodCompleted"), None);
    }
    if any_regular_started(&spec.containers, statuses) {
        return cond(POD_INITIALIZED, true, None, None);
    }
    let mut msgs = Vec::new();
    if !unknown.is_empty() {
        msgs.push(format!(
            "containers with unknown status: {}",
            list(&unknown)
        ));
    }
    if !incomplete.is_empty() {
        msgs.push(format!(
            "containers with incomplete status: {}",
            list(&incomplete)
        ));
    }
    if msgs.is_empty() {
        cond(POD_INITIALIZED, true, None, None)
    } else {
        cond(
            POD_INITIALIZED,
            false,
            Some("ContainersNotInitialized"),
            Some(msgs.join(", ")),
        )
    }
}

/// Upstream `GenerateContainersReadyCondition` (sidecars count as containers here).
fn containers_ready_condition(
    pod: &Pod,
    init_statuses: &[ContainerStatus],
    statuses: &[ContainerStatus],
    phase: &str,
) -> PodCondition {
    let empty = Default::default();
    let spec = pod.spec.as_ref().unwrap_or(&empty);
    let (mut unknown, mut unready) = (Vec::new(), Vec::new());
    let sidecars = spec
        .init_containers
        .iter()
        .flatten()
        .filter(|c| is_sidecar(c));
    for (c, list) in sidecars
        .map(|c| (c, init_statuses))
        .chain(spec.containers.iter().map(|c| (c, statuses)))
    {
        match find(list, &c.name) {
            Some(s) if !s.ready => unready.push(c.name.clone()),
            Some(_) => {}
            None => unknown.push(c.name.clone()),
        }
    }
    if phase == "Succeeded" && unknown.is_empty() {
        return cond(CONTAINERS_READY, false, Some("PodCompleted"), None);
    }
    if phase == "Failed" {
        return cond(CONTAINERS_READY, false, Some("PodFailed"), None);
    }
    let mut msgs = Vec::new();
    if !unknown.is_empty() {
        msgs.push(format!(
            "containers with unknown status: {}",
            list(&unknown)
        ));
    }
    if !unready.is_empty() {
        msgs.push(format!(
            "containers with unready status: {}",
            list(&unready)
        ));
    }
    if msgs.is_empty() {
        cond(CONTAINERS_READY, true, None, None)
    } else {
        cond(
            CONTAINERS_READY,
            false,
            Some("ContainersNotReady"),
            Some(msgs.join(", ")),
        )
    }
}

/// Upstream `GeneratePodReadyCondition`: ContainersReady, then every readiness gate's condition.
fn ready_condition(
    pod: &Pod,
    containers_ready: &PodCondition,
    existing: &[PodCondition],
) -> PodCondition {
    if containers_ready.status != "True" {
        return PodCondition {
            type_: POD_READY.into(),
            ..containers_ready.clone()
        };
    }
    let mut msgs = Vec::new();
    let gates = pod.spec.as_ref().and_then(|s| s.readiness_gates.as_ref());
    for g in gates.into_iter().flatten() {
        match existing.iter().find(|c| c.type_ == g.condition_type) {
            None => msgs.push(format!(
                "corresponding condition of pod readiness gate \"{}\" does not exist.",
                g.condition_type
            )),
            Some(c) if c.status != "True" => msgs.push(format!(
                "the status of pod readiness gate \"{}\" is not \"True\", but {}",
                g.condition_type, c.status
            )),
            Some(_) => {}
        }
    }
    if msgs.is_empty() {
        cond(POD_READY, true, None, None)
    } else {
        cond(
            POD_READY,
            false,
            Some("ReadinessGatesNotReady"),
            Some(msgs.join(", ")),
        )
    }
}

/// Keeps `lastTransitionTime` of a condition whose status did not change; stamps `now` otherwise.
fn stamp(mut c: PodCondition, old: &[PodCondition], now: DateTime<Utc>) -> PodCondition {
    c.last_transition_time = match old.iter().find(|o| o.type_ == c.type_) {
        Some(o) if o.status == c.status && o.last_transition_time.is_some() => {
            o.last_transition_time.clone()
        }
        _ => Some(Time(now)),
    };
    c
}

/// The pod status to report, computed from the spec, the runtime view and probe results.
pub fn generate_pod_status(input: &StatusInput) -> PodStatus {
    let pod = input.pod;
    let empty_status = PodStatus::default();
    let old = input
        .previous
        .or(pod.status.as_ref())
        .unwrap_or(&empty_status);
    let empty_spec = Default::default();
    let spec = pod.spec.as_ref().unwrap_or(&empty_spec);
    let inits: &[Container] = spec.init_containers.as_deref().unwrap_or(&[]);

    let init_statuses = container_statuses(
        input,
        inits,
        old.init_container_statuses.as_deref().unwrap_or(&[]),
        true,
    );
    let statuses = container_statuses(
        input,
        &spec.containers,
        old.container_statuses.as_deref().unwrap_or(&[]),
        false,
    );

    let mut phase = get_phase(pod, &init_statuses, &statuses, input.pod_is_terminal);
    // A terminal phase never goes back.
    if let Some(p @ ("Failed" | "Succeeded")) = old.phase.as_deref() {
        phase = if p == "Failed" { "Failed" } else { "Succeeded" };
    }

    // A pod past its activeDeadlineSeconds is failed (upstream pod sync handlers).
    let mut reason = old.reason.clone();
    let mut message = old.message.clone();
    let start_time = old.start_time.clone().unwrap_or(Time(input.now));
    let mut timed = pod.clone();
    timed.status = Some(PodStatus {
        start_time: Some(start_time.clone()),
        ..Default::default()
    });
    if let Some((r, m)) = active_deadline_exceeded(&timed, input.now) {
        phase = "Failed";
        reason = Some(r.into());
        message = Some(m.into());
    }

    let host_network = spec.host_network.unwrap_or(false);
    let mut pod_ips: Vec<String> = if host_network {
        input.host_ips.to_vec()
    } else {
        input.sandbox.map(|s| s.ips.clone()).unwrap_or_default()
    };
    if pod_ips.is_empty() {
        pod_ips = old.pod_ips.iter().flatten().map(|p| p.ip.clone()).collect();
    }

    let old_conditions = old.conditions.as_deref().unwrap_or(&[]);
    // Conditions other components own (readiness gates, DisruptionTarget) come from the API
    // object; the kubelet's own are recomputed.
    let api_conditions = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_deref())
        .unwrap_or(&[]);
    let sandbox_ok = input.sandbox.is_some_and(|s| {
        s.ready && s.host_network == host_network && (host_network || !s.ips.is_empty())
    });
    let initialized = initialized_condition(pod, &init_statuses, &statuses, phase);
    let containers_ready = containers_ready_condition(pod, &init_statuses, &statuses, phase);
    let ready = ready_condition(pod, &containers_ready, api_conditions);
    let owned = [
        cond(POD_READY_TO_START_CONTAINERS, sandbox_ok, None, None),
        initialized,
        ready,
        containers_ready,
        cond(POD_SCHEDULED, true, None, None),
    ];
    let mut conditions: Vec<PodCondition> = api_conditions
        .iter()
        .filter(|c| !owned.iter().any(|o| o.type_ == c.type_))
        .cloned()
        .collect();
    conditions.extend(
        owned
            .into_iter()
            .map(|c| stamp(c, old_conditions, input.now)),
    );

    PodStatus {
        phase: Some(phase.into()),
        conditions: Some(conditions),
        host_ip: input.host_ips.first().cloned(),
        host_ips: (!input.host_ips.is_empty()).then(|| {
            input
                .host_ips
                .iter()
                .map(|ip| HostIP { ip: ip.clone() })
                .collect()
        }),
        pod_ip: pod_ips.first().cloned(),
        pod_ips: (!pod_ips.is_empty())
            .then(|| pod_ips.iter().map(|ip| PodIP { ip: ip.clone() }).collect()),
        qos_class: Some(pod_qos_class(pod).as_str().into()),
        start_time: Some(start_time),
        init_container_statuses: (!inits.is_empty()).then_some(init_statuses),
        container_statuses: Some(statuses),
        ephemeral_container_statuses: old.ephemeral_container_statuses.clone(),
        message,
        reason,
        nominated_node_name: old.nominated_node_name.clone(),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests;
