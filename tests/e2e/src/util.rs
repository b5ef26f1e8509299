//! Process and privilege helpers shared by the harness: child processes killed on drop,
//! commands whose failure carries their output, the root check and a private mount namespace.

use std::ffi::OsStr;
use std::io::Read;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// Kills (SIGKILL) and reaps the child when dropped, so a failing test leaves no process behind.
pub struct ChildGuard(pub Child);

impl ChildGuard {
    pub fn new(child: Child) -> Self {
        ChildGuard(child)
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs a command to completion; an error (with the command line, stdout and stderr) if it
/// could not start or exited non-zero.
pub fn run_checked(cmd: &mut Command) -> Result<Output> {
    let line = command_line(cmd);
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("spawn {line}"))?;
    if !out.status.success() {
        bail!(
            "{line} failed ({}):\nstdout:\n{}\nstderr:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(out)
}

pub fn command_line(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&shell_quote(a));
    }
    s
}

fn shell_quote(a: &OsStr) -> String {
    let s = a.to_string_lossy();
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=@,+%".contains(c))
    {
        s.into_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// Output of a finished command, with what ran, for assertion messages.
#[derive(Debug)]
pub struct Run {
    pub cmdline: String,
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

impl Run {
    pub fn success(&self) -> bool {
        self.status.success()
    }
}

impl std::fmt::Display for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "$ {}\n  exit: {} after {:?}\n  stdout:\n{}\n  stderr:\n{}",
            self.cmdline,
            self.status,
            self.elapsed,
            indent(&self.stdout),
            indent(&self.stderr)
        )
    }
}

fn indent(s: &str) -> String {
    s.lines()
        .map(|l| format!("    {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Runs a command with a time limit (killed when exceeded), capturing stdout and stderr.
pub fn run_with_timeout(cmd: &mut Command, limit: Duration) -> Run {
    let cmdline = command_line(cmd);
    let start = Instant::now();
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {cmdline}: {e}"));
    let mut child = ChildGuard::new(child);
    let mut out = child.0.stdout.take().expect("stdout");
    let mut err = child.0.stderr.take().expect("stderr");
    let t_out = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out.read_to_end(&mut v);
        v
    });
    let t_err = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err.read_to_end(&mut v);
        v
    });
    let status = loop {
        if let Some(st) = child.0.try_wait().expect("wait") {
            break st;
        }
        if start.elapsed() > limit {
            let _ = child.0.kill();
            let st = child.0.wait().expect("wait");
            let stdout = String::from_utf8_lossy(&t_out.join().unwrap_or_default()).into_owned();
            let stderr = String::from_utf8_lossy(&t_err.join().unwrap_or_default()).into_owned();
            panic!(
                "{cmdline} did not finish within {limit:?} and was killed ({st})\nstdout:\n{stdout}\nstderr:\n{stderr}"
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Run {
        cmdline,
        status,
        stdout: String::from_utf8_lossy(&t_out.join().unwrap_or_default()).into_owned(),
        stderr: String::from_utf8_lossy(&t_err.join().unwrap_or_default()).into_owned(),
        elapsed: start.elapsed(),
    }
}

/// Every e2e test starts here: they create device nodes, chown files, mount overlays and run
/// real daemons, so they need root. Not root is a loud failure, never a skip.
pub fn require_root() {
    if !nix::unistd::geteuid().is_root() {
        panic!(
            "deckhand e2e tests must run as root (they mount overlays, create device nodes and \
             chown files); run `make test` as root"
        );
    }
}

/// Moves the calling thread into a new mount namespace with private propagation, so the
/// overlay mounts a test makes never reach the host and vanish when the test process exits.
/// Processes spawned from this thread afterwards inherit the namespace.
pub fn private_mount_namespace() {
    use nix::mount::{mount, MsFlags};
    use nix::sched::{unshare, CloneFlags};
    unshare(CloneFlags::CLONE_NEWNS).expect("unshare(CLONE_NEWNS)");
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .expect("make / rprivate in the test's mount namespace");
}

/// Polls `f` until it returns Some or the deadline passes.
pub fn wait_for<T>(limit: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Moves the calling thread into a new network namespace with only `lo` (brought up), so the
/// bridges, veths and routes a CRI runtime's CNI plugins create never reach the host. Processes
/// spawned from this thread afterwards (the registry, containerd, `deckhand runtime`) inherit
/// it; the namespace disappears with the last of them.
pub fn private_network_namespace() {
    use nix::sched::{unshare, CloneFlags};
    unshare(CloneFlags::CLONE_NEWNET).expect("unshare(CLONE_NEWNET)");
    run_checked(Command::new("ip").args(["link", "set", "lo", "up"]))
        .expect("bring up lo in the test's network namespace");
}

/// Mounts a fresh tmpfs on `path` (created if missing) in the calling thread's mount namespace,
/// which must be private ([`private_mount_namespace`]): hides host directories that a runtime
/// hardcodes (containerd's shim sockets in `/run/containerd/s`, libcni's cache in
/// `/var/lib/cni`) behind a per-test copy.
pub fn tmpfs_over(path: &std::path::Path) -> Result<()> {
    use nix::mount::{mount, MsFlags};
    std::fs::create_dir_all(path).with_context(|| format!("create {}", path.display()))?;
    mount(
        Some("tmpfs"),
        path,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some("mode=0755"),
    )
    .with_context(|| format!("mount tmpfs on {}", path.display()))?;
    Ok(())
}

/// Unmounts (lazily) every mount at or below `root` in the calling thread's mount namespace,
/// deepest first: a runtime killed mid-test leaves rootfs overlays and namespace pins there,
/// and removing the directory through them would delete files inside the mounts.
pub fn unmount_under(root: &std::path::Path) {
    let Ok(info) = std::fs::read_to_string("/proc/thread-self/mountinfo") else {
        return;
    };
    let mut points: Vec<std::path::PathBuf> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|p| std::path::PathBuf::from(unescape_mountinfo(p)))
        .filter(|p| p.starts_with(root))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    for p in points {
        let _ = nix::mount::umount2(&p, nix::mount::MntFlags::MNT_DETACH);
    }
}

/// mountinfo escapes space, tab, newline and backslash as octal (`\040`).
fn unescape_mountinfo(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1..i + 4].iter().all(u8::is_ascii_digit) {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Pids of processes whose command line contains `needle` (for example a temp dir path that a
/// runtime passes to its shims), excluding the caller.
pub fn pids_with_cmdline(needle: &str) -> Vec<i32> {
    let me = std::process::id() as i32;
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in rd.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        if pid == me {
            continue;
        }
        if let Ok(c) = std::fs::read(format!("/proc/{pid}/cmdline")) {
            let c = String::from_utf8_lossy(&c).replace('\0', " ");
            if c.contains(needle) {
                out.push(pid);
            }
        }
    }
    out
}
