//! The runtime-neutral description of one container ([`ContainerConfig`]) and its translation
//! into an OCI runtime spec, with the defaults upstream runtimes (containerd's CRI plugin, runc)
//! apply: standard mounts and devices, the default capability set, masked and read-only paths,
//! the RuntimeDefault seccomp profile, and the oom_score_adj clamp for hosts without
//! `CAP_SYS_RESOURCE`.
//!
//! Host facts the translation depends on are gathered once into [`HostFacts`], so the
//! translation itself is pure and unit-tested with made-up hosts.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::{Path, PathBuf};

use oci_spec::runtime::{
    Capability, LinuxBuilder, LinuxCapabilities, LinuxCpu, LinuxDeviceCgroup, LinuxDeviceType,
    LinuxMemory, LinuxNamespace, LinuxNamespaceType, LinuxPids, LinuxResources, Mount, Process,
    Root, Spec, User,
};

use crate::seccomp::{self, KernelVersion, SeccompProfile};

#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    /// The request names a user or group the image does not define (not retryable; fix the
    /// pod spec or the image).
    #[error("user {user:?}: {reason}")]
    User { user: String, reason: String },
    #[error("reading {path}: {source}")]
    ReadRootfs {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("unknown capability {0:?}")]
    UnknownCapability(String),
    #[error("invalid config: {0}")]
    Invalid(String),
    #[error(transparent)]
    Seccomp(#[from] seccomp::SeccompError),
    #[error("building OCI spec: {0}")]
    Oci(#[from] oci_spec::OciSpecError),
}

/// The capabilities containerd and Docker grant a non-privileged container.
pub const DEFAULT_CAPABILITIES: [&str; 14] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// Capability names by number, as the kernel numbers them (`capability.h`).
pub const CAPABILITY_NAMES: [&str; 41] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// Paths containerd masks (bind-mounts /dev/null or an empty read-only tmpfs over).
pub const DEFAULT_MASKED_PATHS: [&str; 11] = [
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// Paths containerd remounts read-only.
pub const DEFAULT_READONLY_PATHS: [&str; 5] = [
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// Default `/dev/shm` size (64 MiB), as Docker and containerd.
pub const DEFAULT_SHM_SIZE: u64 = 64 * 1024 * 1024;

const DEFAULT_PATH_ENV: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// What the container's process runs as, already resolved to numbers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserIds {
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
}

/// How a mount propagates between host and container (CRI `MountPropagation`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Propagation {
    #[default]
    Private,
    /// Host mounts appear in the container (rslave).
    HostToContainer,
    /// Both ways (rshared); needs a privileged container in Kubernetes.
    Bidirectional,
}

/// A bind mount from the host into the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindMount {
    pub source: PathBuf,
    pub destination: PathBuf,
    pub read_only: bool,
    pub propagation: Propagation,
}

/// Where a namespace of the container comes from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum NamespaceMode {
    /// A new namespace for this container alone.
    #[default]
    New,
    /// The host's (no namespace entry in the spec).
    Host,
    /// Join the namespace at this path (a pinned sandbox namespace, or `/proc/<pid>/ns/<kind>`).
    Path(PathBuf),
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Namespaces {
    pub net: NamespaceMode,
    pub ipc: NamespaceMode,
    pub uts: NamespaceMode,
    pub pid: NamespaceMode,
}

/// cgroup limits. CPU shares are given in cgroup v1 units (2..262144) as CRI does; on cgroup v2
/// libcontainer converts them to `cpu.weight`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resources {
    pub cpu_shares: Option<u64>,
    pub cpu_quota: Option<i64>,
    pub cpu_period: Option<u64>,
    pub memory_limit: Option<i64>,
    pub pids_limit: Option<i64>,
    pub cpuset_cpus: Option<String>,
    pub cpuset_mems: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Security {
    pub privileged: bool,
    /// Capability names (`NET_ADMIN` or `CAP_NET_ADMIN`, or `ALL`) added to the default set.
    pub cap_add: Vec<String>,
    /// Capability names removed from the default set (`ALL` empties it before adding).
    pub cap_drop: Vec<String>,
    pub no_new_privs: bool,
    pub seccomp: SeccompProfile,
    /// Accepted and ignored: AppArmor is not enforced by deckhand.
    pub apparmor_profile: Option<String>,
    /// `None`: containerd's defaults ([`DEFAULT_MASKED_PATHS`]); ignored when privileged.
    pub masked_paths: Option<Vec<String>>,
    /// `None`: containerd's defaults ([`DEFAULT_READONLY_PATHS`]); ignored when privileged.
    pub readonly_paths: Option<Vec<String>>,
}

