//! CRI requests → the runtime-neutral [`ContainerConfig`], following what containerd's CRI
//! plugin does with the same request (so a kubelet sees the same containers on either).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use deckhand_image::Image;
use tonic::Status;

use super::api;
use super::state::{Layout, SandboxRecord};
use crate::seccomp::SeccompProfile;
use crate::spec::{
    resolve_user, BindMount, ContainerConfig, NamespaceMode, Namespaces, Propagation, Resources,
    Security,
};

/// `NamespaceMode` values of the CRI (`POD`, `CONTAINER`, `NODE`, `TARGET`).
pub const NS_POD: i32 = 0;
pub const NS_NODE: i32 = 2;

/// The process a container runs: CRI command/args over the image's entrypoint/cmd, as Docker
/// and every CRI runtime combine them.
pub fn process_args(c: &api::ContainerConfig, image: &Image) -> Vec<String> {
    let ic = &image.config;
    if !c.command.is_empty() {
        c.command.iter().chain(&c.args).cloned().collect()
    } else if !c.args.is_empty() {
        ic.entrypoint.iter().chain(&c.args).cloned().collect()
    } else {
        ic.entrypoint.iter().chain(&ic.cmd).cloned().collect()
    }
}

/// Image env, then the request's (a request variable replaces the image's of the same name).
pub fn process_env(c: &api::ContainerConfig, image: &Image) -> Vec<String> {
    let mut env: Vec<String> = Vec::new();
    let mut set = |kv: String| {
        let key = kv.split('=').next().unwrap_or("").to_owned();
        env.retain(|e| e.split('=').next() != Some(key.as_str()));
        env.push(kv);
    };
    for e in &image.config.env {
        set(e.clone());
    }
    for kv in &c.envs {
        set(format!("{}={}", kv.key, kv.value));
    }
    env
}

fn seccomp_of(
    profile: Option<&api::SecurityProfile>,
    legacy_path: &str,
) -> Result<SeccompProfile, Status> {
    if let Some(p) = profile {
        return match p.profile_type {
            0 => Ok(SeccompProfile::RuntimeDefault),
            1 => Ok(SeccompProfile::Unconfined),
            2 => Ok(SeccompProfile::Localhost(PathBuf::from(&p.localhost_ref))),
            t => Err(Status::invalid_argument(format!(
                "unknown seccomp profile type {t}"
            ))),
        };
    }
    // The deprecated string form; unset means unconfined, as in Kubernetes without
    // SeccompDefault.
    Ok(match legacy_path {
        "" | "unconfined" => SeccompProfile::Unconfined,
        "runtime/default" | "docker/default" => SeccompProfile::RuntimeDefault,
        p => match p.strip_prefix("localhost/") {
            Some(path) => SeccompProfile::Localhost(PathBuf::from(path)),
            None => {
                return Err(Status::invalid_argument(format!(
                    "seccomp profile {p:?}: use runtime/default, unconfined or localhost/<path>"
                )))
            }
        },
    })
}

fn ns_mode(mode: i32, pinned: PathBuf) -> NamespaceMode {
    match mode {
        NS_NODE => NamespaceMode::Host,
        _ => NamespaceMode::Path(pinned),
    }
}

