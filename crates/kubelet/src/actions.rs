//! What one pod sync must do: the diff between a pod's spec and what the runtime reports.
//!
//! Follows upstream `pkg/kubelet/kuberuntime/kuberuntime_manager.go` (`computePodActions`,
//! `podSandboxChanged`, `computeInitContainerActions` with native sidecars, `doBackOff`),
//! `pkg/kubelet/container/helpers.go` (`ShouldContainerBeRestarted`, `HashContainer`: since 1.31
//! only name and image are hashed, the only container fields the API lets change) and
//! `client-go/util/flowcontrol/backoff.go` (the CrashLoopBackOff clock).

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, TimeZone, Utc};
use k8s_openapi::api::core::v1::{Container, Pod};

/// CRI label: the container's name in the pod spec.
pub const CONTAINER_NAME_LABEL: &str = "io.kubernetes.container.name";
/// CRI label: the pod's name.
pub const POD_NAME_LABEL: &str = "io.kubernetes.pod.name";
/// CRI label: the pod's namespace.
pub const POD_NAMESPACE_LABEL: &str = "io.kubernetes.pod.namespace";
/// CRI label: the pod's UID.
pub const POD_UID_LABEL: &str = "io.kubernetes.pod.uid";
/// CRI annotation: hex hash of the spec fields whose change forces a restart.
pub const CONTAINER_HASH_LABEL: &str = "io.kubernetes.container.hash";
/// CRI annotation: the restart count the kubelet gave this container instance.
pub const CONTAINER_RESTART_COUNT_LABEL: &str = "io.kubernetes.container.restartCount";
/// CRI annotation: where the container writes its termination message.
pub const CONTAINER_TERMINATION_MESSAGE_PATH_LABEL: &str =
    "io.kubernetes.container.terminationMessagePath";
/// CRI annotation: the container's termination message policy.
pub const CONTAINER_TERMINATION_MESSAGE_POLICY_LABEL: &str =
    "io.kubernetes.container.terminationMessagePolicy";

/// First CrashLoopBackOff delay.
pub const BACKOFF_INITIAL_SECS: i64 = 10;
/// Longest CrashLoopBackOff delay.
pub const BACKOFF_MAX_SECS: i64 = 300;

/// The runtime state of a container, as CRI reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ContainerRunState {
    Created,
    Running,
    Exited,
    Unknown,
}

/// What the kubelet needs to know about one runtime container instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerView {
    pub id: String,
    pub name: String,
    pub state: ContainerRunState,
    pub exit_code: i32,
    /// CRI reason for an exited container (`Completed`, `Error`, `OOMKilled`).
    pub reason: String,
    /// Termination message (the caller fills it per `terminationMessagePolicy`).
    pub message: String,
    pub created_at: Option<DateTime<Utc>>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    /// CRI metadata attempt.
    pub attempt: u32,
    /// The restart count the kubelet recorded on this instance.
    pub restart_count: i32,
    /// The spec hash recorded on this instance, if any.
    pub hash: Option<u64>,
    pub image: String,
    /// The resolved image reference (image ID).
    pub image_ref: String,
}

fn nanos_to_time(n: i64) -> Option<DateTime<Utc>> {
    (n > 0).then(|| Utc.timestamp_nanos(n))
}