/// Everything needed to run one container, independent of CRI and of the OCI runtime.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContainerConfig {
    /// Host path of the prepared root file system (e.g. an overlay mount).
    pub rootfs: PathBuf,
    pub readonly_rootfs: bool,
    pub args: Vec<String>,
    /// `KEY=value` entries; a default `PATH` is added when absent.
    pub env: Vec<String>,
    /// Working directory; `/` when empty.
    pub cwd: PathBuf,
    pub user: UserIds,
    /// Applied only when the container has its own UTS namespace (a pod's pinned UTS namespace
    /// gets its hostname when pinned, see `deckhand_sys::ns::pin_namespaces_with_hostname`).
    pub hostname: Option<String>,
    pub mounts: Vec<BindMount>,
    pub namespaces: Namespaces,
    /// cgroup parent (cgroupfs path such as `/deckhand-node1/pod-uid`); the container's cgroup is
    /// `<parent>/<container id>`.
    pub cgroup_parent: String,
    pub resources: Resources,
    pub security: Security,
    pub oom_score_adj: Option<i32>,
    /// Size of the container's own `/dev/shm` tmpfs; [`DEFAULT_SHM_SIZE`] when `None`. Ignored
    /// when a bind mount targets `/dev/shm` (a pod-shared shm).
    pub shm_size: Option<u64>,
    pub sysctls: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    /// Give the process a terminal (CRI `tty`): its stdio is a pseudo-terminal the runtime
    /// receives over a console socket.
    pub tty: bool,
}

/// Facts about the host that shape the spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostFacts {
    /// The runtime's own effective capabilities: a container can get no more than these.
    pub effective_caps: u64,
    /// The runtime's `oom_score_adj`; without `CAP_SYS_RESOURCE` a container cannot go lower.
    pub oom_score_adj: i32,
    pub cgroup_v2: bool,
    pub kernel: KernelVersion,
}

impl HostFacts {
    /// Read the facts of the running process and host.
    pub fn detect() -> Self {
        let effective_caps =
            deckhand_sys::process::effective_caps(Path::new("/proc/self/status")).unwrap_or(0);
        let oom_score_adj =
            deckhand_sys::process::oom_score_adj(Path::new("/proc/self/oom_score_adj"))
                .unwrap_or(0);
        let cgroup_v2 = deckhand_sys::cgroup::detect(Path::new(deckhand_sys::cgroup::DEFAULT_ROOT))
            .map(|m| m.is_v2())
            .unwrap_or(false);
        Self {
            effective_caps,
            oom_score_adj,
            cgroup_v2,
            kernel: KernelVersion::current().unwrap_or(KernelVersion(0, 0)),
        }
    }

    fn has_cap(&self, n: usize) -> bool {
        n < 64 && self.effective_caps & (1 << n) != 0
    }

    fn cap_names(&self) -> BTreeSet<String> {
        CAPABILITY_NAMES
            .iter()
            .enumerate()
            .filter(|(n, _)| self.has_cap(*n))
            .map(|(_, s)| s.to_string())
            .collect()
    }
}

/// The oom_score_adj the container gets: the request, raised to the runtime's own value when the
/// runtime lacks `CAP_SYS_RESOURCE` (the kernel refuses to lower it then). containerd calls this
/// `restrict_oom_score_adj`. Never fails the container.
pub fn clamp_oom_score_adj(requested: i32, host: &HostFacts) -> i32 {
    let requested = requested.clamp(-1000, 1000);
    if requested < host.oom_score_adj
        && !host.has_cap(deckhand_sys::process::CAP_SYS_RESOURCE as usize)
    {
        tracing::warn!(
            requested,
            clamped = host.oom_score_adj,
            "no CAP_SYS_RESOURCE: cannot lower oom_score_adj below the runtime's own; clamping"
        );
        return host.oom_score_adj;
    }
    requested
}

/// Normalise `NET_ADMIN`, `cap_net_admin` and `CAP_NET_ADMIN` to `CAP_NET_ADMIN`.
fn normalize_cap(name: &str) -> String {
    let upper = name.trim().to_ascii_uppercase();
    if upper.starts_with("CAP_") {
        upper
    } else {
        format!("CAP_{upper}")
    }
}

