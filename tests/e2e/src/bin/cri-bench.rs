//! `cri-bench --endpoint unix:///… --pods N --image REF [--hold] [--host-network]
//! [--cgroup-parent /x] [--log-dir DIR]`
//!
//! The CRI-level start benchmark: N pods in parallel, each RunPodSandbox + CreateContainer +
//! StartContainer (`sleep`) until ContainerStatus says RUNNING, then StopContainer +
//! StopPodSandbox + RemovePodSandbox. Prints one JSON object: wall time of the start and
//! teardown halves, the total, and per-phase mean/max over the pods. The image is pulled first
//! and not timed. With `--hold` the pods stay up after the start half (a `{"ready":N}` line is
//! printed) until stdin closes, for footprint measurements.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use deckhand_e2e::cri::{image_spec, ContainerState, CriClient};
use deckhand_runtime::cri::api;
use serde_json::json;

struct Args {
    endpoint: String,
    pods: usize,
    image: String,
    hold: bool,
    host_network: bool,
    cgroup_parent: String,
    log_dir: std::path::PathBuf,
}

fn parse_args() -> Result<Args> {
    let mut a = Args {
        endpoint: String::new(),
        pods: 1,
        image: String::new(),
        hold: false,
        host_network: false,
        cgroup_parent: "/deckhand-cri-bench".into(),
        log_dir: std::env::temp_dir().join(format!("cri-bench-logs-{}", std::process::id())),
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let mut val = || it.next().with_context(|| format!("{k} needs a value"));
        match k.as_str() {
            "--endpoint" => a.endpoint = val()?,
            "--pods" => a.pods = val()?.parse()?,
            "--image" => a.image = val()?,
            "--cgroup-parent" => a.cgroup_parent = val()?,
            "--log-dir" => a.log_dir = val()?.into(),
            "--hold" => a.hold = true,
            "--host-network" => a.host_network = true,
            other => bail!(
                "unknown argument {other}\nusage: cri-bench --endpoint unix:///path --pods N \
                 --image REF [--hold] [--host-network] [--cgroup-parent /x] [--log-dir DIR]"
            ),
        }
    }
    if a.endpoint.is_empty() || a.image.is_empty() {
        bail!("--endpoint and --image are required");
    }
    Ok(a)
}

/// Per-pod phase timings.
#[derive(Default, Clone)]
struct Phases {
    run_pod: Duration,
    create: Duration,
    start_running: Duration,
    stop: Duration,
    remove: Duration,
}

struct Started {
    pod: String,
    ctr: String,
    t: Phases,
}