/// Build the container's config. `rootfs` is the mounted root file system.
pub fn container_config(
    layout: &Layout,
    sandbox: &SandboxRecord,
    req: &api::ContainerConfig,
    image: &Image,
    rootfs: &Path,
) -> Result<ContainerConfig, Status> {
    let sb_config = sandbox.config();
    let linux = req.linux.clone().unwrap_or_default();
    let sc = linux.security_context.clone().unwrap_or_default();
    let res = linux.resources.clone().unwrap_or_default();
    let sandbox_dir = layout.sandbox_dir(&sandbox.id);
    let ns_dir = sandbox_dir.join("ns");
    let ns_opts = sc.namespace_options.clone().unwrap_or_default();

    let args = process_args(req, image);
    if args.is_empty() {
        return Err(Status::invalid_argument(format!(
            "container {:?}: no command: the image {} has no entrypoint or cmd, give command in \
             the container config",
            req.metadata.as_ref().map(|m| m.name.as_str()).unwrap_or(""),
            image.name
        )));
    }

    let user = if let Some(uid) = &sc.run_as_user {
        let spec = match &sc.run_as_group {
            Some(g) => format!("{}:{}", uid.value, g.value),
            None => uid.value.to_string(),
        };
        spec
    } else if !sc.run_as_username.is_empty() {
        match &sc.run_as_group {
            Some(g) => format!("{}:{}", sc.run_as_username, g.value),
            None => sc.run_as_username.clone(),
        }
    } else {
        image.config.user.clone().unwrap_or_default()
    };
    let extra: Vec<u32> = sc.supplemental_groups.iter().map(|g| *g as u32).collect();
    let user = if user.is_empty() {
        crate::spec::UserIds {
            uid: 0,
            gid: 0,
            additional_gids: extra,
        }
    } else {
        resolve_user(rootfs, &user, &extra).map_err(|e| {
            Status::invalid_argument(format!(
                "container {:?}: {e}",
                req.metadata.as_ref().map(|m| m.name.as_str()).unwrap_or("")
            ))
        })?
    };

    let mut mounts = Vec::new();
    // The sandbox's files, unless the request mounts its own at the same place.
    for (file, dest) in [
        ("hostname", "/etc/hostname"),
        ("hosts", "/etc/hosts"),
        ("resolv.conf", "/etc/resolv.conf"),
    ] {
        let src = sandbox_dir.join(file);
        if src.exists() && !req.mounts.iter().any(|m| m.container_path == dest) {
            mounts.push(BindMount {
                source: src,
                destination: dest.into(),
                read_only: sc.readonly_rootfs,
                propagation: Propagation::Private,
            });
        }
    }
    for m in &req.mounts {
        if m.host_path.is_empty() || !m.container_path.starts_with('/') {
            return Err(Status::invalid_argument(format!(
                "mount {:?} -> {:?}: host path must be set and container path absolute",
                m.host_path, m.container_path
            )));
        }
        // A missing source is created as a directory, as containerd and Docker do (the kubelet
        // relies on it for some volume types); one that cannot be created is refused.
        if !Path::new(&m.host_path).exists() {
            std::fs::create_dir_all(&m.host_path).map_err(|e| {
                Status::invalid_argument(format!(
                    "mount source {} does not exist and cannot be created ({e}): fix the \
                     volume's host path",
                    m.host_path
                ))
            })?;
        }
        mounts.push(BindMount {
            source: PathBuf::from(&m.host_path),
            destination: PathBuf::from(&m.container_path),
            read_only: m.readonly,
            propagation: match m.propagation {
                1 => Propagation::HostToContainer,
                2 => Propagation::Bidirectional,
                _ => Propagation::Private,
            },
        });
    }

    let namespaces = Namespaces {
        net: if sandbox.host_network {
            NamespaceMode::Host
        } else {
            NamespaceMode::Path(ns_dir.join("net"))
        },
        ipc: if sandbox.host_ipc {
            NamespaceMode::Host
        } else {
            ns_mode(ns_opts.ipc, ns_dir.join("ipc"))
        },
        uts: if sandbox.host_network {
            NamespaceMode::Host
        } else {
            NamespaceMode::Path(ns_dir.join("uts"))
        },
        pid: match ns_opts.pid {
            NS_NODE => NamespaceMode::Host,
            NS_POD if sandbox.pod_init_pid > 0 => NamespaceMode::Path(PathBuf::from(format!(
                "/proc/{}/ns/pid",
                sandbox.pod_init_pid
            ))),
            // NS_CONTAINER, or a pod without a shared namespace.
            _ => NamespaceMode::New,
        },
    };

    let opt = |v: i64| (v > 0).then_some(v);
    let resources = Resources {
        cpu_shares: opt(res.cpu_shares).map(|v| v as u64),
        cpu_quota: opt(res.cpu_quota),
        cpu_period: opt(res.cpu_period).map(|v| v as u64),
        memory_limit: opt(res.memory_limit_in_bytes),
        pids_limit: None,
        cpuset_cpus: Some(res.cpuset_cpus.clone()).filter(|s| !s.is_empty()),
        cpuset_mems: Some(res.cpuset_mems.clone()).filter(|s| !s.is_empty()),
    };
    let caps = sc.capabilities.clone().unwrap_or_default();
    let security = Security {
        privileged: sc.privileged,
        cap_add: caps.add_capabilities,
        cap_drop: caps.drop_capabilities,
        no_new_privs: sc.no_new_privs,
        #[allow(deprecated)] // older kubelets still send the string form
        seccomp: seccomp_of(sc.seccomp.as_ref(), &sc.seccomp_profile_path)?,
        apparmor_profile: None,
        masked_paths: Some(sc.masked_paths.clone()).filter(|p| !p.is_empty()),
        readonly_paths: Some(sc.readonly_paths.clone()).filter(|p| !p.is_empty()),
    };
    let cwd = if !req.working_dir.is_empty() {
        PathBuf::from(&req.working_dir)
    } else {
        PathBuf::from(
            image
                .config
                .working_dir
                .clone()
                .unwrap_or_else(|| "/".into()),
        )
    };
    let sysctls: BTreeMap<String, String> = sb_config
        .linux
        .as_ref()
        .map(|l| {
            l.sysctls
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        })
        .unwrap_or_default();
    Ok(ContainerConfig {
        tty: req.tty,
        rootfs: rootfs.to_owned(),
        readonly_rootfs: sc.readonly_rootfs,
        args,
        env: {
            // HOSTNAME first, as Docker and containerd set it; the image or the request may
            // override it.
            let hostname =
                std::fs::read_to_string(sandbox_dir.join("hostname")).unwrap_or_default();
            let mut env = vec![format!("HOSTNAME={}", hostname.trim())];
            for kv in process_env(req, image) {
                if kv.starts_with("HOSTNAME=") {
                    env.remove(0);
                    env.insert(0, kv);
                } else {
                    env.push(kv);
                }
            }
            env
        },
        cwd,
        user,
        hostname: None,
        mounts,
        namespaces,
        cgroup_parent: sandbox.cgroup_parent.clone(),
        resources,
        security,
        oom_score_adj: (res.oom_score_adj != 0).then_some(res.oom_score_adj as i32),
        shm_size: None,
        sysctls,
        annotations: req
            .annotations
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    })
}