/// The effective capability names of a container: the default set (or everything the runtime
/// holds when privileged), with drops then adds applied, limited to what the runtime itself
/// holds (a capability the runtime lacks cannot be granted; it is dropped with a warning).
pub fn container_capabilities(
    sec: &Security,
    host: &HostFacts,
) -> Result<BTreeSet<String>, SpecError> {
    let host_caps = host.cap_names();
    let known = |c: &str| -> Result<(), SpecError> {
        if CAPABILITY_NAMES.contains(&c) {
            Ok(())
        } else {
            Err(SpecError::UnknownCapability(c.to_owned()))
        }
    };
    let mut caps: BTreeSet<String> = if sec.privileged {
        host_caps.clone()
    } else {
        DEFAULT_CAPABILITIES.iter().map(|s| s.to_string()).collect()
    };
    if !sec.privileged {
        for d in &sec.cap_drop {
            let d = normalize_cap(d);
            if d == "CAP_ALL" {
                caps.clear();
            } else {
                known(&d)?;
                caps.remove(&d);
            }
        }
        for a in &sec.cap_add {
            let a = normalize_cap(a);
            if a == "CAP_ALL" {
                caps.extend(host_caps.iter().cloned());
            } else {
                known(&a)?;
                caps.insert(a);
            }
        }
    }
    let missing: Vec<String> = caps.difference(&host_caps).cloned().collect();
    if !missing.is_empty() {
        tracing::warn!(
            ?missing,
            "the runtime does not hold these capabilities; the container cannot get them"
        );
        caps.retain(|c| host_caps.contains(c));
    }
    Ok(caps)
}

fn to_oci_caps(names: &BTreeSet<String>) -> Result<HashSet<Capability>, SpecError> {
    names
        .iter()
        .map(|n| {
            serde_json::from_value::<Capability>(serde_json::Value::String(n.clone()))
                .map_err(|_| SpecError::UnknownCapability(n.clone()))
        })
        .collect()
}

fn mount(dest: &str, typ: &str, source: &str, options: &[&str]) -> Mount {
    let mut m = Mount::default();
    m.set_destination(PathBuf::from(dest));
    m.set_typ(Some(typ.to_owned()));
    m.set_source(Some(PathBuf::from(source)));
    m.set_options(Some(options.iter().map(|s| s.to_string()).collect()));
    m
}

fn namespace(typ: LinuxNamespaceType, mode: &NamespaceMode) -> Option<LinuxNamespace> {
    let mut ns = LinuxNamespace::default();
    ns.set_typ(typ);
    match mode {
        NamespaceMode::Host => return None,
        NamespaceMode::New => {}
        NamespaceMode::Path(p) => {
            ns.set_path(Some(p.clone()));
        }
    }
    Some(ns)
}