impl From<&k8s_cri::v1::ContainerStatus> for ContainerView {
    fn from(s: &k8s_cri::v1::ContainerStatus) -> Self {
        let lookup = |k: &str| s.labels.get(k).or_else(|| s.annotations.get(k));
        let meta = s.metadata.clone().unwrap_or_default();
        let name = lookup(CONTAINER_NAME_LABEL).cloned().unwrap_or(meta.name);
        let state = match k8s_cri::v1::ContainerState::try_from(s.state) {
            Ok(k8s_cri::v1::ContainerState::ContainerCreated) => ContainerRunState::Created,
            Ok(k8s_cri::v1::ContainerState::ContainerRunning) => ContainerRunState::Running,
            Ok(k8s_cri::v1::ContainerState::ContainerExited) => ContainerRunState::Exited,
            _ => ContainerRunState::Unknown,
        };
        ContainerView {
            id: s.id.clone(),
            name,
            state,
            exit_code: s.exit_code,
            reason: s.reason.clone(),
            message: s.message.clone(),
            created_at: nanos_to_time(s.created_at),
            // A created container was never started; only an exited one has finished.
            started_at: (state != ContainerRunState::Created)
                .then(|| nanos_to_time(s.started_at))
                .flatten(),
            finished_at: (state == ContainerRunState::Exited)
                .then(|| nanos_to_time(s.finished_at))
                .flatten(),
            attempt: meta.attempt,
            restart_count: lookup(CONTAINER_RESTART_COUNT_LABEL)
                .and_then(|v| v.parse().ok())
                .unwrap_or(meta.attempt as i32),
            hash: lookup(CONTAINER_HASH_LABEL).and_then(|v| u64::from_str_radix(v, 16).ok()),
            image: s
                .image
                .as_ref()
                .map(|i| i.image.clone())
                .unwrap_or_default(),
            // CRI v1.30+ reports the image ID separately; older runtimes only the reference.
            image_ref: if s.image_id.is_empty() {
                s.image_ref.clone()
            } else {
                s.image_id.clone()
            },
        }
    }
}

/// What the kubelet needs to know about the pod's newest sandbox.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SandboxView {
    pub id: String,
    pub ready: bool,
    pub attempt: u32,
    /// Whether the sandbox uses the node's network namespace.
    pub host_network: bool,
    /// Primary IP, then additional ones; empty when the sandbox has none.
    pub ips: Vec<String>,
    pub created_at: Option<DateTime<Utc>>,
}

impl From<&k8s_cri::v1::PodSandboxStatus> for SandboxView {
    fn from(s: &k8s_cri::v1::PodSandboxStatus) -> Self {
        let mut ips = Vec::new();
        if let Some(n) = &s.network {
            if !n.ip.is_empty() {
                ips.push(n.ip.clone());
            }
            ips.extend(n.additional_ips.iter().map(|i| i.ip.clone()));
        }
        let host_network = s
            .linux
            .as_ref()
            .and_then(|l| l.namespaces.as_ref())
            .and_then(|n| n.options.as_ref())
            .is_some_and(|o| o.network == k8s_cri::v1::NamespaceMode::Node as i32);
        SandboxView {
            id: s.id.clone(),
            ready: s.state == k8s_cri::v1::PodSandboxState::SandboxReady as i32,
            attempt: s.metadata.as_ref().map(|m| m.attempt).unwrap_or(0),
            host_network,
            ips,
            created_at: nanos_to_time(s.created_at),
        }
    }
}

/// A probe's latest result (upstream `proberesults.Result`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeResult {
    Success,
    Failure,
}

/// Latest probe results, keyed by runtime container id as the upstream result managers are.
/// A container with a probe and no entry has not been probed yet.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProbeResults {
    pub liveness: HashMap<String, ProbeResult>,
    pub readiness: HashMap<String, ProbeResult>,
    pub startup: HashMap<String, ProbeResult>,
}

/// CrashLoopBackOff key: pod UID and container name (upstream `getStableKey` adds the hash).
pub type BackoffKey = (String, String);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct BackoffEntry {
    delay_secs: i64,
    /// When the container was last restarted.
    last_update: DateTime<Utc>,
}

/// The CrashLoopBackOff clock, as client-go `flowcontrol.Backoff` (without jitter, as the
/// kubelet uses it): 10 s doubling to 300 s. An entry expires, and the delay starts over at 10 s,
/// when the container finished more than 2 × 300 s = 10 min after its last restart, i.e. it ran
/// for 10 minutes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Backoff {
    entries: BTreeMap<BackoffKey, BackoffEntry>,
}

impl Backoff {
    fn expired(entry: &BackoffEntry, event: DateTime<Utc>) -> bool {
        (event - entry.last_update).num_milliseconds() > 2 * BACKOFF_MAX_SECS * 1000
    }

