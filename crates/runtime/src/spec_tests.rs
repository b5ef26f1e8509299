use super::*;
use oci_spec::runtime::LinuxSeccompAction;

/// The build host: every capability but CAP_SYS_RESOURCE, oom_score_adj 0, cgroup v1.
fn host() -> HostFacts {
    HostFacts {
        effective_caps: 0x1ff_feff_ffff,
        oom_score_adj: 0,
        cgroup_v2: false,
        kernel: KernelVersion(6, 18),
    }
}

fn config() -> ContainerConfig {
    ContainerConfig {
        rootfs: "/var/lib/deckhand/rootfs".into(),
        args: vec!["/bin/sh".into(), "-c".into(), "echo hi".into()],
        cgroup_parent: "deckhand-node/pod1".into(),
        ..Default::default()
    }
}

fn caps_of(spec: &Spec) -> BTreeSet<String> {
    spec.process()
        .as_ref()
        .unwrap()
        .capabilities()
        .as_ref()
        .unwrap()
        .effective()
        .as_ref()
        .unwrap()
        .iter()
        .map(|c| {
            serde_json::to_value(c)
                .unwrap()
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect()
}

#[test]
fn default_spec_has_standard_mounts_namespaces_and_cgroup_path() {
    let spec = config().to_oci_spec("c1", &host()).unwrap();
    let mounts: Vec<(String, String)> = spec
        .mounts()
        .as_ref()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m.destination().display().to_string(),
                m.typ().clone().unwrap(),
            )
        })
        .collect();
    for (dest, typ) in [
        ("/proc", "proc"),
        ("/dev", "tmpfs"),
        ("/dev/pts", "devpts"),
        ("/dev/shm", "tmpfs"),
        ("/dev/mqueue", "mqueue"),
        ("/sys", "sysfs"),
        ("/sys/fs/cgroup", "cgroup"),
    ] {
        assert!(
            mounts.contains(&(dest.to_string(), typ.to_string())),
            "{dest} {typ} missing from {mounts:?}"
        );
    }
    let sys = spec
        .mounts()
        .as_ref()
        .unwrap()
        .iter()
        .find(|m| m.destination() == Path::new("/sys"))
        .unwrap();
    assert!(sys.options().as_ref().unwrap().contains(&"ro".to_string()));
    let shm = spec
        .mounts()
        .as_ref()
        .unwrap()
        .iter()
        .find(|m| m.destination() == Path::new("/dev/shm"))
        .unwrap();
    assert!(shm
        .options()
        .as_ref()
        .unwrap()
        .contains(&"size=65536k".to_string()));

    let linux = spec.linux().as_ref().unwrap();
    assert_eq!(
        linux.cgroups_path().as_deref(),
        Some(Path::new("/deckhand-node/pod1/c1"))
    );
    let types: Vec<LinuxNamespaceType> = linux
        .namespaces()
        .as_ref()
        .unwrap()
        .iter()
        .map(|n| n.typ())
        .collect();
    assert_eq!(
        types,
        vec![
            LinuxNamespaceType::Mount,
            LinuxNamespaceType::Network,
            LinuxNamespaceType::Ipc,
            LinuxNamespaceType::Uts,
            LinuxNamespaceType::Pid
        ]
    );
    assert_eq!(
        linux.masked_paths().as_ref().unwrap().len(),
        DEFAULT_MASKED_PATHS.len()
    );
    assert!(linux
        .readonly_paths()
        .as_ref()
        .unwrap()
        .contains(&"/proc/sys".to_string()));
    // Device cgroup: deny all; libcontainer adds the standard allowlist.
    let dev = &linux
        .resources()
        .as_ref()
        .unwrap()
        .devices()
        .as_ref()
        .unwrap()[0];
    assert!(!dev.allow());
    let p = spec.process().as_ref().unwrap();
    assert!(p.env().as_ref().unwrap()[0].starts_with("PATH="));
    assert_eq!(p.cwd(), Path::new("/"));
    assert_eq!(
        linux.seccomp().as_ref().unwrap().default_action(),
        LinuxSeccompAction::ScmpActErrno
    );
    // The spec survives a JSON round trip (it is written to the bundle's config.json).
    let json = serde_json::to_string(&spec).unwrap();
    let back: Spec = serde_json::from_str(&json).unwrap();
    assert_eq!(back, spec);
}

