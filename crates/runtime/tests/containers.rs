//! Real containers, as root: output, exit codes, signals, cgroup limits, OOM kills, seccomp,
//! capabilities, namespaces, read-only root, users.

mod common;

use common::Fixture;
use deckhand_runtime::container::{ContainerError, ContainerStatus, Stdio};
use deckhand_runtime::seccomp::SeccompProfile;
use deckhand_runtime::spec::{
    clamp_oom_score_adj, resolve_user, BindMount, NamespaceMode, Namespaces, Propagation,
    Resources, CAPABILITY_NAMES, DEFAULT_CAPABILITIES,
};
use deckhand_sys::ns::{ns_identity, NsKind};
use nix::sys::signal::Signal;

#[test]
fn echo_output_reaches_the_given_stdout() {
    let f = Fixture::new();
    let (exit, out, err) = f.run(&f.config(&["/bin/sh", "-c", "echo hi"]));
    assert_eq!(out, "hi\n", "stderr: {err}");
    assert_eq!(exit.exit_code, 0);
    assert_eq!(exit.reason, "Completed");
    assert!(!exit.oom_killed);
}

#[test]
fn exit_code_is_recorded_with_timestamps() {
    let f = Fixture::new();
    let id = f.id();
    let before = chrono::Utc::now();
    let created = f
        .create(
            &id,
            &f.config(&["/bin/sh", "-c", "exit 3"]),
            Stdio::default(),
        )
        .unwrap();
    assert_eq!(created.status, ContainerStatus::Created);
    assert!(created.pid > 0);
    f.rt.start(&id).unwrap();
    let exit = f.rt.wait(&id).unwrap();
    assert_eq!((exit.exit_code, exit.signal), (3, None));
    assert_eq!(exit.reason, "Error");
    // The record on disk says the same, with ordered timestamps.
    let state = f.rt.state(&id).unwrap();
    assert_eq!(state.status, ContainerStatus::Stopped);
    assert_eq!(state.exit.as_ref(), Some(&exit));
    let started = state.started_at.unwrap();
    assert!(before <= state.created_at && state.created_at <= started);
    assert!(started <= exit.finished_at);
    // Waiting again returns the record instead of failing.
    assert_eq!(f.rt.wait(&id).unwrap(), exit);
    f.rt.delete(&id, false).unwrap();
    assert!(matches!(
        f.rt.state(&id),
        Err(ContainerError::NotFound { .. })
    ));
}

#[test]
fn sigkill_is_recorded_as_a_signal() {
    let f = Fixture::new();
    let id = f.id();
    f.create(&id, &f.config(&["/bin/sleep", "100"]), Stdio::default())
        .unwrap();
    f.rt.start(&id).unwrap();
    assert_eq!(f.rt.state(&id).unwrap().status, ContainerStatus::Running);
    // A running container is not deleted without force.
    assert!(matches!(
        f.rt.delete(&id, false),
        Err(ContainerError::InvalidState { .. })
    ));
    f.rt.kill(&id, Signal::SIGKILL, false).unwrap();
    let exit = f.rt.wait(&id).unwrap();
    assert_eq!(exit.signal, Some(libc::SIGKILL));
    assert_eq!(exit.exit_code, 137);
    assert!(!exit.oom_killed);
    assert!(matches!(
        f.rt.kill(&id, Signal::SIGTERM, false),
        Err(ContainerError::InvalidState { .. })
    ));
    f.rt.delete(&id, false).unwrap();
}