    /// The current delay for a key (zero when it has none).
    pub fn delay_secs(&self, key: &BackoffKey) -> i64 {
        self.entries.get(key).map_or(0, |e| e.delay_secs)
    }

    /// Whether a container that finished at `finished_at` must still wait at `now`.
    pub fn is_in_backoff_since(
        &self,
        key: &BackoffKey,
        finished_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> bool {
        let Some(e) = self.entries.get(key) else {
            return false;
        };
        if Self::expired(e, finished_at) {
            return false;
        }
        (now - finished_at).num_milliseconds() < e.delay_secs * 1000
    }

    /// Records a restart at `now` of a container that finished at `finished_at`: the delay
    /// doubles, or starts over when the container had run for 10 minutes.
    pub fn next(&mut self, key: BackoffKey, finished_at: DateTime<Utc>, now: DateTime<Utc>) {
        let delay = match self.entries.get(&key) {
            Some(e) if !Self::expired(e, finished_at) => (e.delay_secs * 2).min(BACKOFF_MAX_SECS),
            _ => BACKOFF_INITIAL_SECS,
        };
        self.entries.insert(
            key,
            BackoffEntry {
                delay_secs: delay,
                last_update: now,
            },
        );
    }

    /// Drops entries not restarted for 10 minutes (upstream `GC`).
    pub fn gc(&mut self, now: DateTime<Utc>) {
        self.entries.retain(|_, e| !Self::expired(e, now));
    }
}

/// A duration in Go's `time.Duration` format, for messages that match upstream (`20s`, `5m0s`).
pub fn go_duration(secs: i64) -> String {
    let (h, m, s) = (secs / 3600, (secs % 3600) / 60, secs % 60);
    if h > 0 {
        format!("{h}h{m}m{s}s")
    } else if m > 0 {
        format!("{m}m{s}s")
    } else {
        format!("{s}s")
    }
}

/// `name_namespace(uid)`, upstream `format.Pod`.
pub fn format_pod(pod: &Pod) -> String {
    format!(
        "{}_{}({})",
        pod.metadata.name.as_deref().unwrap_or_default(),
        pod.metadata.namespace.as_deref().unwrap_or_default(),
        pod.metadata.uid.as_deref().unwrap_or_default()
    )
}

/// The spec hash recorded on a container and compared on every sync: 32-bit FNV-1a over the
/// fields whose change must restart the container (name and image, as upstream since 1.31).
pub fn container_hash(c: &Container) -> u64 {
    let mut h: u32 = 0x811c_9dc5;
    let canonical = format!(
        "{{\"image\":{},\"name\":{}}}",
        serde_json::Value::from(c.image.clone().unwrap_or_default()),
        serde_json::Value::from(c.name.clone())
    );
    for b in canonical.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    u64::from(h)
}

/// The hash as the kubelet writes it into the `io.kubernetes.container.hash` annotation.
pub fn container_hash_label(c: &Container) -> String {
    format!("{:x}", container_hash(c))
}

/// CRI annotation: the pod's termination grace period, for kills after the pod object is gone.
pub const POD_TERMINATION_GRACE_PERIOD_LABEL: &str = "io.kubernetes.pod.terminationGracePeriod";

/// The CRI labels and annotations the kubelet puts on a container it creates (upstream
/// `newContainerLabels` / `newContainerAnnotations`); [`ContainerView::from`] reads them back.
pub fn container_labels(
    pod: &Pod,
    container: &Container,
    restart_count: i32,
) -> (BTreeMap<String, String>, BTreeMap<String, String>) {
    let m = &pod.metadata;
    let labels = BTreeMap::from([
        (
            POD_NAME_LABEL.to_string(),
            m.name.clone().unwrap_or_default(),
        ),
        (
            POD_NAMESPACE_LABEL.to_string(),
            m.namespace.clone().unwrap_or_default(),
        ),
        (POD_UID_LABEL.to_string(), m.uid.clone().unwrap_or_default()),
        (CONTAINER_NAME_LABEL.to_string(), container.name.clone()),
    ]);
    let mut annotations = BTreeMap::from([
        (
            CONTAINER_HASH_LABEL.to_string(),
            container_hash_label(container),
        ),
        (
            CONTAINER_RESTART_COUNT_LABEL.to_string(),
            restart_count.to_string(),
        ),
        (
            CONTAINER_TERMINATION_MESSAGE_PATH_LABEL.to_string(),
            container
                .termination_message_path
                .clone()
                .unwrap_or_else(|| "/dev/termination-log".into()),
        ),
        (
            CONTAINER_TERMINATION_MESSAGE_POLICY_LABEL.to_string(),
            container
                .termination_message_policy
                .clone()
                .unwrap_or_else(|| "File".into()),
        ),
    ]);
    if let Some(g) = pod
        .spec
        .as_ref()
        .and_then(|s| s.termination_grace_period_seconds)
    {
        annotations.insert(
            POD_TERMINATION_GRACE_PERIOD_LABEL.to_string(),
            g.to_string(),
        );
    }
    (labels, annotations)
}

/// The restart count for a new instance of a container: one more than its newest instance's
/// (upstream `startContainer`). `None` when the runtime has no instance left; the caller then
/// derives it from the container log directory as upstream does.
pub fn next_restart_count(containers: &[ContainerView], name: &str) -> Option<i32> {
    latest(containers, name).map(|c| c.restart_count + 1)
}

/// Why a container is killed (upstream `containerKillReason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KillReason {
    SpecChanged,
    LivenessProbe,
    StartupProbe,
    UnknownState,
}

