//! Live resource updates and usage stats of real containers, as root.

mod common;

use std::io::BufRead;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{no_fork, pipe, Fixture};
use deckhand_runtime::container::{ContainerError, Stdio};
use deckhand_runtime::spec::Resources;

const MIB: i64 = 1 << 20;

/// Lines the container writes to `fd`, delivered through a channel by a reader thread.
fn lines(fd: std::os::fd::OwnedFd) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    // The first thread::spawn takes locks a concurrent fork could copy (see FORK_GUARD).
    let _g = no_fork();
    std::thread::spawn(move || {
        for l in std::io::BufReader::new(std::fs::File::from(fd))
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(l).is_err() {
                return;
            }
        }
    });
    rx
}

/// Wait until the container prints `want` (it prints its limit over and over).
fn expect_line(rx: &mpsc::Receiver<String>, want: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut last = String::new();
    while Instant::now() < deadline {
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(l) if l.trim() == want => return,
            Ok(l) => last = l,
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(e) => panic!("container output ended ({e}); last line {last:?}"),
        }
    }
    panic!("container never saw {want:?}; last line {last:?}");
}

#[test]
fn memory_limit_is_raised_and_lowered_live() {
    let f = Fixture::new();
    let id = f.id();
    // The container prints the limit it sees through its own cgroup mount (v1 or v2 layout).
    let script = "f=/sys/fs/cgroup/memory/memory.limit_in_bytes; \
                  [ -e $f ] || f=/sys/fs/cgroup/memory.max; \
                  while :; do cat $f; sleep 0.05; done";
    let mut config = f.config(&["/bin/sh", "-c", script]);
    config.resources = Resources {
        memory_limit: Some(64 * MIB),
        ..Default::default()
    };
    let (out_r, out_w) = pipe();
    let state = f
        .create(
            &id,
            &config,
            Stdio {
                stdout: Some(out_w),
                ..Default::default()
            },
        )
        .unwrap();
    let rx = lines(out_r);
    f.rt.start(&id).unwrap();
    expect_line(&rx, &(64 * MIB).to_string());

    let cg = f.rt.cgroups();
    let limit_file = if cg.mode().is_v2() {
        "memory.max"
    } else {
        "memory.limit_in_bytes"
    };
    let host_limit = || cg.read("memory", &state.cgroup_path, limit_file).unwrap();
    for limit in [256 * MIB, 32 * MIB] {
        f.rt.update_resources(
            &id,
            &Resources {
                memory_limit: Some(limit),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(host_limit(), limit.to_string());
        expect_line(&rx, &limit.to_string());
    }
    // CPU and pids limits in the same call; untouched fields stay as they are.
    f.rt.update_resources(
        &id,
        &Resources {
            cpu_quota: Some(20_000),
            cpu_period: Some(100_000),
            cpu_shares: Some(512),
            pids_limit: Some(50),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(host_limit(), (32 * MIB).to_string());
    let stats = f.rt.stats(&id).unwrap();
    assert_eq!(stats.memory.limit, Some(32 << 20));
    assert_eq!(stats.pids.limit, Some(50));
    if cg.mode().is_v2() {
        assert_eq!(
            cg.read("cpu", &state.cgroup_path, "cpu.max").unwrap(),
            "20000 100000"
        );
    } else {
        assert_eq!(
            cg.read("cpu", &state.cgroup_path, "cpu.cfs_quota_us")
                .unwrap(),
            "20000"
        );
        assert_eq!(
            cg.read("cpu", &state.cgroup_path, "cpu.shares").unwrap(),
            "512"
        );
    }

    f.rt.delete(&id, true).unwrap();
    assert!(matches!(
        f.rt.update_resources(&id, &Resources::default()),
        Err(ContainerError::NotFound { .. })
    ));
}

#[test]
fn busy_container_shows_cpu_usage_growing() {
    let f = Fixture::new();
    let id = f.id();
    f.create(
        &id,
        &f.config(&["/bin/sh", "-c", "while :; do :; done"]),
        Stdio::default(),
    )
    .unwrap();
    f.rt.start(&id).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let a = f.rt.stats(&id).unwrap();
    std::thread::sleep(Duration::from_millis(400));
    let b = f.rt.stats(&id).unwrap();
    assert!(b.timestamp > a.timestamp);
    let used = b.cpu.usage_ns - a.cpu.usage_ns;
    // A spinning shell gets most of a core even on a loaded 2-core host.
    assert!(
        used > 50_000_000,
        "only {used} ns of CPU in 400 ms: {a:?} -> {b:?}"
    );
    assert!(b.cpu.user_ns + b.cpu.system_ns > 0);
    assert!(b.memory.usage > 0 && b.memory.working_set > 0);
    assert!(b.memory.working_set <= b.memory.usage);
    assert!(b.memory.rss > 0 && b.memory.page_faults > 0);
    assert!(b.pids.current >= 1);
    assert_eq!(b.writable_layer, None);

    // A stopped container cannot be updated, but its final counters stay readable until delete.
    f.rt.kill(&id, nix::sys::signal::Signal::SIGKILL, false)
        .unwrap();
    f.rt.wait(&id).unwrap();
    assert!(matches!(
        f.rt.update_resources(
            &id,
            &Resources {
                pids_limit: Some(5),
                ..Default::default()
            }
        ),
        Err(ContainerError::InvalidState { .. })
    ));
    assert!(f.rt.stats(&id).unwrap().cpu.usage_ns >= b.cpu.usage_ns);
    f.rt.delete(&id, false).unwrap();
    assert!(matches!(
        f.rt.stats(&id),
        Err(ContainerError::NotFound { .. })
    ));
}

/// The precompiled seccomp path hands libcontainer a config.json without the profile and with
/// CAP_SYS_ADMIN kept for loading; once the container exists, the bundle must describe the
/// container as it really is, for whatever reads it later (exec).
#[test]
fn bundle_config_keeps_the_real_profile_and_capabilities() {
    let f = Fixture::new();
    let id = f.id();
    f.create(&id, &f.config(&["/bin/true"]), Stdio::default())
        .unwrap();
    let path = f
        .tmp
        .path()
        .join("data/bundles")
        .join(&id)
        .join("config.json");
    let spec: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    assert!(
        spec["linux"]["seccomp"]["syscalls"].is_array(),
        "no seccomp profile in {path:?}"
    );
    let caps = &spec["process"]["capabilities"];
    for set in ["bounding", "effective", "permitted"] {
        let set = caps[set].as_array().unwrap();
        assert!(!set.iter().any(|c| c == "CAP_SYS_ADMIN"), "{caps}");
    }
    // The precompiled path was taken: its program is cached beside the runtime's state.
    let cached = std::fs::read_dir(f.tmp.path().join("data/seccomp"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(cached, 1, "no compiled seccomp program was cached");
    f.rt.delete(&id, true).unwrap();
}
