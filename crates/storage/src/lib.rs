//! The kubelet's basic volume plugins (emptyDir, hostPath, configMap, secret, downwardAPI,
//! projected), the atomic writer that lets configMap and secret updates reach running pods,
//! and the translation of a container's `volumeMounts` into CRI mounts.
//!
//! No async: every call blocks on the file system or the kernel, so the kubelet runs them on
//! blocking threads. Kernel mounts go through `deckhand-sys` behind [`mounter::Mounter`].

pub mod atomic_writer;
pub mod mounter;
pub mod mounts;
pub mod quantity;
pub mod volumes;

pub use atomic_writer::{
    AtomicWriteError, AtomicWriter, FileProjection, FsGroup, Payload, WriteOutcome,
};
pub use mounter::{LinuxMounter, Mounter};
pub use mounts::{
    clean_sub_paths, container_mounts, ContainerMountError, MountOptions, SafeSubPaths,
};
pub use volumes::{
    pod_volumes_dir, setup, teardown, teardown_all, LookupError, MountedVolume, NodeAllocatable,
    ObjectLookup, Plugin, VolumeContext, VolumeError,
};