impl ContainerConfig {
    /// Translate into an OCI runtime spec for container `id`, for the host described by `host`.
    pub fn to_oci_spec(&self, id: &str, host: &HostFacts) -> Result<Spec, SpecError> {
        if self.args.is_empty() {
            return Err(SpecError::Invalid("args must not be empty".into()));
        }
        if !self.rootfs.is_absolute() {
            return Err(SpecError::Invalid(format!(
                "rootfs {} must be an absolute path",
                self.rootfs.display()
            )));
        }
        let sec = &self.security;
        let privileged = sec.privileged;

        // Process.
        let caps = container_capabilities(sec, host)?;
        let oci_caps = to_oci_caps(&caps)?;
        let mut capabilities = LinuxCapabilities::default();
        capabilities.set_bounding(Some(oci_caps.clone()));
        capabilities.set_effective(Some(oci_caps.clone()));
        capabilities.set_permitted(Some(oci_caps));
        capabilities.set_inheritable(Some(HashSet::new()));
        capabilities.set_ambient(Some(HashSet::new()));

        let mut user = User::default();
        user.set_uid(self.user.uid);
        user.set_gid(self.user.gid);
        if !self.user.additional_gids.is_empty() {
            user.set_additional_gids(Some(self.user.additional_gids.clone()));
        }

        let mut env = self.env.clone();
        if !env.iter().any(|e| e.starts_with("PATH=")) {
            env.insert(0, DEFAULT_PATH_ENV.to_owned());
        }
        if let Some(h) = &self.hostname {
            if !env.iter().any(|e| e.starts_with("HOSTNAME=")) {
                env.push(format!("HOSTNAME={h}"));
            }
        }

        let mut process = Process::default();
        process.set_terminal(Some(self.tty));
        process.set_user(user);
        process.set_args(Some(self.args.clone()));
        process.set_env(Some(env));
        process.set_cwd(if self.cwd.as_os_str().is_empty() {
            PathBuf::from("/")
        } else {
            self.cwd.clone()
        });
        process.set_capabilities(Some(capabilities));
        // Absent rather than `false` (same meaning in OCI): libcontainer 0.7 treats any present
        // value as "set" and then loads seccomp after dropping CAP_SYS_ADMIN, which fails.
        process.set_no_new_privileges(sec.no_new_privs.then_some(true));
        process.set_rlimits(None);
        process.set_apparmor_profile(None);
        process.set_oom_score_adj(self.oom_score_adj.map(|adj| clamp_oom_score_adj(adj, host)));

        // Mounts: the standard set, user binds overriding a standard mount at the same path.
        let shm_size = format!("size={}k", self.shm_size.unwrap_or(DEFAULT_SHM_SIZE) / 1024);
        let sys_opt = if privileged { "rw" } else { "ro" };
        // sysfs shows the network namespace's devices: a privileged container in a pod with its
        // own network still gets it read-only (containerd does the same), so it cannot
        // reconfigure the node's view through it.
        let sysfs_opt = if privileged && self.namespaces.net == NamespaceMode::Host {
            "rw"
        } else {
            "ro"
        };
        let mut mounts = vec![
            mount("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"]),
            mount(
                "/dev",
                "tmpfs",
                "tmpfs",
                &["nosuid", "strictatime", "mode=755", "size=65536k"],
            ),
            mount(
                "/dev/pts",
                "devpts",
                "devpts",
                &[
                    "nosuid",
                    "noexec",
                    "newinstance",
                    "ptmxmode=0666",
                    "mode=0620",
                    "gid=5",
                ],
            ),
            mount(
                "/dev/shm",
                "tmpfs",
                "shm",
                &["nosuid", "noexec", "nodev", "mode=1777", &shm_size],
            ),
            mount(
                "/dev/mqueue",
                "mqueue",
                "mqueue",
                &["nosuid", "noexec", "nodev"],
            ),
            mount(
                "/sys",
                "sysfs",
                "sysfs",
                &["nosuid", "noexec", "nodev", sysfs_opt],
            ),
            mount(
                "/sys/fs/cgroup",
                "cgroup",
                "cgroup",
                &["nosuid", "noexec", "nodev", "relatime", sys_opt],
            ),
        ];
        let mut rootfs_propagation = None;
        for b in &self.mounts {
            if !b.destination.is_absolute() {
                return Err(SpecError::Invalid(format!(
                    "mount destination {} must be absolute",
                    b.destination.display()
                )));
            }
            mounts.retain(|m| m.destination() != &b.destination);
            let prop = match b.propagation {
                Propagation::Private => "rprivate",
                Propagation::HostToContainer => {
                    rootfs_propagation.get_or_insert("rslave");
                    "rslave"
                }
                Propagation::Bidirectional => {
                    rootfs_propagation = Some("rshared");
                    "rshared"
                }
            };
            let mut opts = vec!["rbind", prop];
            opts.push(if b.read_only { "ro" } else { "rw" });
            let mut m = mount(
                &b.destination.to_string_lossy(),
                "bind",
                &b.source.to_string_lossy(),
                &opts,
            );
            m.set_typ(Some("bind".into()));
            mounts.push(m);
        }

        // Namespaces: always a private mount namespace; cgroup namespace on v2 as containerd.
        let ns = &self.namespaces;
        let mut namespaces = vec![namespace(LinuxNamespaceType::Mount, &NamespaceMode::New)];
        namespaces.push(namespace(LinuxNamespaceType::Network, &ns.net));
        namespaces.push(namespace(LinuxNamespaceType::Ipc, &ns.ipc));
        namespaces.push(namespace(LinuxNamespaceType::Uts, &ns.uts));
        namespaces.push(namespace(LinuxNamespaceType::Pid, &ns.pid));
        if host.cgroup_v2 && !privileged {
            namespaces.push(namespace(LinuxNamespaceType::Cgroup, &NamespaceMode::New));
        }
        let namespaces: Vec<LinuxNamespace> = namespaces.into_iter().flatten().collect();