/// A container to stop before the rest of the sync.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerKill {
    pub id: String,
    pub name: String,
    pub reason: KillReason,
    /// The `Killing` event message, e.g. `Container web failed liveness probe, will be restarted`.
    pub message: String,
}

/// A container that should start but is held by CrashLoopBackOff.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackedOff {
    pub name: String,
    /// Always `CrashLoopBackOff`: the waiting reason to report.
    pub reason: &'static str,
    /// `back-off 20s restarting failed container=<name> pod=<pod>_<ns>(<uid>)`.
    pub message: String,
}

/// Everything a pod sync must do, in order: kill the pod (all containers and the sandbox) if
/// asked, create the sandbox, kill `containers_to_kill`, then start init containers and
/// containers. Names refer to the pod spec.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodActions {
    /// Stop every container and the sandbox first.
    pub kill_pod: bool,
    /// Create a new sandbox (after `kill_pod`).
    pub create_sandbox: bool,
    /// The existing sandbox, if any.
    pub sandbox_id: Option<String>,
    /// The attempt number for a new sandbox.
    pub attempt: u32,
    /// Init containers (regular and sidecars) to start now, in spec order.
    pub init_containers_to_start: Vec<String>,
    /// Regular containers to start now, in spec order.
    pub containers_to_start: Vec<String>,
    pub containers_to_kill: Vec<ContainerKill>,
    /// Containers that would start but are in back-off; report them waiting.
    pub backed_off: Vec<BackedOff>,
    /// Restarts that advance the back-off clock (key, when the previous instance finished);
    /// apply with [`PodActions::record_backoff`] once the starts happened.
    pub backoff_updates: Vec<(BackoffKey, DateTime<Utc>)>,
    /// A regular init container failed under restartPolicy Never: the pod is failed for good.
    pub pod_failed: bool,
}

impl PodActions {
    /// Advances the back-off clock for the restarts this sync performed at `now`.
    pub fn record_backoff(&self, backoff: &mut Backoff, now: DateTime<Utc>) {
        for (k, finished_at) in &self.backoff_updates {
            backoff.next(k.clone(), *finished_at, now);
        }
    }
}

fn restart_policy(pod: &Pod) -> &str {
    pod.spec
        .as_ref()
        .and_then(|s| s.restart_policy.as_deref())
        .unwrap_or("Always")
}

