//! Graceful termination and active deadline decisions.
//!
//! Follows upstream `pkg/kubelet/pod_workers.go` (`calculateEffectiveGracePeriod`: the grace a
//! terminating pod gets, which may only shrink), `pkg/kubelet/kuberuntime/kuberuntime_container.go`
//! (`setTerminationGracePeriod`, `killContainer`: preStop runs within the grace period and the
//! container then keeps at least 2 s before SIGKILL; sidecars stop after the regular containers,
//! in reverse order) and `pkg/kubelet/active_deadline.go` (`DeadlineExceeded`).

use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::{Container, Pod};

use crate::actions::{is_sidecar, KillReason};

/// The shortest window a container gets between SIGTERM and SIGKILL, even after a preStop hook
/// used up the grace period (upstream `minimumGracePeriodInSeconds`).
pub const MIN_CONTAINER_GRACE_SECS: i64 = 2;
/// The grace period when the pod sets none (API default).
pub const DEFAULT_GRACE_SECS: i64 = 30;
/// Pod status reason when `activeDeadlineSeconds` passed.
pub const DEADLINE_EXCEEDED_REASON: &str = "DeadlineExceeded";
/// Pod status message when `activeDeadlineSeconds` passed.
pub const DEADLINE_EXCEEDED_MESSAGE: &str =
    "Pod was active on the node longer than the specified deadline";

/// The grace period of a terminating pod (upstream `calculateEffectiveGracePeriod`): the API's
/// `deletionGracePeriodSeconds` and any kubelet override (eviction) can only shorten the one
/// already in force (`current`); with nothing set the spec's `terminationGracePeriodSeconds`;
/// never below 1 s. Returns the period and whether it shortened `current`.
pub fn pod_grace_period(
    pod: &Pod,
    current: Option<i64>,
    override_secs: Option<i64>,
) -> (i64, bool) {
    let mut grace = current.unwrap_or(0);
    for o in [pod.metadata.deletion_grace_period_seconds, override_secs]
        .into_iter()
        .flatten()
    {
        if grace == 0 || o < grace {
            grace = o;
        }
    }
    if grace == 0 {
        grace = spec_grace(pod).unwrap_or(0);
    }
    let grace = grace.max(1);
    (grace, current.is_some_and(|c| c != 0 && c != grace))
}

fn spec_grace(pod: &Pod) -> Option<i64> {
    pod.spec.as_ref()?.termination_grace_period_seconds
}

/// The grace period for stopping one container (upstream `setTerminationGracePeriod`): the pod's
/// deletion grace when deleting; otherwise the failing probe's own
/// `terminationGracePeriodSeconds` for a probe kill, else the pod's; `override_secs` (the pod
/// worker's effective period while terminating the pod) wins over all.
pub fn container_grace_period(
    pod: &Pod,
    container: &Container,
    reason: Option<KillReason>,
    override_secs: Option<i64>,
) -> i64 {
    if let Some(o) = override_secs {
        return o;
    }
    if let Some(d) = pod.metadata.deletion_grace_period_seconds {
        return d;
    }
    let Some(pod_grace) = spec_grace(pod) else {
        return MIN_CONTAINER_GRACE_SECS;
    };
    let probe = match reason {
        Some(KillReason::LivenessProbe) => container.liveness_probe.as_ref(),
        Some(KillReason::StartupProbe) => container.startup_probe.as_ref(),
        _ => None,
    };
    probe
        .and_then(|p| p.termination_grace_period_seconds)
        .unwrap_or(pod_grace)
}

/// How a container stop proceeds: run the preStop hook (if any) for at most
/// `pre_stop_timeout_secs`, then SIGTERM, then SIGKILL after [`grace_after_pre_stop`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StopPlan {
    pub grace_period_secs: i64,
    /// The preStop hook's time budget; `None` when there is no hook or no time for it.
    pub pre_stop_timeout_secs: Option<i64>,
    /// For a `sleep` preStop hook, how long to sleep (capped by the grace period).
    pub pre_stop_sleep_secs: Option<i64>,
}

