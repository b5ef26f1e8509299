//! Root file system comparison: scan a tree into a [`Tree`] (type, mode, owner, content hash,
//! link target, device numbers, `user.*` xattrs, file mtime, hard-link groups) and diff two
//! trees; unpack a reference rootfs with `umoci`; mount deckhand's snapshot chain as a read-only
//! overlay.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use sha2::{Digest as _, Sha256};

use crate::util::run_checked;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    Dir,
    File { sha256: String, size: u64 },
    Symlink { target: PathBuf },
    Fifo,
    Char { major: u64, minor: u64 },
    Block { major: u64, minor: u64 },
    Socket,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    pub kind: Kind,
    /// Permission bits including setuid/setgid/sticky (not the file type). Not compared for
    /// symlinks, whose mode Linux ignores.
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub xattrs: BTreeMap<String, Vec<u8>>,
    /// Modification time of regular files (both unpackers restore it from the tar header).
    pub mtime: Option<i64>,
    /// Every path of the tree that is the same inode as this one (sorted), when more than one.
    pub hardlinks: Vec<PathBuf>,
}

/// A scanned tree: relative path → node; the root itself is not included.
#[derive(Clone, Debug, Default)]
pub struct Tree(pub BTreeMap<PathBuf, Node>);

impl Tree {
    pub fn scan(root: &Path) -> Result<Tree> {
        let mut nodes = BTreeMap::new();
        let mut inodes: HashMap<(u64, u64), Vec<PathBuf>> = HashMap::new();
        scan_dir(root, Path::new(""), &mut nodes, &mut inodes)?;
        for paths in inodes.values() {
            if paths.len() > 1 {
                let mut sorted = paths.clone();
                sorted.sort();
                for p in paths {
                    nodes.get_mut(p).expect("scanned").hardlinks = sorted.clone();
                }
            }
        }
        Ok(Tree(nodes))
    }

    pub fn get(&self, p: &str) -> Option<&Node> {
        self.0.get(Path::new(p))
    }

    /// Human-readable differences (`expected` vs `actual`); empty when they match.
    pub fn diff(expected: &Tree, actual: &Tree) -> Vec<String> {
        let mut out = Vec::new();
        for (p, e) in &expected.0 {
            match actual.0.get(p) {
                None => out.push(format!("missing: /{} ({:?})", p.display(), e.kind)),
                Some(a) if a != e => out.push(format!(
                    "differs: /{}\n    expected {e:?}\n    actual   {a:?}",
                    p.display()
                )),
                Some(_) => {}
            }
        }
        for (p, a) in &actual.0 {
            if !expected.0.contains_key(p) {
                out.push(format!("unexpected: /{} ({:?})", p.display(), a.kind));
            }
        }
        out
    }

    /// Panics with the differences when the trees differ.
    pub fn assert_same(expected: &Tree, actual: &Tree, what: &str) {
        assert!(
            !expected.0.is_empty(),
            "{what}: the reference tree is empty"
        );
        let d = Self::diff(expected, actual);
        if !d.is_empty() {
            let shown: Vec<_> = d.iter().take(60).cloned().collect();
            panic!(
                "{what}: {} differences between the reference rootfs and deckhand's:\n{}",
                d.len(),
                shown.join("\n")
            );
        }
    }
}

fn scan_dir(
    root: &Path,
    rel: &Path,
    nodes: &mut BTreeMap<PathBuf, Node>,
    inodes: &mut HashMap<(u64, u64), Vec<PathBuf>>,
) -> Result<()> {
    let dir = root.join(rel);
    for entry in fs::read_dir(&dir).with_context(|| format!("read_dir {}", dir.display()))? {
        let entry = entry?;
        let rel_path = rel.join(entry.file_name());
        let abs = root.join(&rel_path);
        let md = fs::symlink_metadata(&abs).with_context(|| format!("lstat {}", abs.display()))?;
        let ft = md.file_type();
        let rdev = md.rdev();
        let kind = if ft.is_dir() {
            Kind::Dir
        } else if ft.is_file() {
            let data = fs::read(&abs).with_context(|| format!("read {}", abs.display()))?;
            Kind::File {
                sha256: hex::encode(Sha256::digest(&data)),
                size: md.len(),
            }
        } else if ft.is_symlink() {
            Kind::Symlink {
                target: fs::read_link(&abs)?,
            }
        } else if ft.is_fifo() {
            Kind::Fifo
        } else if ft.is_char_device() {
            Kind::Char {
                major: libc::major(rdev) as u64,
                minor: libc::minor(rdev) as u64,
            }
        } else if ft.is_block_device() {
            Kind::Block {
                major: libc::major(rdev) as u64,
                minor: libc::minor(rdev) as u64,
            }
        } else {
            Kind::Socket
        };
        let mut xattrs = BTreeMap::new();
        if let Ok(names) = xattr::list(&abs) {
            for n in names {
                let name = n.to_string_lossy().into_owned();
                if name.starts_with("user.") {
                    let v = xattr::get(&abs, &n).ok().flatten().unwrap_or_default();
                    xattrs.insert(name, v);
                }
            }
        }
        let is_symlink = ft.is_symlink();
        let is_file = ft.is_file();
        let node = Node {
            mode: if is_symlink { 0 } else { md.mode() & 0o7777 },
            uid: md.uid(),
            gid: md.gid(),
            xattrs,
            mtime: if is_file { Some(md.mtime()) } else { None },
            hardlinks: Vec::new(),
            kind,
        };
        if !ft.is_dir() && md.nlink() > 1 {
            inodes
                .entry((md.dev(), md.ino()))
                .or_default()
                .push(rel_path.clone());
        }
        nodes.insert(rel_path.clone(), node);
        if ft.is_dir() {
            scan_dir(root, &rel_path, nodes, inodes)?;
        }
    }
    Ok(())
}