#[test]
fn process_runs_in_its_cgroup_with_limits() {
    let f = Fixture::new();
    let id = f.id();
    let mut config = f.config(&["/bin/sleep", "100"]);
    config.resources = Resources {
        memory_limit: Some(64 << 20),
        cpu_quota: Some(50_000),
        cpu_period: Some(100_000),
        cpu_shares: Some(512),
        pids_limit: Some(42),
        ..Default::default()
    };
    let state = f.create(&id, &config, Stdio::default()).unwrap();
    f.rt.start(&id).unwrap();
    let cg = f.rt.cgroups();
    let path = format!("/{}/{id}", f.cgroup_parent);
    assert_eq!(state.cgroup_path, path);
    let procs = cg.procs("memory", &path).unwrap();
    assert_eq!(procs, vec![state.pid], "init must be in its memory cgroup");
    assert_eq!(cg.procs("cpu", &path).unwrap(), vec![state.pid]);
    if cg.mode().is_v2() {
        assert_eq!(cg.read("memory", &path, "memory.max").unwrap(), "67108864");
        assert_eq!(cg.read("cpu", &path, "cpu.max").unwrap(), "50000 100000");
        assert_eq!(cg.read("pids", &path, "pids.max").unwrap(), "42");
    } else {
        assert_eq!(
            cg.read("memory", &path, "memory.limit_in_bytes").unwrap(),
            "67108864"
        );
        assert_eq!(cg.read("cpu", &path, "cpu.cfs_quota_us").unwrap(), "50000");
        assert_eq!(
            cg.read("cpu", &path, "cpu.cfs_period_us").unwrap(),
            "100000"
        );
        assert_eq!(cg.read("cpu", &path, "cpu.shares").unwrap(), "512");
        assert_eq!(cg.read("pids", &path, "pids.max").unwrap(), "42");
    }
    // Forced delete kills, reaps, records and removes the cgroup.
    f.rt.delete(&id, true).unwrap();
    assert!(!cg.dir("memory", &path).unwrap().exists());
    assert!(!cg.dir("cpu", &path).unwrap().exists());
}

#[test]
fn allocation_over_the_memory_limit_is_oom_killed() {
    let f = Fixture::new();
    let mut config = f.config(&[
        "/bin/sh",
        "-c",
        "dd if=/dev/zero of=/dev/shm/fill bs=1M count=60; exit $?",
    ]);
    config.resources.memory_limit = Some(16 << 20);
    let (exit, out, err) = f.run(&config);
    assert!(
        exit.oom_killed,
        "not OOM-killed: {exit:?} out={out} err={err}"
    );
    assert_eq!(exit.reason, "OOMKilled");
    // dd was the victim; the shell reports its death by SIGKILL.
    assert_eq!(exit.exit_code, 137, "{exit:?} {err}");

    // The same container under the limit is not reported as OOM-killed.
    let mut config = f.config(&[
        "/bin/sh",
        "-c",
        "dd if=/dev/zero of=/dev/shm/fill bs=1M count=4",
    ]);
    config.resources.memory_limit = Some(16 << 20);
    let (exit, _, err) = f.run(&config);
    assert_eq!((exit.exit_code, exit.oom_killed), (0, false), "{err}");
}

#[test]
fn runtime_default_seccomp_blocks_unshare_and_unconfined_allows_it() {
    let f = Fixture::new();
    // Forking still works under the default profile (the clone rule admits plain forks).
    let (exit, out, err) = f.run(&f.config(&[
        "/bin/sh",
        "-c",
        "/bin/true && echo forked; unshare -U /bin/true; echo rc=$?",
    ]));
    assert_eq!(exit.exit_code, 0, "{err}");
    assert!(out.starts_with("forked\n"), "{out} {err}");
    assert!(
        out.contains("rc=1") || !out.contains("rc=0"),
        "unshare must fail: {out} {err}"
    );
    assert!(err.contains("Operation not permitted"), "{err}");

    let mut config = f.config(&["/bin/sh", "-c", "unshare -U /bin/true; echo rc=$?"]);
    config.security.seccomp = SeccompProfile::Unconfined;
    let (_, out, err) = f.run(&config);
    assert_eq!(out, "rc=0\n", "unconfined unshare must work: {err}");
}

#[test]
fn localhost_seccomp_profile_is_enforced() {
    let f = Fixture::new();
    let profile = f.tmp.path().join("no-mkdir.json");
    std::fs::write(
        &profile,
        r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["mkdir","mkdirat"],"action":"SCMP_ACT_ERRNO","errnoRet":1}]}"#,
    )
    .unwrap();
    let mut config = f.config(&["/bin/sh", "-c", "mkdir /tmp/d; echo rc=$?"]);
    config.security.seccomp = SeccompProfile::Localhost(profile);
    let (_, out, err) = f.run(&config);
    assert_eq!(out, "rc=1\n", "{err}");
}

fn cap_mask(names: &[&str]) -> u64 {
    names
        .iter()
        .map(|n| {
            let bit = CAPABILITY_NAMES.iter().position(|c| c == n).unwrap();
            1u64 << bit
        })
        .fold(0, |a, b| a | b)
}

