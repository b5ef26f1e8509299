//! volumeMounts → CRI mounts, with subPath checks on a real file system.

use std::collections::BTreeMap;
use std::path::Path;

use deckhand_storage::mounts::expand_sub_path;
use deckhand_storage::{
    clean_sub_paths, container_mounts, ContainerMountError, LinuxMounter, MountOptions,
    MountedVolume, Mounter, Plugin, SafeSubPaths,
};

fn plain(runtime_supports_rro: bool) -> MountOptions<'static> {
    MountOptions {
        runtime_supports_rro,
        safe_sub_paths: None,
    }
}
use k8s_cri::v1::MountPropagation;
use k8s_openapi::api::core::v1::{Container, SecurityContext, VolumeMount};

fn volumes(root: &Path) -> BTreeMap<String, MountedVolume> {
    let data = root.join("data");
    std::fs::create_dir_all(data.join("logs")).unwrap();
    let cfg = root.join("cfg");
    std::fs::create_dir_all(&cfg).unwrap();
    BTreeMap::from([
        (
            "data".to_string(),
            MountedVolume {
                name: "data".into(),
                plugin: Plugin::EmptyDir,
                host_path: data,
                read_only: false,
            },
        ),
        (
            "cfg".to_string(),
            MountedVolume {
                name: "cfg".into(),
                plugin: Plugin::ConfigMap,
                host_path: cfg,
                read_only: true,
            },
        ),
    ])
}

fn mount(name: &str, path: &str) -> VolumeMount {
    VolumeMount {
        name: name.into(),
        mount_path: path.into(),
        ..Default::default()
    }
}

fn container(mounts: Vec<VolumeMount>) -> Container {
    Container {
        name: "main".into(),
        volume_mounts: Some(mounts),
        ..Default::default()
    }
}

#[test]
fn plain_mounts_readonly_and_propagation() {
    let tmp = tempfile::tempdir().unwrap();
    let vols = volumes(tmp.path());
    let c = container(vec![
        mount("data", "/data"),
        VolumeMount {
            read_only: Some(true),
            mount_propagation: Some("HostToContainer".into()),
            ..mount("data", "/ro")
        },
        mount("cfg", "/etc/app"),
    ]);
    let m = container_mounts(&c, &vols, &BTreeMap::new(), &plain(false)).unwrap();
    assert_eq!(m.len(), 3);
    assert_eq!(m[0].container_path, "/data");
    assert_eq!(m[0].host_path, tmp.path().join("data").to_str().unwrap());
    assert!(!m[0].readonly);
    assert_eq!(
        m[0].propagation,
        MountPropagation::PropagationPrivate as i32
    );
    assert!(m[1].readonly);
    assert_eq!(
        m[1].propagation,
        MountPropagation::PropagationHostToContainer as i32
    );
    assert!(m[2].readonly, "configMap volumes are always read-only");
}

#[test]
fn bidirectional_needs_privileged() {
    let tmp = tempfile::tempdir().unwrap();
    let vols = volumes(tmp.path());
    let mut c = container(vec![VolumeMount {
        mount_propagation: Some("Bidirectional".into()),
        ..mount("data", "/data")
    }]);
    let err = container_mounts(&c, &vols, &BTreeMap::new(), &plain(false)).unwrap_err();
    assert!(
        err.to_string().contains("only to privileged containers"),
        "{err}"
    );
    c.security_context = Some(SecurityContext {
        privileged: Some(true),
        ..Default::default()
    });
    let m = container_mounts(&c, &vols, &BTreeMap::new(), &plain(false)).unwrap();
    assert_eq!(
        m[0].propagation,
        MountPropagation::PropagationBidirectional as i32
    );
}

