//! The shim process: one per pod, single-threaded, event-driven (`poll`).
//!
//! It is a child subreaper: each container init (and each exec'd process) is created by a
//! short-lived helper (`deckhand oci`, see [`crate::ops`]) and then reparented here, so the
//! shim is the process that reaps them and learns how they ended. It holds the read ends of the
//! containers' stdout/stderr pipes and writes them to the CRI log files, forwards them to
//! attached clients, and records every exit in the container's status file before telling
//! anyone. It never depends on the runtime process: when the runtime stops or crashes, the
//! shim and its containers keep running and the runtime reconnects to the socket later.
//!
//! Single-threaded on purpose: one poll loop needs no locks, and a helper's run blocks the loop
//! as briefly as the operation itself (the answer is what the client waits for anyway).

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{self, BufRead, Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::Utc;
use deckhand_sys::cgroup::Cgroups;
use nix::poll::{PollFd, PollFlags, PollTimeout};

use crate::log;
use crate::logs::{LogWriter, Stream};
use crate::ops::{self, Helper};
use crate::protocol::{self, ErrorKind, FrameKind, Request, Response};
use crate::state::{self, ContainerState, ContainerStatus, ExitRecord};

/// How a shim is started (the flags of `deckhand shim`).
#[derive(Debug, Clone)]
pub struct ShimConfig {
    pub sandbox_id: String,
    /// The control socket to listen on.
    pub socket: PathBuf,
    /// The containers' status records (shared by every shim of the runtime).
    pub status_dir: PathBuf,
    /// cgroupfs mount point (for the OOM-kill counters).
    pub cgroup_root: PathBuf,
    /// How to run the container operations that need libcontainer.
    pub helper: Helper,
}

#[derive(Debug, thiserror::Error)]
pub enum ShimError {
    #[error("shim for sandbox {sandbox}: {what}: {source}")]
    Io {
        sandbox: String,
        what: String,
        #[source]
        source: io::Error,
    },
    #[error("shim for sandbox {sandbox}: cgroups: {message}")]
    Cgroups { sandbox: String, message: String },
    #[error("shim for sandbox {sandbox} did not start: {message}")]
    Start { sandbox: String, message: String },
}

/// Start the shim as a daemon and return its pid once its socket accepts connections. The
/// daemon is a forked child in its own session; the caller (the `deckhand shim` process the
/// runtime spawned) exits right after, so the shim is reparented away from the runtime and
/// survives it.
///
/// Must be called while the process is single-threaded (it forks).
pub fn start_daemon(config: ShimConfig) -> Result<i32, ShimError> {
    let sandbox = config.sandbox_id.clone();
    let (rx, tx) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| ShimError::Io {
        sandbox: sandbox.clone(),
        what: "pipe".into(),
        source: e.into(),
    })?;
    let child = deckhand_sys::process::fork_child(move || {
        let mut ready = File::from(tx);
        // The caller reads our pid from its stdout until EOF: the daemon must not keep it open.
        if let Err(e) = deckhand_sys::process::stdout_to_null() {
            let _ = write!(ready, "err {e}");
            return 1;
        }
        if let Err(e) = deckhand_sys::process::new_session() {
            let _ = write!(ready, "err {e}");
            return 1;
        }
        let mut shim = match Shim::bind(config) {
            Ok(s) => s,
            Err(e) => {
                let _ = write!(ready, "err {e}");
                return 1;
            }
        };
        let _ = write!(ready, "ok {}", std::process::id());
        drop(ready);
        match shim.run() {
            Ok(()) => 0,
            Err(e) => {
                log!("ERROR", "shim failed: {e}");
                1
            }
        }
    })
    .map_err(|e| ShimError::Start {
        sandbox: sandbox.clone(),
        message: e.to_string(),
    })?;
    let mut reply = String::new();
    let _ = File::from(rx).read_to_string(&mut reply);
    match reply.split_once(' ') {
        Some(("ok", pid)) => pid.parse().map_err(|_| ShimError::Start {
            sandbox,
            message: format!("bad readiness message {reply:?}"),
        }),
        Some(("err", message)) => Err(ShimError::Start {
            sandbox,
            message: message.to_owned(),
        }),
        _ => {
            let exit = deckhand_sys::process::wait_exit(child);
            Err(ShimError::Start {
                sandbox,
                message: format!("daemon ended ({exit:?}) before it was ready"),
            })
        }
    }
}

/// Ends of a container's or exec's stdout and stderr pipes, by [`Stream`].
type Outputs = [Option<File>; 2];

struct Container {
    pid: i32,
    log: Option<LogWriter>,
    out: Outputs,
    stdin: Option<File>,
    /// The terminal's master, when the container has one (for resizes).
    pty: Option<OwnedFd>,
    stdin_once: bool,
    waiters: Vec<usize>,
    attached: Vec<usize>,
    exit: Option<ExitRecord>,
}