fn restart_on_failure(pod: &Pod) -> bool {
    restart_policy(pod) != "Never"
}

/// Whether an init container is a native sidecar (`restartPolicy: Always`).
pub fn is_sidecar(c: &Container) -> bool {
    c.restart_policy.as_deref() == Some("Always")
}

/// The newest instance of a container by name: highest attempt, then newest creation.
pub fn latest<'a>(containers: &'a [ContainerView], name: &str) -> Option<&'a ContainerView> {
    containers
        .iter()
        .filter(|c| c.name == name)
        .max_by_key(|c| (c.attempt, c.created_at))
}

/// Upstream `ShouldContainerBeRestarted`: a deleted pod restarts nothing; a missing, created or
/// unknown container starts; an exited one per restartPolicy (OnFailure: non-zero exit only).
pub fn should_container_be_restarted(
    pod: &Pod,
    container: &Container,
    containers: &[ContainerView],
) -> bool {
    if pod.metadata.deletion_timestamp.is_some() {
        return false;
    }
    let Some(status) = latest(containers, &container.name) else {
        return true;
    };
    match status.state {
        ContainerRunState::Running => false,
        ContainerRunState::Unknown | ContainerRunState::Created => true,
        ContainerRunState::Exited => match restart_policy(pod) {
            "Never" => false,
            "OnFailure" => status.exit_code != 0,
            _ => true,
        },
    }
}

fn init_failed(s: &ContainerView) -> bool {
    (s.state == ContainerRunState::Exited && s.exit_code != 0)
        || s.state == ContainerRunState::Unknown
}

/// Whether the sandbox must be (re)created: none, not ready, wrong network namespace, or a pod
/// network sandbox without an IP. Returns (create, attempt for the new one).
fn sandbox_changed(pod: &Pod, sandbox: Option<&SandboxView>) -> (bool, u32) {
    let Some(sb) = sandbox else {
        return (true, 0);
    };
    let host_network = pod
        .spec
        .as_ref()
        .and_then(|s| s.host_network)
        .unwrap_or(false);
    let changed =
        !sb.ready || sb.host_network != host_network || (!host_network && sb.ips.is_empty());
    if changed {
        (true, sb.attempt + 1)
    } else {
        (false, sb.attempt)
    }
}

fn spec_changed(c: &Container, s: &ContainerView) -> bool {
    s.hash.is_some_and(|h| h != container_hash(c))
        || (s.hash.is_none()
            && c.image
                .as_deref()
                .is_some_and(|i| !s.image.is_empty() && i != s.image))
}

/// Decides what a sync of `pod` does, given its newest sandbox and all its runtime containers.
/// Pure: the back-off clock is only read; apply [`PodActions::backoff_updates`] afterwards.
pub fn compute_pod_actions(
    pod: &Pod,
    sandbox: Option<&SandboxView>,
    containers: &[ContainerView],
    backoff: &Backoff,
    probes: &ProbeResults,
    now: DateTime<Utc>,
) -> PodActions {
    let mut actions = compute_raw(pod, sandbox, containers, probes);
    gate_backoff(pod, containers, backoff, now, &mut actions);
    actions
}