#[test]
fn sub_path_and_sub_path_expr() {
    let tmp = tempfile::tempdir().unwrap();
    let vols = volumes(tmp.path());
    let env = BTreeMap::from([("POD_NAME".to_string(), "web-0".to_string())]);
    let c = container(vec![
        VolumeMount {
            sub_path: Some("logs".into()),
            ..mount("data", "/logs")
        },
        VolumeMount {
            sub_path_expr: Some("pods/$(POD_NAME)".into()),
            ..mount("data", "/mine")
        },
    ]);
    let m = container_mounts(&c, &vols, &env, &plain(false)).unwrap();
    assert_eq!(
        m[0].host_path,
        tmp.path().join("data/logs").to_str().unwrap()
    );
    let created = tmp.path().join("data/pods/web-0");
    assert_eq!(m[1].host_path, created.to_str().unwrap());
    assert!(
        created.is_dir(),
        "a missing subPath is created inside the volume"
    );

    let c = container(vec![VolumeMount {
        sub_path_expr: Some("$(MISSING)/$(POD_NAME)".into()),
        ..mount("data", "/x")
    }]);
    let err = container_mounts(&c, &vols, &env, &plain(false)).unwrap_err();
    assert!(
        err.to_string().contains("missing value for MISSING"),
        "{err}"
    );
    assert_eq!(
        expand_sub_path("a$$b/$(POD_NAME)/$(x", &env).unwrap(),
        "a$b/web-0/$(x"
    );
}

#[test]
fn sub_path_escapes_are_rejected() {
    let tmp = tempfile::tempdir().unwrap();
    let vols = volumes(tmp.path());
    let outside = tmp.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    std::os::unix::fs::symlink(&outside, tmp.path().join("data/evil")).unwrap();
    std::os::unix::fs::symlink("../../outside", tmp.path().join("data/logs/rel")).unwrap();
    std::os::unix::fs::symlink("logs", tmp.path().join("data/fine")).unwrap();
    let try_sub = |sub: &str| {
        let c = container(vec![VolumeMount {
            sub_path: Some(sub.into()),
            ..mount("data", "/x")
        }]);
        container_mounts(&c, &vols, &BTreeMap::new(), &plain(false))
    };
    let err = try_sub("../outside").unwrap_err();
    assert!(
        matches!(err, ContainerMountError::Invalid { .. })
            && err.to_string().contains("must not contain '..'"),
        "{err}"
    );
    let err = try_sub("/etc").unwrap_err();
    assert!(
        err.to_string().contains("must not be an absolute path"),
        "{err}"
    );
    for sub in ["evil", "evil/new", "logs/rel"] {
        let err = try_sub(sub).unwrap_err();
        assert!(
            matches!(err, ContainerMountError::Escape { .. }),
            "{sub}: {err}"
        );
        assert!(err.to_string().contains("outside the volume"), "{err}");
    }
    assert!(
        !outside.join("new").exists(),
        "nothing created outside the volume"
    );
    // A symlink that stays inside the volume is fine.
    let m = try_sub("fine").unwrap();
    assert_eq!(
        m[0].host_path,
        tmp.path()
            .join("data/logs")
            .canonicalize()
            .unwrap()
            .to_str()
            .unwrap()
    );

    let c = container(vec![mount("nope", "/x")]);
    let err = container_mounts(&c, &vols, &BTreeMap::new(), &plain(false)).unwrap_err();
    assert!(matches!(err, ContainerMountError::NoVolume { .. }), "{err}");
}

#[test]
fn recursive_read_only() {
    let tmp = tempfile::tempdir().unwrap();
    let vols = volumes(tmp.path());
    let rro = |mode: &str, ro: bool| VolumeMount {
        read_only: Some(ro),
        recursive_read_only: Some(mode.into()),
        ..mount("data", "/data")
    };
    let none = BTreeMap::new();
    let m = container_mounts(
        &container(vec![rro("IfPossible", true)]),
        &vols,
        &none,
        &plain(false),
    )
    .unwrap();
    assert!(m[0].readonly && !m[0].recursive_read_only);
    let m = container_mounts(
        &container(vec![rro("IfPossible", true)]),
        &vols,
        &none,
        &plain(true),
    )
    .unwrap();
    assert!(m[0].recursive_read_only);
    let m = container_mounts(
        &container(vec![rro("Enabled", true)]),
        &vols,
        &none,
        &plain(true),
    )
    .unwrap();
    assert!(m[0].recursive_read_only);
    let err = container_mounts(
        &container(vec![rro("Enabled", true)]),
        &vols,
        &none,
        &plain(false),
    )
    .unwrap_err();
    assert!(
        err.to_string()
            .contains("does not support recursive read-only"),
        "{err}"
    );
    let err = container_mounts(
        &container(vec![rro("Enabled", false)]),
        &vols,
        &none,
        &plain(true),
    )
    .unwrap_err();
    assert!(err.to_string().contains("requires readOnly"), "{err}");
}