#[test]
fn default_capabilities_are_the_upstream_fourteen() {
    let spec = config().to_oci_spec("c1", &host()).unwrap();
    let caps = caps_of(&spec);
    let expected: BTreeSet<String> = DEFAULT_CAPABILITIES.iter().map(|s| s.to_string()).collect();
    assert_eq!(caps, expected);
    assert_eq!(caps.len(), 14);
    let c = spec
        .process()
        .as_ref()
        .unwrap()
        .capabilities()
        .clone()
        .unwrap();
    assert!(c.inheritable().as_ref().unwrap().is_empty());
    assert_eq!(c.bounding(), c.effective());
}

#[test]
fn cap_add_and_drop_accept_cri_names_and_all() {
    let mut c = config();
    c.security.cap_drop = vec!["NET_RAW".into(), "cap_chown".into()];
    c.security.cap_add = vec!["NET_ADMIN".into()];
    let caps = caps_of(&c.to_oci_spec("c1", &host()).unwrap());
    assert!(!caps.contains("CAP_NET_RAW"));
    assert!(!caps.contains("CAP_CHOWN"));
    assert!(caps.contains("CAP_NET_ADMIN"));
    assert_eq!(caps.len(), 13);

    c.security.cap_drop = vec!["ALL".into()];
    c.security.cap_add = vec!["KILL".into()];
    let caps = caps_of(&c.to_oci_spec("c1", &host()).unwrap());
    assert_eq!(caps, BTreeSet::from(["CAP_KILL".to_string()]));

    c.security.cap_add = vec!["NOT_A_CAP".into()];
    assert!(matches!(
        c.to_oci_spec("c1", &host()),
        Err(SpecError::UnknownCapability(_))
    ));
}

#[test]
fn capabilities_the_runtime_lacks_are_never_granted() {
    let mut c = config();
    c.security.cap_add = vec!["SYS_RESOURCE".into(), "SYS_ADMIN".into()];
    let caps = caps_of(&c.to_oci_spec("c1", &host()).unwrap());
    assert!(caps.contains("CAP_SYS_ADMIN"));
    assert!(!caps.contains("CAP_SYS_RESOURCE"), "host lacks it");

    c.security = Security {
        privileged: true,
        ..Default::default()
    };
    let spec = c.to_oci_spec("c1", &host()).unwrap();
    let caps = caps_of(&spec);
    assert_eq!(caps.len(), 40, "all 41 but CAP_SYS_RESOURCE");
    let linux = spec.linux().as_ref().unwrap();
    assert!(linux.seccomp().is_none());
    assert!(linux.masked_paths().as_ref().unwrap().is_empty());
    assert!(linux.readonly_paths().as_ref().unwrap().is_empty());
    let dev = &linux
        .resources()
        .as_ref()
        .unwrap()
        .devices()
        .as_ref()
        .unwrap()[0];
    assert!(dev.allow());
}

#[test]
fn oom_score_adj_is_clamped_without_cap_sys_resource() {
    let mut c = config();
    c.oom_score_adj = Some(-998);
    let spec = c.to_oci_spec("c1", &host()).unwrap();
    assert_eq!(spec.process().as_ref().unwrap().oom_score_adj(), Some(0));

    let mut h = host();
    h.oom_score_adj = 100;
    assert_eq!(clamp_oom_score_adj(-5, &h), 100);
    assert_eq!(
        clamp_oom_score_adj(500, &h),
        500,
        "raising is always allowed"
    );
    h.effective_caps |= 1 << 24;
    assert_eq!(clamp_oom_score_adj(-998, &h), -998, "with CAP_SYS_RESOURCE");
    assert_eq!(clamp_oom_score_adj(-5000, &h), -1000);
}