        // Resources.
        let r = &self.resources;
        let mut resources = LinuxResources::default();
        let mut dev = LinuxDeviceCgroup::default();
        dev.set_allow(privileged);
        dev.set_typ(privileged.then_some(LinuxDeviceType::A));
        dev.set_access(Some("rwm".into()));
        resources.set_devices(Some(vec![dev]));
        if r.memory_limit.is_some() {
            let mut mem = LinuxMemory::default();
            mem.set_limit(r.memory_limit);
            resources.set_memory(Some(mem));
        }
        if r.cpu_shares.is_some()
            || r.cpu_quota.is_some()
            || r.cpu_period.is_some()
            || r.cpuset_cpus.is_some()
            || r.cpuset_mems.is_some()
        {
            let mut cpu = LinuxCpu::default();
            cpu.set_shares(r.cpu_shares);
            cpu.set_quota(r.cpu_quota);
            cpu.set_period(r.cpu_period);
            cpu.set_cpus(r.cpuset_cpus.clone());
            cpu.set_mems(r.cpuset_mems.clone());
            resources.set_cpu(Some(cpu));
        }
        if let Some(limit) = r.pids_limit {
            let mut pids = LinuxPids::default();
            pids.set_limit(limit);
            resources.set_pids(Some(pids));
        }

        let parent = if self.cgroup_parent.is_empty() {
            "/deckhand".to_owned()
        } else {
            format!("/{}", self.cgroup_parent.trim_matches('/'))
        };
        let cgroups_path = PathBuf::from(format!("{parent}/{id}"));

        let seccomp = if privileged {
            None
        } else {
            match &sec.seccomp {
                SeccompProfile::Unconfined => None,
                SeccompProfile::RuntimeDefault => {
                    Some(seccomp::runtime_default(&caps, host.kernel))
                }
                SeccompProfile::Localhost(p) => Some(seccomp::load_localhost(p)?),
            }
        };

        let (masked, readonly) = if privileged {
            (vec![], vec![])
        } else {
            (
                sec.masked_paths.clone().unwrap_or_else(|| {
                    DEFAULT_MASKED_PATHS.iter().map(|s| s.to_string()).collect()
                }),
                sec.readonly_paths.clone().unwrap_or_else(|| {
                    DEFAULT_READONLY_PATHS
                        .iter()
                        .map(|s| s.to_string())
                        .collect()
                }),
            )
        };

        let mut linux = LinuxBuilder::default()
            .namespaces(namespaces)
            .resources(resources)
            .cgroups_path(cgroups_path)
            .masked_paths(masked)
            .readonly_paths(readonly)
            .build()?;
        linux.set_seccomp(seccomp);
        linux.set_rootfs_propagation(rootfs_propagation.map(str::to_owned));
        if !self.sysctls.is_empty() {
            linux.set_sysctl(Some(
                self.sysctls
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
            ));
        }
        linux.set_devices(None);

        let mut root = Root::default();
        root.set_path(self.rootfs.clone());
        root.set_readonly(Some(self.readonly_rootfs));

        let mut spec = Spec::default();
        spec.set_version("1.0.2".into());
        spec.set_root(Some(root));
        spec.set_process(Some(process));
        spec.set_mounts(Some(mounts));
        // A joined UTS namespace (the pod's) already carries the sandbox's hostname.
        spec.set_hostname(match ns.uts {
            NamespaceMode::New => self.hostname.clone(),
            NamespaceMode::Host | NamespaceMode::Path(_) => None,
        });
        spec.set_linux(Some(linux));
        spec.set_hooks(None);
        spec.set_annotations(if self.annotations.is_empty() {
            None
        } else {
            Some(self.annotations.clone().into_iter().collect())
        });
        Ok(spec)
    }
}