/// `/etc/resolv.conf` for a sandbox: the DNS config the kubelet computed, else the host's.
pub fn resolv_conf(dns: Option<&api::DnsConfig>) -> String {
    match dns {
        Some(d) if !(d.servers.is_empty() && d.searches.is_empty() && d.options.is_empty()) => {
            let mut s = String::new();
            if !d.searches.is_empty() {
                s.push_str(&format!("search {}\n", d.searches.join(" ")));
            }
            for ns in &d.servers {
                s.push_str(&format!("nameserver {ns}\n"));
            }
            if !d.options.is_empty() {
                s.push_str(&format!("options {}\n", d.options.join(" ")));
            }
            s
        }
        _ => std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default(),
    }
}

/// `/etc/hosts` for a sandbox, as the kubelet's managed hosts file starts.
pub fn hosts_file(hostname: &str, ip: &str) -> String {
    let mut s = String::from(
        "# Kubernetes-managed hosts file (deckhand).\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n",
    );
    if !ip.is_empty() && !hostname.is_empty() {
        s.push_str(&format!("{ip}\t{hostname}\n"));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolv_conf_from_dns_config() {
        let d = api::DnsConfig {
            servers: vec!["10.43.0.10".into()],
            searches: vec!["ns.svc.cluster.local".into(), "svc.cluster.local".into()],
            options: vec!["ndots:5".into()],
        };
        assert_eq!(
            resolv_conf(Some(&d)),
            "search ns.svc.cluster.local svc.cluster.local\nnameserver 10.43.0.10\noptions ndots:5\n"
        );
    }

    #[test]
    fn seccomp_unset_is_unconfined_and_types_map() {
        assert_eq!(seccomp_of(None, "").unwrap(), SeccompProfile::Unconfined);
        assert_eq!(
            seccomp_of(None, "runtime/default").unwrap(),
            SeccompProfile::RuntimeDefault
        );
        let p = api::SecurityProfile {
            profile_type: 2,
            localhost_ref: "/p.json".into(),
        };
        assert_eq!(
            seccomp_of(Some(&p), "").unwrap(),
            SeccompProfile::Localhost("/p.json".into())
        );
        assert!(seccomp_of(None, "bogus").is_err());
    }
}