/// `umoci unpack --image <layout>:<tag> <bundle>`; returns `<bundle>/rootfs`.
pub fn umoci_unpack(layout: &Path, tag: &str, bundle: &Path) -> Result<PathBuf> {
    run_checked(
        Command::new("umoci")
            .arg("unpack")
            .arg("--image")
            .arg(format!("{}:{tag}", layout.display()))
            .arg(bundle),
    )?;
    Ok(bundle.join("rootfs"))
}

/// A read-only overlay mount, unmounted (detached) on drop.
pub struct OverlayMount {
    pub target: PathBuf,
}

impl OverlayMount {
    /// Mounts `lowers` (top-most first) read-only at `target`. A single lower dir gets an empty
    /// dir below it, since overlayfs wants two layers when there is no upper dir.
    pub fn mount(lowers: &[PathBuf], target: &Path, scratch: &Path) -> Result<OverlayMount> {
        if lowers.is_empty() {
            bail!("no lower dirs to mount");
        }
        let mut lowers = lowers.to_vec();
        if lowers.len() == 1 {
            let empty = scratch.join("empty-lower");
            fs::create_dir_all(&empty)?;
            lowers.push(empty);
        }
        Self::mount_with(&lowers, None, target)
    }

    /// Mounts an overlay of `lowers` (top-most first) with an optional writable
    /// `(upper, work)` pair; read-only without one.
    pub fn mount_with(
        lowers: &[PathBuf],
        upper: Option<(&Path, &Path)>,
        target: &Path,
    ) -> Result<OverlayMount> {
        fs::create_dir_all(target)?;
        let lowerdir: Vec<String> = lowers.iter().map(|p| p.display().to_string()).collect();
        let mut opts = format!("lowerdir={}", lowerdir.join(":"));
        let mut flags = nix::mount::MsFlags::MS_RDONLY;
        if let Some((u, w)) = upper {
            opts.push_str(&format!(
                ",upperdir={},workdir={}",
                u.display(),
                w.display()
            ));
            flags = nix::mount::MsFlags::empty();
        }
        nix::mount::mount(
            Some("overlay"),
            target,
            Some("overlay"),
            flags,
            Some(opts.as_str()),
        )
        .with_context(|| format!("mount overlay at {} with {opts}", target.display()))?;
        Ok(OverlayMount {
            target: target.to_path_buf(),
        })
    }
}

impl Drop for OverlayMount {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.target, nix::mount::MntFlags::MNT_DETACH);
    }
}

/// Strips an optional `sha256:` prefix.
pub fn hex_of(s: &str) -> &str {
    s.trim().trim_start_matches("sha256:")
}

/// The snapshot chain of an image, top-most first: `top` then each `parent` file in turn.
pub fn snapshot_chain(images_dir: &Path, top_chain: &str) -> Result<Vec<PathBuf>> {
    let mut chain = Vec::new();
    let mut cur = hex_of(top_chain).to_string();
    loop {
        let snap = images_dir.join("snapshots").join(&cur);
        let fs_dir = snap.join("fs");
        if !fs_dir.is_dir() {
            bail!("snapshot {} has no fs dir", snap.display());
        }
        chain.push(fs_dir);
        if chain.len() > 500 {
            bail!("snapshot parent chain loops at {}", snap.display());
        }
        match fs::read_to_string(snap.join("parent")) {
            Ok(p) if !hex_of(&p).is_empty() => cur = hex_of(&p).to_string(),
            _ => break,
        }
    }
    Ok(chain)
}

/// The chain ID of each layer prefix, bottom first (OCI image spec: ChainID(L0) = DiffID(L0),
/// ChainID(L0..n) = sha256(ChainID(L0..n-1) + " " + DiffID(Ln))).
pub fn chain_ids(diff_ids: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for d in diff_ids {
        let next = match out.last() {
            None => d.clone(),
            Some(prev) => format!(
                "sha256:{}",
                hex::encode(Sha256::digest(format!("{prev} {d}")))
            ),
        };
        out.push(next);
    }
    out
}