#[test]
fn dropped_capability_is_really_gone() {
    let f = Fixture::new();
    let mut config = f.config(&["/bin/grep", "^Cap", "/proc/self/status"]);
    config.security.cap_drop = vec!["NET_RAW".into(), "CHOWN".into()];
    let (exit, out, err) = f.run(&config);
    assert_eq!(exit.exit_code, 0, "{err}");
    let eff = deckhand_sys::process::parse_cap_line(&out, "CapEff:").unwrap();
    let bnd = deckhand_sys::process::parse_cap_line(&out, "CapBnd:").unwrap();
    let expected: Vec<&str> = DEFAULT_CAPABILITIES
        .iter()
        .copied()
        .filter(|c| *c != "CAP_NET_RAW" && *c != "CAP_CHOWN")
        .collect();
    assert_eq!(eff, cap_mask(&expected), "{out}");
    assert_eq!(bnd, cap_mask(&expected), "{out}");
    assert_eq!(eff & cap_mask(&["CAP_NET_RAW"]), 0);

    // And the operation it guards fails: chown needs CAP_CHOWN.
    let mut config = f.config(&[
        "/bin/sh",
        "-c",
        "touch /tmp/f && chown 1000 /tmp/f; echo rc=$?",
    ]);
    config.security.cap_drop = vec!["CHOWN".into()];
    let (_, out, _) = f.run(&config);
    assert_eq!(out, "rc=1\n");
}