#[test]
fn safe_sub_path_binds_from_an_opened_descriptor() {
    assert!(
        deckhand_sys::privilege::is_root(),
        "bind mounts: run as root"
    );
    deckhand_sys::mount::enter_private_mount_namespace().expect("private mount namespace");
    let tmp = tempfile::tempdir().unwrap();
    let vols = volumes(tmp.path());
    std::fs::write(tmp.path().join("data/logs/app.log"), "hello").unwrap();
    let pod_dir = tmp.path().join("pod");
    let opts = MountOptions {
        runtime_supports_rro: false,
        safe_sub_paths: Some(SafeSubPaths {
            pod_dir: &pod_dir,
            mounter: &LinuxMounter,
        }),
    };
    let c = container(vec![
        mount("data", "/data"),
        VolumeMount {
            sub_path: Some("logs".into()),
            ..mount("data", "/logs")
        },
        VolumeMount {
            sub_path: Some("logs/app.log".into()),
            ..mount("data", "/app.log")
        },
    ]);
    let m = container_mounts(&c, &vols, &BTreeMap::new(), &opts).unwrap();
    let dir_bind = pod_dir.join("volume-subpaths/data/main/1");
    let file_bind = pod_dir.join("volume-subpaths/data/main/2");
    struct Cleanup<'a>(&'a Path);
    impl Drop for Cleanup<'_> {
        fn drop(&mut self) {
            let _ = clean_sub_paths(self.0, &LinuxMounter);
        }
    }
    let _cleanup = Cleanup(&pod_dir);
    assert_eq!(
        m[0].host_path,
        tmp.path().join("data").to_str().unwrap(),
        "no subPath: no bind"
    );
    assert_eq!(m[1].host_path, dir_bind.to_str().unwrap());
    assert_eq!(m[2].host_path, file_bind.to_str().unwrap());
    assert!(LinuxMounter.is_mount_point(&dir_bind).unwrap());
    assert_eq!(
        std::fs::read_to_string(dir_bind.join("app.log")).unwrap(),
        "hello"
    );
    assert_eq!(std::fs::read_to_string(&file_bind).unwrap(), "hello");
    // Again (a container restart): rebinds in place.
    container_mounts(&c, &vols, &BTreeMap::new(), &opts).unwrap();
    assert_eq!(std::fs::read_to_string(&file_bind).unwrap(), "hello");

    // A symlink swapped in after the check is refused by the descriptor walk.
    let outside = tmp.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    std::os::unix::fs::symlink(&outside, tmp.path().join("data/swapped")).unwrap();
    let target = tmp.path().join("t");
    std::fs::create_dir(&target).unwrap();
    let err = deckhand_sys::mount::bind_beneath(
        &tmp.path().join("data"),
        Path::new("swapped"),
        &target,
        false,
    )
    .unwrap_err();
    assert!(err.to_string().contains("is a symlink"), "{err}");
    assert!(!LinuxMounter.is_mount_point(&target).unwrap());

    clean_sub_paths(&pod_dir, &LinuxMounter).unwrap();
    assert!(!LinuxMounter.is_mount_point(&dir_bind).unwrap());
    assert!(!pod_dir.join("volume-subpaths").exists());
    assert_eq!(
        std::fs::read_to_string(tmp.path().join("data/logs/app.log")).unwrap(),
        "hello",
        "cleanup never deletes volume data"
    );
}