/// A create request's parameters.
struct CreateRequest<'a> {
    spec: &'a serde_json::Value,
    log_path: Option<&'a Path>,
    stdin: bool,
    stdin_once: bool,
    tty: bool,
}

/// An exec request's parameters.
struct ExecRequest<'a> {
    args: &'a [String],
    env: &'a [String],
    stdin: bool,
    tty: bool,
}

/// The shim's ends of a new process's stdio.
struct ProcessIo {
    out: Outputs,
    stdin: Option<File>,
    pty: Option<OwnedFd>,
}

/// Removes a file when dropped.
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Accept one connection, giving up after `timeout`.
fn accept_with_timeout(listener: &UnixListener, timeout: Duration) -> io::Result<UnixStream> {
    listener.set_nonblocking(true)?;
    let deadline = std::time::Instant::now() + timeout;
    loop {
        match listener.accept() {
            Ok((conn, _)) => {
                conn.set_nonblocking(false)?;
                return Ok(conn);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if std::time::Instant::now() >= deadline {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "the container did not connect to its console socket",
                    ));
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => return Err(e),
        }
    }
}

struct ExecProcess {
    /// The client's connection; `None` once it closed (its slot may then serve a new client,
    /// which must never receive this process's frames).
    conn: Option<usize>,
    out: Outputs,
    stdin: Option<File>,
    /// The terminal's master, when the process has one (for resizes).
    pty: Option<OwnedFd>,
    /// Set when the process was reaped; the exit frame goes out once its output is drained.
    status: Option<i32>,
}

enum Mode {
    Control,
    Attach { id: String, stdin: bool },
    Exec { pid: i32 },
}

struct Conn {
    stream: UnixStream,
    buf: Vec<u8>,
    mode: Mode,
    closed: bool,
}

#[derive(Clone)]
enum Source {
    Listener,
    Signal,
    Conn(usize),
    Container(String, Stream),
    Exec(i32, Stream),
}

struct Shim {
    sandbox: String,
    socket: PathBuf,
    status_dir: PathBuf,
    cgroups: Cgroups,
    helper: Helper,
    listener: UnixListener,
    sigfd: nix::sys::signalfd::SignalFd,
    conns: Vec<Option<Conn>>,
    containers: BTreeMap<String, Container>,
    execs: HashMap<i32, ExecProcess>,
    /// PID 1 of the pod's shared PID namespace, when the pod has one.
    pod_init: Option<i32>,
    shutdown: bool,
}

impl Shim {
    fn bind(config: ShimConfig) -> Result<Shim, ShimError> {
        let sandbox = config.sandbox_id.clone();
        let io = |what: &str| {
            let sandbox = sandbox.clone();
            let what = what.to_owned();
            move |source| ShimError::Io {
                sandbox,
                what,
                source,
            }
        };
        let cgroups = Cgroups::open(&config.cgroup_root).map_err(|e| ShimError::Cgroups {
            sandbox: sandbox.clone(),
            message: e.to_string(),
        })?;
        deckhand_sys::process::set_child_subreaper()
            .map_err(|e| io("become child subreaper")(io::Error::other(e.to_string())))?;
        let sigfd = deckhand_sys::process::sigchld_fd()
            .map_err(|e| io("signalfd")(io::Error::other(e.to_string())))?;
        if let Some(dir) = config.socket.parent() {
            std::fs::create_dir_all(dir).map_err(io("create socket dir"))?;
        }
        if UnixStream::connect(&config.socket).is_ok() {
            return Err(io("bind")(io::Error::new(
                io::ErrorKind::AddrInUse,
                format!("{} is served by another shim", config.socket.display()),
            )));
        }
        let _ = std::fs::remove_file(&config.socket);
        let listener = UnixListener::bind(&config.socket).map_err(io("bind"))?;
        listener.set_nonblocking(true).map_err(io("bind"))?;
        log!(
            "INFO",
            "shim for sandbox {sandbox} ready on {}",
            config.socket.display()
        );
        Ok(Shim {
            sandbox,
            socket: config.socket,
            status_dir: config.status_dir,
            cgroups,
            helper: config.helper,
            listener,
            sigfd,
            conns: Vec::new(),
            containers: BTreeMap::new(),
            execs: HashMap::new(),
            pod_init: None,
            shutdown: false,
        })
    }

    fn run(&mut self) -> Result<(), ShimError> {
        while !self.shutdown {
            let ready = self.poll_once().map_err(|source| ShimError::Io {
                sandbox: self.sandbox.clone(),
                what: "poll".into(),
                source,
            })?;
            for src in ready {
                match src {
                    Source::Listener => self.accept(),
                    Source::Signal => self.reap(),
                    Source::Conn(t) => self.conn_readable(t),
                    Source::Container(id, s) => self.container_output(&id, s),
                    Source::Exec(pid, s) => self.exec_output(pid, s),
                }
            }
            self.free_closed_conns();
        }
        let _ = std::fs::remove_file(&self.socket);
        log!("INFO", "shim for sandbox {} exiting", self.sandbox);
        Ok(())
    }