#[test]
fn joins_a_pinned_network_namespace() {
    let f = Fixture::new();
    let pins = PinGuard({
        // Spawns a thread: keep forks out meanwhile (see common::FORK_GUARD).
        let _g = common::no_fork();
        deckhand_sys::ns::pin_namespaces_with_hostname(
            &f.tmp.path().join("ns"),
            &[NsKind::Net, NsKind::Ipc, NsKind::Uts],
            Some("pod-a"),
        )
        .unwrap()
    });
    let mut config = f.config(&[
        "/bin/sh",
        "-c",
        "readlink /proc/self/ns/net; readlink /proc/self/ns/uts; hostname",
    ]);
    config.namespaces = Namespaces {
        net: NamespaceMode::Path(pins.0.path(NsKind::Net).unwrap().to_owned()),
        ipc: NamespaceMode::Path(pins.0.path(NsKind::Ipc).unwrap().to_owned()),
        uts: NamespaceMode::Path(pins.0.path(NsKind::Uts).unwrap().to_owned()),
        pid: NamespaceMode::New,
    };
    let (exit, out, err) = f.run(&config);
    assert_eq!(exit.exit_code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    let net = ns_identity(pins.0.path(NsKind::Net).unwrap(), NsKind::Net).unwrap();
    let uts = ns_identity(pins.0.path(NsKind::Uts).unwrap(), NsKind::Uts).unwrap();
    assert_eq!(lines, vec![net.as_str(), uts.as_str(), "pod-a"], "{err}");
    let host_net = std::fs::read_link("/proc/self/ns/net").unwrap();
    assert_ne!(host_net.to_string_lossy(), net);
}

struct PinGuard(deckhand_sys::ns::PinnedNamespaces);

impl Drop for PinGuard {
    fn drop(&mut self) {
        let _ = self.0.release();
    }
}

#[test]
fn read_only_rootfs_refuses_writes() {
    let f = Fixture::new();
    let mut config = f.config(&[
        "/bin/sh",
        "-c",
        "touch /tmp/x; echo root=$?; touch /dev/shm/x; echo shm=$?",
    ]);
    config.readonly_rootfs = true;
    let (_, out, err) = f.run(&config);
    assert_eq!(out, "root=1\nshm=0\n", "{err}");
    assert!(err.contains("Read-only file system"), "{err}");
    assert!(!f.rootfs.join("tmp/x").exists());
}

#[test]
fn runs_as_a_user_resolved_from_the_image() {
    let f = Fixture::new();
    let mut config = f.config(&[
        "/bin/sh",
        "-c",
        "id -u; id -g; id -G; touch /root/x; echo rc=$?",
    ]);
    config.user = resolve_user(&f.rootfs, "app", &[]).unwrap();
    let (exit, out, err) = f.run(&config);
    assert_eq!(exit.exit_code, 0, "{err}");
    assert_eq!(out, "1000\n1000\n1000 2000\nrc=1\n", "{err}");
}

#[test]
fn oom_score_adj_is_clamped_not_fatal() {
    let f = Fixture::new();
    let mut config = f.config(&["/bin/cat", "/proc/self/oom_score_adj"]);
    config.oom_score_adj = Some(-500);
    let expected = clamp_oom_score_adj(-500, f.rt.host());
    let (exit, out, err) = f.run(&config);
    assert_eq!(exit.exit_code, 0, "{err}");
    assert_eq!(out.trim(), expected.to_string());
    config.oom_score_adj = Some(500);
    let (_, out, _) = f.run(&config);
    assert_eq!(out.trim(), "500");
}

#[test]
fn failed_create_leaves_nothing_behind() {
    let f = Fixture::new();
    let id = f.id();
    let mut config = f.config(&["/bin/true"]);
    config.namespaces.net = NamespaceMode::Path(f.tmp.path().join("no-such-netns"));
    let err = f.create(&id, &config, Stdio::default()).unwrap_err();
    assert!(matches!(err, ContainerError::Runtime { .. }), "{err}");
    assert!(matches!(
        f.rt.state(&id),
        Err(ContainerError::NotFound { .. })
    ));
    let data = f.tmp.path().join("data");
    for dir in ["state", "bundles", "status"] {
        let left: Vec<_> = std::fs::read_dir(data.join(dir)).unwrap().collect();
        assert!(left.is_empty(), "{dir} not cleaned: {left:?}");
    }
    let path = format!("/{}/{id}", f.cgroup_parent);
    assert!(!f.rt.cgroups().dir("memory", &path).unwrap().exists());
    // Same id can be used again.
    f.create(&id, &f.config(&["/bin/true"]), Stdio::default())
        .unwrap();
    assert!(matches!(
        f.create(&id, &f.config(&["/bin/true"]), Stdio::default()),
        Err(ContainerError::AlreadyExists { .. })
    ));
    f.rt.delete(&id, true).unwrap();
}

#[test]
fn state_shows_stopped_before_wait_then_records_exit() {
    let f = Fixture::new();
    let id = f.id();
    f.create(
        &id,
        &f.config(&["/bin/sh", "-c", "exit 7"]),
        Stdio::default(),
    )
    .unwrap();
    f.rt.start(&id).unwrap();
    // The init exits on its own; until it is waited for, state reports it stopped, no exit.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let s = f.rt.state(&id).unwrap();
        if s.status == ContainerStatus::Stopped {
            assert!(s.exit.is_none());
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "container never stopped"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert_eq!(f.rt.wait(&id).unwrap().exit_code, 7);
    assert_eq!(f.rt.state(&id).unwrap().exit.unwrap().exit_code, 7);
    f.rt.delete(&id, false).unwrap();
}

#[test]
fn privileged_container_gets_the_runtimes_capabilities() {
    let f = Fixture::new();
    let mut config = f.config(&["/bin/grep", "^CapEff", "/proc/self/status"]);
    config.security.privileged = true;
    let (exit, out, err) = f.run(&config);
    assert_eq!(exit.exit_code, 0, "{err}");
    let eff = deckhand_sys::process::parse_cap_line(&out, "CapEff:").unwrap();
    assert_eq!(eff, f.rt.host().effective_caps, "{out}");
}

#[test]
fn read_only_bind_mount_is_visible_and_not_writable() {
    let f = Fixture::new();
    let src = f.tmp.path().join("config");
    std::fs::create_dir(&src).unwrap();
    std::fs::write(src.join("app.conf"), "level=debug\n").unwrap();
    let mut config = f.config(&[
        "/bin/sh",
        "-c",
        "cat /etc/app/app.conf; touch /etc/app/new; echo rc=$?",
    ]);
    config.mounts = vec![BindMount {
        source: src.clone(),
        destination: "/etc/app".into(),
        read_only: true,
        propagation: Propagation::Private,
    }];
    let (_, out, err) = f.run(&config);
    assert_eq!(out, "level=debug\nrc=1\n", "{err}");
    assert!(!src.join("new").exists());
}