fn compute_raw(
    pod: &Pod,
    sandbox: Option<&SandboxView>,
    containers: &[ContainerView],
    probes: &ProbeResults,
) -> PodActions {
    let empty_spec = Default::default();
    let spec = pod.spec.as_ref().unwrap_or(&empty_spec);
    let inits: &[Container] = spec.init_containers.as_deref().unwrap_or(&[]);
    let (create, attempt) = sandbox_changed(pod, sandbox);
    let mut a = PodActions {
        kill_pod: create,
        create_sandbox: create,
        sandbox_id: sandbox.map(|s| s.id.clone()),
        attempt,
        ..Default::default()
    };
    if create {
        // A Never pod whose sandbox died after it ran is not run again.
        if !restart_on_failure(pod) && attempt != 0 && !containers.is_empty() {
            a.create_sandbox = false;
            return a;
        }
        let to_start: Vec<String> = spec
            .containers
            .iter()
            .filter(|c| {
                !(restart_policy(pod) == "OnFailure"
                    && latest(containers, &c.name)
                        .is_some_and(|s| s.state == ContainerRunState::Exited && s.exit_code == 0))
            })
            .map(|c| c.name.clone())
            .collect();
        if to_start.is_empty() && inits.is_empty() {
            a.create_sandbox = false;
            return a;
        }
        if let Some(first) = inits.first() {
            a.init_containers_to_start.push(first.name.clone());
            return a;
        }
        a.containers_to_start = to_start;
        return a;
    }

    let initialized = init_container_actions(pod, inits, containers, probes, &mut a);
    if a.kill_pod || !initialized {
        return a;
    }

    let mut keep = 0;
    for c in &spec.containers {
        let status = latest(containers, &c.name);
        let Some(status) = status.filter(|s| s.state == ContainerRunState::Running) else {
            if should_container_be_restarted(pod, c, containers) {
                a.containers_to_start.push(c.name.clone());
                if let Some(s) = status.filter(|s| s.state == ContainerRunState::Unknown) {
                    a.containers_to_kill.push(ContainerKill {
                        id: s.id.clone(),
                        name: c.name.clone(),
                        reason: KillReason::UnknownState,
                        message: "Container is in \"unknown\" state, try killing it before restart"
                            .into(),
                    });
                }
            }
            continue;
        };
        let mut restart = restart_on_failure(pod);
        let (reason, message) = if spec_changed(c, status) {
            restart = true;
            (
                KillReason::SpecChanged,
                format!("Container {} definition changed", c.name),
            )
        } else if probes.liveness.get(&status.id) == Some(&ProbeResult::Failure) {
            (
                KillReason::LivenessProbe,
                format!("Container {} failed liveness probe", c.name),
            )
        } else if probes.startup.get(&status.id) == Some(&ProbeResult::Failure) {
            (
                KillReason::StartupProbe,
                format!("Container {} failed startup probe", c.name),
            )
        } else {
            keep += 1;
            continue;
        };
        let message = if restart {
            a.containers_to_start.push(c.name.clone());
            format!("{message}, will be restarted")
        } else {
            message
        };
        a.containers_to_kill.push(ContainerKill {
            id: status.id.clone(),
            name: c.name.clone(),
            reason,
            message,
        });
    }
    if keep == 0 && a.containers_to_start.is_empty() {
        // Nothing left to run: stop the pod, sidecars included (they must not keep it alive).
        a.kill_pod = true;
        a.init_containers_to_start.clear();
    }
    a
}

