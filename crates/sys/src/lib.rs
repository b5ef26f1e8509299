//! The only crate in deckhand that touches the kernel directly: mounts, file metadata that
//! `std` cannot express (device nodes, ownership of symlinks, xattrs, timestamps), and later
//! namespaces, cgroups, netlink and nftables. Every operation sits behind a narrow API so the
//! logic above it can be unit-tested with recording fakes, and the Linux implementation is
//! tested for real as root.
#![allow(unsafe_code)]

pub mod cgroup;
pub mod fs;
pub mod mount;
pub mod ns;
pub mod privilege;
pub mod process;
pub mod seccomp;
pub mod term;
