//! Volume plugins on a real file system (tmpfs for real, in a private mount namespace).

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use common::{ctx, mode, pod, read, FakeMounter, MountGuard, Objects};
use deckhand_storage::{setup, teardown, teardown_all, LinuxMounter, Mounter, Plugin, VolumeError};
use k8s_openapi::api::core::v1::{
    ConfigMapProjection, ConfigMapVolumeSource, Container, DownwardAPIProjection,
    DownwardAPIVolumeFile, DownwardAPIVolumeSource, EmptyDirVolumeSource, HostPathVolumeSource,
    KeyToPath, ObjectFieldSelector, ProjectedVolumeSource, ResourceFieldSelector,
    ResourceRequirements, SecretProjection, SecretVolumeSource, ServiceAccountTokenProjection,
    Volume, VolumeProjection,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

fn vol(name: &str) -> Volume {
    Volume {
        name: name.into(),
        ..Default::default()
    }
}

fn empty_dir(name: &str, medium: Option<&str>, size: Option<&str>) -> Volume {
    Volume {
        empty_dir: Some(EmptyDirVolumeSource {
            medium: medium.map(Into::into),
            size_limit: size.map(|s| Quantity(s.into())),
        }),
        ..vol(name)
    }
}

fn host_path(path: &Path, type_: &str) -> Volume {
    Volume {
        host_path: Some(HostPathVolumeSource {
            path: path.display().to_string(),
            type_: Some(type_.into()),
        }),
        ..vol("hp")
    }
}

fn item(key: &str, path: &str, mode: Option<i32>) -> KeyToPath {
    KeyToPath {
        key: key.into(),
        path: path.into(),
        mode,
    }
}

#[test]
fn empty_dir_on_disk() {
    let tmp = tempfile::tempdir().unwrap();
    let (m, o) = (FakeMounter::default(), Objects::default());
    let c = ctx(&m, &o);
    let v = empty_dir("scratch", None, None);
    let mv = setup(&pod(), &v, tmp.path(), &c).unwrap();
    assert_eq!(
        mv.host_path,
        tmp.path().join("kubernetes.io~empty-dir/scratch")
    );
    assert_eq!(mv.plugin, Plugin::EmptyDir);
    assert!(!mv.read_only);
    assert_eq!(mode(&mv.host_path), 0o777);
    std::fs::write(mv.host_path.join("f"), "x").unwrap();
    setup(&pod(), &v, tmp.path(), &c).unwrap();
    assert_eq!(
        read(&mv.host_path.join("f")),
        "x",
        "setup again keeps contents"
    );
    assert!(m.calls().is_empty(), "a disk emptyDir mounts nothing");
    teardown(&pod(), &v, tmp.path(), &c).unwrap();
    assert!(!mv.host_path.exists());
    teardown(&pod(), &v, tmp.path(), &c).unwrap();
}

#[test]
fn empty_dir_memory_size_from_limit_pod_and_allocatable() {
    let tmp = tempfile::tempdir().unwrap();
    let (m, o) = (FakeMounter::default(), Objects::default());
    let c = ctx(&m, &o);
    setup(
        &pod(),
        &empty_dir("a", Some("Memory"), Some("64Mi")),
        tmp.path(),
        &c,
    )
    .unwrap();
    setup(
        &pod(),
        &empty_dir("b", Some("Memory"), None),
        tmp.path(),
        &c,
    )
    .unwrap();
    let mut limited = pod();
    limited.spec.as_mut().unwrap().containers[0].resources = Some(ResourceRequirements {
        limits: Some(BTreeMap::from([(
            "memory".to_string(),
            Quantity("256Mi".into()),
        )])),
        ..Default::default()
    });
    setup(
        &limited,
        &empty_dir("c", Some("Memory"), Some("1Gi")),
        tmp.path(),
        &c,
    )
    .unwrap();
    // Already mounted: no second mount.
    setup(
        &pod(),
        &empty_dir("a", Some("Memory"), Some("64Mi")),
        tmp.path(),
        &c,
    )
    .unwrap();
    let base = tmp.path().join("kubernetes.io~empty-dir");
    assert_eq!(
        m.calls(),
        vec![
            format!(
                "tmpfs {} size=Some({})",
                base.join("a").display(),
                64u64 << 20
            ),
            format!(
                "tmpfs {} size=Some({})",
                base.join("b").display(),
                8u64 << 30
            ),
            format!(
                "tmpfs {} size=Some({})",
                base.join("c").display(),
                256u64 << 20
            ),
        ]
    );
    teardown(
        &pod(),
        &empty_dir("a", Some("Memory"), None),
        tmp.path(),
        &c,
    )
    .unwrap();
    assert_eq!(
        m.calls().last().unwrap(),
        &format!("unmount {}", base.join("a").display())
    );
    assert!(!base.join("a").exists());
    let err = setup(
        &pod(),
        &empty_dir("d", Some("HugePages"), None),
        tmp.path(),
        &c,
    )
    .unwrap_err();
    assert!(matches!(err, VolumeError::Invalid { .. }), "{err}");
}

#[test]
fn empty_dir_memory_real_tmpfs_enforces_size_and_unmounts() {
    common::private_mounts();
    let tmp = tempfile::tempdir().unwrap();
    let o = Objects::default();
    let c = ctx(&LinuxMounter, &o);
    let v = empty_dir("mem", Some("Memory"), Some("1Mi"));
    let mv = setup(&pod(), &v, tmp.path(), &c).unwrap();
    let _guard = MountGuard(mv.host_path.clone());
    assert!(LinuxMounter.is_mount_point(&mv.host_path).unwrap());
    let mut f = std::fs::File::create(mv.host_path.join("big")).unwrap();
    let chunk = vec![7u8; 64 << 10];
    let mut err = None;
    for _ in 0..64 {
        if let Err(e) = f.write_all(&chunk).and_then(|_| f.flush()) {
            err = Some(e);
            break;
        }
    }
    let err = err.expect("writing 4 MiB into a 1 MiB tmpfs must fail");
    assert_eq!(err.raw_os_error(), Some(28), "ENOSPC expected, got {err}");
    drop(f);
    setup(&pod(), &v, tmp.path(), &c).unwrap();
    teardown(&pod(), &v, tmp.path(), &c).unwrap();
    assert!(!LinuxMounter.is_mount_point(&mv.host_path).unwrap());
    assert!(!mv.host_path.exists());
}

#[test]
fn host_path_type_checks() {
    let tmp = tempfile::tempdir().unwrap();
    let (m, o) = (FakeMounter::default(), Objects::default());
    let c = ctx(&m, &o);
    let p = pod();
    let dir = tmp.path().join("dir");
    let file = tmp.path().join("file");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(&file, "f").unwrap();
    let sock = tmp.path().join("sock");
    let _listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    let msg = |v: Volume| setup(&p, &v, tmp.path(), &c).unwrap_err().to_string();

    let mv = setup(&p, &host_path(&dir, ""), tmp.path(), &c).unwrap();
    assert_eq!(mv.host_path, dir);
    setup(
        &p,
        &host_path(&tmp.path().join("missing"), ""),
        tmp.path(),
        &c,
    )
    .unwrap();
    setup(&p, &host_path(&dir, "Directory"), tmp.path(), &c).unwrap();
    assert!(msg(host_path(&file, "Directory")).ends_with(&format!(
        "hostPath type check failed: {} is not a directory",
        file.display()
    )));
    let created = tmp.path().join("new/deep");
    setup(
        &p,
        &host_path(&created, "DirectoryOrCreate"),
        tmp.path(),
        &c,
    )
    .unwrap();
    assert!(created.is_dir());
    assert_eq!(mode(&created), 0o755);
    assert!(msg(host_path(&file, "DirectoryOrCreate")).contains("is not a directory"));
    setup(&p, &host_path(&file, "File"), tmp.path(), &c).unwrap();
    assert!(msg(host_path(&dir, "File")).ends_with(&format!("{} is not a file", dir.display())));
    let new_file = tmp.path().join("newfile");
    setup(&p, &host_path(&new_file, "FileOrCreate"), tmp.path(), &c).unwrap();
    assert!(new_file.is_file());
    assert_eq!(mode(&new_file), 0o644);
    let orphan = tmp.path().join("no-parent/file");
    let err = setup(&p, &host_path(&orphan, "FileOrCreate"), tmp.path(), &c).unwrap_err();
    assert!(
        matches!(err, VolumeError::Io { .. }),
        "parent must exist: {err}"
    );
    setup(&p, &host_path(&sock, "Socket"), tmp.path(), &c).unwrap();
    assert!(msg(host_path(&file, "Socket")).ends_with("is not a socket file"));
    setup(
        &p,
        &host_path(Path::new("/dev/null"), "CharDevice"),
        tmp.path(),
        &c,
    )
    .unwrap();
    assert!(msg(host_path(&file, "CharDevice")).ends_with("is not a character device"));
    assert!(
        msg(host_path(Path::new("/dev/null"), "BlockDevice")).ends_with("is not a block device")
    );
    if deckhand_sys::privilege::is_root() {
        let blk = tmp.path().join("blk");
        deckhand_sys::fs::mknod(&blk, deckhand_sys::fs::NodeKind::Block, 0o600, 7, 250).unwrap();
        setup(&p, &host_path(&blk, "BlockDevice"), tmp.path(), &c).unwrap();
    }
    assert!(msg(host_path(&dir, "Bogus")).contains("Bogus is an invalid volume type"));
    // Teardown never touches the host path.
    teardown(&p, &host_path(&dir, "Directory"), tmp.path(), &c).unwrap();
    assert!(dir.is_dir());
}

fn config_map_vol(
    items: Option<Vec<KeyToPath>>,
    default_mode: Option<i32>,
    optional: Option<bool>,
) -> Volume {
    Volume {
        config_map: Some(ConfigMapVolumeSource {
            name: "cfg".into(),
            items,
            default_mode,
            optional,
        }),
        ..vol("config")
    }
}

#[test]
fn config_map_all_keys_items_modes_and_updates() {
    let tmp = tempfile::tempdir().unwrap();
    let m = FakeMounter::default();
    let o = Objects::default().with_config_map(
        "cfg",
        &[("a.conf", "A"), ("b.conf", "B")],
        &[("bin", &[0, 1, 2])],
    );
    let c = ctx(&m, &o);
    let mv = setup(&pod(), &config_map_vol(None, None, None), tmp.path(), &c).unwrap();
    assert_eq!(
        mv.host_path,
        tmp.path().join("kubernetes.io~configmap/config")
    );
    assert!(mv.read_only);
    assert_eq!(read(&mv.host_path.join("a.conf")), "A");
    assert_eq!(
        std::fs::read(mv.host_path.join("bin")).unwrap(),
        vec![0, 1, 2]
    );
    assert_eq!(mode(&mv.host_path.join("a.conf")), 0o644);
    assert!(m.calls().is_empty(), "configMap volumes live on disk");

    let items = vec![
        item("a.conf", "conf/app.conf", Some(0o600)),
        item("bin", "bin.dat", None),
    ];
    let v = config_map_vol(Some(items), Some(0o440), None);
    let tmp2 = tempfile::tempdir().unwrap();
    let mv = setup(&pod(), &v, tmp2.path(), &c).unwrap();
    assert_eq!(read(&mv.host_path.join("conf/app.conf")), "A");
    assert_eq!(mode(&mv.host_path.join("conf/app.conf")), 0o600);
    assert_eq!(mode(&mv.host_path.join("bin.dat")), 0o440);
    assert!(!mv.host_path.join("b.conf").exists());

    // An update of the object reaches the volume on the next setup.
    let o2 = Objects::default().with_config_map("cfg", &[("a.conf", "A2")], &[("bin", &[9])]);
    let c2 = ctx(&m, &o2);
    setup(&pod(), &v, tmp2.path(), &c2).unwrap();
    assert_eq!(read(&mv.host_path.join("conf/app.conf")), "A2");
    teardown(&pod(), &v, tmp2.path(), &c2).unwrap();
    assert!(!mv.host_path.exists());
}

#[test]
fn config_map_missing_object_or_key() {
    let tmp = tempfile::tempdir().unwrap();
    let m = FakeMounter::default();
    let none = Objects::default();
    let err = setup(
        &pod(),
        &config_map_vol(None, None, None),
        tmp.path(),
        &ctx(&m, &none),
    )
    .unwrap_err();
    assert!(matches!(err, VolumeError::Missing { .. }));
    assert!(err.is_retryable());
    let msg = err.to_string();
    assert!(
        msg.contains("configmap \"default/cfg\" not found")
            && msg.contains("pod default/web volume \"config\""),
        "{msg}"
    );
    let mv = setup(
        &pod(),
        &config_map_vol(None, None, Some(true)),
        tmp.path(),
        &ctx(&m, &none),
    )
    .unwrap();
    assert!(
        mv.host_path.is_dir(),
        "optional and missing: an empty volume"
    );

    let o = Objects::default().with_config_map("cfg", &[("a", "A")], &[]);
    let v = config_map_vol(
        Some(vec![item("nope", "x", None), item("a", "a", None)]),
        None,
        None,
    );
    let err = setup(&pod(), &v, tmp.path(), &ctx(&m, &o)).unwrap_err();
    assert!(
        err.to_string()
            .contains("references non-existent config key: nope"),
        "{err}"
    );
    let v = config_map_vol(
        Some(vec![item("nope", "x", None), item("a", "a", None)]),
        None,
        Some(true),
    );
    let mv = setup(&pod(), &v, tmp.path(), &ctx(&m, &o)).unwrap();
    assert_eq!(read(&mv.host_path.join("a")), "A");
    assert!(!mv.host_path.join("x").exists());
}

fn secret_vol(items: Option<Vec<KeyToPath>>, optional: Option<bool>) -> Volume {
    Volume {
        secret: Some(SecretVolumeSource {
            secret_name: Some("creds".into()),
            items,
            default_mode: Some(0o400),
            optional,
        }),
        ..vol("creds")
    }
}

#[test]
fn secret_on_tmpfs_items_and_optional() {
    let tmp = tempfile::tempdir().unwrap();
    let m = FakeMounter::default();
    let o = Objects::default().with_secret("creds", &[("user", b"admin"), ("pass", b"s3cret")]);
    let c = ctx(&m, &o);
    let v = secret_vol(Some(vec![item("pass", "db/password", None)]), None);
    let mv = setup(&pod(), &v, tmp.path(), &c).unwrap();
    assert_eq!(mv.host_path, tmp.path().join("kubernetes.io~secret/creds"));
    assert!(mv.read_only);
    assert_eq!(read(&mv.host_path.join("db/password")), "s3cret");
    assert_eq!(mode(&mv.host_path.join("db/password")), 0o400);
    assert!(!mv.host_path.join("user").exists());
    assert_eq!(
        m.calls(),
        vec![format!(
            "tmpfs {} size=Some({})",
            mv.host_path.display(),
            8u64 << 30
        )]
    );
    setup(&pod(), &v, tmp.path(), &c).unwrap();
    assert_eq!(m.calls().len(), 1, "already mounted");
    teardown(&pod(), &v, tmp.path(), &c).unwrap();
    assert_eq!(m.calls()[1], format!("unmount {}", mv.host_path.display()));

    let err = setup(
        &pod(),
        &secret_vol(Some(vec![item("nope", "n", None)]), None),
        tmp.path(),
        &c,
    )
    .unwrap_err();
    assert!(
        err.to_string()
            .contains("references non-existent secret key: nope"),
        "{err}"
    );
    let none = Objects::default();
    let err = setup(&pod(), &secret_vol(None, None), tmp.path(), &ctx(&m, &none)).unwrap_err();
    assert!(
        err.to_string()
            .contains("secret \"default/creds\" not found"),
        "{err}"
    );
    setup(
        &pod(),
        &secret_vol(None, Some(true)),
        tmp.path(),
        &ctx(&m, &none),
    )
    .unwrap();
}

#[test]
fn secret_real_tmpfs() {
    common::private_mounts();
    let tmp = tempfile::tempdir().unwrap();
    let o = Objects::default().with_secret("creds", &[("token", b"t0k")]);
    let c = ctx(&LinuxMounter, &o);
    let v = secret_vol(None, None);
    let mv = setup(&pod(), &v, tmp.path(), &c).unwrap();
    let _guard = MountGuard(mv.host_path.clone());
    assert!(LinuxMounter.is_mount_point(&mv.host_path).unwrap());
    assert_eq!(read(&mv.host_path.join("token")), "t0k");
    let removed = teardown_all(tmp.path(), &LinuxMounter).unwrap();
    assert_eq!(removed, vec![mv.host_path.clone()]);
    assert!(!LinuxMounter.is_mount_point(&mv.host_path).unwrap());
    assert!(!mv.host_path.exists());
}

fn field(path: &str, field_path: &str) -> DownwardAPIVolumeFile {
    DownwardAPIVolumeFile {
        path: path.into(),
        field_ref: Some(ObjectFieldSelector {
            field_path: field_path.into(),
            api_version: None,
        }),
        ..Default::default()
    }
}

fn resource(path: &str, res: &str, divisor: Option<&str>) -> DownwardAPIVolumeFile {
    DownwardAPIVolumeFile {
        path: path.into(),
        resource_field_ref: Some(ResourceFieldSelector {
            container_name: Some("main".into()),
            resource: res.into(),
            divisor: divisor.map(|d| Quantity(d.into())),
        }),
        ..Default::default()
    }
}

#[test]
fn downward_api_rendering() {
    let tmp = tempfile::tempdir().unwrap();
    let (m, o) = (FakeMounter::default(), Objects::default());
    let c = ctx(&m, &o);
    let mut p = pod();
    p.spec.as_mut().unwrap().containers[0].resources = Some(ResourceRequirements {
        limits: Some(BTreeMap::from([(
            "cpu".to_string(),
            Quantity("1500m".into()),
        )])),
        requests: Some(BTreeMap::from([(
            "memory".to_string(),
            Quantity("64Mi".into()),
        )])),
        ..Default::default()
    });
    let v = Volume {
        downward_api: Some(DownwardAPIVolumeSource {
            default_mode: Some(0o444),
            items: Some(vec![
                field("labels", "metadata.labels"),
                field("annotations", "metadata.annotations"),
                field("name", "metadata.name"),
                field("ns", "metadata.namespace"),
                field("uid", "metadata.uid"),
                field("app", "metadata.labels['app']"),
                resource("cpu_limit", "limits.cpu", None),
                resource("cpu_limit_m", "limits.cpu", Some("1m")),
                resource("mem_request_mi", "requests.memory", Some("1Mi")),
                resource("mem_limit", "limits.memory", Some("1Gi")),
            ]),
        }),
        ..vol("podinfo")
    };
    let mv = setup(&p, &v, tmp.path(), &c).unwrap();
    assert_eq!(
        mv.host_path,
        tmp.path().join("kubernetes.io~downward-api/podinfo")
    );
    let r = |f: &str| read(&mv.host_path.join(f));
    assert_eq!(r("labels"), "app=\"web\"\ntier=\"front \\\"end\\\"\"");
    assert_eq!(r("annotations"), "note=\"a\\nb\"");
    assert_eq!(r("name"), "web");
    assert_eq!(r("ns"), "default");
    assert_eq!(r("uid"), "1234-abcd");
    assert_eq!(r("app"), "web");
    assert_eq!(r("cpu_limit"), "2", "1.5 cores rounded up");
    assert_eq!(r("cpu_limit_m"), "1500");
    assert_eq!(r("mem_request_mi"), "64");
    assert_eq!(r("mem_limit"), "8", "no limit: node allocatable (8Gi)");
    assert_eq!(mode(&mv.host_path.join("name")), 0o444);

    let bad = Volume {
        downward_api: Some(DownwardAPIVolumeSource {
            items: Some(vec![field("ip", "status.podIP")]),
            default_mode: None,
        }),
        ..vol("bad")
    };
    let err = setup(&p, &bad, tmp.path(), &c).unwrap_err();
    assert!(
        err.to_string()
            .contains("unsupported fieldPath: status.podIP"),
        "{err}"
    );
    assert!(!err.is_retryable());
}

fn projected(sources: Vec<VolumeProjection>) -> Volume {
    Volume {
        projected: Some(ProjectedVolumeSource {
            default_mode: Some(0o640),
            sources: Some(sources),
        }),
        ..vol("all")
    }
}

#[test]
fn projected_merges_sources_and_rejects_conflicts() {
    let tmp = tempfile::tempdir().unwrap();
    let m = FakeMounter::default();
    let mut o = Objects::default()
        .with_config_map("cfg", &[("a", "A")], &[])
        .with_secret("creds", &[("pass", b"P")]);
    o.token = b"jwt".to_vec();
    let c = ctx(&m, &o);
    let sources = vec![
        VolumeProjection {
            config_map: Some(ConfigMapProjection {
                name: "cfg".into(),
                items: None,
                optional: None,
            }),
            ..Default::default()
        },
        VolumeProjection {
            secret: Some(SecretProjection {
                name: "creds".into(),
                items: Some(vec![item("pass", "secret/pass", Some(0o400))]),
                optional: None,
            }),
            ..Default::default()
        },
        VolumeProjection {
            downward_api: Some(DownwardAPIProjection {
                items: Some(vec![field("name", "metadata.name")]),
            }),
            ..Default::default()
        },
        VolumeProjection {
            service_account_token: Some(ServiceAccountTokenProjection {
                path: "token".into(),
                audience: None,
                expiration_seconds: Some(3600),
            }),
            ..Default::default()
        },
    ];
    let mv = setup(&pod(), &projected(sources.clone()), tmp.path(), &c).unwrap();
    assert_eq!(mv.host_path, tmp.path().join("kubernetes.io~projected/all"));
    assert!(mv.read_only);
    assert_eq!(read(&mv.host_path.join("a")), "A");
    assert_eq!(mode(&mv.host_path.join("a")), 0o640);
    assert_eq!(read(&mv.host_path.join("secret/pass")), "P");
    assert_eq!(mode(&mv.host_path.join("secret/pass")), 0o400);
    assert_eq!(read(&mv.host_path.join("name")), "web");
    assert_eq!(read(&mv.host_path.join("token")), "jwt");
    assert_eq!(mode(&mv.host_path.join("token")), 0o640);
    assert!(
        m.calls()[0].starts_with("tmpfs "),
        "projected volumes are on tmpfs"
    );

    let mut conflicting = sources;
    conflicting.push(VolumeProjection {
        downward_api: Some(DownwardAPIProjection {
            items: Some(vec![field("a", "metadata.uid")]),
        }),
        ..Default::default()
    });
    let err = setup(&pod(), &projected(conflicting), tmp.path(), &c).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("conflicting duplicate paths") && msg.contains("\"a\""),
        "{msg}"
    );
    assert_eq!(
        read(&mv.host_path.join("a")),
        "A",
        "a failed update leaves the old contents"
    );
}