/// Upstream `computeInitContainerActions`: walks init containers from the last one back (the
/// runtime may have garbage-collected completed ones), starts the next one, keeps sidecars
/// running and restarts them on exit or probe failure. Returns whether the pod is initialized.
fn init_container_actions(
    pod: &Pod,
    inits: &[Container],
    containers: &[ContainerView],
    probes: &ProbeResults,
    a: &mut PodActions,
) -> bool {
    if inits.is_empty() {
        return true;
    }
    let spec_containers = pod.spec.as_ref().map(|s| &s.containers[..]).unwrap_or(&[]);
    // A created or running regular container proves initialization finished before.
    let mut initialized = spec_containers.iter().any(|c| {
        latest(containers, &c.name).is_some_and(|s| {
            matches!(
                s.state,
                ContainerRunState::Created | ContainerRunState::Running
            )
        })
    });
    let mut previously_initialized = initialized;
    let restart = restart_on_failure(pod);
    let mut start: Vec<usize> = Vec::new();
    let last = inits.len() - 1;
    for i in (0..inits.len()).rev() {
        let c = &inits[i];
        let sidecar = is_sidecar(c);
        let Some(s) = latest(containers, &c.name) else {
            if previously_initialized && sidecar {
                start.push(i);
            }
            continue;
        };
        if previously_initialized && !sidecar {
            continue;
        }
        let kill = |a: &mut PodActions, reason, message: String| {
            a.containers_to_kill.push(ContainerKill {
                id: s.id.clone(),
                name: c.name.clone(),
                reason,
                message,
            })
        };
        match s.state {
            ContainerRunState::Created => start.push(i),
            ContainerRunState::Running if sidecar => 'running: {
                if c.startup_probe.is_some() {
                    match probes.startup.get(&s.id) {
                        None => break 'running,
                        Some(ProbeResult::Failure) => {
                            kill(
                                a,
                                KillReason::StartupProbe,
                                format!("Init container {} failed startup probe", c.name),
                            );
                            start.push(i);
                            break 'running;
                        }
                        Some(ProbeResult::Success) => {}
                    }
                }
                if i == last {
                    initialized = true;
                } else if !previously_initialized {
                    start.push(i + 1);
                }
                if spec_changed(c, s) {
                    kill(
                        a,
                        KillReason::SpecChanged,
                        format!("Init container {} definition changed", c.name),
                    );
                    start.push(i);
                    break 'running;
                }
                if c.liveness_probe.is_some()
                    && probes.liveness.get(&s.id) == Some(&ProbeResult::Failure)
                {
                    kill(
                        a,
                        KillReason::LivenessProbe,
                        format!("Init container {} failed liveness probe", c.name),
                    );
                    start.push(i);
                }
            }
            ContainerRunState::Running => {}
            ContainerRunState::Exited if sidecar => start.push(i),
            ContainerRunState::Exited => {
                if init_failed(s) {
                    if !restart {
                        a.kill_pod = true;
                        a.pod_failed = true;
                        a.init_containers_to_start.clear();
                        return false;
                    }
                    start.push(i);
                } else if i == last {
                    initialized = true;
                } else {
                    start.push(i + 1);
                }
            }
            ContainerRunState::Unknown => {
                if !sidecar && !restart {
                    a.kill_pod = true;
                    a.pod_failed = true;
                    a.init_containers_to_start.clear();
                    return false;
                }
                kill(
                    a,
                    KillReason::UnknownState,
                    "Init container is in \"unknown\" state, try killing it before restart".into(),
                );
                start.push(i);
            }
        }
        previously_initialized = true;
    }
    if !previously_initialized {
        start.push(0);
    }
    start.reverse();
    start.dedup();
    a.init_containers_to_start = start.into_iter().map(|i| inits[i].name.clone()).collect();
    initialized
}

/// Holds back restarts of exited containers whose back-off has not elapsed (upstream
/// `doBackOff`, which runs at start time; here it runs on the decision so the status can say
/// `CrashLoopBackOff` in the same sync).
fn gate_backoff(
    pod: &Pod,
    containers: &[ContainerView],
    backoff: &Backoff,
    now: DateTime<Utc>,
    a: &mut PodActions,
) {
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let gate = |names: &mut Vec<String>, a_backed: &mut Vec<BackedOff>, updates: &mut Vec<_>| {
        names.retain(|name| {
            let exited = containers
                .iter()
                .filter(|c| &c.name == name && c.state == ContainerRunState::Exited)
                .max_by_key(|c| (c.attempt, c.created_at));
            let Some(exited) = exited else {
                return true;
            };
            let finished = exited.finished_at.unwrap_or(now);
            let key = (uid.clone(), name.clone());
            if backoff.is_in_backoff_since(&key, finished, now) {
                a_backed.push(BackedOff {
                    name: name.clone(),
                    reason: "CrashLoopBackOff",
                    message: format!(
                        "back-off {} restarting failed container={} pod={}",
                        go_duration(backoff.delay_secs(&key)),
                        name,
                        format_pod(pod)
                    ),
                });
                return false;
            }
            updates.push((key, finished));
            true
        });
    };
    gate(
        &mut a.init_containers_to_start,
        &mut a.backed_off,
        &mut a.backoff_updates,
    );
    gate(
        &mut a.containers_to_start,
        &mut a.backed_off,
        &mut a.backoff_updates,
    );
}

#[cfg(test)]
pub(crate) mod tests;
