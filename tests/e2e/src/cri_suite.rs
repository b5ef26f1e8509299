//! The CRI conformance suite: scenarios that drive any CRI v1 runtime through a [`CriClient`]
//! and assert what a kubelet would observe (states, exit codes, reasons, log files, cgroup
//! limits seen from inside the container, gRPC codes). The same scenarios run against
//! containerd (`tests/cri_containerd.rs`), which defines the expected behaviour, and against
//! `deckhand runtime` (`tests/cri_deckhand.rs`). Where containerd's behaviour is surprising it
//! is written down in `docs/cri-conformance.md`, and the assertion here says which it is.
//!
//! A scenario cleans up the pods it made when it succeeds; when it fails, [`crate::cri_env`]
//! tears down the whole runtime anyway.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use deckhand_runtime::cri::api;
use tonic::Code;

use crate::cgroups::hierarchy_roots;
use crate::cri::{image_spec, ContainerState, CriClient, PodSandboxState};

/// Documented, deliberate differences between runtimes: the suite asserts each runtime's
/// declared behaviour instead of skipping the check.
#[derive(Clone, Debug)]
pub struct Caps {
    /// `VersionResponse.runtime_name`.
    pub runtime_name: &'static str,
    /// Ids may be abbreviated to a unique prefix (containerd's truncindex). Kubelet always
    /// sends full ids, so deckhand does not do this; the suite checks that a prefix is either
    /// resolved (true) or NotFound (false).
    pub id_prefix_lookup: bool,
}

impl Caps {
    pub fn containerd() -> Caps {
        Caps {
            runtime_name: "containerd",
            id_prefix_lookup: true,
        }
    }

    pub fn deckhand() -> Caps {
        Caps {
            runtime_name: "deckhand",
            id_prefix_lookup: false,
        }
    }
}

/// What every scenario gets.
pub struct SuiteCtx {
    pub cri: CriClient,
    /// `127.0.0.1:<port>` of the test registry.
    pub registry_host: String,
    /// `<registry>/busybox:1` (not pulled yet).
    pub busybox: String,
    /// `<registry>/stopsignal:1`: busybox with `StopSignal: SIGUSR1`.
    pub stopsignal: String,
    /// The sandbox image the runtime was configured with.
    pub pause: String,
    pub busybox_config_digest: String,
    pub busybox_manifest_digest: String,
    /// Pod log directories are made under here (as kubelet makes them).
    pub log_root: PathBuf,
    /// Per-test cgroup subtree; each pod gets `<cgroup_parent>/pod<uid>`.
    pub cgroup_parent: String,
    /// The CNI bridge name (in the test's network namespace).
    pub bridge: String,
    pub caps: Caps,
    pub seq: AtomicU32,
}

/// A pod the scenario made: its id and the config it was made with (CreateContainer wants it).
#[derive(Clone, Debug)]
pub struct Pod {
    pub id: String,
    pub config: api::PodSandboxConfig,
    pub log_dir: PathBuf,
}

const WAIT: Duration = Duration::from_secs(30);

/// Upper bound for one scenario (the slowest takes about 11 s against containerd).
pub const SCENARIO_TIMEOUT: Duration = Duration::from_secs(180);

fn code_of(e: &anyhow::Error) -> Option<Code> {
    e.chain()
        .find_map(|c| c.downcast_ref::<tonic::Status>())
        .map(|s| s.code())
}