#[test]
fn namespace_paths_and_host_namespaces() {
    let mut c = config();
    c.hostname = Some("web-1".into());
    c.namespaces = Namespaces {
        net: NamespaceMode::Path("/run/deckhand/pods/p1/ns/net".into()),
        ipc: NamespaceMode::Path("/run/deckhand/pods/p1/ns/ipc".into()),
        uts: NamespaceMode::Host,
        pid: NamespaceMode::Host,
    };
    let spec = c.to_oci_spec("c1", &host()).unwrap();
    let ns = spec.linux().as_ref().unwrap().namespaces().clone().unwrap();
    let net = ns
        .iter()
        .find(|n| n.typ() == LinuxNamespaceType::Network)
        .unwrap();
    assert_eq!(
        net.path().as_deref(),
        Some(Path::new("/run/deckhand/pods/p1/ns/net"))
    );
    assert!(!ns.iter().any(|n| n.typ() == LinuxNamespaceType::Uts));
    assert!(!ns.iter().any(|n| n.typ() == LinuxNamespaceType::Pid));
    // No hostname can be set in the host's UTS namespace.
    assert_eq!(spec.hostname(), &None);

    c.namespaces.uts = NamespaceMode::New;
    let spec = c.to_oci_spec("c1", &host()).unwrap();
    assert_eq!(spec.hostname().as_deref(), Some("web-1"));

    // cgroup v2 hosts get a cgroup namespace, as containerd does.
    let mut h = host();
    h.cgroup_v2 = true;
    let spec = c.to_oci_spec("c1", &h).unwrap();
    assert!(spec
        .linux()
        .as_ref()
        .unwrap()
        .namespaces()
        .as_ref()
        .unwrap()
        .iter()
        .any(|n| n.typ() == LinuxNamespaceType::Cgroup));
}

#[test]
fn resources_are_carried_over() {
    let mut c = config();
    c.resources = Resources {
        cpu_shares: Some(512),
        cpu_quota: Some(50_000),
        cpu_period: Some(100_000),
        memory_limit: Some(16 << 20),
        pids_limit: Some(64),
        cpuset_cpus: Some("0".into()),
        cpuset_mems: None,
    };
    let spec = c.to_oci_spec("c1", &host()).unwrap();
    let r = spec.linux().as_ref().unwrap().resources().clone().unwrap();
    assert_eq!(r.memory().as_ref().unwrap().limit(), Some(16 << 20));
    let cpu = r.cpu().as_ref().unwrap();
    assert_eq!(cpu.shares(), Some(512));
    assert_eq!(cpu.quota(), Some(50_000));
    assert_eq!(cpu.period(), Some(100_000));
    assert_eq!(cpu.cpus().as_deref(), Some("0"));
    assert_eq!(r.pids().as_ref().unwrap().limit(), 64);
}

#[test]
fn bind_mounts_override_defaults_and_set_propagation() {
    let mut c = config();
    c.readonly_rootfs = true;
    c.shm_size = Some(1 << 20);
    c.mounts = vec![
        BindMount {
            source: "/data".into(),
            destination: "/data".into(),
            read_only: true,
            propagation: Propagation::HostToContainer,
        },
        BindMount {
            source: "/run/deckhand/pods/p1/shm".into(),
            destination: "/dev/shm".into(),
            read_only: false,
            propagation: Propagation::Private,
        },
    ];
    let spec = c.to_oci_spec("c1", &host()).unwrap();
    assert_eq!(spec.root().as_ref().unwrap().readonly(), Some(true));
    let mounts = spec.mounts().clone().unwrap();
    let shm: Vec<_> = mounts
        .iter()
        .filter(|m| m.destination() == Path::new("/dev/shm"))
        .collect();
    assert_eq!(shm.len(), 1, "the bind replaces the default shm tmpfs");
    assert_eq!(shm[0].typ().as_deref(), Some("bind"));
    let data = mounts
        .iter()
        .find(|m| m.destination() == Path::new("/data"))
        .unwrap();
    let opts = data.options().clone().unwrap();
    assert!(opts.contains(&"ro".into()) && opts.contains(&"rslave".into()));
    assert_eq!(
        spec.linux()
            .as_ref()
            .unwrap()
            .rootfs_propagation()
            .as_deref(),
        Some("rslave")
    );

    c.mounts[0].destination = "relative".into();
    assert!(matches!(
        c.to_oci_spec("c1", &host()),
        Err(SpecError::Invalid(_))
    ));
}

