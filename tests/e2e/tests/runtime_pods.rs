//! deckhand's CRI runtime end to end, as a kubelet drives it: pod sandboxes, containers under
//! the per-pod shim, CRI logs, ExecSync, stop with a timeout, and restart survival (the runtime
//! is killed with SIGKILL while pods run; the restarted runtime re-adopts them untouched).

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use deckhand_e2e::deckhand::Deckhand;
use deckhand_e2e::setup;
use deckhand_runtime::cri::api;
use deckhand_runtime::cri::api::runtime_service_client::RuntimeServiceClient;
use tonic::transport::{Channel, Endpoint, Uri};

const IMAGE: &str = "example.com/e2e/busybox:1";

struct Runtime {
    child: Child,
    socket: PathBuf,
}

impl Runtime {
    fn start(dh: &Deckhand) -> Runtime {
        let socket = dh.tmp.path().join("cri.sock");
        let child = dh
            .command()
            .args(["runtime", "--listen"])
            .arg(format!("unix://{}", socket.display()))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dh.tmp.path().join("runtime.log")).unwrap())
            .spawn()
            .expect("start deckhand runtime");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::os::unix::net::UnixStream::connect(&socket).is_err() {
            assert!(
                Instant::now() < deadline,
                "runtime did not serve {}",
                socket.display()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Runtime { child, socket }
    }

    async fn client(&self) -> RuntimeServiceClient<Channel> {
        let socket = self.socket.clone();
        let channel = Endpoint::try_from("http://[::]:50051")
            .unwrap()
            .connect_with_connector(tower::service_fn(move |_: Uri| {
                let socket = socket.clone();
                async move {
                    Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(
                        tokio::net::UnixStream::connect(socket).await?,
                    ))
                }
            }))
            .await
            .expect("connect to CRI socket");
        RuntimeServiceClient::new(channel)
    }

    fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Kills, when the test ends (also by a failed assertion), every shim of this data dir and
/// everything below it (pod inits, containers, exec'd processes), so that nothing keeps
/// running on files the temp dir removal takes away.
struct ShimReaper(PathBuf);