fn pod_config(a: &Args, run: u128, i: usize) -> api::PodSandboxConfig {
    let name = format!("bench-{run}-{i}");
    let log_dir = a.log_dir.join(&name);
    let _ = std::fs::create_dir_all(&log_dir);
    let mode = if a.host_network {
        api::NamespaceMode::Node
    } else {
        api::NamespaceMode::Pod
    };
    api::PodSandboxConfig {
        metadata: Some(api::PodSandboxMetadata {
            name: name.clone(),
            uid: format!("uid-{name}"),
            namespace: "bench".into(),
            attempt: 0,
        }),
        hostname: if a.host_network {
            String::new()
        } else {
            name.clone()
        },
        log_directory: log_dir.display().to_string(),
        linux: Some(api::LinuxPodSandboxConfig {
            cgroup_parent: format!("{}/pod{name}", a.cgroup_parent),
            security_context: Some(api::LinuxSandboxSecurityContext {
                namespace_options: Some(api::NamespaceOption {
                    network: mode as i32,
                    pid: api::NamespaceMode::Container as i32,
                    ipc: api::NamespaceMode::Pod as i32,
                    ..Default::default()
                }),
                seccomp: Some(api::SecurityProfile::default()),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

async fn start_one(
    cri: CriClient,
    cfg: api::PodSandboxConfig,
    image: String,
    host: bool,
) -> Result<Started> {
    let mut t = Phases::default();
    let t0 = Instant::now();
    let pod = cri.run_pod(&cfg).await?;
    t.run_pod = t0.elapsed();
    let c = api::ContainerConfig {
        metadata: Some(api::ContainerMetadata {
            name: "sleeper".into(),
            attempt: 0,
        }),
        image: Some(image_spec(&image)),
        command: vec!["sleep".into(), "2147483647".into()],
        log_path: "sleeper.log".into(),
        linux: Some(api::LinuxContainerConfig {
            resources: Some(api::LinuxContainerResources::default()),
            security_context: Some(api::LinuxContainerSecurityContext {
                seccomp: Some(api::SecurityProfile::default()),
                namespace_options: Some(api::NamespaceOption {
                    network: if host {
                        api::NamespaceMode::Node as i32
                    } else {
                        api::NamespaceMode::Pod as i32
                    },
                    pid: api::NamespaceMode::Container as i32,
                    ipc: api::NamespaceMode::Pod as i32,
                    ..Default::default()
                }),
                ..Default::default()
            }),
        }),
        ..Default::default()
    };
    let t1 = Instant::now();
    let ctr = cri.create_container(&pod, &c, &cfg).await?;
    t.create = t1.elapsed();
    let t2 = Instant::now();
    cri.start_container(&ctr).await?;
    cri.wait_container(
        &ctr,
        ContainerState::ContainerRunning,
        Duration::from_secs(120),
    )
    .await?;
    t.start_running = t2.elapsed();
    Ok(Started { pod, ctr, t })
}

async fn teardown_one(cri: CriClient, mut s: Started) -> Result<Phases> {
    let t0 = Instant::now();
    cri.stop_container(&s.ctr, 0).await?;
    cri.stop_pod(&s.pod).await?;
    s.t.stop = t0.elapsed();
    let t1 = Instant::now();
    cri.remove_pod(&s.pod).await?;
    s.t.remove = t1.elapsed();
    Ok(s.t)
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

fn summary(all: &[Phases], f: impl Fn(&Phases) -> Duration) -> serde_json::Value {
    let v: Vec<Duration> = all.iter().map(f).collect();
    let sum: Duration = v.iter().sum();
    let max = v.iter().max().copied().unwrap_or_default();
    json!({ "mean_ms": ms(sum / v.len().max(1) as u32), "max_ms": ms(max) })
}

#[tokio::main]
async fn main() -> Result<()> {
    let a = parse_args()?;
    let cri = CriClient::connect(&a.endpoint).await?;
    if cri.image_status(&a.image).await?.is_none() {
        cri.pull(&a.image).await?;
    }
    let run = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_millis();
    let t0 = Instant::now();
    let tasks: Vec<_> = (0..a.pods)
        .map(|i| {
            tokio::spawn(start_one(
                cri.clone(),
                pod_config(&a, run, i),
                a.image.clone(),
                a.host_network,
            ))
        })
        .collect();
    let mut started = Vec::new();
    let mut first_err = None;
    for t in tasks {
        match t.await? {
            Ok(s) => started.push(s),
            Err(e) => first_err = first_err.or(Some(e)),
        }
    }
    let start_wall = t0.elapsed();
    if a.hold {
        println!(
            "{}",
            json!({ "ready": started.len(), "start_ms": ms(start_wall) })
        );
        // Wait for stdin to close (the footprint script measures meanwhile).
        let _ = tokio::task::spawn_blocking(|| {
            let mut sink = Vec::new();
            std::io::Read::read_to_end(&mut std::io::stdin(), &mut sink)
        })
        .await;
    }
    let t1 = Instant::now();
    let tasks: Vec<_> = started
        .into_iter()
        .map(|s| tokio::spawn(teardown_one(cri.clone(), s)))
        .collect();
    let mut phases = Vec::new();
    for t in tasks {
        match t.await? {
            Ok(p) => phases.push(p),
            Err(e) => first_err = first_err.or(Some(e)),
        }
    }
    let teardown_wall = t1.elapsed();
    let _ = std::fs::remove_dir_all(&a.log_dir);
    if let Some(e) = first_err {
        return Err(e.context("a pod failed"));
    }
    let out = json!({
        "endpoint": a.endpoint,
        "pods": a.pods,
        "start_wall_ms": ms(start_wall),
        "teardown_wall_ms": ms(teardown_wall),
        "total_ms": ms(start_wall + teardown_wall),
        "phases": {
            "run_pod_sandbox": summary(&phases, |p| p.run_pod),
            "create_container": summary(&phases, |p| p.create),
            "start_until_running": summary(&phases, |p| p.start_running),
            "stop": summary(&phases, |p| p.stop),
            "remove": summary(&phases, |p| p.remove),
        }
    });
    println!("{out}");
    Ok(())
}