/// Resolve a CRI-style user (`name`, `uid`, `name:group`, `uid:gid`) against the image's
/// `/etc/passwd` and `/etc/group` under `rootfs`, as containerd's `WithUser` does: a name must
/// exist; a numeric uid without an entry gets gid 0; supplementary groups are the groups that
/// list the user, plus `extra_gids`.
pub fn resolve_user(rootfs: &Path, user: &str, extra_gids: &[u32]) -> Result<UserIds, SpecError> {
    let (u, g) = match user.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (user, None),
    };
    let passwd = read_db(&rootfs.join("etc/passwd"))?;
    let groups = read_db(&rootfs.join("etc/group"))?;

    // passwd: name:x:uid:gid:gecos:home:shell
    let entry = passwd
        .iter()
        .find(|f| f.len() >= 4 && (f[0] == u || (u.parse::<u32>().is_ok() && f[2] == u)));
    let (name, uid, mut gid) = match (entry, u.parse::<u32>()) {
        (Some(f), _) => {
            let uid = f[2].parse().map_err(|_| SpecError::User {
                user: user.into(),
                reason: format!("bad uid {:?} in /etc/passwd", f[2]),
            })?;
            let gid = f[3].parse().map_err(|_| SpecError::User {
                user: user.into(),
                reason: format!("bad gid {:?} in /etc/passwd", f[3]),
            })?;
            (Some(f[0].clone()), uid, gid)
        }
        (None, Ok(uid)) => (None, uid, 0),
        (None, Err(_)) => {
            return Err(SpecError::User {
                user: user.into(),
                reason: format!("no user {u:?} in the image's /etc/passwd"),
            })
        }
    };
    if let Some(g) = g {
        gid = match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => groups
                .iter()
                .find(|f| f.len() >= 3 && f[0] == g)
                .and_then(|f| f[2].parse().ok())
                .ok_or_else(|| SpecError::User {
                    user: user.into(),
                    reason: format!("no group {g:?} in the image's /etc/group"),
                })?,
        };
    }
    let mut additional: Vec<u32> = Vec::new();
    if let Some(name) = &name {
        // group: name:x:gid:member,member
        for f in &groups {
            if f.len() >= 4 && f[3].split(',').any(|m| m == name) {
                if let Ok(n) = f[2].parse::<u32>() {
                    if n != gid && !additional.contains(&n) {
                        additional.push(n);
                    }
                }
            }
        }
    }
    for g in extra_gids {
        if !additional.contains(g) {
            additional.push(*g);
        }
    }
    Ok(UserIds {
        uid,
        gid,
        additional_gids: additional,
    })
}

/// Colon-separated records of a passwd/group file; a missing file is an empty database.
fn read_db(path: &Path) -> Result<Vec<Vec<String>>, SpecError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(source) => {
            return Err(SpecError::ReadRootfs {
                path: path.to_owned(),
                source,
            })
        }
    };
    Ok(text
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|l| l.split(':').map(str::to_owned).collect())
        .collect())
}

#[cfg(test)]
#[path = "spec_tests.rs"]
mod tests;

/// Give a privileged container the host's devices, as runc and containerd do for privileged
/// containers: every character and block device under `/dev` (not in `pts`, `shm`, `mqueue`,
/// `fd`), created in the container's `/dev` by the OCI runtime. Devices the spec already
/// lists are kept as they are.
pub fn add_host_devices(spec: &mut Spec) {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let Some(mut linux) = spec.linux().clone() else {
        return;
    };
    let mut devices = linux.devices().clone().unwrap_or_default();
    let mut stack = vec![PathBuf::from("/dev")];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            let path = e.path();
            let Ok(meta) = std::fs::symlink_metadata(&path) else {
                continue;
            };
            let ft = meta.file_type();
            if ft.is_dir() {
                let name = e.file_name();
                if !matches!(name.to_str(), Some("pts" | "shm" | "mqueue" | "fd")) {
                    stack.push(path);
                }
                continue;
            }
            let typ = if ft.is_char_device() {
                oci_spec::runtime::LinuxDeviceType::C
            } else if ft.is_block_device() {
                oci_spec::runtime::LinuxDeviceType::B
            } else {
                continue;
            };
            if path == Path::new("/dev/console") || devices.iter().any(|d| d.path() == &path) {
                continue;
            }
            let (major, minor) = deckhand_sys::fs::split_dev(meta.rdev());
            let dev = oci_spec::runtime::LinuxDeviceBuilder::default()
                .path(path)
                .typ(typ)
                .major(major as i64)
                .minor(minor as i64)
                .file_mode(meta.mode() & 0o777)
                .uid(meta.uid())
                .gid(meta.gid())
                .build();
            if let Ok(dev) = dev {
                devices.push(dev);
            }
        }
    }
    linux.set_devices(Some(devices));
    spec.set_linux(Some(linux));
}
