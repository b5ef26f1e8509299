//! Benchmark driver for `scripts/bench/oci-start.sh`: deckhand's container path
//! (create + start + wait + delete through `deckhand_runtime::container`) for one command, and
//! the OCI spec the same configuration produces, so `runc run` can be timed on an identical
//! bundle.
//!
//! ```text
//! oci-start spec --rootfs DIR --id ID --cgroup-parent P [--seccomp unconfined] [-- CMD...]
//! oci-start run  --rootfs DIR --data DIR --cgroup-parent P [--seccomp unconfined] [-n N] [-- CMD...]
//! ```

use std::path::PathBuf;
use std::time::Instant;

use deckhand_runtime::container::{Runtime, RuntimeConfig, Stdio};
use deckhand_runtime::seccomp::SeccompProfile;
use deckhand_runtime::spec::{ContainerConfig, HostFacts, Security};

struct Args {
    mode: String,
    rootfs: PathBuf,
    data: PathBuf,
    id: String,
    cgroup_parent: String,
    n: u32,
    cmd: Vec<String>,
    unconfined: bool,
}

fn parse() -> Result<Args, String> {
    let mut it = std::env::args().skip(1);
    let mode = it.next().ok_or("usage: oci-start spec|run ...")?;
    let mut a = Args {
        mode,
        rootfs: PathBuf::new(),
        data: PathBuf::from("/tmp/deckhand-oci-bench"),
        id: "deckhand-bench".into(),
        cgroup_parent: "deckhand-bench".into(),
        n: 1,
        cmd: vec!["/bin/true".into()],
        unconfined: false,
    };
    while let Some(flag) = it.next() {
        let mut val = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--rootfs" => a.rootfs = PathBuf::from(val()?),
            "--data" => a.data = PathBuf::from(val()?),
            "--id" => a.id = val()?,
            "--cgroup-parent" => a.cgroup_parent = val()?,
            "--seccomp" => a.unconfined = val()? == "unconfined",
            "-n" => a.n = val()?.parse().map_err(|e| format!("-n: {e}"))?,
            "--" => {
                a.cmd = it.by_ref().collect();
                break;
            }
            other => return Err(format!("unknown flag {other}")),
        }
    }
    if a.rootfs.as_os_str().is_empty() {
        return Err("--rootfs is required".into());
    }
    a.rootfs = std::fs::canonicalize(&a.rootfs).map_err(|e| format!("--rootfs: {e}"))?;
    Ok(a)
}

fn config(a: &Args) -> ContainerConfig {
    ContainerConfig {
        rootfs: a.rootfs.clone(),
        args: a.cmd.clone(),
        cgroup_parent: a.cgroup_parent.clone(),
        security: Security {
            seccomp: if a.unconfined {
                SeccompProfile::Unconfined
            } else {
                SeccompProfile::RuntimeDefault
            },
            ..Default::default()
        },
        ..Default::default()
    }
}

fn run_once(
    rt: &Runtime,
    id: &str,
    cfg: &ContainerConfig,
    phases: &mut [std::time::Duration; 4],
) -> Result<(), String> {
    let mut t = Instant::now();
    let mut lap = |i: usize, phases: &mut [std::time::Duration; 4]| {
        phases[i] += t.elapsed();
        t = Instant::now();
    };
    rt.create(id, cfg, Stdio::default())
        .map_err(|e| e.to_string())?;
    lap(0, phases);
    let started = rt.start(id).map_err(|e| e.to_string());
    lap(1, phases);
    let exit = started.and_then(|()| rt.wait(id).map_err(|e| e.to_string()));
    lap(2, phases);
    let deleted = rt.delete(id, true).map_err(|e| e.to_string());
    lap(3, phases);
    let exit = exit?;
    deleted?;
    if exit.exit_code != 0 {
        return Err(format!("{id} exited {exit:?}"));
    }
    Ok(())
}

fn main() {
    let a = match parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("oci-start: {e}");
            std::process::exit(2);
        }
    };
    match a.mode.as_str() {
        "spec" => {
            let spec = config(&a)
                .to_oci_spec(&a.id, &HostFacts::detect())
                .unwrap_or_else(|e| {
                    eprintln!("oci-start: {e}");
                    std::process::exit(1)
                });
            println!("{}", serde_json::to_string_pretty(&spec).unwrap());
        }
        "run" => {
            let rt = Runtime::new(RuntimeConfig::new(&a.data)).unwrap_or_else(|e| {
                eprintln!("oci-start: {e}");
                std::process::exit(1)
            });
            let cfg = config(&a);
            // Per-phase totals: create, start, wait, delete.
            let mut phases = [std::time::Duration::ZERO; 4];
            let t0 = Instant::now();
            for i in 0..a.n {
                let id = format!("{}-{}-{i}", a.id, std::process::id());
                if let Err(e) = run_once(&rt, &id, &cfg, &mut phases) {
                    eprintln!("oci-start: {e}");
                    std::process::exit(1);
                }
            }
            if a.n > 1 {
                let ms = |d: std::time::Duration| d.as_secs_f64() * 1e3 / a.n as f64;
                eprintln!(
                    "{} runs, {:.2} ms per create+start+wait+delete (create {:.2}, start {:.2}, wait {:.2}, delete {:.2})",
                    a.n,
                    ms(t0.elapsed()),
                    ms(phases[0]),
                    ms(phases[1]),
                    ms(phases[2]),
                    ms(phases[3])
                );
            }
        }
        other => {
            eprintln!("oci-start: unknown mode {other} (spec|run)");
            std::process::exit(2);
        }
    }
}