impl Drop for ShimReaper {
    fn drop(&mut self) {
        let needle = format!("--data-dir\0{}\0shim", self.0.display());
        let mut doomed = Vec::new();
        for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            let cmdline = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
            if String::from_utf8_lossy(&cmdline).contains(&needle) {
                doomed.push(pid);
            }
        }
        let mut i = 0;
        while i < doomed.len() {
            let pid = doomed[i];
            let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
                .unwrap_or_default();
            doomed.extend(
                children
                    .split_whitespace()
                    .filter_map(|c| c.parse::<i32>().ok()),
            );
            i += 1;
        }
        for pid in doomed {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

fn sandbox_config(name: &str, logs: &Path) -> api::PodSandboxConfig {
    api::PodSandboxConfig {
        metadata: Some(api::PodSandboxMetadata {
            name: name.into(),
            uid: format!("uid-{name}"),
            namespace: "default".into(),
            attempt: 0,
        }),
        hostname: name.into(),
        log_directory: logs.display().to_string(),
        labels: [("app".to_string(), name.to_string())].into(),
        linux: Some(api::LinuxPodSandboxConfig {
            security_context: Some(api::LinuxSandboxSecurityContext {
                namespace_options: Some(api::NamespaceOption {
                    network: api::NamespaceMode::Node as i32,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn container_config(name: &str, cmd: &[&str]) -> api::ContainerConfig {
    api::ContainerConfig {
        metadata: Some(api::ContainerMetadata {
            name: name.into(),
            attempt: 0,
        }),
        image: Some(api::ImageSpec {
            image: IMAGE.into(),
            ..Default::default()
        }),
        command: cmd.iter().map(|s| s.to_string()).collect(),
        log_path: format!("{name}/0.log"),
        ..Default::default()
    }
}

async fn run_container(
    c: &mut RuntimeServiceClient<Channel>,
    pod: &str,
    sandbox: &api::PodSandboxConfig,
    name: &str,
    cmd: &[&str],
) -> String {
    let id = c
        .create_container(api::CreateContainerRequest {
            pod_sandbox_id: pod.into(),
            config: Some(container_config(name, cmd)),
            sandbox_config: Some(sandbox.clone()),
        })
        .await
        .unwrap_or_else(|e| panic!("create {name}: {e}\n{}", shim_logs(sandbox)))
        .into_inner()
        .container_id;
    c.start_container(api::StartContainerRequest {
        container_id: id.clone(),
    })
    .await
    .unwrap_or_else(|e| panic!("start {name}: {e}"));
    id
}

/// The shim logs of every sandbox under the sandbox's data dir (for failure messages).
fn shim_logs(sandbox: &api::PodSandboxConfig) -> String {
    let data = Path::new(&sandbox.log_directory)
        .parent()
        .unwrap()
        .join("data/runtime/sandboxes");
    let mut out = String::new();
    for e in std::fs::read_dir(data).into_iter().flatten().flatten() {
        out += &std::fs::read_to_string(e.path().join("shim.log")).unwrap_or_default();
        let rec = std::fs::read_to_string(e.path().join("sandbox.json")).unwrap_or_default();
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(&rec) {
            let pid = v["pod_init_pid"].as_i64().unwrap_or(0);
            out += &format!(
                "pod init {pid}: {}\n",
                std::fs::read_to_string(format!("/proc/{pid}/stat"))
                    .unwrap_or_else(|e| e.to_string())
            );
        }
    }
    // Container logs too: a failed create's init reports its error on stderr.
    for d in std::fs::read_dir(&sandbox.log_directory)
        .into_iter()
        .flatten()
        .flatten()
    {
        for f in std::fs::read_dir(d.path()).into_iter().flatten().flatten() {
            out += &format!("--- {}\n", f.path().display());
            out += &std::fs::read_to_string(f.path()).unwrap_or_default();
        }
    }
    out
}

async fn status(c: &mut RuntimeServiceClient<Channel>, id: &str) -> api::ContainerStatus {
    c.container_status(api::ContainerStatusRequest {
        container_id: id.into(),
        verbose: false,
    })
    .await
    .unwrap()
    .into_inner()
    .status
    .unwrap()
}

async fn wait_exited(c: &mut RuntimeServiceClient<Channel>, id: &str) -> api::ContainerStatus {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let s = status(c, id).await;
        if s.state == api::ContainerState::ContainerExited as i32 {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "container {id} did not exit: {s:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The pid the shim recorded for a container (the runtime's on-disk state).
fn container_pid(dh: &Deckhand, id: &str) -> i64 {
    let p = dh.data_dir.join(format!("runtime/oci/status/{id}.json"));
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
    v["pid"].as_i64().unwrap()
}

fn log_records(path: &Path) -> Vec<(String, String, String)> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .map(|l| {
            let mut it = l.splitn(4, ' ');
            let _ts = it.next().unwrap();
            (
                it.next().unwrap().to_string(),
                it.next().unwrap().to_string(),
                it.next().unwrap_or("").to_string(),
            )
        })
        .collect()
}

fn rec(s: &str, t: &str, c: &str) -> (String, String, String) {
    (s.into(), t.into(), c.into())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pod_lifecycle_logs_exec_stop_and_restart_survival() {
    let fx = setup(env!("CARGO_TARGET_TMPDIR"));
    let dh = Deckhand::new();
    dh.ok(&[
        "image",
        "import",
        fx.layout("busybox").to_str().unwrap(),
        "--name",
        IMAGE,
    ]);
    let logs = dh.tmp.path().join("pod-logs");
    let _reaper = ShimReaper(dh.data_dir.clone());
    let rt = Runtime::start(&dh);
    let mut c = rt.client().await;

    let sb = sandbox_config("web", &logs);
    let pod = c
        .run_pod_sandbox(api::RunPodSandboxRequest {
            config: Some(sb.clone()),
            runtime_handler: String::new(),
        })
        .await
        .expect("RunPodSandbox")
        .into_inner()
        .pod_sandbox_id;

    // Exit code, reason and CRI-format logs (an unterminated last line is a partial record, as containerd writes it).
    let short = run_container(
        &mut c,
        &pod,
        &sb,
        "short",
        &["sh", "-c", "echo out; echo err >&2; printf tail; exit 3"],
    )
    .await;
    let s = wait_exited(&mut c, &short).await;
    assert_eq!((s.exit_code, s.reason.as_str()), (3, "Error"), "{s:?}");
    assert!(s.finished_at >= s.started_at && s.started_at > 0, "{s:?}");
    let mut records = log_records(&logs.join("short/0.log"));
    records.sort();
    assert_eq!(
        records,
        vec![
            rec("stderr", "F", "err"),
            rec("stdout", "F", "out"),
            rec("stdout", "P", "tail"),
        ]
    );

    // A long-running container: ExecSync output and exit codes.
    // PID 1 of a PID namespace ignores signals it has no handler for: a shell that traps
    // SIGTERM is what stops promptly (a bare `sleep` as init would wait for SIGKILL).
    let long = run_container(
        &mut c,
        &pod,
        &sb,
        "long",
        &[
            "sh",
            "-c",
            "trap 'exit 0' TERM; while true; do sleep 1; done",
        ],
    )
    .await;
    let r = c
        .exec_sync(api::ExecSyncRequest {
            container_id: long.clone(),
            cmd: vec![
                "sh".into(),
                "-c".into(),
                "echo hi; echo no >&2; exit 7".into(),
            ],
            timeout: 10,
        })
        .await
        .expect("ExecSync")
        .into_inner();
    assert_eq!(
        (r.stdout.as_slice(), r.stderr.as_slice(), r.exit_code),
        (&b"hi\n"[..], &b"no\n"[..], 7)
    );
    // The sandbox asked for a pod-wide PID namespace (mode POD): its PID 1 is the shim's
    // minimal init, not the container's shell.
    let r = c
        .exec_sync(api::ExecSyncRequest {
            container_id: long.clone(),
            cmd: vec!["cat".into(), "/proc/1/comm".into()],
            timeout: 10,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(String::from_utf8_lossy(&r.stdout), "pod-init\n");
    let t0 = Instant::now();
    let err = c
        .exec_sync(api::ExecSyncRequest {
            container_id: long.clone(),
            cmd: vec!["sleep".into(), "30".into()],
            timeout: 1,
        })
        .await
        .expect_err("ExecSync past its timeout");
    assert_eq!(err.code(), tonic::Code::DeadlineExceeded, "{err}");
    assert!(t0.elapsed() < Duration::from_secs(5));

    // An exec with a terminal, through the shim's own protocol (what the streaming server's
    // `kubectl exec -it` sessions become): the process's stdio is a terminal, a resize
    // reaches it, stdin is typed into it.
    let socket = dh
        .data_dir
        .join(format!("runtime/shims/{}.sock", &pod[..16]));
    let out = terminal_exec(
        &socket,
        &long,
        &["sh", "-c", "read x; tty; stty size; echo got-$x"],
        (100, 30),
        b"go\n",
    );
    assert!(out.contains("/dev/pts/"), "tty: {out:?}");
    assert!(
        out.contains("30 100"),
        "stty size after the resize: {out:?}"
    );
    assert!(out.contains("got-go"), "stdin: {out:?}");

    // RuntimeDefault seccomp filters the container's process and every exec'd one.
    let mut cfg = container_config(
        "filtered",
        &[
            "sh",
            "-c",
            "grep Seccomp: /proc/self/status; exec sleep 1000",
        ],
    );
    cfg.linux = Some(api::LinuxContainerConfig {
        security_context: Some(api::LinuxContainerSecurityContext {
            seccomp: Some(api::SecurityProfile {
                profile_type: api::security_profile::ProfileType::RuntimeDefault as i32,
                localhost_ref: String::new(),
            }),
            ..Default::default()
        }),
        ..Default::default()
    });
    let filtered = c
        .create_container(api::CreateContainerRequest {
            pod_sandbox_id: pod.clone(),
            config: Some(cfg),
            sandbox_config: Some(sb.clone()),
        })
        .await
        .unwrap()
        .into_inner()
        .container_id;
    c.start_container(api::StartContainerRequest {
        container_id: filtered.clone(),
    })
    .await
    .unwrap();
    let r = c
        .exec_sync(api::ExecSyncRequest {
            container_id: filtered.clone(),
            cmd: vec![
                "sh".into(),
                "-c".into(),
                "grep Seccomp: /proc/self/status; unshare -U true".into(),
            ],
            timeout: 10,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(
        String::from_utf8_lossy(&r.stdout).contains("Seccomp:\t2"),
        "exec: {r:?}"
    );
    assert_ne!(r.exit_code, 0, "unshare must be refused: {r:?}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !std::fs::read_to_string(logs.join("filtered/0.log"))
        .unwrap_or_default()
        .contains("Seccomp:\t2")
    {
        assert!(
            Instant::now() < deadline,
            "container not filtered: {:?}",
            std::fs::read_to_string(logs.join("filtered/0.log"))
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Restart survival: SIGKILL the runtime; a container exits while it is down.
    let pid_before = container_pid(&dh, &long);
    let exits_later = run_container(
        &mut c,
        &pod,
        &sb,
        "later",
        &["sh", "-c", "sleep 2; echo bye; exit 5"],
    )
    .await;
    drop(c);
    rt.kill9();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let rt = Runtime::start(&dh);
    let mut c = rt.client().await;
    let s = status(&mut c, &long).await;
    assert_eq!(
        s.state,
        api::ContainerState::ContainerRunning as i32,
        "{s:?}"
    );
    assert_eq!(
        container_pid(&dh, &long),
        pid_before,
        "same process after restart"
    );
    assert!(Path::new(&format!("/proc/{pid_before}")).exists());
    let s = status(&mut c, &exits_later).await;
    assert_eq!(
        (s.state, s.exit_code),
        (api::ContainerState::ContainerExited as i32, 5),
        "exit while the runtime was down: {s:?}"
    );
    assert_eq!(
        log_records(&logs.join("later/0.log")),
        vec![rec("stdout", "F", "bye")]
    );
    let r = c
        .exec_sync(api::ExecSyncRequest {
            container_id: long.clone(),
            cmd: vec!["echo".into(), "again".into()],
            timeout: 10,
        })
        .await
        .expect("ExecSync after restart")
        .into_inner();
    assert_eq!(r.stdout, b"again\n");

    // Stop honours the timeout: a process ignoring SIGTERM is killed after it.
    let stubborn = run_container(
        &mut c,
        &pod,
        &sb,
        "stubborn",
        &["sh", "-c", "trap '' TERM; while true; do sleep 1; done"],
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let t0 = Instant::now();
    c.stop_container(api::StopContainerRequest {
        container_id: stubborn.clone(),
        timeout: 2,
    })
    .await
    .expect("StopContainer");
    let took = t0.elapsed();
    assert!(
        took >= Duration::from_millis(1900) && took < Duration::from_secs(6),
        "{took:?}"
    );
    let s = status(&mut c, &stubborn).await;
    assert_eq!(
        (s.state, s.exit_code),
        (api::ContainerState::ContainerExited as i32, 137)
    );
    // A container that handles SIGTERM stops without waiting for the timeout.
    let t0 = Instant::now();
    c.stop_container(api::StopContainerRequest {
        container_id: long.clone(),
        timeout: 10,
    })
    .await
    .unwrap();
    assert!(t0.elapsed() < Duration::from_secs(3), "{:?}", t0.elapsed());

    // List filters.
    let listed = c
        .list_containers(api::ListContainersRequest {
            filter: Some(api::ContainerFilter {
                pod_sandbox_id: pod.clone(),
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .containers;
    assert_eq!(listed.len(), 5);

    // Teardown leaves nothing: sandbox NotFound, shim gone, rootfs unmounted.
    c.stop_pod_sandbox(api::StopPodSandboxRequest {
        pod_sandbox_id: pod.clone(),
    })
    .await
    .unwrap();
    c.remove_pod_sandbox(api::RemovePodSandboxRequest {
        pod_sandbox_id: pod.clone(),
    })
    .await
    .unwrap();
    let err = c
        .pod_sandbox_status(api::PodSandboxStatusRequest {
            pod_sandbox_id: pod.clone(),
            verbose: false,
        })
        .await
        .expect_err("removed sandbox");
    assert_eq!(err.code(), tonic::Code::NotFound);
    let err = c
        .container_status(api::ContainerStatusRequest {
            container_id: long.clone(),
            verbose: false,
        })
        .await
        .expect_err("removed container");
    assert_eq!(err.code(), tonic::Code::NotFound);
    assert!(!Path::new(&format!("/proc/{pid_before}")).exists());
    let left: Vec<_> = std::fs::read_dir(dh.data_dir.join("runtime/rootfs"))
        .unwrap()
        .collect();
    assert!(left.is_empty(), "rootfs dirs left: {left:?}");
    assert!(std::fs::read_dir(dh.data_dir.join("runtime/shims"))
        .unwrap()
        .next()
        .is_none());
}

/// Run `args` in container `id` with a terminal over the shim's socket: resize it to
/// `(cols, rows)`, type `input`, and return everything it printed.
fn terminal_exec(socket: &Path, id: &str, args: &[&str], size: (u16, u16), input: &[u8]) -> String {
    use deckhand_runtime::shim::protocol::{self, FrameKind};
    use std::io::{BufRead, BufReader, Write};
    let mut conn = std::os::unix::net::UnixStream::connect(socket).expect("shim socket");
    conn.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let req = serde_json::json!({
        "op": "exec", "id": id, "args": args, "stdin": true, "tty": true,
    });
    writeln!(conn, "{req}").unwrap();
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    assert!(line.contains("streaming"), "exec answer: {line}");
    let mut size_payload = size.0.to_be_bytes().to_vec();
    size_payload.extend_from_slice(&size.1.to_be_bytes());
    protocol::write_frame(&mut conn, FrameKind::Resize, &size_payload).unwrap();
    protocol::write_frame(&mut conn, FrameKind::Stdin, input).unwrap();
    let mut out = Vec::new();
    loop {
        let (kind, payload) = protocol::read_frame(&mut reader).expect("frame");
        match kind {
            FrameKind::Stdout | FrameKind::Stderr => out.extend_from_slice(&payload),
            FrameKind::Exit => break,
            _ => {}
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}