/// Plans stopping `container`; see [`container_grace_period`] for the arguments.
pub fn plan_container_stop(
    pod: &Pod,
    container: &Container,
    reason: Option<KillReason>,
    override_secs: Option<i64>,
) -> StopPlan {
    let grace = container_grace_period(pod, container, reason, override_secs);
    let hook = container
        .lifecycle
        .as_ref()
        .and_then(|l| l.pre_stop.as_ref());
    let has_hook = hook.is_some() && grace > 0;
    StopPlan {
        grace_period_secs: grace,
        pre_stop_timeout_secs: has_hook.then_some(grace),
        pre_stop_sleep_secs: hook
            .filter(|_| has_hook)
            .and_then(|h| h.sleep.as_ref())
            .map(|s| s.seconds.clamp(0, grace)),
    }
}

/// Seconds between SIGTERM and SIGKILL once the preStop hook took `pre_stop_elapsed_secs`
/// (whole seconds, as upstream truncates): the rest of the grace period, at least 2 s.
pub fn grace_after_pre_stop(grace_period_secs: i64, pre_stop_elapsed_secs: i64) -> i64 {
    (grace_period_secs - pre_stop_elapsed_secs.max(0)).max(MIN_CONTAINER_GRACE_SECS)
}

/// The order a pod's running containers stop in: all regular containers (and regular init
/// containers) together first, then the sidecars one at a time in reverse spec order, so a
/// sidecar outlives what depends on it. Only names in `running` are included.
pub fn termination_stages(pod: &Pod, running: &[String]) -> Vec<Vec<String>> {
    let Some(spec) = pod.spec.as_ref() else {
        return Vec::new();
    };
    let is_running = |n: &String| running.contains(n);
    let inits = spec.init_containers.as_deref().unwrap_or(&[]);
    let first: Vec<String> = spec
        .containers
        .iter()
        .map(|c| &c.name)
        .chain(inits.iter().filter(|c| !is_sidecar(c)).map(|c| &c.name))
        .filter(|n| is_running(n))
        .cloned()
        .collect();
    let mut stages = Vec::new();
    if !first.is_empty() {
        stages.push(first);
    }
    for c in inits.iter().rev().filter(|c| is_sidecar(c)) {
        if is_running(&c.name) {
            stages.push(vec![c.name.clone()]);
        }
    }
    stages
}

/// Upstream active deadline handler: `Some((reason, message))` when the pod has been active
/// (since `status.startTime`) for `activeDeadlineSeconds` or longer; the pod is then failed.
pub fn active_deadline_exceeded(
    pod: &Pod,
    now: DateTime<Utc>,
) -> Option<(&'static str, &'static str)> {
    let deadline = pod.spec.as_ref()?.active_deadline_seconds?;
    let start = pod.status.as_ref()?.start_time.as_ref()?.0;
    ((now - start).num_milliseconds() >= deadline.saturating_mul(1000))
        .then_some((DEADLINE_EXCEEDED_REASON, DEADLINE_EXCEEDED_MESSAGE))
}

