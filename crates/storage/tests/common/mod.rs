//! Shared fixtures: a pod, an in-memory object cache, a recording fake mounter, and a real
//! mount guard that unmounts on drop.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use deckhand_storage::{LookupError, Mounter, NodeAllocatable, ObjectLookup, VolumeContext};
use k8s_openapi::api::core::v1::{
    ConfigMap, Container, Pod, PodSpec, Secret, ServiceAccountTokenProjection,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::ByteString;

pub fn pod() -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some("web".into()),
            namespace: Some("default".into()),
            uid: Some("1234-abcd".into()),
            labels: Some(BTreeMap::from([
                ("app".to_string(), "web".to_string()),
                ("tier".to_string(), "front \"end\"".to_string()),
            ])),
            annotations: Some(BTreeMap::from([("note".to_string(), "a\nb".to_string())])),
            ..Default::default()
        },
        spec: Some(PodSpec {
            containers: vec![Container {
                name: "main".into(),
                ..Default::default()
            }],
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[derive(Default)]
pub struct Objects {
    pub config_maps: BTreeMap<(String, String), ConfigMap>,
    pub secrets: BTreeMap<(String, String), Secret>,
    pub token: Vec<u8>,
}

impl Objects {
    pub fn with_config_map(
        mut self,
        name: &str,
        data: &[(&str, &str)],
        binary: &[(&str, &[u8])],
    ) -> Self {
        let cm = ConfigMap {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("default".into()),
                ..Default::default()
            },
            data: Some(
                data.iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
            binary_data: Some(
                binary
                    .iter()
                    .map(|(k, v)| (k.to_string(), ByteString(v.to_vec())))
                    .collect(),
            ),
            ..Default::default()
        };
        self.config_maps.insert(("default".into(), name.into()), cm);
        self
    }

    pub fn with_secret(mut self, name: &str, data: &[(&str, &[u8])]) -> Self {
        let s = Secret {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("default".into()),
                ..Default::default()
            },
            data: Some(
                data.iter()
                    .map(|(k, v)| (k.to_string(), ByteString(v.to_vec())))
                    .collect(),
            ),
            ..Default::default()
        };
        self.secrets.insert(("default".into(), name.into()), s);
        self
    }
}

impl ObjectLookup for Objects {
    fn config_map(&self, namespace: &str, name: &str) -> Result<Option<ConfigMap>, LookupError> {
        Ok(self
            .config_maps
            .get(&(namespace.into(), name.into()))
            .cloned())
    }
    fn secret(&self, namespace: &str, name: &str) -> Result<Option<Secret>, LookupError> {
        Ok(self.secrets.get(&(namespace.into(), name.into())).cloned())
    }
    fn service_account_token(
        &self,
        _pod: &Pod,
        _projection: &ServiceAccountTokenProjection,
    ) -> Result<Vec<u8>, LookupError> {
        Ok(self.token.clone())
    }
}

/// Records calls; "mounts" are remembered, not made.
#[derive(Default)]
pub struct FakeMounter {
    pub calls: Mutex<Vec<String>>,
    pub mounted: Mutex<Vec<PathBuf>>,
}

impl Mounter for FakeMounter {
    fn mount_tmpfs(
        &self,
        target: &Path,
        size_bytes: Option<u64>,
    ) -> Result<(), deckhand_sys::mount::MountError> {
        self.calls
            .lock()
            .unwrap()
            .push(format!("tmpfs {} size={size_bytes:?}", target.display()));
        self.mounted.lock().unwrap().push(target.to_path_buf());
        Ok(())
    }
    fn unmount(&self, target: &Path) -> Result<(), deckhand_sys::mount::MountError> {
        self.calls
            .lock()
            .unwrap()
            .push(format!("unmount {}", target.display()));
        self.mounted.lock().unwrap().retain(|p| p != target);
        Ok(())
    }
    fn is_mount_point(&self, target: &Path) -> Result<bool, std::io::Error> {
        Ok(self.mounted.lock().unwrap().iter().any(|p| p == target))
    }
    fn bind_beneath(
        &self,
        base: &Path,
        rel: &Path,
        target: &Path,
        read_only: bool,
    ) -> Result<(), deckhand_sys::mount::MountError> {
        self.calls.lock().unwrap().push(format!(
            "bind {} {} -> {} ro={read_only}",
            base.display(),
            rel.display(),
            target.display()
        ));
        self.mounted.lock().unwrap().push(target.to_path_buf());
        Ok(())
    }
}

impl FakeMounter {
    pub fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap().clone()
    }
}

pub fn ctx<'a>(mounter: &'a dyn Mounter, objects: &'a dyn ObjectLookup) -> VolumeContext<'a> {
    VolumeContext {
        node_allocatable: NodeAllocatable {
            cpu_millis: Some(4000),
            memory_bytes: Some(8 << 30),
            ephemeral_storage_bytes: Some(100 << 30),
        },
        fs_group: None,
        mounter,
        objects,
    }
}

pub fn require_root() {
    assert!(
        deckhand_sys::privilege::is_root(),
        "these tests mount tmpfs in a private mount namespace: run them as root"
    );
}

/// Moves the test thread into a private mount namespace; unmounts `path` on drop.
pub struct MountGuard(pub PathBuf);
impl Drop for MountGuard {
    fn drop(&mut self) {
        let _ = deckhand_storage::LinuxMounter.unmount(&self.0);
    }
}

pub fn private_mounts() {
    require_root();
    deckhand_sys::mount::enter_private_mount_namespace().expect("private mount namespace");
}

pub fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

pub fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
}