fn kv(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn ns_options(host_network: bool) -> api::NamespaceOption {
    api::NamespaceOption {
        network: if host_network {
            api::NamespaceMode::Node as i32
        } else {
            api::NamespaceMode::Pod as i32
        },
        pid: api::NamespaceMode::Container as i32,
        ipc: api::NamespaceMode::Pod as i32,
        ..Default::default()
    }
}

fn runtime_default() -> Option<api::SecurityProfile> {
    Some(api::SecurityProfile {
        profile_type: api::security_profile::ProfileType::RuntimeDefault as i32,
        localhost_ref: String::new(),
    })
}

fn unconfined() -> Option<api::SecurityProfile> {
    Some(api::SecurityProfile {
        profile_type: api::security_profile::ProfileType::Unconfined as i32,
        localhost_ref: String::new(),
    })
}

impl SuiteCtx {
    fn next(&self) -> u32 {
        self.seq.fetch_add(1, Ordering::Relaxed)
    }

    /// A pod config as kubelet sends it: metadata with a unique uid, a log directory that
    /// exists, a cgroup parent under the test's subtree, RuntimeDefault seccomp.
    pub fn pod_config(&self, name: &str, host_network: bool) -> api::PodSandboxConfig {
        let n = self.next();
        let uid = format!("{:08x}-{n:04}-suite-{name}", std::process::id());
        let log_dir = self.log_root.join(format!("{name}-{n}"));
        std::fs::create_dir_all(&log_dir).expect("create pod log dir");
        api::PodSandboxConfig {
            metadata: Some(api::PodSandboxMetadata {
                name: format!("{name}-{n}"),
                uid: uid.clone(),
                namespace: "suite".into(),
                attempt: 0,
            }),
            hostname: if host_network {
                String::new()
            } else {
                format!("{name}-{n}")
            },
            log_directory: log_dir.display().to_string(),
            dns_config: None,
            port_mappings: vec![],
            labels: kv(&[("suite", "cri"), ("pod", name)]),
            annotations: kv(&[("suite.deckhand.dev/pod", name)]),
            linux: Some(api::LinuxPodSandboxConfig {
                cgroup_parent: format!("{}/pod{uid}", self.cgroup_parent),
                security_context: Some(api::LinuxSandboxSecurityContext {
                    namespace_options: Some(ns_options(host_network)),
                    seccomp: runtime_default(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            windows: None,
        }
    }

    pub async fn run_pod(&self, config: api::PodSandboxConfig) -> Result<Pod> {
        let id = self.cri.run_pod(&config).await?;
        Ok(Pod {
            id,
            log_dir: PathBuf::from(&config.log_directory),
            config,
        })
    }

    pub async fn new_pod(&self, name: &str, host_network: bool) -> Result<Pod> {
        self.run_pod(self.pod_config(name, host_network)).await
    }

    /// A container config: busybox (pulled on first use), the given command, log file
    /// `<name>.log` in the pod's log dir, RuntimeDefault seccomp.
    pub fn container_config(&self, name: &str, cmd: &[&str]) -> api::ContainerConfig {
        api::ContainerConfig {
            metadata: Some(api::ContainerMetadata {
                name: name.into(),
                attempt: 0,
            }),
            image: Some(image_spec(&self.busybox)),
            command: cmd.iter().map(|s| s.to_string()).collect(),
            log_path: format!("{name}.log"),
            labels: kv(&[("suite", "cri"), ("name", name)]),
            linux: Some(api::LinuxContainerConfig {
                resources: Some(api::LinuxContainerResources::default()),
                security_context: Some(api::LinuxContainerSecurityContext {
                    seccomp: runtime_default(),
                    namespace_options: Some(ns_options(false)),
                    ..Default::default()
                }),
            }),
            ..Default::default()
        }
    }

    pub async fn ensure_image(&self, image: &str) -> Result<()> {
        if self.cri.image_status(image).await?.is_none() {
            self.cri.pull(image).await?;
        }
        Ok(())
    }

    /// Create + start; returns the container id.
    pub async fn start(&self, pod: &Pod, mut cfg: api::ContainerConfig) -> Result<String> {
        if let (Some(l), Some(pl)) = (cfg.linux.as_mut(), pod.config.linux.as_ref()) {
            // A container in a host-network pod must say so too, as kubelet does.
            let host = pl
                .security_context
                .as_ref()
                .and_then(|s| s.namespace_options.as_ref())
                .map(|n| n.network == api::NamespaceMode::Node as i32)
                .unwrap_or(false);
            if let Some(sc) = l.security_context.as_mut() {
                sc.namespace_options = Some(ns_options(host));
            }
        }
        let image = cfg
            .image
            .as_ref()
            .map(|i| i.image.clone())
            .unwrap_or_default();
        self.ensure_image(&image).await?;
        let id = self
            .cri
            .create_container(&pod.id, &cfg, &pod.config)
            .await
            .context("CreateContainer")?;
        self.cri
            .start_container(&id)
            .await
            .context("StartContainer")?;
        Ok(id)
    }

    /// Best-effort stop and remove (scenario cleanup).
    pub async fn remove_pod(&self, pod: &Pod) {
        let _ = self.cri.stop_pod(&pod.id).await;
        let _ = self.cri.remove_pod(&pod.id).await;
    }

    fn log_file(&self, pod: &Pod, name: &str) -> PathBuf {
        pod.log_dir.join(format!("{name}.log"))
    }
}

/// One parsed CRI log line: `<RFC3339Nano> <stream> <P|F> <text>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogLine {
    pub time: String,
    pub stream: String,
    pub tag: String,
    pub text: String,
}

pub fn parse_log(content: &str) -> Result<Vec<LogLine>> {
    let mut out = Vec::new();
    for l in content.split_terminator('\n') {
        let mut it = l.splitn(4, ' ');
        let (Some(time), Some(stream), Some(tag)) = (it.next(), it.next(), it.next()) else {
            bail!("malformed CRI log line {l:?}");
        };
        let text = it.next().unwrap_or("");
        chrono::DateTime::parse_from_rfc3339(time)
            .with_context(|| format!("timestamp of {l:?} is not RFC 3339"))?;
        ensure!(
            stream == "stdout" || stream == "stderr",
            "stream of {l:?} is {stream:?}"
        );
        ensure!(tag == "F" || tag == "P", "tag of {l:?} is {tag:?}");
        out.push(LogLine {
            time: time.into(),
            stream: stream.into(),
            tag: tag.into(),
            text: text.into(),
        });
    }
    Ok(out)
}

async fn wait_file_contains(path: &Path, needle: &str, limit: Duration) -> Result<String> {
    let deadline = Instant::now() + limit;
    loop {
        let s = std::fs::read_to_string(path).unwrap_or_default();
        if s.contains(needle) {
            return Ok(s);
        }
        if Instant::now() > deadline {
            bail!(
                "{} did not get {needle:?} within {limit:?}; content:\n{s}",
                path.display()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn expect_code<T: std::fmt::Debug>(
    what: &str,
    r: Result<T, tonic::Status>,
    want: Code,
) -> Result<tonic::Status> {
    match r {
        Ok(v) => bail!("{what}: expected gRPC {want:?}, got Ok({v:?})"),
        Err(s) if s.code() == want => Ok(s),
        Err(s) => bail!(
            "{what}: expected gRPC {want:?}, got {:?}: {}",
            s.code(),
            s.message()
        ),
    }
}

// ---------------------------------------------------------------------------------------------
// Scenarios
// ---------------------------------------------------------------------------------------------

/// Version answers for CRI v1; Status says RuntimeReady and NetworkReady (a CNI config exists).
pub async fn version_status(ctx: &SuiteCtx) -> Result<()> {
    let v = ctx.cri.version().await?;
    ensure!(v.runtime_api_version == "v1", "runtime_api_version: {v:?}");
    ensure!(
        v.runtime_name == ctx.caps.runtime_name,
        "runtime_name: {v:?}"
    );
    ensure!(
        !v.runtime_version.is_empty(),
        "runtime_version empty: {v:?}"
    );
    let st = ctx
        .cri
        .rt
        .clone()
        .status(api::StatusRequest { verbose: false })
        .await?
        .into_inner();
    let conds = st
        .status
        .context("StatusResponse without status")?
        .conditions;
    for t in ["RuntimeReady", "NetworkReady"] {
        let c = conds
            .iter()
            .find(|c| c.r#type == t)
            .with_context(|| format!("no {t} condition in {conds:?}"))?;
        ensure!(c.status, "{t} is false: {c:?}");
    }
    Ok(())
}

/// Pull from the plain-HTTP loopback registry, list, status, ImageFsInfo, remove (twice).
pub async fn images(ctx: &SuiteCtx) -> Result<()> {
    let image_ref = ctx.cri.pull(&ctx.busybox).await?;
    ensure!(
        image_ref == ctx.busybox_config_digest,
        "PullImage returned {image_ref}, want the config digest {}",
        ctx.busybox_config_digest
    );
    let img = ctx
        .cri
        .image_status(&ctx.busybox)
        .await?
        .context("ImageStatus after pull: no image")?;
    ensure!(img.id == ctx.busybox_config_digest, "image id: {img:?}");
    ensure!(img.repo_tags.contains(&ctx.busybox), "repo_tags: {img:?}");
    let repo_digest = format!(
        "{}/busybox@{}",
        ctx.registry_host, ctx.busybox_manifest_digest
    );
    ensure!(
        img.repo_digests.contains(&repo_digest),
        "repo_digests: {img:?}"
    );
    ensure!(img.size > 1_000_000, "size of busybox: {img:?}");
    // Also by ID and by digest reference.
    for alt in [img.id.clone(), repo_digest.clone()] {
        let by = ctx.cri.image_status(&alt).await?;
        ensure!(
            by.as_ref().map(|i| &i.id) == Some(&img.id),
            "ImageStatus {alt}: {by:?}"
        );
    }
    let list = ctx
        .cri
        .img
        .clone()
        .list_images(api::ListImagesRequest { filter: None })
        .await?
        .into_inner()
        .images;
    ensure!(list.iter().any(|i| i.id == img.id), "ListImages: {list:?}");
    // containerd computes snapshot usage in the background (every stats_collect_period,
    // 10 s): right after a pull it reports 0 bytes, so poll.
    let deadline = Instant::now() + Duration::from_secs(25);
    let f = loop {
        let fs = ctx
            .cri
            .img
            .clone()
            .image_fs_info(api::ImageFsInfoRequest {})
            .await?
            .into_inner();
        let f = fs
            .image_filesystems
            .first()
            .cloned()
            .context("ImageFsInfo: no image filesystem")?;
        if f.used_bytes.as_ref().map(|u| u.value).unwrap_or(0) > 0 || Instant::now() > deadline {
            break f;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let mp = f
        .fs_id
        .as_ref()
        .map(|i| i.mountpoint.clone())
        .unwrap_or_default();
    ensure!(
        Path::new(&mp).is_dir(),
        "ImageFsInfo mountpoint {mp:?} is not a dir"
    );
    ensure!(
        f.used_bytes.as_ref().map(|u| u.value).unwrap_or(0) > 1_000_000,
        "ImageFsInfo used_bytes with busybox unpacked: {f:?}"
    );
    ensure!(
        f.inodes_used.as_ref().map(|u| u.value).unwrap_or(0) > 0,
        "ImageFsInfo inodes_used: {f:?}"
    );
    ensure!(f.timestamp > 0, "ImageFsInfo timestamp: {f:?}");
    // Remove, then it is gone; removing again is not an error (kubelet's image GC retries).
    ctx.cri
        .img
        .clone()
        .remove_image(api::RemoveImageRequest {
            image: Some(image_spec(&ctx.busybox)),
        })
        .await?;
    ensure!(
        ctx.cri.image_status(&ctx.busybox).await?.is_none(),
        "ImageStatus after RemoveImage still finds it"
    );
    ctx.cri
        .img
        .clone()
        .remove_image(api::RemoveImageRequest {
            image: Some(image_spec(&ctx.busybox)),
        })
        .await
        .context("second RemoveImage must succeed")?;
    // A pull of a name the registry lacks is NotFound.
    let missing = format!("{}/no-such-image:1", ctx.registry_host);
    let e = ctx
        .cri
        .pull(&missing)
        .await
        .expect_err("pull of a missing image");
    ensure!(
        code_of(&e) == Some(Code::NotFound),
        "pull of a missing image: {e:#}"
    );
    Ok(())
}

fn in_pod_subnet(ip: &str) -> bool {
    ip.parse::<std::net::Ipv4Addr>()
        .map(|a| a.octets()[0] == 10 && a.octets()[1] == 88)
        .unwrap_or(false)
}

/// Pods with CNI networking and with host networking: READY with an IP from the bridge (the
/// host-network pod reports none), list filters, stop → NOTREADY, remove → NotFound, and stop
/// and remove are idempotent.
pub async fn sandbox_lifecycle(ctx: &SuiteCtx) -> Result<()> {
    let a = ctx.new_pod("sbx-a", false).await?;
    let b = ctx.new_pod("sbx-b", true).await?;
    let sa = ctx.cri.pod_status(&a.id).await?;
    ensure!(
        sa.state == PodSandboxState::SandboxReady as i32,
        "pod a: {sa:?}"
    );
    ensure!(sa.id == a.id, "pod a id: {sa:?}");
    ensure!(sa.created_at > 0, "pod a created_at: {sa:?}");
    ensure!(
        sa.metadata.as_ref().map(|m| m.name.as_str())
            == a.config.metadata.as_ref().map(|m| m.name.as_str()),
        "pod a metadata: {sa:?}"
    );
    ensure!(
        sa.labels.get("pod").map(String::as_str) == Some("sbx-a"),
        "labels: {sa:?}"
    );
    let ip = sa
        .network
        .as_ref()
        .map(|n| n.ip.clone())
        .unwrap_or_default();
    ensure!(
        in_pod_subnet(&ip),
        "pod a IP {ip:?} is not from 10.88.0.0/16: {sa:?}"
    );
    let sb = ctx.cri.pod_status(&b.id).await?;
    ensure!(
        sb.state == PodSandboxState::SandboxReady as i32,
        "pod b: {sb:?}"
    );
    let ipb = sb
        .network
        .as_ref()
        .map(|n| n.ip.clone())
        .unwrap_or_default();
    ensure!(
        ipb.is_empty(),
        "host-network pod reports IP {ipb:?}: {sb:?}"
    );
    let nsb = sb
        .linux
        .as_ref()
        .and_then(|l| l.namespaces.as_ref())
        .and_then(|n| n.options.as_ref())
        .map(|o| o.network);
    ensure!(
        nsb == Some(api::NamespaceMode::Node as i32),
        "host-network pod status namespace options: {sb:?}"
    );

    // The IP really is on the pod's eth0, and the host-network pod sees the test namespace's
    // bridge.
    let c = ctx
        .start(&a, ctx.container_config("net", &["sleep", "3600"]))
        .await?;
    let addr = ctx
        .cri
        .exec_ok(&c, &["ip", "-4", "addr", "show", "eth0"])
        .await?;
    ensure!(
        addr.contains(&format!("inet {ip}/")),
        "eth0 of pod a:\n{addr}"
    );
    // Pods on the bridge reach each other and the gateway (the bridge's first address).
    let c_pod = ctx.new_pod("sbx-c", false).await?;
    let ipc = ctx
        .cri
        .pod_status(&c_pod.id)
        .await?
        .network
        .map(|n| n.ip)
        .unwrap_or_default();
    ensure!(
        in_pod_subnet(&ipc) && ipc != ip,
        "pod c IP {ipc:?} (pod a has {ip})"
    );
    for target in [ipc.as_str(), "10.88.0.1"] {
        let r = ctx
            .cri
            .exec_sync(&c, &["ping", "-c", "1", "-W", "5", target], 15)
            .await?;
        ensure!(
            r.exit_code == 0,
            "ping {target} from pod a failed: {}",
            String::from_utf8_lossy(&r.stdout)
        );
    }
    ctx.remove_pod(&c_pod).await;
    let hc = ctx
        .start(&b, ctx.container_config("hostnet", &["sleep", "3600"]))
        .await?;
    let links = ctx.cri.exec_ok(&hc, &["ip", "link"]).await?;
    ensure!(
        links.contains(&ctx.bridge),
        "host-network pod does not see the bridge:\n{links}"
    );

    // Filters.
    let by_id = ctx
        .cri
        .list_pods(Some(api::PodSandboxFilter {
            id: a.id.clone(),
            ..Default::default()
        }))
        .await?;
    ensure!(
        by_id.len() == 1 && by_id[0].id == a.id,
        "filter by id: {by_id:?}"
    );
    let by_label = ctx
        .cri
        .list_pods(Some(api::PodSandboxFilter {
            label_selector: kv(&[("pod", "sbx-b")]),
            ..Default::default()
        }))
        .await?;
    ensure!(
        by_label.len() == 1 && by_label[0].id == b.id,
        "filter by label: {by_label:?}"
    );
    let ready = ctx
        .cri
        .list_pods(Some(api::PodSandboxFilter {
            state: Some(api::PodSandboxStateValue {
                state: PodSandboxState::SandboxReady as i32,
            }),
            label_selector: kv(&[("suite", "cri")]),
            ..Default::default()
        }))
        .await?;
    ensure!(
        ready.iter().any(|p| p.id == a.id) && ready.iter().any(|p| p.id == b.id),
        "filter by state READY: {ready:?}"
    );

    // Stop: NOTREADY, its containers exited; twice is fine.
    ctx.cri.stop_pod(&a.id).await?;
    let sa = ctx.cri.pod_status(&a.id).await?;
    ensure!(
        sa.state == PodSandboxState::SandboxNotready as i32,
        "after stop: {sa:?}"
    );
    let cs = ctx.cri.container_status(&c).await?;
    ensure!(
        cs.state == ContainerState::ContainerExited as i32,
        "container after pod stop: {cs:?}"
    );
    ctx.cri
        .stop_pod(&a.id)
        .await
        .map_err(|s| anyhow::anyhow!("second StopPodSandbox: {s}"))?;
    let notready = ctx
        .cri
        .list_pods(Some(api::PodSandboxFilter {
            state: Some(api::PodSandboxStateValue {
                state: PodSandboxState::SandboxNotready as i32,
            }),
            label_selector: kv(&[("suite", "cri")]),
            ..Default::default()
        }))
        .await?;
    ensure!(
        notready.len() == 1 && notready[0].id == a.id,
        "filter by state NOTREADY: {notready:?}"
    );

    // Remove: gone (with its containers); remove again is fine; stop after remove is NotFound.
    ctx.cri.remove_pod(&a.id).await?;
    expect_code(
        "PodSandboxStatus after remove",
        ctx.cri.pod_status(&a.id).await,
        Code::NotFound,
    )?;
    expect_code(
        "ContainerStatus of a removed pod's container",
        ctx.cri.container_status(&c).await,
        Code::NotFound,
    )?;
    ctx.cri
        .remove_pod(&a.id)
        .await
        .map_err(|s| anyhow::anyhow!("second RemovePodSandbox: {s}"))?;
    expect_code(
        "StopPodSandbox after remove",
        ctx.cri.stop_pod(&a.id).await,
        Code::NotFound,
    )?;
    let all = ctx.cri.list_pods(None).await?;
    ensure!(
        !all.iter().any(|p| p.id == a.id),
        "removed pod still listed: {all:?}"
    );
    ctx.remove_pod(&b).await;
    Ok(())
}

/// Create → CREATED, start → RUNNING with started_at; exit 3 → EXITED/Error; `true` →
/// EXITED/Completed; list filters; remove.
pub async fn container_lifecycle(ctx: &SuiteCtx) -> Result<()> {
    let pod = ctx.new_pod("ctr", false).await?;
    ctx.ensure_image(&ctx.busybox).await?;
    let cfg = ctx.container_config("runner", &["sleep", "3600"]);
    let runner = ctx.cri.create_container(&pod.id, &cfg, &pod.config).await?;
    let st = ctx.cri.container_status(&runner).await?;
    ensure!(
        st.state == ContainerState::ContainerCreated as i32,
        "after create: {st:?}"
    );
    ensure!(
        st.created_at > 0 && st.started_at == 0,
        "timestamps after create: {st:?}"
    );
    ensure!(
        st.image.as_ref().map(|i| i.image.as_str()) == Some(ctx.busybox.as_str())
            || st.image.as_ref().map(|i| i.image.as_str())
                == Some(ctx.busybox_config_digest.as_str()),
        "status image: {st:?}"
    );
    ensure!(st.image_ref.contains("sha256:"), "image_ref: {st:?}");
    ensure!(
        st.log_path == ctx.log_file(&pod, "runner").display().to_string(),
        "log_path: {st:?}"
    );
    ctx.cri.start_container(&runner).await?;
    let st = ctx.cri.container_status(&runner).await?;
    ensure!(
        st.state == ContainerState::ContainerRunning as i32,
        "after start: {st:?}"
    );
    ensure!(st.started_at >= st.created_at, "started_at: {st:?}");
    ensure!(st.finished_at == 0 && st.exit_code == 0, "running: {st:?}");

    let fail = ctx
        .start(&pod, ctx.container_config("fail", &["sh", "-c", "exit 3"]))
        .await?;
    let ok = ctx
        .start(&pod, ctx.container_config("ok", &["true"]))
        .await?;
    let sf = ctx
        .cri
        .wait_container(&fail, ContainerState::ContainerExited, WAIT)
        .await?;
    ensure!(sf.exit_code == 3 && sf.reason == "Error", "exit 3: {sf:?}");
    // containerd takes started_at when StartContainer returns, so a process that exits at
    // once can have finished_at a fraction of a millisecond *before* started_at: only order
    // against created_at is asserted.
    ensure!(
        sf.started_at >= sf.created_at && sf.finished_at >= sf.created_at,
        "exit 3 times: {sf:?}"
    );
    let so = ctx
        .cri
        .wait_container(&ok, ContainerState::ContainerExited, WAIT)
        .await?;
    ensure!(
        so.exit_code == 0 && so.reason == "Completed",
        "true: {so:?}"
    );
    ensure!(so.finished_at > 0, "true finished_at: {so:?}");

    let in_pod = ctx
        .cri
        .list_containers(Some(api::ContainerFilter {
            pod_sandbox_id: pod.id.clone(),
            ..Default::default()
        }))
        .await?;
    ensure!(in_pod.len() == 3, "filter by pod: {in_pod:?}");
    ensure!(
        in_pod
            .iter()
            .all(|c| c.pod_sandbox_id == pod.id && c.image_ref.contains("sha256:")),
        "listed containers: {in_pod:?}"
    );
    let running = ctx
        .cri
        .list_containers(Some(api::ContainerFilter {
            pod_sandbox_id: pod.id.clone(),
            state: Some(api::ContainerStateValue {
                state: ContainerState::ContainerRunning as i32,
            }),
            ..Default::default()
        }))
        .await?;
    ensure!(
        running.len() == 1 && running[0].id == runner,
        "filter RUNNING: {running:?}"
    );
    let exited = ctx
        .cri
        .list_containers(Some(api::ContainerFilter {
            pod_sandbox_id: pod.id.clone(),
            state: Some(api::ContainerStateValue {
                state: ContainerState::ContainerExited as i32,
            }),
            ..Default::default()
        }))
        .await?;
    ensure!(exited.len() == 2, "filter EXITED: {exited:?}");
    let by_label = ctx
        .cri
        .list_containers(Some(api::ContainerFilter {
            label_selector: kv(&[("name", "fail")]),
            ..Default::default()
        }))
        .await?;
    ensure!(
        by_label.len() == 1 && by_label[0].id == fail,
        "filter by label: {by_label:?}"
    );
    let by_id = ctx
        .cri
        .list_containers(Some(api::ContainerFilter {
            id: ok.clone(),
            ..Default::default()
        }))
        .await?;
    ensure!(
        by_id.len() == 1 && by_id[0].id == ok,
        "filter by id: {by_id:?}"
    );
    ensure!(
        by_id[0].metadata.as_ref().map(|m| m.name.as_str()) == Some("ok"),
        "metadata: {by_id:?}"
    );
    let prefix = ctx.cri.container_status(&ok[..16]).await;
    if ctx.caps.id_prefix_lookup {
        ensure!(
            prefix.as_ref().map(|s| s.id.as_str()).ok() == Some(ok.as_str()),
            "ContainerStatus by id prefix: {prefix:?}"
        );
    } else {
        expect_code("ContainerStatus by id prefix", prefix, Code::NotFound)?;
    }

    // RemoveContainer of a RUNNING container succeeds: containerd kills it first.
    let doomed = ctx
        .start(&pod, ctx.container_config("doomed", &["sleep", "3600"]))
        .await?;
    ctx.cri
        .remove_container(&doomed)
        .await
        .map_err(|s| anyhow::anyhow!("RemoveContainer of a running container: {s}"))?;
    expect_code(
        "ContainerStatus of a container removed while running",
        ctx.cri.container_status(&doomed).await,
        Code::NotFound,
    )?;
    ensure!(
        host_cgroup_file(&pod, &doomed, "cgroup.procs").is_none_or(|p| p.is_empty()),
        "a container removed while running still has processes"
    );

    // Stop first as kubelet does, then remove.
    ctx.cri.stop_container(&runner, 0).await?;
    let sr = ctx.cri.container_status(&runner).await?;
    ensure!(
        sr.state == ContainerState::ContainerExited as i32,
        "after StopContainer: {sr:?}"
    );
    ensure!(
        sr.exit_code == 137,
        "sleep killed by stop timeout 0: {sr:?}"
    );
    for id in [&runner, &fail, &ok] {
        ctx.cri.remove_container(id).await?;
        expect_code(
            "ContainerStatus after remove",
            ctx.cri.container_status(id).await,
            Code::NotFound,
        )?;
        ctx.cri
            .remove_container(id)
            .await
            .map_err(|s| anyhow::anyhow!("second RemoveContainer: {s}"))?;
    }
    ctx.remove_pod(&pod).await;
    Ok(())
}

/// Log file in CRI format; an unterminated last line; a 40000-byte line split at 16 KiB;
/// ReopenContainerLog after a rename.
pub async fn logs(ctx: &SuiteCtx) -> Result<()> {
    let pod = ctx.new_pod("logs", false).await?;
    // printf without a trailing newline last; `head -c` makes a long line with no shell loop.
    let script = "echo out-1; echo err-1 >&2; echo out-2; \
                  head -c 40000 /dev/zero | tr '\\0' x; echo; \
                  printf 'no-newline'";
    let id = ctx
        .start(&pod, ctx.container_config("writer", &["sh", "-c", script]))
        .await?;
    ctx.cri
        .wait_container(&id, ContainerState::ContainerExited, WAIT)
        .await?;
    let path = ctx.log_file(&pod, "writer");
    // The runtime may flush the tail after the exit is recorded.
    let content = wait_file_contains(&path, "no-newline", Duration::from_secs(5)).await?;
    let lines = parse_log(&content)?;
    let out: Vec<&LogLine> = lines.iter().filter(|l| l.stream == "stdout").collect();
    let err: Vec<&LogLine> = lines.iter().filter(|l| l.stream == "stderr").collect();
    ensure!(
        err.len() == 1 && err[0].text == "err-1" && err[0].tag == "F",
        "stderr lines: {err:?}"
    );
    ensure!(
        out.len() == 6,
        "stdout lines (want 6: out-1, out-2, 3 parts, no-newline): {out:?}"
    );
    ensure!(out[0].text == "out-1" && out[0].tag == "F", "{:?}", out[0]);
    ensure!(out[1].text == "out-2" && out[1].tag == "F", "{:?}", out[1]);
    // 40000 = 16384 + 16384 + 7232: the first two are partial, the last full.
    let lens: Vec<(usize, &str)> = out[2..5]
        .iter()
        .map(|l| (l.text.len(), l.tag.as_str()))
        .collect();
    ensure!(
        lens == vec![(16384, "P"), (16384, "P"), (7232, "F")],
        "long line split: {lens:?}"
    );
    ensure!(
        out[2..5].iter().all(|l| l.text.bytes().all(|b| b == b'x')),
        "long line content"
    );
    // containerd writes a final line without a newline with tag P.
    ensure!(
        out[5].text == "no-newline" && out[5].tag == "P",
        "unterminated last line: {:?}",
        out[5]
    );
    // Timestamps are RFC 3339 with nanoseconds and never go backwards within a stream.
    ensure!(
        out.windows(2).all(|w| w[0].time <= w[1].time),
        "timestamps out of order: {out:?}"
    );
    ensure!(
        out[0].time.contains('.'),
        "timestamp without fraction: {:?}",
        out[0]
    );

    // Reopen: the runtime writes to a fresh file at log_path after the old one is renamed.
    let ticker = ctx
        .start(
            &pod,
            ctx.container_config(
                "ticker",
                &[
                    "sh",
                    "-c",
                    "i=0; while :; do echo tick-$i; i=$((i+1)); sleep 0.1; done",
                ],
            ),
        )
        .await?;
    let tpath = ctx.log_file(&pod, "ticker");
    wait_file_contains(&tpath, "tick-3", Duration::from_secs(10)).await?;
    let rotated = tpath.with_extension("log.1");
    std::fs::rename(&tpath, &rotated)?;
    ctx.cri
        .rt
        .clone()
        .reopen_container_log(api::ReopenContainerLogRequest {
            container_id: ticker.clone(),
        })
        .await?;
    let fresh = wait_file_contains(&tpath, "tick-", Duration::from_secs(10)).await?;
    let first_new = parse_log(&fresh)?
        .first()
        .map(|l| l.text.clone())
        .unwrap_or_default();
    let old = std::fs::read_to_string(&rotated)?;
    ensure!(
        !old.contains(&format!(" {first_new}\n")),
        "the reopened file starts with {first_new:?}, which is also in the rotated file"
    );
    // The rotated file no longer grows.
    let len1 = std::fs::metadata(&rotated)?.len();
    tokio::time::sleep(Duration::from_millis(500)).await;
    ensure!(
        std::fs::metadata(&rotated)?.len() == len1,
        "the rotated log still grows"
    );
    // ReopenContainerLog of a stopped container fails (containerd: Unknown, "container is not
    // running").
    ctx.cri.stop_container(&ticker, 0).await?;
    let r = ctx
        .cri
        .rt
        .clone()
        .reopen_container_log(api::ReopenContainerLogRequest {
            container_id: ticker.clone(),
        })
        .await;
    ensure!(
        r.is_err(),
        "ReopenContainerLog of a stopped container succeeded"
    );
    ctx.remove_pod(&pod).await;
    Ok(())
}

/// A container with a terminal (`tty: true`): its stdio is a terminal, and everything it
/// prints (stderr included) is logged as stdout, with the terminal's line endings.
pub async fn terminal(ctx: &SuiteCtx) -> Result<()> {
    let pod = ctx.new_pod("tty", false).await?;
    let mut cfg = ctx.container_config(
        "term",
        &[
            "sh",
            "-c",
            "[ -t 0 ] && [ -t 1 ] && [ -t 2 ] && echo is-a-tty; echo to-stderr >&2; echo done",
        ],
    );
    cfg.tty = true;
    let id = ctx.start(&pod, cfg).await?;
    ctx.cri
        .wait_container(&id, ContainerState::ContainerExited, WAIT)
        .await?;
    let status = ctx.cri.container_status(&id).await?;
    ensure!(status.exit_code == 0, "exit code {}", status.exit_code);
    let content =
        wait_file_contains(&ctx.log_file(&pod, "term"), "done", Duration::from_secs(5)).await?;
    let lines = parse_log(&content)?;
    let texts: Vec<&str> = lines
        .iter()
        .map(|l| l.text.trim_end_matches('\r'))
        .collect();
    ensure!(
        lines.iter().all(|l| l.stream == "stdout"),
        "a terminal has one output stream: {lines:?}"
    );
    ensure!(
        texts == ["is-a-tty", "to-stderr", "done"],
        "terminal output: {texts:?}"
    );
    ctx.remove_pod(&pod).await;
    Ok(())
}

/// ExecSync: stdout and stderr separately, the exit code, and the timeout.
pub async fn exec_sync(ctx: &SuiteCtx) -> Result<()> {
    let pod = ctx.new_pod("exec", false).await?;
    let id = ctx
        .start(&pod, ctx.container_config("target", &["sleep", "3600"]))
        .await?;
    let r = ctx
        .cri
        .exec_sync(
            &id,
            &["sh", "-c", "echo to-out; echo to-err >&2; exit 5"],
            10,
        )
        .await?;
    ensure!(r.exit_code == 5, "exit code: {r:?}");
    ensure!(
        r.stdout == b"to-out\n",
        "stdout: {:?}",
        String::from_utf8_lossy(&r.stdout)
    );
    ensure!(
        r.stderr == b"to-err\n",
        "stderr: {:?}",
        String::from_utf8_lossy(&r.stderr)
    );
    // The exec runs in the container: same hostname, same root.
    let h = ctx.cri.exec_ok(&id, &["hostname"]).await?;
    ensure!(
        h.trim() == pod.config.hostname,
        "exec hostname {h:?} != pod hostname {}",
        pod.config.hostname
    );
    // Timeout: containerd kills the process and answers DeadlineExceeded after ~timeout.
    let t0 = Instant::now();
    let r = ctx.cri.exec_sync(&id, &["sleep", "10"], 1).await;
    let took = t0.elapsed();
    let s = expect_code(
        "ExecSync sleep 10 with timeout 1",
        r,
        Code::DeadlineExceeded,
    )?;
    ensure!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(8),
        "ExecSync timeout 1 s answered after {took:?}"
    );
    ensure!(
        s.message().contains("timeout"),
        "timeout message: {}",
        s.message()
    );
    // The timed-out process is gone.
    let ps = ctx.cri.exec_ok(&id, &["ps", "-o", "args"]).await?;
    ensure!(
        !ps.contains("sleep 10"),
        "timed-out exec still running:\n{ps}"
    );
    // A command that does not exist.
    let r = ctx.cri.exec_sync(&id, &["/no/such/binary"], 10).await;
    match r {
        Ok(r) => ensure!(r.exit_code != 0, "exec of a missing binary: {r:?}"),
        Err(s) => ensure!(s.code() != Code::Ok, "{s}"),
    }
    // Exec into an exited container fails.
    ctx.cri.stop_container(&id, 0).await?;
    let r = ctx.cri.exec_sync(&id, &["true"], 10).await;
    ensure!(r.is_err(), "ExecSync in a stopped container: {r:?}");
    ctx.remove_pod(&pod).await;
    Ok(())
}

/// StopContainer: SIGTERM-then-SIGKILL after the timeout, a quick graceful exit, and the
/// image's StopSignal.
pub async fn stop(ctx: &SuiteCtx) -> Result<()> {
    let pod = ctx.new_pod("stop", false).await?;
    // PID 1 of a container ignores signals it has no handler for, so a bare `sleep` (and a
    // shell with `trap '' TERM`) survives SIGTERM and dies only by the SIGKILL after the
    // timeout.
    let stubborn = ctx
        .start(&pod, ctx.container_config("stubborn", &["sleep", "3600"]))
        .await?;
    let graceful = ctx
        .start(
            &pod,
            ctx.container_config(
                "graceful",
                &[
                    "sh",
                    "-c",
                    "trap 'exit 0' TERM; while :; do sleep 0.1; done",
                ],
            ),
        )
        .await?;
    let mut sig_cfg = ctx.container_config(
        "stopsignal",
        &[
            "sh",
            "-c",
            "trap 'exit 7' USR1; trap 'exit 9' TERM; while :; do sleep 0.1; done",
        ],
    );
    sig_cfg.image = Some(image_spec(&ctx.stopsignal));
    let with_signal = ctx.start(&pod, sig_cfg).await?;
    // Give the shells time to install their traps.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let t0 = Instant::now();
    ctx.cri.stop_container(&stubborn, 2).await?;
    let took = t0.elapsed();
    let s = ctx.cri.container_status(&stubborn).await?;
    ensure!(
        took >= Duration::from_millis(1900) && took < Duration::from_secs(6),
        "stop with timeout 2 of a process ignoring SIGTERM took {took:?}"
    );
    ensure!(s.state == ContainerState::ContainerExited as i32, "{s:?}");
    ensure!(
        s.exit_code == 137 && s.reason == "Error",
        "SIGKILLed: {s:?}"
    );

    let t0 = Instant::now();
    ctx.cri.stop_container(&graceful, 10).await?;
    let took = t0.elapsed();
    let s = ctx.cri.container_status(&graceful).await?;
    // Well before the 10 s timeout (the margin is for loaded build hosts).
    ensure!(took < Duration::from_secs(5), "graceful stop took {took:?}");
    ensure!(
        s.exit_code == 0 && s.reason == "Completed",
        "graceful: {s:?}"
    );

    ctx.cri.stop_container(&with_signal, 10).await?;
    let s = ctx.cri.container_status(&with_signal).await?;
    ensure!(
        s.exit_code == 7,
        "StopSignal SIGUSR1 from the image config not used: {s:?}"
    );

    // Stopping an exited container is a no-op.
    ctx.cri.stop_container(&graceful, 10).await?;
    ctx.remove_pod(&pod).await;
    Ok(())
}

/// Reads a cgroup file of the container's memory or cpu controller on the host, from any
/// hierarchy in the test's subtree: `<root>/<cgroup_parent>/<container id>/<file>`.
fn host_cgroup_file(pod: &Pod, id: &str, file: &str) -> Option<String> {
    let parent = pod
        .config
        .linux
        .as_ref()?
        .cgroup_parent
        .trim_start_matches('/')
        .to_string();
    hierarchy_roots()
        .into_iter()
        .map(|r| r.join(&parent).join(id).join(file))
        .find(|p| p.exists())
        .and_then(|p| std::fs::read_to_string(p).ok())
        .map(|s| s.trim().to_string())
}

const MEM_SCRIPT: &str =
    "cat /sys/fs/cgroup/memory.max 2>/dev/null || cat /sys/fs/cgroup/memory/memory.limit_in_bytes";
const CPU_SCRIPT: &str = "cat /sys/fs/cgroup/cpu.max 2>/dev/null || \
     echo $(cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us) $(cat /sys/fs/cgroup/cpu/cpu.cfs_period_us)";

/// Memory limit and CPU quota visible inside the container and on the host; live update.
pub async fn resources(ctx: &SuiteCtx) -> Result<()> {
    let pod = ctx.new_pod("res", false).await?;
    let mut cfg = ctx.container_config("limited", &["sleep", "3600"]);
    cfg.linux.as_mut().unwrap().resources = Some(api::LinuxContainerResources {
        memory_limit_in_bytes: 64 << 20,
        cpu_quota: 50_000,
        cpu_period: 100_000,
        cpu_shares: 512,
        ..Default::default()
    });
    let id = ctx.start(&pod, cfg).await?;
    let mem = ctx.cri.exec_ok(&id, &["sh", "-c", MEM_SCRIPT]).await?;
    ensure!(
        mem.trim() == (64u64 << 20).to_string(),
        "memory limit inside: {mem:?}"
    );
    let cpu = ctx.cri.exec_ok(&id, &["sh", "-c", CPU_SCRIPT]).await?;
    ensure!(cpu.trim() == "50000 100000", "cpu quota inside: {cpu:?}");
    let host_mem = host_cgroup_file(&pod, &id, "memory.limit_in_bytes")
        .or_else(|| host_cgroup_file(&pod, &id, "memory.max"));
    ensure!(
        host_mem.as_deref() == Some(&(64u64 << 20).to_string()),
        "memory limit of <cgroup_parent>/<id> on the host: {host_mem:?}"
    );
    // The container's processes are in that cgroup.
    let procs = host_cgroup_file(&pod, &id, "cgroup.procs").unwrap_or_default();
    ensure!(!procs.is_empty(), "no process in the container's cgroup");

    ctx.cri
        .rt
        .clone()
        .update_container_resources(api::UpdateContainerResourcesRequest {
            container_id: id.clone(),
            linux: Some(api::LinuxContainerResources {
                memory_limit_in_bytes: 128 << 20,
                cpu_quota: 20_000,
                cpu_period: 100_000,
                cpu_shares: 512,
                ..Default::default()
            }),
            ..Default::default()
        })
        .await?;
    let mem = ctx.cri.exec_ok(&id, &["sh", "-c", MEM_SCRIPT]).await?;
    ensure!(
        mem.trim() == (128u64 << 20).to_string(),
        "memory limit after update: {mem:?}"
    );
    let cpu = ctx.cri.exec_ok(&id, &["sh", "-c", CPU_SCRIPT]).await?;
    ensure!(
        cpu.trim() == "20000 100000",
        "cpu quota after update: {cpu:?}"
    );
    // ContainerStatus reports the updated resources.
    let st = ctx.cri.container_status(&id).await?;
    let lim = st
        .resources
        .as_ref()
        .and_then(|r| r.linux.as_ref())
        .map(|l| l.memory_limit_in_bytes);
    ensure!(
        lim == Some(128 << 20),
        "ContainerStatus resources after update: {st:?}"
    );
    ctx.remove_pod(&pod).await;
    Ok(())
}

/// A container writing past its memory limit (tmpfs pages are charged to it) is OOM-killed and
/// reported as EXITED with reason OOMKilled.
pub async fn oom(ctx: &SuiteCtx) -> Result<()> {
    let pod = ctx.new_pod("oom", false).await?;
    let mut cfg = ctx.container_config(
        "hog",
        &[
            "dd",
            "if=/dev/zero",
            "of=/dev/shm/fill",
            "bs=1M",
            "count=60",
        ],
    );
    cfg.linux.as_mut().unwrap().resources = Some(api::LinuxContainerResources {
        memory_limit_in_bytes: 16 << 20,
        ..Default::default()
    });
    let id = ctx.start(&pod, cfg).await?;
    let st = ctx
        .cri
        .wait_container(&id, ContainerState::ContainerExited, WAIT)
        .await?;
    ensure!(st.reason == "OOMKilled", "reason: {st:?}");
    ensure!(st.exit_code == 137, "exit code of an OOM kill: {st:?}");
    // The same under the limit is not OOMKilled.
    let mut cfg = ctx.container_config(
        "fits",
        &[
            "dd",
            "if=/dev/zero",
            "of=/dev/shm/fill2",
            "bs=1M",
            "count=4",
        ],
    );
    cfg.linux.as_mut().unwrap().resources = Some(api::LinuxContainerResources {
        memory_limit_in_bytes: 64 << 20,
        ..Default::default()
    });
    let id = ctx.start(&pod, cfg).await?;
    let st = ctx
        .cri
        .wait_container(&id, ContainerState::ContainerExited, WAIT)
        .await?;
    ensure!(
        st.reason == "Completed" && st.exit_code == 0,
        "under the limit: {st:?}"
    );
    ctx.remove_pod(&pod).await;
    Ok(())
}

fn cap_eff(status: &str) -> Result<u64> {
    let l = status
        .lines()
        .find(|l| l.starts_with("CapEff:"))
        .context("no CapEff line")?;
    Ok(u64::from_str_radix(l["CapEff:".len()..].trim(), 16)?)
}

/// containerd's (and Docker's) default capabilities: CHOWN DAC_OVERRIDE FOWNER FSETID KILL
/// SETGID SETUID SETPCAP NET_BIND_SERVICE NET_RAW SYS_CHROOT MKNOD AUDIT_WRITE SETFCAP.
pub const DEFAULT_CAPS: u64 = (1 << 0)
    | (1 << 1)
    | (1 << 3)
    | (1 << 4)
    | (1 << 5)
    | (1 << 6)
    | (1 << 7)
    | (1 << 8)
    | (1 << 10)
    | (1 << 13)
    | (1 << 18)
    | (1 << 27)
    | (1 << 29)
    | (1 << 31);
const CAP_NET_RAW: u64 = 1 << 13;

/// Capabilities, run_as_user, read-only rootfs, RuntimeDefault seccomp, privileged.
pub async fn security(ctx: &SuiteCtx) -> Result<()> {
    let pod = ctx.new_pod("sec", false).await?;
    // Default capability set, and with NET_RAW dropped.
    let plain = ctx
        .start(&pod, ctx.container_config("plain", &["sleep", "3600"]))
        .await?;
    let caps = cap_eff(&ctx.cri.exec_ok(&plain, &["cat", "/proc/1/status"]).await?)?;
    ensure!(
        caps == DEFAULT_CAPS,
        "default CapEff {caps:#x}, want {DEFAULT_CAPS:#x}"
    );
    let mounts = ctx.cri.exec_ok(&plain, &["cat", "/proc/mounts"]).await?;
    // What the container can reach at a path is the last mount listed for it (earlier ones are
    // shadowed: deckhand remounts libcontainer's v1 cgroup mounts read-only on top).
    let mut effective: std::collections::BTreeMap<&str, &str> = Default::default();
    for l in mounts.lines() {
        if let Some(point) = l.split(' ').nth(1) {
            effective.insert(point, l);
        }
    }
    ensure!(
        effective
            .values()
            .filter(|l| {
                matches!(l.split(' ').nth(2), Some("cgroup" | "cgroup2"))
                    || l.split(' ').nth(1) == Some("/sys")
            })
            .all(|l| l.split(' ').nth(3).is_some_and(|o| o.starts_with("ro"))),
        "unprivileged: /sys and cgroup mounts must be read-only:\n{mounts}"
    );
    let ls = ctx.cri.exec_ok(&plain, &["ls", "/dev"]).await?;
    ensure!(
        !ls.lines().any(|l| l == "kmsg"),
        "unprivileged /dev has kmsg:\n{ls}"
    );
    let mut cfg = ctx.container_config("nonetraw", &["sleep", "3600"]);
    let sc = cfg
        .linux
        .as_mut()
        .unwrap()
        .security_context
        .as_mut()
        .unwrap();
    sc.capabilities = Some(api::Capability {
        drop_capabilities: vec!["NET_RAW".into()],
        ..Default::default()
    });
    let nonetraw = ctx.start(&pod, cfg).await?;
    let caps = cap_eff(
        &ctx.cri
            .exec_ok(&nonetraw, &["cat", "/proc/1/status"])
            .await?,
    )?;
    ensure!(
        caps == DEFAULT_CAPS & !CAP_NET_RAW,
        "CapEff with NET_RAW dropped: {caps:#x}"
    );
    // ping needs a raw socket (or the unprivileged ICMP sysctl, which is off by default).
    let r = ctx
        .cri
        .exec_sync(&nonetraw, &["ping", "-c", "1", "-W", "1", "127.0.0.1"], 10)
        .await?;
    ensure!(r.exit_code != 0, "ping worked without NET_RAW: {r:?}");

    // run_as_user.
    let mut cfg = ctx.container_config("user", &["sleep", "3600"]);
    let sc = cfg
        .linux
        .as_mut()
        .unwrap()
        .security_context
        .as_mut()
        .unwrap();
    sc.run_as_user = Some(api::Int64Value { value: 1000 });
    let user = ctx.start(&pod, cfg).await?;
    let id = ctx.cri.exec_ok(&user, &["id", "-u"]).await?;
    ensure!(id.trim() == "1000", "id -u of run_as_user 1000: {id:?}");
    let ps = ctx.cri.exec_ok(&user, &["cat", "/proc/1/status"]).await?;
    ensure!(
        ps.lines()
            .any(|l| l.starts_with("Uid:") && l.contains("1000")),
        "{ps}"
    );
    ensure!(
        cap_eff(&ps)? == 0,
        "a non-root user keeps no effective capabilities"
    );

    // Read-only rootfs: writes fail except on the tmpfs mounts.
    let mut cfg = ctx.container_config("ro", &["sleep", "3600"]);
    cfg.linux
        .as_mut()
        .unwrap()
        .security_context
        .as_mut()
        .unwrap()
        .readonly_rootfs = true;
    let ro = ctx.start(&pod, cfg).await?;
    let r = ctx.cri.exec_sync(&ro, &["touch", "/newfile"], 10).await?;
    ensure!(
        r.exit_code != 0,
        "write to a read-only rootfs worked: {r:?}"
    );
    ensure!(
        String::from_utf8_lossy(&r.stderr).contains("Read-only file system"),
        "{:?}",
        String::from_utf8_lossy(&r.stderr)
    );
    ctx.cri.exec_ok(&ro, &["touch", "/dev/shm/ok"]).await?;

    // RuntimeDefault seccomp blocks unshare(CLONE_NEWUSER); Unconfined allows it.
    let r = ctx
        .cri
        .exec_sync(&plain, &["busybox", "unshare", "-U", "true"], 10)
        .await?;
    ensure!(
        r.exit_code != 0,
        "unshare -U under RuntimeDefault succeeded: {r:?}"
    );
    let mut cfg = ctx.container_config("unconfined", &["sleep", "3600"]);
    cfg.linux
        .as_mut()
        .unwrap()
        .security_context
        .as_mut()
        .unwrap()
        .seccomp = unconfined();
    let unc = ctx.start(&pod, cfg).await?;
    let r = ctx
        .cri
        .exec_sync(&unc, &["busybox", "unshare", "-U", "true"], 10)
        .await?;
    ensure!(
        r.exit_code == 0,
        "unshare -U under Unconfined failed: {r:?}"
    );
    ctx.remove_pod(&pod).await;

    // Privileged needs a privileged sandbox: all of the runtime's capabilities, rw /sys.
    let mut pc = ctx.pod_config("priv", false);
    pc.linux
        .as_mut()
        .unwrap()
        .security_context
        .as_mut()
        .unwrap()
        .privileged = true;
    let ppod = ctx.run_pod(pc).await?;
    let mut cfg = ctx.container_config("priv", &["sleep", "3600"]);
    cfg.linux
        .as_mut()
        .unwrap()
        .security_context
        .as_mut()
        .unwrap()
        .privileged = true;
    let p = ctx.start(&ppod, cfg).await?;
    let caps = cap_eff(&ctx.cri.exec_ok(&p, &["cat", "/proc/1/status"]).await?)?;
    let mine = cap_eff(&std::fs::read_to_string("/proc/self/status")?)?;
    ensure!(
        caps == mine,
        "privileged CapEff {caps:#x}, the runtime's {mine:#x}"
    );
    // containerd keeps /sys read-only for a privileged container in a pod with its own
    // network namespace, but mounts the cgroup hierarchies read-write (read-only otherwise),
    // and gives it the host's devices.
    let mounts = ctx.cri.exec_ok(&p, &["cat", "/proc/mounts"]).await?;
    let opts_of = |mounts: &str, target: &str| -> Option<String> {
        mounts
            .lines()
            .find(|l| l.split(' ').nth(1) == Some(target))
            .and_then(|l| l.split(' ').nth(3).map(str::to_string))
    };
    let sys = opts_of(&mounts, "/sys").unwrap_or_default();
    ensure!(
        sys.starts_with("ro"),
        "privileged /sys options {sys:?}:\n{mounts}"
    );
    let cg = opts_of(&mounts, "/sys/fs/cgroup/memory")
        .or_else(|| opts_of(&mounts, "/sys/fs/cgroup"))
        .unwrap_or_default();
    ensure!(
        cg.starts_with("rw"),
        "privileged cgroup mount {cg:?}:\n{mounts}"
    );
    let ls = ctx.cri.exec_ok(&p, &["ls", "/dev"]).await?;
    ensure!(
        ls.lines().any(|l| l == "kmsg"),
        "privileged /dev lacks the host's kmsg:\n{ls}"
    );
    let r = ctx
        .cri
        .exec_sync(&p, &["busybox", "unshare", "-U", "true"], 10)
        .await?;
    ensure!(
        r.exit_code == 0,
        "privileged: no seccomp filter expected: {r:?}"
    );
    // A privileged container in an unprivileged pod is refused.
    let pod2 = ctx.new_pod("unpriv", false).await?;
    let mut cfg = ctx.container_config("priv2", &["sleep", "3600"]);
    cfg.linux
        .as_mut()
        .unwrap()
        .security_context
        .as_mut()
        .unwrap()
        .privileged = true;
    let r = ctx.cri.create_container(&pod2.id, &cfg, &pod2.config).await;
    ensure!(
        r.is_err(),
        "privileged container in an unprivileged pod was created: {r:?}"
    );
    ctx.remove_pod(&pod2).await;
    ctx.remove_pod(&ppod).await;
    Ok(())
}

/// Hostname, /etc/hosts, /etc/resolv.conf from DNSConfig, env, working dir, command + args.
pub async fn environment(ctx: &SuiteCtx) -> Result<()> {
    let mut pc = ctx.pod_config("env", false);
    pc.hostname = "suite-host".into();
    pc.dns_config = Some(api::DnsConfig {
        servers: vec!["10.96.0.10".into(), "10.96.0.11".into()],
        searches: vec!["suite.svc.cluster.local".into(), "cluster.local".into()],
        options: vec!["ndots:5".into(), "timeout:2".into()],
    });
    let pod = ctx.run_pod(pc).await?;
    let mut cfg = ctx.container_config("env", &["sh", "-c"]);
    cfg.args = vec![
        "echo \"FOO=$FOO\"; echo \"BAR=$BAR\"; echo \"PWD=$(pwd)\"; echo \"ARGS=$0 $1\"; sleep 3600".into(),
        "first".into(),
        "second".into(),
    ];
    cfg.envs = vec![
        api::KeyValue {
            key: "FOO".into(),
            value: "foo value".into(),
        },
        api::KeyValue {
            key: "BAR".into(),
            value: "".into(),
        },
    ];
    cfg.working_dir = "/tmp".into();
    let id = ctx.start(&pod, cfg).await?;
    let log =
        wait_file_contains(&ctx.log_file(&pod, "env"), "ARGS=", Duration::from_secs(10)).await?;
    let text: Vec<String> = parse_log(&log)?.into_iter().map(|l| l.text).collect();
    ensure!(
        text == ["FOO=foo value", "BAR=", "PWD=/tmp", "ARGS=first second"],
        "env/workdir/args: {text:?}"
    );
    let h = ctx.cri.exec_ok(&id, &["hostname"]).await?;
    ensure!(h.trim() == "suite-host", "hostname: {h:?}");
    let hf = ctx.cri.exec_ok(&id, &["cat", "/etc/hostname"]).await?;
    ensure!(hf.trim() == "suite-host", "/etc/hostname: {hf:?}");
    let hosts = ctx.cri.exec_ok(&id, &["cat", "/etc/hosts"]).await?;
    ensure!(
        hosts
            .lines()
            .any(|l| l.starts_with("127.0.0.1") && l.contains("localhost")),
        "/etc/hosts:\n{hosts}"
    );
    let resolv = ctx.cri.exec_ok(&id, &["cat", "/etc/resolv.conf"]).await?;
    let lines: Vec<&str> = resolv.lines().filter(|l| !l.trim().is_empty()).collect();
    ensure!(
        lines
            == [
                "search suite.svc.cluster.local cluster.local",
                "nameserver 10.96.0.10",
                "nameserver 10.96.0.11",
                "options ndots:5 timeout:2"
            ],
        "/etc/resolv.conf:\n{resolv}"
    );
    // The image's PATH is kept alongside the given env; HOSTNAME is set as Docker does.
    let env = ctx.cri.exec_ok(&id, &["env"]).await?;
    ensure!(env.lines().any(|l| l.starts_with("PATH=")), "env:\n{env}");
    ensure!(
        env.lines().any(|l| l == "HOSTNAME=suite-host"),
        "env:\n{env}"
    );
    ctx.remove_pod(&pod).await;
    Ok(())
}

/// ContainerStats / ListContainerStats for a busy container; PodSandboxStats.
pub async fn stats(ctx: &SuiteCtx) -> Result<()> {
    let pod = ctx.new_pod("stats", false).await?;
    let id = ctx
        .start(
            &pod,
            ctx.container_config(
                "busy",
                &[
                    "sh",
                    "-c",
                    "head -c 8000000 /dev/zero > /dev/shm/mem; while :; do :; done",
                ],
            ),
        )
        .await?;
    // Poll: on a loaded host the busy loop may get little CPU at first, and a runtime may
    // sample stats periodically.
    let deadline = Instant::now() + Duration::from_secs(20);
    let (st, cpu) = loop {
        let st = ctx
            .cri
            .rt
            .clone()
            .container_stats(api::ContainerStatsRequest {
                container_id: id.clone(),
            })
            .await?
            .into_inner()
            .stats
            .context("ContainerStats: no stats")?;
        let cpu = st
            .cpu
            .as_ref()
            .and_then(|c| c.usage_core_nano_seconds.as_ref())
            .map(|v| v.value)
            .unwrap_or(0);
        let ws = st
            .memory
            .as_ref()
            .and_then(|m| m.working_set_bytes.as_ref())
            .map(|v| v.value)
            .unwrap_or(0);
        if (cpu > 100_000_000 && ws > 4_000_000) || Instant::now() > deadline {
            ensure!(cpu > 100_000_000, "cpu usage of a busy loop: {st:?}");
            ensure!(ws > 4_000_000, "working set with 8 MB in /dev/shm: {st:?}");
            break (st, Some(cpu));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    ensure!(
        st.attributes.as_ref().map(|a| a.id.as_str()) == Some(id.as_str()),
        "attributes: {st:?}"
    );
    let ws_layer = st.writable_layer.as_ref();
    ensure!(ws_layer.is_some(), "no writable_layer stats: {st:?}");
    let list = ctx
        .cri
        .rt
        .clone()
        .list_container_stats(api::ListContainerStatsRequest {
            filter: Some(api::ContainerStatsFilter {
                pod_sandbox_id: pod.id.clone(),
                ..Default::default()
            }),
        })
        .await?
        .into_inner()
        .stats;
    ensure!(
        list.len() == 1 && list[0].attributes.as_ref().map(|a| a.id.as_str()) == Some(id.as_str()),
        "ListContainerStats by pod: {list:?}"
    );
    let ps = ctx
        .cri
        .rt
        .clone()
        .pod_sandbox_stats(api::PodSandboxStatsRequest {
            pod_sandbox_id: pod.id.clone(),
        })
        .await?
        .into_inner()
        .stats
        .context("PodSandboxStats: no stats")?;
    let linux = ps
        .linux
        .as_ref()
        .context("PodSandboxStats: no linux stats")?;
    let pcpu = linux
        .cpu
        .as_ref()
        .and_then(|c| c.usage_core_nano_seconds.as_ref())
        .map(|v| v.value);
    ensure!(
        pcpu.unwrap_or(0) >= cpu.unwrap_or(0),
        "pod cpu < container cpu: {ps:?}"
    );
    ensure!(
        linux
            .containers
            .iter()
            .any(|c| c.attributes.as_ref().map(|a| a.id.as_str()) == Some(id.as_str())),
        "PodSandboxStats containers: {ps:?}"
    );
    ctx.remove_pod(&pod).await;
    Ok(())
}

/// gRPC codes for unknown ids, a missing image and a bad mount.
pub async fn errors(ctx: &SuiteCtx) -> Result<()> {
    let bogus = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    expect_code(
        "ContainerStatus unknown",
        ctx.cri.container_status(bogus).await,
        Code::NotFound,
    )?;
    expect_code(
        "PodSandboxStatus unknown",
        ctx.cri.pod_status(bogus).await,
        Code::NotFound,
    )?;
    expect_code(
        "StartContainer unknown",
        ctx.cri.start_container(bogus).await,
        Code::NotFound,
    )?;
    expect_code(
        "StopContainer unknown",
        ctx.cri.stop_container(bogus, 0).await,
        Code::NotFound,
    )?;
    expect_code(
        "ExecSync unknown",
        ctx.cri.exec_sync(bogus, &["true"], 1).await,
        Code::NotFound,
    )?;
    expect_code(
        "StopPodSandbox unknown",
        ctx.cri.stop_pod(bogus).await,
        Code::NotFound,
    )?;
    // Removing what does not exist succeeds (kubelet retries removals).
    ctx.cri
        .remove_container(bogus)
        .await
        .map_err(|s| anyhow::anyhow!("RemoveContainer unknown: {s}"))?;
    ctx.cri
        .remove_pod(bogus)
        .await
        .map_err(|s| anyhow::anyhow!("RemovePodSandbox unknown: {s}"))?;

    let pod = ctx.new_pod("errors", false).await?;
    // An image that is not present: CreateContainer does not pull.
    let mut cfg = ctx.container_config("noimage", &["true"]);
    cfg.image = Some(image_spec(&format!("{}/not-pulled:1", ctx.registry_host)));
    let s = expect_code(
        "CreateContainer with an image not present",
        ctx.cri.create_container(&pod.id, &cfg, &pod.config).await,
        Code::NotFound,
    )?;
    ensure!(
        s.message().contains("not-pulled"),
        "message names the image: {}",
        s.message()
    );
    // CreateContainer in an unknown sandbox.
    ctx.ensure_image(&ctx.busybox).await?;
    let cfg = ctx.container_config("nopod", &["true"]);
    expect_code(
        "CreateContainer in an unknown sandbox",
        ctx.cri.create_container(bogus, &cfg, &pod.config).await,
        Code::NotFound,
    )?;
    // A missing host path is created as a directory (as containerd does); a host path
    // below a regular file cannot be, and the container is not created.
    let missing = ctx
        .log_root
        .join(format!("created-by-runtime-{}", ctx.next()));
    let mut cfg = ctx.container_config("mnt-ok", &["sh", "-c", "test -d /mnt/m && sleep 3600"]);
    cfg.mounts = vec![api::Mount {
        container_path: "/mnt/m".into(),
        host_path: missing.display().to_string(),
        ..Default::default()
    }];
    let id = ctx.start(&pod, cfg).await?;
    ensure!(
        missing.is_dir(),
        "missing host path {} not created",
        missing.display()
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let st = ctx.cri.container_status(&id).await?;
    ensure!(
        st.state == ContainerState::ContainerRunning as i32,
        "mount of a created dir: {st:?}"
    );
    let file = ctx.log_root.join(format!("a-file-{}", ctx.next()));
    std::fs::write(&file, b"x")?;
    let mut cfg = ctx.container_config("mnt-bad", &["true"]);
    cfg.mounts = vec![api::Mount {
        container_path: "/mnt/bad".into(),
        host_path: file.join("below-a-file").display().to_string(),
        ..Default::default()
    }];
    let r = async {
        let id = ctx.cri.create_container(&pod.id, &cfg, &pod.config).await?;
        ctx.cri.start_container(&id).await
    }
    .await;
    let s = match r {
        Ok(()) => bail!("a container with a mount source below a regular file started"),
        Err(s) => s,
    };
    ensure!(
        s.message().contains("below-a-file"),
        "bad mount message: {} ({:?})",
        s.message(),
        s.code()
    );
    ctx.remove_pod(&pod).await;
    Ok(())
}