/// When the active deadline falls, to schedule a resync for it (`None` without one).
pub fn active_deadline_at(pod: &Pod) -> Option<DateTime<Utc>> {
    let deadline = pod.spec.as_ref()?.active_deadline_seconds?;
    let start = pod.status.as_ref()?.start_time.as_ref()?.0;
    Some(start + chrono::Duration::seconds(deadline))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::actions::tests::{container, pod, sidecar, t};
    use k8s_openapi::api::core::v1::{
        ExecAction, Lifecycle, LifecycleHandler, PodStatus, Probe, SleepAction,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn with_grace(g: Option<i64>) -> Pod {
        let mut p = pod("Always", vec![], vec![container("a")]);
        p.spec.as_mut().unwrap().termination_grace_period_seconds = g;
        p
    }

    #[test]
    fn pod_grace_only_shrinks() {
        let mut p = with_grace(Some(30));
        assert_eq!(pod_grace_period(&p, None, None), (30, false));
        p.metadata.deletion_grace_period_seconds = Some(10);
        assert_eq!(pod_grace_period(&p, None, None), (10, false));
        assert_eq!(
            pod_grace_period(&p, Some(5), None),
            (5, false),
            "never grows"
        );
        assert_eq!(
            pod_grace_period(&p, Some(10), Some(3)),
            (3, true),
            "eviction shortens"
        );
        p.metadata.deletion_grace_period_seconds = Some(0);
        assert_eq!(
            pod_grace_period(&p, None, None),
            (30, false),
            "0 means the pod's intent"
        );
        let p = with_grace(Some(0));
        assert_eq!(pod_grace_period(&p, None, None), (1, false), "at least 1 s");
    }

    #[test]
    fn container_grace_sources() {
        let mut p = with_grace(Some(30));
        let mut c = container("a");
        c.liveness_probe = Some(Probe {
            termination_grace_period_seconds: Some(5),
            ..Default::default()
        });
        assert_eq!(container_grace_period(&p, &c, None, None), 30);
        assert_eq!(
            container_grace_period(&p, &c, Some(KillReason::LivenessProbe), None),
            5
        );
        assert_eq!(
            container_grace_period(&p, &c, Some(KillReason::StartupProbe), None),
            30
        );
        assert_eq!(container_grace_period(&p, &c, None, Some(7)), 7);
        p.metadata.deletion_grace_period_seconds = Some(12);
        assert_eq!(
            container_grace_period(&p, &c, Some(KillReason::LivenessProbe), None),
            12
        );
        let p = with_grace(None);
        assert_eq!(
            container_grace_period(&p, &c, None, None),
            MIN_CONTAINER_GRACE_SECS
        );
    }

    #[test]
    fn pre_stop_plan_and_minimum_window() {
        let p = with_grace(Some(30));
        let mut c = container("a");
        assert_eq!(
            plan_container_stop(&p, &c, None, None).pre_stop_timeout_secs,
            None
        );
        c.lifecycle = Some(Lifecycle {
            pre_stop: Some(LifecycleHandler {
                exec: Some(ExecAction {
                    command: Some(vec!["drain".into()]),
                }),
                ..Default::default()
            }),
            ..Default::default()
        });
        let plan = plan_container_stop(&p, &c, None, None);
        assert_eq!(
            (
                plan.grace_period_secs,
                plan.pre_stop_timeout_secs,
                plan.pre_stop_sleep_secs
            ),
            (30, Some(30), None)
        );
        assert_eq!(grace_after_pre_stop(30, 10), 20);
        assert_eq!(grace_after_pre_stop(30, 29), 2);
        assert_eq!(grace_after_pre_stop(30, 45), 2);
        c.lifecycle.as_mut().unwrap().pre_stop = Some(LifecycleHandler {
            sleep: Some(SleepAction { seconds: 60 }),
            ..Default::default()
        });
        assert_eq!(
            plan_container_stop(&p, &c, None, None).pre_stop_sleep_secs,
            Some(30)
        );
        assert_eq!(
            plan_container_stop(&p, &c, None, Some(0)).pre_stop_timeout_secs,
            None
        );
    }

    #[test]
    fn sidecars_stop_last_in_reverse_order() {
        let p = pod(
            "Always",
            vec![sidecar("s1"), container("i"), sidecar("s2")],
            vec![container("a"), container("b")],
        );
        let running: Vec<String> = ["a", "b", "s1", "s2"].map(String::from).to_vec();
        assert_eq!(
            termination_stages(&p, &running),
            vec![
                vec!["a".to_string(), "b".into()],
                vec!["s2".into()],
                vec!["s1".into()]
            ]
        );
        assert_eq!(
            termination_stages(&p, &["s1".to_string()]),
            vec![vec!["s1".to_string()]]
        );
    }

    #[test]
    fn active_deadline() {
        let mut p = with_grace(Some(30));
        assert_eq!(active_deadline_exceeded(&p, t(100)), None);
        p.spec.as_mut().unwrap().active_deadline_seconds = Some(60);
        assert_eq!(active_deadline_exceeded(&p, t(100)), None, "not started");
        p.status = Some(PodStatus {
            start_time: Some(Time(t(10))),
            ..Default::default()
        });
        assert_eq!(active_deadline_exceeded(&p, t(69)), None);
        assert_eq!(
            active_deadline_exceeded(&p, t(70)),
            Some((
                "DeadlineExceeded",
                "Pod was active on the node longer than the specified deadline"
            ))
        );
        assert_eq!(active_deadline_at(&p), Some(t(70)));
    }
}