#[test]
fn seccomp_profile_selection() {
    let mut c = config();
    c.security.seccomp = SeccompProfile::Unconfined;
    let spec = c.to_oci_spec("c1", &host()).unwrap();
    assert!(spec.linux().as_ref().unwrap().seccomp().is_none());

    let t = tempfile::tempdir().unwrap();
    let p = t.path().join("p.json");
    std::fs::write(&p, r#"{"defaultAction":"SCMP_ACT_LOG"}"#).unwrap();
    c.security.seccomp = SeccompProfile::Localhost(p);
    let spec = c.to_oci_spec("c1", &host()).unwrap();
    assert_eq!(
        spec.linux()
            .as_ref()
            .unwrap()
            .seccomp()
            .as_ref()
            .unwrap()
            .default_action(),
        LinuxSeccompAction::ScmpActLog
    );
    c.security.seccomp = SeccompProfile::Localhost(t.path().join("missing.json"));
    assert!(matches!(
        c.to_oci_spec("c1", &host()),
        Err(SpecError::Seccomp(_))
    ));
}

#[test]
fn sysctls_user_and_invalid_requests() {
    let mut c = config();
    c.sysctls.insert("net.ipv4.ip_forward".into(), "1".into());
    c.user = UserIds {
        uid: 1000,
        gid: 1000,
        additional_gids: vec![5],
    };
    let spec = c.to_oci_spec("c1", &host()).unwrap();
    assert_eq!(
        spec.linux().as_ref().unwrap().sysctl().as_ref().unwrap()["net.ipv4.ip_forward"],
        "1"
    );
    let u = spec.process().as_ref().unwrap().user();
    assert_eq!((u.uid(), u.gid()), (1000, 1000));
    assert_eq!(u.additional_gids().as_deref(), Some(&[5u32][..]));

    c.args.clear();
    assert!(matches!(
        c.to_oci_spec("c1", &host()),
        Err(SpecError::Invalid(_))
    ));
    let mut c = config();
    c.rootfs = "relative/rootfs".into();
    assert!(matches!(
        c.to_oci_spec("c1", &host()),
        Err(SpecError::Invalid(_))
    ));
}

fn rootfs_with_users() -> tempfile::TempDir {
    let t = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(t.path().join("etc")).unwrap();
    std::fs::write(
        t.path().join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nweb:x:1000:1001:web:/home/web:/bin/sh\n# comment\n",
    )
    .unwrap();
    std::fs::write(
        t.path().join("etc/group"),
        "root:x:0:\nweb:x:1001:\nwheel:x:10:root,web\naudio:x:29:web\nstaff:x:50:\n",
    )
    .unwrap();
    t
}

#[test]
fn resolves_users_and_groups_from_the_image() {
    let t = rootfs_with_users();
    let r = resolve_user(t.path(), "web", &[]).unwrap();
    assert_eq!(
        r,
        UserIds {
            uid: 1000,
            gid: 1001,
            additional_gids: vec![10, 29]
        }
    );
    // By number, with a group name, and with extra groups from the request.
    assert_eq!(resolve_user(t.path(), "1000", &[]).unwrap(), r);
    let r = resolve_user(t.path(), "web:staff", &[7]).unwrap();
    assert_eq!((r.uid, r.gid), (1000, 50));
    assert_eq!(r.additional_gids, vec![10, 29, 7]);
    // A uid unknown to the image runs with gid 0, as upstream.
    let r = resolve_user(t.path(), "4242:4343", &[]).unwrap();
    assert_eq!((r.uid, r.gid, r.additional_gids.len()), (4242, 4343, 0));
    let r = resolve_user(t.path(), "4242", &[]).unwrap();
    assert_eq!((r.uid, r.gid), (4242, 0));
    // Unknown names are errors the user can act on.
    let e = resolve_user(t.path(), "nobody", &[]).unwrap_err();
    assert!(e.to_string().contains("nobody"), "{e}");
    assert!(resolve_user(t.path(), "web:nogroup", &[]).is_err());
    // An image without /etc/passwd still accepts numeric users.
    let empty = tempfile::tempdir().unwrap();
    assert_eq!(resolve_user(empty.path(), "0", &[]).unwrap().uid, 0);
}