#[test]
fn unsupported_source_is_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    let (m, o) = (FakeMounter::default(), Objects::default());
    let err = setup(&pod(), &vol("pvc"), tmp.path(), &ctx(&m, &o)).unwrap_err();
    assert!(matches!(err, VolumeError::Unsupported { .. }));
    assert!(
        err.to_string().contains("pod default/web volume \"pvc\""),
        "{err}"
    );
    let _ = Container::default();
}

#[test]
fn fs_group_on_empty_dir_and_config_map() {
    use std::os::unix::fs::MetadataExt;
    common::require_root();
    let tmp = tempfile::tempdir().unwrap();
    let m = FakeMounter::default();
    let o = Objects::default().with_config_map("cfg", &[("a", "A")], &[]);
    let mut c = ctx(&m, &o);
    c.fs_group = Some(3000);
    let mv = setup(&pod(), &empty_dir("scratch", None, None), tmp.path(), &c).unwrap();
    let meta = std::fs::metadata(&mv.host_path).unwrap();
    assert_eq!(meta.gid(), 3000);
    assert_eq!(meta.mode() & 0o7777, 0o2777, "setgid, group-writable");
    let mv = setup(
        &pod(),
        &config_map_vol(None, Some(0o400), None),
        tmp.path(),
        &c,
    )
    .unwrap();
    let meta = std::fs::metadata(mv.host_path.join("a")).unwrap();
    assert_eq!(meta.gid(), 3000);
    assert_eq!(meta.mode() & 0o7777, 0o440, "fsGroup adds group read");
}