    /// Wait for any source to be ready and return the ready ones.
    fn poll_once(&mut self) -> io::Result<Vec<Source>> {
        let mut sources = vec![Source::Listener, Source::Signal];
        let mut fds = vec![
            PollFd::new(self.listener.as_fd(), PollFlags::POLLIN),
            PollFd::new(self.sigfd.as_fd(), PollFlags::POLLIN),
        ];
        for (t, c) in self.conns.iter().enumerate() {
            if let Some(c) = c {
                sources.push(Source::Conn(t));
                fds.push(PollFd::new(c.stream.as_fd(), PollFlags::POLLIN));
            }
        }
        for (id, c) in &self.containers {
            for (i, f) in c.out.iter().enumerate() {
                if let Some(f) = f {
                    sources.push(Source::Container(id.clone(), stream_of(i)));
                    fds.push(PollFd::new(f.as_fd(), PollFlags::POLLIN));
                }
            }
        }
        for (pid, e) in &self.execs {
            for (i, f) in e.out.iter().enumerate() {
                if let Some(f) = f {
                    sources.push(Source::Exec(*pid, stream_of(i)));
                    fds.push(PollFd::new(f.as_fd(), PollFlags::POLLIN));
                }
            }
        }
        loop {
            match nix::poll::poll(&mut fds, PollTimeout::NONE) {
                Ok(_) => break,
                Err(nix::Error::EINTR) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Ok(fds
            .iter()
            .zip(sources)
            .filter(|(fd, _)| fd.revents().is_some_and(|r| !r.is_empty()))
            .map(|(_, s)| s)
            .collect())
    }

    fn accept(&mut self) {
        loop {
            match self.listener.accept() {
                Ok((stream, _)) => {
                    // Blocking IO on connections: a read happens only when poll said readable;
                    // a write to a client that stopped reading gives up after the timeout
                    // instead of stalling every pod container.
                    let _ = stream.set_nonblocking(false);
                    let _ = stream.set_write_timeout(Some(Duration::from_secs(5)));
                    let conn = Conn {
                        stream,
                        buf: Vec::new(),
                        mode: Mode::Control,
                        closed: false,
                    };
                    match self.conns.iter().position(Option::is_none) {
                        Some(t) => self.conns[t] = Some(conn),
                        None => self.conns.push(Some(conn)),
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) => {
                    log!("WARN", "accept: {e}");
                    return;
                }
            }
        }
    }

    fn conn_readable(&mut self, t: usize) {
        let Some(conn) = self.conns[t].as_mut() else {
            return;
        };
        let mut chunk = [0u8; 16 * 1024];
        let n = match conn.stream.read(&mut chunk) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return,
            Err(_) => 0,
        };
        if n == 0 {
            self.close_conn(t);
            return;
        }
        conn.buf.extend_from_slice(&chunk[..n]);
        match conn.mode {
            Mode::Control => self.handle_requests(t),
            Mode::Attach { .. } | Mode::Exec { .. } => self.handle_frames(t),
        }
    }

    fn handle_requests(&mut self, t: usize) {
        loop {
            let Some(conn) = self.conns[t].as_mut() else {
                return;
            };
            if !matches!(conn.mode, Mode::Control) {
                // Bytes after an exec/attach request are already frames.
                return self.handle_frames(t);
            }
            let Some(nl) = conn.buf.iter().position(|&b| b == b'\n') else {
                return;
            };
            let line: Vec<u8> = conn.buf.drain(..=nl).collect();
            let response = match serde_json::from_slice::<Request>(line.trim_ascii()) {
                Ok(req) => self.handle(t, req),
                Err(e) => Some(Response::Error {
                    kind: ErrorKind::InvalidArgument,
                    message: format!("bad shim request: {e}"),
                }),
            };
            if let Some(r) = response {
                self.respond(t, &r);
            }
        }
    }

    fn respond(&mut self, t: usize, r: &Response) {
        let Some(conn) = self.conns[t].as_mut() else {
            return;
        };
        let mut line = serde_json::to_vec(r).unwrap_or_default();
        line.push(b'\n');
        if conn.stream.write_all(&line).is_err() {
            conn.closed = true;
        }
    }

    /// Handle one request; `None` when the answer comes later (wait).
    fn handle(&mut self, t: usize, req: Request) -> Option<Response> {
        Some(match req {
            Request::Ping => Response::Pong {
                pid: std::process::id() as i32,
            },
            Request::Create {
                id,
                spec,
                log_path,
                stdin,
                stdin_once,
                tty,
            } => self.create(
                &id,
                CreateRequest {
                    spec: &spec,
                    log_path: log_path.as_deref(),
                    stdin,
                    stdin_once,
                    tty,
                },
            ),
            Request::Kill { id, signal, all } => self.kill(&id, signal, all),
            Request::Wait { id } => {
                if let Some(c) = self.containers.get_mut(&id) {
                    match &c.exit {
                        Some(exit) => Response::Exited { exit: exit.clone() },
                        None => {
                            c.waiters.push(t);
                            return None;
                        }
                    }
                } else {
                    match self.state(&id) {
                        Ok(ContainerState {
                            exit: Some(exit), ..
                        }) => Response::Exited { exit },
                        Ok(_) => error(
                            ErrorKind::FailedPrecondition,
                            format!("container {id}: wait: not supervised by this shim"),
                        ),
                        Err(r) => r,
                    }
                }
            }
            Request::Delete { id, force } => self.delete(&id, force),
            Request::ReopenLog { id } => match self.containers.get_mut(&id) {
                Some(c) => match c.log.as_mut().map(LogWriter::reopen) {
                    Some(Err(e)) => error(
                        ErrorKind::Internal,
                        format!("container {id}: reopen log: {e}"),
                    ),
                    _ => Response::Ok,
                },
                None => not_found(&id),
            },
            Request::State { ids } => {
                let ids: Vec<String> = if ids.is_empty() {
                    self.containers.keys().cloned().collect()
                } else {
                    ids
                };
                match ids
                    .iter()
                    .map(|id| self.state(id))
                    .collect::<Result<Vec<_>, _>>()
                {
                    Ok(states) => Response::States { states },
                    Err(r) => r,
                }
            }
            Request::Exec {
                id,
                args,
                env,
                stdin,
                tty,
            } => self.exec(
                t,
                &id,
                ExecRequest {
                    args: &args,
                    env: &env,
                    stdin,
                    tty,
                },
            ),
            Request::Attach { id, stdin } => self.attach(t, &id, stdin),
            Request::PodInit => match self.pod_init {
                Some(pid) => Response::Created { pid },
                None => match deckhand_sys::process::spawn_pid_namespace_init() {
                    Ok(pid) => {
                        self.pod_init = Some(pid);
                        Response::Created { pid }
                    }
                    Err(e) => error(ErrorKind::Internal, format!("pod PID namespace: {e}")),
                },
            },
            Request::Shutdown => {
                if let Some(pid) = self.pod_init.take() {
                    let _ = deckhand_sys::process::signal_pid(pid, libc::SIGKILL);
                }
                self.shutdown = true;
                Response::Ok
            }
        })
    }

    /// Container `id`'s status record, or the error answer.
    fn state(&self, id: &str) -> Result<ContainerState, Response> {
        match state::current_state(&self.status_dir, id) {
            Ok(Some(s)) => Ok(s),
            Ok(None) => Err(not_found(id)),
            Err(e) => Err(error(
                ErrorKind::Internal,
                format!("container {id}: read status: {e}"),
            )),
        }
    }

    fn create(&mut self, id: &str, req: CreateRequest<'_>) -> Response {
        let log = match req.log_path.map(LogWriter::open).transpose() {
            Ok(l) => l,
            Err(e) => {
                return error(
                    ErrorKind::Internal,
                    format!(
                        "container {id}: open log {}: {e}",
                        req.log_path.unwrap_or(Path::new("")).display()
                    ),
                )
            }
        };
        let spec = match serde_json::to_vec(req.spec) {
            Ok(s) => s,
            Err(e) => return error(ErrorKind::InvalidArgument, format!("container {id}: {e}")),
        };
        let created = if req.tty {
            self.spawn_with_terminal("create", id, &spec, req.stdin)
        } else {
            self.spawn_with_pipes("create", id, &spec, req.stdin)
        };
        let (pid, io) = match created {
            Ok(x) => x,
            Err(r) => return r,
        };
        self.containers.insert(
            id.to_owned(),
            Container {
                pid,
                log,
                out: io.out,
                stdin: io.stdin,
                pty: io.pty,
                stdin_once: req.stdin_once,
                waiters: Vec::new(),
                attached: Vec::new(),
                exit: None,
            },
        );
        Response::Created { pid }
    }

    /// Run helper operation `op` (create, exec) for a process with pipes for stdout and stderr
    /// (and stdin when wanted).
    fn spawn_with_pipes(
        &mut self,
        op: &str,
        id: &str,
        input: &[u8],
        want_stdin: bool,
    ) -> Result<(i32, ProcessIo), Response> {
        let pipes = (|| -> io::Result<_> {
            let out = pipe()?;
            let err = pipe()?;
            let stdin = if want_stdin { Some(pipe()?) } else { None };
            Ok((out, err, stdin))
        })();
        let ((out_r, out_w), (err_r, err_w), stdin) =
            pipes.map_err(|e| error(ErrorKind::Internal, format!("container {id}: pipes: {e}")))?;
        let mut fds = vec![
            (out_w.as_fd(), ops::STDOUT_FD),
            (err_w.as_fd(), ops::STDERR_FD),
        ];
        if let Some((r, _)) = &stdin {
            fds.push((r.as_fd(), ops::STDIN_FD));
        }
        let answer = self.helper.run(op, id, &[], Some(input), &fds);
        // Our copies of the process's ends: the process holds its own now.
        drop(fds);
        drop((out_w, err_w));
        let (in_r, in_w) = stdin.map_or((None, None), |(r, w)| (Some(r), Some(w)));
        drop(in_r);
        let out_r = nonblocking(out_r);
        let err_r = nonblocking(err_r);
        match answer {
            Response::Created { pid } => Ok((
                pid,
                ProcessIo {
                    out: [Some(out_r), Some(err_r)],
                    stdin: in_w.map(File::from),
                    pty: None,
                },
            )),
            Response::Error { kind, message } => {
                // libcontainer's init reports the cause of a failed setup on the container's
                // stderr (the top-level error says only "failed to prepare rootfs").
                let mut detail = [0u8; 4096];
                let n = (&err_r).read(&mut detail).unwrap_or(0);
                let detail = String::from_utf8_lossy(&detail[..n]);
                let detail = detail.trim();
                let message = if detail.is_empty() {
                    message
                } else {
                    format!("{message}; init said: {detail}")
                };
                Err(Response::Error { kind, message })
            }
            other => Err(error(
                ErrorKind::Internal,
                format!("container {id}: {op}: unexpected answer {other:?}"),
            )),
        }
    }

    /// Run helper operation `op` (create, exec) for a process with a terminal: the process
    /// opens a pseudo-terminal and sends its master to a console socket the shim listens on;
    /// the master carries all of the process's output (logged as stdout) and its stdin.
    fn spawn_with_terminal(
        &mut self,
        op: &str,
        id: &str,
        input: &[u8],
        want_stdin: bool,
    ) -> Result<(i32, ProcessIo), Response> {
        let internal = |what: &str, e: io::Error| {
            error(ErrorKind::Internal, format!("container {id}: {what}: {e}"))
        };
        let path = self
            .socket
            .with_extension(format!("{}.tty", id.get(..12).unwrap_or(id)));
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path).map_err(|e| internal("console socket", e))?;
        // Removed whatever happens next: it only ever serves this one create.
        let _cleanup = RemoveOnDrop(path.clone());
        let path_arg = path.to_string_lossy().into_owned();
        let answer = self
            .helper
            .run(op, id, &["--console-socket", &path_arg], Some(input), &[]);
        let pid = match answer {
            Response::Created { pid } => pid,
            Response::Error { .. } => return Err(answer),
            other => {
                return Err(error(
                    ErrorKind::Internal,
                    format!("container {id}: {op}: unexpected answer {other:?}"),
                ))
            }
        };
        // The init sent the master while it was being created: the connection is queued.
        let master = accept_with_timeout(&listener, Duration::from_secs(5))
            .and_then(|conn| deckhand_sys::term::recv_fd(conn.as_fd()))
            .map_err(|e| {
                let _ = deckhand_sys::process::signal_pid(pid, libc::SIGKILL);
                internal("receiving the terminal from the container", e)
            })?;
        let dup = |fd: &OwnedFd| fd.try_clone().map_err(|e| internal("terminal", e));
        let out = nonblocking(dup(&master)?);
        let stdin = if want_stdin {
            Some(File::from(dup(&master)?))
        } else {
            None
        };
        Ok((
            pid,
            ProcessIo {
                out: [Some(out), None],
                stdin,
                pty: Some(master),
            },
        ))
    }

    fn kill(&mut self, id: &str, signal: i32, all: bool) -> Response {
        if self.containers.get(id).is_some_and(|c| c.exit.is_some()) {
            return Response::Ok;
        }
        let st = match self.state(id) {
            Ok(s) => s,
            Err(r) => return r,
        };
        if st.status == ContainerStatus::Stopped {
            return Response::Ok;
        }
        match ops::signal_container(&self.cgroups, &st, signal, all) {
            Ok(()) => Response::Ok,
            Err(e) => error(
                ErrorKind::Internal,
                format!("container {id}: signal {signal}: {e}"),
            ),
        }
    }

    fn delete(&mut self, id: &str, force: bool) -> Response {
        // An init that ended but whose SIGCHLD is still queued is reaped now, not reported as
        // running.
        if let Some(pid) = self
            .containers
            .get(id)
            .filter(|c| c.exit.is_none())
            .map(|c| c.pid)
        {
            if let Ok(Some(exit)) =
                deckhand_sys::process::try_wait_exit(nix::unistd::Pid::from_raw(pid))
            {
                self.container_exited(id, exit);
            }
        }
        let running = self.containers.get(id).map(|c| (c.pid, c.exit.is_none()));
        if let Some((pid, true)) = running {
            if !force {
                return error(
                    ErrorKind::FailedPrecondition,
                    format!("container {id} is running: stop it first, or delete with force"),
                );
            }
            // Kill, reap and record the exit here (we are the init's parent), so the helper
            // deletes a stopped container.
            let killed = self.kill(id, libc::SIGKILL, true);
            if let Response::Error { .. } = killed {
                return killed;
            }
            if let Ok(exit) = deckhand_sys::process::wait_exit(nix::unistd::Pid::from_raw(pid)) {
                self.container_exited(id, exit);
            }
        }
        if let Some(mut c) = self.containers.remove(id) {
            self.drain_container(&mut c);
            for t in c.attached.drain(..).chain(c.waiters.drain(..)) {
                if let Some(conn) = self.conns[t].as_mut() {
                    conn.closed = true;
                }
            }
        }
        Response::Ok
    }

    fn exec(&mut self, t: usize, id: &str, req: ExecRequest<'_>) -> Response {
        let input = serde_json::json!({ "args": req.args, "env": req.env }).to_string();
        let spawned = if req.tty {
            self.spawn_with_terminal("exec", id, input.as_bytes(), req.stdin)
        } else {
            self.spawn_with_pipes("exec", id, input.as_bytes(), req.stdin)
        };
        let (pid, io) = match spawned {
            Ok(x) => x,
            Err(r) => return r,
        };
        self.execs.insert(
            pid,
            ExecProcess {
                conn: Some(t),
                out: io.out,
                stdin: io.stdin,
                pty: io.pty,
                status: None,
            },
        );
        if let Some(c) = self.conns[t].as_mut() {
            c.mode = Mode::Exec { pid };
        }
        Response::Streaming
    }

    fn attach(&mut self, t: usize, id: &str, stdin: bool) -> Response {
        let Some(c) = self.containers.get_mut(id) else {
            return not_found(id);
        };
        if c.exit.is_some() {
            return error(
                ErrorKind::FailedPrecondition,
                format!("container {id} is not running: cannot attach"),
            );
        }
        c.attached.push(t);
        if let Some(conn) = self.conns[t].as_mut() {
            conn.mode = Mode::Attach {
                id: id.into(),
                stdin: stdin && c.stdin.is_some(),
            };
        }
        Response::Streaming
    }

    /// Frames from an exec/attach client: stdin bytes (empty = close stdin).
    fn handle_frames(&mut self, t: usize) {
        loop {
            let Some(conn) = self.conns[t].as_mut() else {
                return;
            };
            let (kind, payload, used) = match protocol::parse_frame(&conn.buf) {
                Ok(Some((k, p, n))) => (k, p.to_vec(), n),
                Ok(None) => return,
                Err(_) => {
                    conn.closed = true;
                    return;
                }
            };
            conn.buf.drain(..used);
            if kind == FrameKind::Resize {
                let pty = match &conn.mode {
                    Mode::Attach { id, .. } => self.containers.get(id).and_then(|c| c.pty.as_ref()),
                    Mode::Exec { pid } => self.execs.get(pid).and_then(|e| e.pty.as_ref()),
                    _ => None,
                };
                if let (Some(pty), &[c0, c1, r0, r1]) = (pty, payload.as_slice()) {
                    let (cols, rows) = (u16::from_be_bytes([c0, c1]), u16::from_be_bytes([r0, r1]));
                    if let Err(e) = deckhand_sys::term::set_window_size(pty.as_fd(), cols, rows) {
                        log!("WARN", "resizing a terminal to {cols}x{rows}: {e}");
                    }
                }
                continue;
            }
            if kind != FrameKind::Stdin {
                continue;
            }
            let target = match &conn.mode {
                Mode::Exec { pid } => self.execs.get_mut(pid).map(|e| &mut e.stdin),
                Mode::Attach { id, stdin: true } => {
                    self.containers.get_mut(id).map(|c| &mut c.stdin)
                }
                _ => None,
            };
            if let Some(stdin) = target {
                if payload.is_empty() {
                    *stdin = None;
                } else if let Some(f) = stdin.as_mut() {
                    if write_all_patiently(f, &payload).is_err() {
                        *stdin = None;
                    }
                }
            }
        }
    }

    /// Free the slots of closed connections. Nothing may keep a freed slot's index: a new
    /// client gets the slot next, and must not receive another process's frames or answers.
    fn free_closed_conns(&mut self) {
        for t in 0..self.conns.len() {
            if !self.conns[t].as_ref().is_some_and(|c| c.closed) {
                continue;
            }
            self.conns[t] = None;
            for e in self.execs.values_mut() {
                if e.conn == Some(t) {
                    e.conn = None;
                }
            }
            for c in self.containers.values_mut() {
                c.attached.retain(|&x| x != t);
                c.waiters.retain(|&x| x != t);
            }
        }
    }

    fn close_conn(&mut self, t: usize) {
        let Some(conn) = self.conns[t].as_mut() else {
            return;
        };
        conn.closed = true;
        match &conn.mode {
            // A client that goes away before its exec ended (ExecSync timeout, a closed
            // kubectl exec) takes the process with it, as containerd does.
            Mode::Exec { pid } => {
                if let Some(e) = self.execs.get_mut(pid) {
                    e.conn = None;
                    if e.status.is_none() {
                        let _ = deckhand_sys::process::signal_pid(*pid, libc::SIGKILL);
                    }
                }
            }
            Mode::Attach { id, stdin } => {
                if let Some(c) = self.containers.get_mut(id) {
                    c.attached.retain(|&x| x != t);
                    if *stdin && c.stdin_once {
                        c.stdin = None;
                    }
                }
            }
            Mode::Control => {
                for c in self.containers.values_mut() {
                    c.waiters.retain(|&x| x != t);
                }
            }
        }
    }

    fn container_output(&mut self, id: &str, s: Stream) {
        let Some(mut c) = self.containers.remove(id) else {
            return;
        };
        self.read_container_stream(&mut c, s);
        self.containers.insert(id.to_owned(), c);
    }

    /// Read what is available on one of a container's pipes: log it and copy it to the
    /// attached clients. EOF finishes the log's last line.
    fn read_container_stream(&mut self, c: &mut Container, s: Stream) {
        let mut chunk = [0u8; 32 * 1024];
        loop {
            let Some(f) = c.out[s as usize].as_mut() else {
                return;
            };
            match f.read(&mut chunk) {
                Ok(0) => {
                    c.out[s as usize] = None;
                    if let Some(log) = c.log.as_mut() {
                        log.finish(s);
                    }
                    return;
                }
                Ok(n) => {
                    if let Some(log) = c.log.as_mut() {
                        log.write(s, &chunk[..n]);
                    }
                    let frame = protocol::encode_frame(frame_kind(s), &chunk[..n]);
                    for &t in &c.attached {
                        if let Some(conn) = self.conns[t].as_mut() {
                            if conn.stream.write_all(&frame).is_err() {
                                conn.closed = true;
                            }
                        }
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // A terminal master reads EIO once every slave is closed: the end of output.
                Err(e) if e.raw_os_error() == Some(libc::EIO) => {
                    c.out[s as usize] = None;
                    if let Some(log) = c.log.as_mut() {
                        log.finish(s);
                    }
                    return;
                }
                // WouldBlock: drained for now.
                Err(_) => return,
            }
        }
    }

    fn drain_container(&mut self, c: &mut Container) {
        for s in [Stream::Stdout, Stream::Stderr] {
            self.read_container_stream(c, s);
        }
    }

    fn exec_output(&mut self, pid: i32, s: Stream) {
        let Some(mut e) = self.execs.remove(&pid) else {
            return;
        };
        self.read_exec_stream(&mut e, s);
        if !self.finish_exec_if_done(&mut e) {
            self.execs.insert(pid, e);
        }
    }

    fn read_exec_stream(&mut self, e: &mut ExecProcess, s: Stream) {
        let mut chunk = [0u8; 32 * 1024];
        loop {
            let Some(f) = e.out[s as usize].as_mut() else {
                return;
            };
            match f.read(&mut chunk) {
                Ok(0) => {
                    e.out[s as usize] = None;
                    return;
                }
                Ok(n) => {
                    if let Some(conn) = e.conn.and_then(|t| self.conns[t].as_mut()) {
                        if protocol::write_frame(&mut conn.stream, frame_kind(s), &chunk[..n])
                            .is_err()
                        {
                            conn.closed = true;
                        }
                    }
                }
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                // A terminal master reads EIO once every slave is closed: the end of output.
                Err(err) if err.raw_os_error() == Some(libc::EIO) => {
                    e.out[s as usize] = None;
                    return;
                }
                Err(_) => return,
            }
        }
    }

    /// Send the exit frame once the process was reaped and its output fully read (or, when
    /// a background child keeps the pipes open, right after the reap: the output read so far).
    fn finish_exec_if_done(&mut self, e: &mut ExecProcess) -> bool {
        let Some(status) = e.status else {
            return false;
        };
        if let Some(conn) = e.conn.and_then(|t| self.conns[t].as_mut()) {
            let _ = protocol::write_frame(
                &mut conn.stream,
                FrameKind::Exit,
                status.to_string().as_bytes(),
            );
            conn.closed = true;
        }
        true
    }

    /// SIGCHLD: reap every ended child and record container and exec exits.
    fn reap(&mut self) {
        while let Ok(Some(_)) = self.sigfd.read_signal() {}
        loop {
            let (pid, exit) = match deckhand_sys::process::reap_any() {
                Ok(Some(x)) => x,
                Ok(None) => return,
                Err(e) => {
                    log!("WARN", "reaping children: {e}");
                    return;
                }
            };
            if self.pod_init == Some(pid) {
                log!("WARN", "the pod's PID namespace init ({pid}) ended");
                self.pod_init = None;
                continue;
            }
            if let Some(mut e) = self.execs.remove(&pid) {
                for s in [Stream::Stdout, Stream::Stderr] {
                    self.read_exec_stream(&mut e, s);
                }
                e.status = Some(exit.status_code());
                self.finish_exec_if_done(&mut e);
                continue;
            }
            if let Some(id) = self
                .containers
                .iter()
                .find(|(_, c)| c.pid == pid && c.exit.is_none())
                .map(|(id, _)| id.clone())
            {
                self.container_exited(&id, exit);
            }
            // Otherwise a helper's leftover or an orphan from inside a container.
        }
    }

    /// Container `id`'s init ended (and was reaped): log its last output, record the exit
    /// (before anyone is told), answer the waiters and end the attached streams.
    fn container_exited(&mut self, id: &str, exit: deckhand_sys::process::Exit) {
        let Some(mut c) = self.containers.remove(id) else {
            return;
        };
        // Output written just before the exit is logged before the exit is recorded.
        self.drain_container(&mut c);
        match self.record_exit(id, exit) {
            Ok(record) => {
                log!(
                    "INFO",
                    "container {id} exited: code {} reason {}",
                    record.exit_code,
                    record.reason
                );
                let r = Response::Exited {
                    exit: record.clone(),
                };
                for t in std::mem::take(&mut c.waiters) {
                    self.respond(t, &r);
                }
                c.exit = Some(record);
            }
            Err(e) => log!("ERROR", "container {id}: recording exit: {e}"),
        }
        for t in std::mem::take(&mut c.attached) {
            if let Some(conn) = self.conns[t].as_mut() {
                conn.closed = true;
            }
        }
        c.stdin = None;
        self.containers.insert(id.to_owned(), c);
    }

    /// Write how container `id`'s init ended to its status record: exit code or signal,
    /// OOMKilled (the cgroup's OOM-kill counter, read before the cgroup goes away) and the
    /// finish time. An exit already recorded is kept.
    fn record_exit(&self, id: &str, exit: deckhand_sys::process::Exit) -> io::Result<ExitRecord> {
        let path = state::status_path(&self.status_dir, id);
        let mut st = ContainerState::load(&path)?;
        if let Some(exit) = &st.exit {
            return Ok(exit.clone());
        }
        let finished_at = Utc::now();
        let oom_killed = match self.cgroups.oom_kill_count(&st.cgroup_path) {
            Ok(n) => n > 0,
            Err(e) => {
                log!(
                    "WARN",
                    "container {id}: cannot read the OOM-kill counter ({e}); assuming no OOM kill"
                );
                false
            }
        };
        let record = ExitRecord::new(exit, oom_killed, finished_at);
        st.status = ContainerStatus::Stopped;
        st.exit = Some(record.clone());
        st.save(&path)?;
        Ok(record)
    }
}

fn error(kind: ErrorKind, message: String) -> Response {
    Response::Error { kind, message }
}

fn not_found(id: &str) -> Response {
    error(ErrorKind::NotFound, format!("container {id} not found"))
}

/// Write all of `data` to a descriptor that may be non-blocking (a terminal master shares its
/// non-blocking flag with the shim's reading end): wait for room, at most 5 s per chunk.
fn write_all_patiently(f: &mut File, mut data: &[u8]) -> io::Result<()> {
    while !data.is_empty() {
        match f.write(data) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => data = &data[n..],
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                let mut fds = [PollFd::new(f.as_fd(), PollFlags::POLLOUT)];
                if nix::poll::poll(&mut fds, PollTimeout::from(5000u16))? == 0 {
                    return Err(io::ErrorKind::TimedOut.into());
                }
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(io::Error::from)
}

fn stream_of(i: usize) -> Stream {
    if i == 0 {
        Stream::Stdout
    } else {
        Stream::Stderr
    }
}

fn frame_kind(s: Stream) -> FrameKind {
    match s {
        Stream::Stdout => FrameKind::Stdout,
        Stream::Stderr => FrameKind::Stderr,
    }
}

fn nonblocking(fd: OwnedFd) -> File {
    let _ = nix::fcntl::fcntl(
        fd.as_raw_fd(),
        nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
    );
    File::from(fd)
}

/// Read one response line (blocking clients and tests).
pub fn read_response(r: &mut impl BufRead) -> io::Result<Response> {
    let mut line = String::new();
    if r.read_line(&mut line)? == 0 {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "shim closed the connection",
        ));
    }
    serde_json::from_str(&line).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}
