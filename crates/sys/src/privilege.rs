//! Who the process runs as. Root-only tests and operations ask here instead of calling
//! `geteuid` themselves, so that kernel access stays in this crate.

/// True when the effective user ID is 0.
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}