#[test]
fn projected_token_owned_by_run_as_user() {
    use std::os::unix::fs::MetadataExt;
    common::require_root();
    let tmp = tempfile::tempdir().unwrap();
    let m = FakeMounter::default();
    let o = Objects {
        token: b"jwt".to_vec(),
        ..Default::default()
    };
    let c = ctx(&m, &o);
    let mut p = pod();
    p.spec.as_mut().unwrap().security_context =
        Some(k8s_openapi::api::core::v1::PodSecurityContext {
            run_as_user: Some(1001),
            ..Default::default()
        });
    let v = projected(vec![VolumeProjection {
        service_account_token: Some(ServiceAccountTokenProjection {
            path: "token".into(),
            audience: Some("api".into()),
            expiration_seconds: None,
        }),
        ..Default::default()
    }]);
    let mv = setup(&p, &v, tmp.path(), &c).unwrap();
    let meta = std::fs::metadata(mv.host_path.join("token")).unwrap();
    assert_eq!(meta.uid(), 1001);
    assert_eq!(meta.mode() & 0o7777, 0o600);
}

#[test]
fn teardown_all_cleans_orphans_with_fake_mounter() {
    let tmp = tempfile::tempdir().unwrap();
    let m = FakeMounter::default();
    let o = Objects::default().with_secret("creds", &[("k", b"v")]);
    let c = ctx(&m, &o);
    let s = setup(&pod(), &secret_vol(None, None), tmp.path(), &c).unwrap();
    let e = setup(&pod(), &empty_dir("scratch", None, None), tmp.path(), &c).unwrap();
    let mut removed = teardown_all(tmp.path(), &m).unwrap();
    removed.sort();
    let mut want = vec![s.host_path.clone(), e.host_path.clone()];
    want.sort();
    assert_eq!(removed, want);
    assert!(m
        .calls()
        .contains(&format!("unmount {}", s.host_path.display())));
    assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 0);
    assert!(teardown_all(&tmp.path().join("gone"), &m)
        .unwrap()
        .is_empty());
}

#[test]
fn teardown_never_deletes_through_a_nested_mount() {
    common::private_mounts();
    let tmp = tempfile::tempdir().unwrap();
    let o = Objects::default();
    let c = ctx(&LinuxMounter, &o);
    let v = empty_dir("scratch", None, None);
    let mv = setup(&pod(), &v, tmp.path(), &c).unwrap();
    // Something (a propagated container mount) is mounted inside the volume.
    let nested = mv.host_path.join("sub/inner");
    std::fs::create_dir_all(&nested).unwrap();
    deckhand_sys::mount::mount_tmpfs(&nested, Some(1 << 20), None).unwrap();
    let _guard = MountGuard(nested.clone());
    std::fs::write(nested.join("precious"), "keep").unwrap();
    let err = teardown(&pod(), &v, tmp.path(), &c).unwrap_err();
    assert!(
        err.to_string().contains("a file system is mounted here"),
        "{err}"
    );
    assert_eq!(read(&nested.join("precious")), "keep");
    LinuxMounter.unmount(&nested).unwrap();
    teardown(&pod(), &v, tmp.path(), &c).unwrap();
    assert!(!mv.host_path.exists());
}
