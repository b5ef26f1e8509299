//! Fixture images: OCI image layouts built from Debian's static `/bin/busybox`.
//!
//! Everything here is deterministic (fixed mtimes, gzip header without a timestamp, seeded
//! pseudo-random data), so a fixture has the same digests on every machine with the same busybox.
//! Each image is its own layout `<out>/<name>` with one tag, [`TAG`], plus a description
//! `<out>/<name>.json` ([`FixtureInfo`]) that tests and the benchmark read (digests, sizes).

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};

/// The tag every fixture layout carries (`org.opencontainers.image.ref.name`).
pub const TAG: &str = "1";

/// Bumped whenever the content of a fixture changes, so cached fixture dirs are rebuilt.
const VERSION: u32 = 4;

/// Fixed mtime of every tar entry (2023-11-14T22:13:20Z).
pub const MTIME: u64 = 1_700_000_000;

pub const MT_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const MT_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const MT_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const MT_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const MT_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";

/// Applets that get a symlink in `/bin` (all exist in Debian's busybox-static).
const APPLETS: &[&str] = &[
    "sh",
    "ash",
    "ls",
    "cat",
    "echo",
    "sleep",
    "true",
    "false",
    "httpd",
    "wget",
    "id",
    "env",
    "mkdir",
    "rm",
    "cp",
    "mv",
    "ps",
    "grep",
    "sed",
    "head",
    "tail",
    "wc",
    "touch",
    "chmod",
    "chown",
    "ln",
    "stat",
    "hostname",
    "nslookup",
    "uname",
    "date",
    "kill",
    "test",
    "printf",
    "pwd",
    "readlink",
    "ip",
    "nc",
    "find",
    "xargs",
    "which",
    "dirname",
    "basename",
    "du",
    "df",
    "sort",
    "tee",
    "sync",
    "mkfifo",
    "whoami",
    "cut",
    "tr",
    "seq",
    "yes",
    "dd",
    "sha256sum",
    "md5sum",
    "nproc",
    "free",
    "top",
    "hexdump",
    "timeout",
    "ping",
    "netstat",
];

/// Layer compression.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    Gzip,
    /// gzip level 1: for large incompressible layers, where a higher level only costs time.
    GzipFast,
    Zstd,
}

impl Compression {
    pub fn media_type(self) -> &'static str {
        match self {
            Compression::Gzip | Compression::GzipFast => MT_LAYER_GZIP,
            Compression::Zstd => MT_LAYER_ZSTD,
        }
    }
}

/// What a test needs to know about a fixture without parsing its layout.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FixtureInfo {
    pub name: String,
    /// Path of the OCI layout.
    pub layout: PathBuf,
    pub tag: String,
    /// Digest of what the tag points at: a manifest, or for `multiarch` an index.
    pub digest: String,
    pub media_type: String,
    /// The single-platform images (one for a plain image; one per platform for an index).
    pub images: Vec<ImageInfo>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ImageInfo {
    pub manifest_digest: String,
    pub config_digest: String,
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
    /// Compressed layer blobs, bottom first.
    pub layers: Vec<String>,
    pub layer_sizes: Vec<u64>,
    pub diff_ids: Vec<String>,
    /// Sum of the uncompressed tar sizes.
    pub uncompressed_size: u64,
    /// Sum of regular file sizes in all layers (what an unpack writes).
    pub file_bytes: u64,
}

/// The fixture set on disk.
#[derive(Clone, Debug)]
pub struct Fixtures {
    pub root: PathBuf,
}

impl Fixtures {
    pub fn info(&self, name: &str) -> FixtureInfo {
        let p = self.root.join(format!("{name}.json"));
        let text = fs::read_to_string(&p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()));
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("parse {}: {e}", p.display()))
    }

    pub fn layout(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }
}

/// Every fixture's name, in build order.
pub const ALL: &[&str] = &[
    "busybox",
    "busybox-zstd",
    "multilayer",
    "multilayer-zstd",
    "httpd",
    "multiarch",
    "large",
];

/// Fixtures only the CRI suite uses; built into their own cache dir so that adding them does
/// not invalidate (and rebuild) the shared set with its 100 MiB `large` image.
pub const CRI: &[&str] = &["busybox", "pause", "stopsignal"];

/// Like [`shared`], for the [`CRI`] set, in `<cache_root>/cri-fixtures-v<N>`.
pub fn shared_cri(cache_root: &Path) -> Fixtures {
    shared_set(cache_root, "cri-fixtures", CRI)
}

/// Builds the fixtures into `<cache_root>/fixtures-v<N>` once, shared by every test process:
/// the first process builds under an exclusive lock, the others wait and reuse the result.
pub fn shared(cache_root: &Path) -> Fixtures {
    shared_set(cache_root, "fixtures", ALL)
}

fn shared_set(cache_root: &Path, set: &str, names: &[&str]) -> Fixtures {
    let dir = cache_root.join(format!("{set}-v{VERSION}"));
    let done = dir.join(".complete");
    if done.exists() {
        return Fixtures { root: dir };
    }
    fs::create_dir_all(cache_root).expect("create fixture cache root");
    let lock_file = fs::File::create(cache_root.join(format!("{set}-v{VERSION}.lock")))
        .expect("create fixture lock");
    let _lock = nix::fcntl::Flock::lock(lock_file, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, e)| e)
        .expect("lock fixture cache");
    if !done.exists() {
        let _ = fs::remove_dir_all(&dir);
        build(&dir, names)
            .unwrap_or_else(|e| panic!("build fixtures into {}: {e:#}", dir.display()));
        fs::write(&done, b"").expect("mark fixtures complete");
    }
    Fixtures { root: dir }
}

/// Writes every fixture into `out` (which is created).
pub fn build_all(out: &Path) -> Result<Fixtures> {
    build(out, ALL)
}

/// Writes the named fixtures into `out` (which is created).
pub fn build(out: &Path, names: &[&str]) -> Result<Fixtures> {
    fs::create_dir_all(out)?;
    let busybox =
        fs::read("/bin/busybox").context("read /bin/busybox (install Debian's busybox-static)")?;
    for name in names {
        build_one(out, name, &busybox).with_context(|| format!("fixture {name}"))?;
    }
    Ok(Fixtures {
        root: out.to_path_buf(),
    })
}

fn build_one(out: &Path, name: &str, busybox: &[u8]) -> Result<()> {
    let dir = out.join(name);
    let mut layout = Layout::create(&dir)?;
    let arch = host_arch();
    let info = match name {
        "busybox" | "busybox-zstd" => {
            let c = if name == "busybox" {
                Compression::Gzip
            } else {
                Compression::Zstd
            };
            let img = layout.image(
                &[(base_layer(busybox), c)],
                &ConfigSpec {
                    os: "linux",
                    arch,
                    variant: None,
                    cmd: &["sh"],
                    ..Default::default()
                },
            )?;
            layout.tag_manifest(&img, TAG)?;
            vec![img]
        }
        "multilayer" | "multilayer-zstd" => {
            let c = if name == "multilayer" {
                Compression::Gzip
            } else {
                Compression::Zstd
            };
            let layers: Vec<_> = multilayer_layers(busybox)
                .into_iter()
                .map(|l| (l, c))
                .collect();
            let img = layout.image(
                &layers,
                &ConfigSpec {
                    os: "linux",
                    arch,
                    cmd: &["sh"],
                    env: &["FIXTURE=multilayer"],
                    working_dir: "/data",
                    user: "1000:1000",
                    labels: &[("org.deckhand.fixture", "multilayer")],
                    stop_signal: Some("SIGINT"),
                    ..Default::default()
                },
            )?;
            layout.tag_manifest(&img, TAG)?;
            vec![img]
        }
        "httpd" => {
            let mut www = Tar::new();
            www.dir("www", 0o755, 0, 0);
            www.file(
                "www/index.html",
                b"hello from deckhand httpd\n",
                0o644,
                0,
                0,
            );
            let img = layout.image(
                &[
                    (base_layer(busybox), Compression::Gzip),
                    (www, Compression::Gzip),
                ],
                &ConfigSpec {
                    os: "linux",
                    arch,
                    cmd: &["httpd", "-f", "-p", "80", "-h", "/www"],
                    exposed_ports: &["80/tcp"],
                    ..Default::default()
                },
            )?;
            layout.tag_manifest(&img, TAG)?;
            vec![img]
        }
        "multiarch" => {
            let mut imgs = Vec::new();
            let platforms: [(&str, Option<&str>); 3] =
                [("amd64", None), ("arm64", Some("v8")), ("arm", Some("v7"))];
            for (a, v) in platforms {
                let mut marker = Tar::new();
                marker.dir("etc", 0o755, 0, 0);
                let plat = match v {
                    Some(v) => format!("linux/{a}/{v}\n"),
                    None => format!("linux/{a}\n"),
                };
                marker.file("etc/platform", plat.as_bytes(), 0o644, 0, 0);
                // Only the host's platform gets a runnable busybox; the others just a marker.
                let mut layers = Vec::new();
                if a == arch {
                    layers.push((base_layer(busybox), Compression::Gzip));
                }
                layers.push((marker, Compression::Gzip));
                imgs.push(layout.image(
                    &layers,
                    &ConfigSpec {
                        os: "linux",
                        arch: a,
                        variant: v,
                        cmd: &["sh"],
                        ..Default::default()
                    },
                )?);
            }
            layout.tag_index(&imgs, TAG)?;
            imgs
        }
        "large" => {
            let mut rng = XorShift(0x5eed_dec4_a11d_0001);
            let mut l1 = Tar::new();
            l1.dir("large", 0o755, 0, 0);
            l1.file("large/a.bin", &rng.bytes(32 << 20), 0o644, 0, 0);
            l1.file("large/b.bin", &rng.bytes(24 << 20), 0o644, 0, 0);
            let mut l2 = Tar::new();
            l2.dir("large", 0o755, 0, 0);
            l2.file("large/c.bin", &rng.bytes(56 << 20), 0o644, 0, 0);
            let img = layout.image(
                &[
                    (base_layer(busybox), Compression::Gzip),
                    (l1, Compression::GzipFast),
                    (l2, Compression::GzipFast),
                ],
                &ConfigSpec {
                    os: "linux",
                    arch,
                    cmd: &["sh"],
                    ..Default::default()
                },
            )?;
            layout.tag_manifest(&img, TAG)?;
            vec![img]
        }
        // The sandbox ("pause") image of the CRI suite: a shell that sleeps until SIGTERM or
        // SIGINT. PID 1 has no default signal actions, so a bare `sleep` would ignore SIGTERM;
        // the trap makes a graceful sandbox stop fast.
        "pause" => {
            let img = layout.image(
                &[(base_layer(busybox), Compression::Gzip)],
                &ConfigSpec {
                    os: "linux",
                    arch,
                    cmd: &[
                        "/bin/sh",
                        "-c",
                        "trap 'exit 0' TERM INT; sleep 2147483647 & wait",
                    ],
                    ..Default::default()
                },
            )?;
            layout.tag_manifest(&img, TAG)?;
            vec![img]
        }
        // busybox whose image config says `StopSignal: SIGUSR1`: the CRI stop scenario checks
        // that the runtime sends that signal, not SIGTERM.
        "stopsignal" => {
            let img = layout.image(
                &[(base_layer(busybox), Compression::Gzip)],
                &ConfigSpec {
                    os: "linux",
                    arch,
                    cmd: &["sh"],
                    stop_signal: Some("SIGUSR1"),
                    ..Default::default()
                },
            )?;
            layout.tag_manifest(&img, TAG)?;
            vec![img]
        }
        other => bail!("unknown fixture {other}"),
    };
    layout.finish()?;
    let top = layout.tagged.clone().expect("tagged");
    let fi = FixtureInfo {
        name: name.to_string(),
        layout: dir.clone(),
        tag: TAG.to_string(),
        digest: top.0,
        media_type: top.1,
        images: info,
    };
    fs::write(
        out.join(format!("{name}.json")),
        serde_json::to_vec_pretty(&fi)?,
    )?;
    Ok(())
}

/// The OCI architecture name of the machine the tests run on.
pub fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "arm" => "arm",
        "s390x" => "s390x",
        "powerpc64" => "ppc64le",
        "riscv64" => "riscv64",
        other => panic!("unsupported host arch {other}"),
    }
}

/// The busybox base layer: a minimal runnable root file system.
fn base_layer(busybox: &[u8]) -> Tar {
    let mut t = Tar::new();
    t.dir("bin", 0o755, 0, 0);
    t.file("bin/busybox", busybox, 0o755, 0, 0);
    for a in APPLETS {
        t.symlink(&format!("bin/{a}"), "busybox");
    }
    t.dir("etc", 0o755, 0, 0);
    t.file(
        "etc/passwd",
        b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
        0o644,
        0,
        0,
    );
    t.file(
        "etc/group",
        b"root:x:0:\nnogroup:x:65534:\nnobody:x:65534:\n",
        0o644,
        0,
        0,
    );
    t.dir("root", 0o700, 0, 0);
    t.dir("tmp", 0o1777, 0, 0);
    for d in ["dev", "proc", "sys", "var", "usr", "usr/bin"] {
        t.dir(d, 0o755, 0, 0);
    }
    t
}

/// The layers of `multilayer`, bottom first. Covers every tar/overlay case an unpacker must get
/// right; the comments say what each later layer does to the earlier ones.
fn multilayer_layers(busybox: &[u8]) -> Vec<Tar> {
    // Layer 1: base content.
    let mut l1 = base_layer(busybox);
    l1.dir("data", 0o755, 0, 0);
    l1.file("data/keep.txt", b"kept through all layers\n", 0o644, 0, 0);
    l1.file("data/remove-me.txt", b"deleted by layer 2\n", 0o644, 0, 0);
    l1.file("data/changed.txt", b"version 1\n", 0o644, 0, 0);
    l1.dir("opq", 0o755, 0, 0);
    l1.file(
        "opq/old1.txt",
        b"hidden by the opaque dir in layer 2\n",
        0o644,
        0,
        0,
    );
    l1.dir("opq/sub", 0o755, 0, 0);
    l1.file("opq/sub/old2.txt", b"also hidden\n", 0o644, 0, 0);
    l1.dir("replace-dir", 0o755, 0, 0);
    l1.file(
        "replace-dir/inner.txt",
        b"the dir becomes a file in layer 2\n",
        0o644,
        0,
        0,
    );
    l1.dir("gone", 0o755, 0, 0);
    l1.dir("gone/deep", 0o755, 0, 0);
    l1.file(
        "gone/deep/file",
        b"whole dir deleted by layer 3\n",
        0o644,
        0,
        0,
    );
    l1.dir("owned", 0o750, 1000, 1000);
    l1.file("owned/file", b"owned by 1000:1000\n", 0o640, 1000, 1000);
    l1.file("owned/group-only", b"root:1000\n", 0o664, 0, 1000);
    l1.file("setuid-bin", b"#!/bin/sh\necho setuid\n", 0o4755, 0, 0);
    l1.file("setgid-bin", b"#!/bin/sh\necho setgid\n", 0o2755, 0, 0);
    l1.dir("sticky", 0o1777, 0, 0);
    l1.dir("links", 0o755, 0, 0);
    l1.file("links/target.txt", b"link target\n", 0o644, 0, 0);
    l1.hardlink("links/hard1", "links/target.txt");
    l1.hardlink("links/hard2", "links/target.txt");
    l1.symlink("links/rel", "target.txt");
    l1.symlink("links/abs", "/links/target.txt");
    l1.symlink("links/updir", "../data/keep.txt");
    l1.symlink("links/dangling", "/nonexistent/file");
    l1.symlink("links/dirlink", "../data");
    l1.dir("special", 0o755, 0, 0);
    l1.fifo("special/fifo", 0o644);
    l1.chardev("special/null", 1, 3, 0o666);
    l1.dir("xattr", 0o755, 0, 0);
    l1.file_xattr(
        "xattr/file",
        b"has a user xattr\n",
        "user.test",
        b"hello-xattr",
    );
    l1.file("empty", b"", 0o600, 0, 0);
    l1.file("exec.sh", b"#!/bin/sh\nexit 0\n", 0o750, 0, 0);

    // Layer 2: deletions, opaque dir, dir -> file, changed file and metadata.
    let mut l2 = Tar::new();
    l2.dir("data", 0o755, 0, 0);
    l2.file("data/.wh.remove-me.txt", b"", 0o644, 0, 0);
    l2.file(
        "data/changed.txt",
        b"version 2, longer than version 1\n",
        0o600,
        0,
        0,
    );
    l2.file("data/new-in-2.txt", b"added by layer 2\n", 0o644, 0, 0);
    l2.dir("opq", 0o711, 0, 0);
    l2.file("opq/.wh..wh..opq", b"", 0o644, 0, 0);
    l2.file(
        "opq/new.txt",
        b"the only file in the opaque dir\n",
        0o644,
        0,
        0,
    );
    l2.dir("opq/sub", 0o755, 0, 0);
    l2.file("opq/sub/new2.txt", b"new sub content\n", 0o644, 0, 0);
    l2.file("replace-dir", b"now a regular file\n", 0o644, 0, 0);
    l2.dir("links2", 0o755, 0, 0);
    l2.file(
        "links2/a",
        b"hard linked within layer 2\n",
        0o644,
        1000,
        1000,
    );
    l2.hardlink_owned("links2/b", "links2/a", 0o644, 1000, 1000);
    l2.symlink("links2/to-layer1", "/links/target.txt");

    // Layer 3: delete a whole tree, recreate a deleted file, metadata-only change, file -> dir.
    let mut l3 = Tar::new();
    l3.file(".wh.gone", b"", 0o644, 0, 0);
    l3.dir("data", 0o755, 0, 0);
    l3.file("data/remove-me.txt", b"recreated by layer 3\n", 0o644, 0, 0);
    l3.dir("owned", 0o700, 1000, 1000);
    l3.file("empty", b"", 0o644, 1000, 1000);
    l3.file(".wh.exec.sh", b"", 0o644, 0, 0);
    l3.dir("exec.sh", 0o755, 0, 0);
    l3.file(
        "exec.sh/now-a-dir",
        b"file replaced by a directory\n",
        0o644,
        0,
        0,
    );
    l3.dir("bin", 0o755, 0, 0);
    l3.file(
        "bin/hello",
        b"#!/bin/sh\necho hello from layer 3\n",
        0o755,
        0,
        0,
    );
    vec![l1, l2, l3]
}

/// A layer tar being built in memory.
pub struct Tar {
    builder: tar::Builder<Vec<u8>>,
    file_bytes: u64,
}

impl Default for Tar {
    fn default() -> Self {
        Self::new()
    }
}

impl Tar {
    pub fn new() -> Self {
        let mut builder = tar::Builder::new(Vec::new());
        builder.mode(tar::HeaderMode::Complete);
        Tar {
            builder,
            file_bytes: 0,
        }
    }

    fn header(kind: tar::EntryType, mode: u32, uid: u64, gid: u64) -> tar::Header {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_uid(uid);
        h.set_gid(gid);
        h.set_mtime(MTIME);
        h.set_size(0);
        let _ = h.set_username(if uid == 0 { "root" } else { "" });
        let _ = h.set_groupname(if gid == 0 { "root" } else { "" });
        h
    }

    fn append(&mut self, mut h: tar::Header, path: &str, data: &[u8]) {
        h.set_size(data.len() as u64);
        self.builder
            .append_data(&mut h, path, data)
            .expect("append tar entry");
    }

    pub fn dir(&mut self, path: &str, mode: u32, uid: u64, gid: u64) {
        let h = Self::header(tar::EntryType::Directory, mode, uid, gid);
        self.append(h, &format!("{path}/"), b"");
    }

    pub fn file(&mut self, path: &str, data: &[u8], mode: u32, uid: u64, gid: u64) {
        let h = Self::header(tar::EntryType::Regular, mode, uid, gid);
        self.file_bytes += data.len() as u64;
        self.append(h, path, data);
    }

    /// A regular file with one extended attribute, as a PAX `SCHILY.xattr.` record.
    pub fn file_xattr(&mut self, path: &str, data: &[u8], name: &str, value: &[u8]) {
        let key = format!("SCHILY.xattr.{name}");
        self.builder
            .append_pax_extensions([(key.as_str(), value)])
            .expect("append pax header");
        self.file(path, data, 0o644, 0, 0);
    }

    pub fn symlink(&mut self, path: &str, target: &str) {
        let mut h = Self::header(tar::EntryType::Symlink, 0o777, 0, 0);
        h.set_size(0);
        self.builder
            .append_link(&mut h, path, target)
            .expect("append symlink");
    }

    /// A hard link to `target`, an earlier entry of the same layer. The header repeats the
    /// target's mode and owner: unpackers disagree on whether a link header's metadata applies
    /// to the shared inode (containerd chowns it, umoci does not), so fixtures keep them equal.
    pub fn hardlink(&mut self, path: &str, target: &str) {
        self.hardlink_owned(path, target, 0o644, 0, 0);
    }

    pub fn hardlink_owned(&mut self, path: &str, target: &str, mode: u32, uid: u64, gid: u64) {
        let mut h = Self::header(tar::EntryType::Link, mode, uid, gid);
        h.set_size(0);
        self.builder
            .append_link(&mut h, path, target)
            .expect("append hardlink");
    }

    pub fn fifo(&mut self, path: &str, mode: u32) {
        let h = Self::header(tar::EntryType::Fifo, mode, 0, 0);
        self.append(h, path, b"");
    }

    pub fn chardev(&mut self, path: &str, major: u32, minor: u32, mode: u32) {
        let mut h = Self::header(tar::EntryType::Char, mode, 0, 0);
        h.set_device_major(major).expect("devmajor");
        h.set_device_minor(minor).expect("devminor");
        self.append(h, path, b"");
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.builder.into_inner().expect("finish tar")
    }
}

pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

fn compress(data: &[u8], c: Compression) -> Result<Vec<u8>> {
    Ok(match c {
        Compression::Gzip | Compression::GzipFast => {
            let level = if c == Compression::Gzip {
                flate2::Compression::default()
            } else {
                flate2::Compression::fast()
            };
            // GzBuilder writes mtime 0 and no file name: deterministic output.
            let mut enc = flate2::GzBuilder::new().write(Vec::new(), level);
            enc.write_all(data)?;
            enc.finish()?
        }
        Compression::Zstd => zstd::encode_all(data, 3)?,
    })
}

#[derive(Default)]
struct ConfigSpec<'a> {
    os: &'a str,
    arch: &'a str,
    variant: Option<&'a str>,
    cmd: &'a [&'a str],
    env: &'a [&'a str],
    working_dir: &'a str,
    user: &'a str,
    exposed_ports: &'a [&'a str],
    labels: &'a [(&'a str, &'a str)],
    stop_signal: Option<&'a str>,
}

/// An OCI image layout being written.
struct Layout {
    dir: PathBuf,
    /// (digest, media type, size) of the tagged root descriptor.
    tagged: Option<(String, String)>,
    index_entries: Vec<Value>,
}

impl Layout {
    fn create(dir: &Path) -> Result<Layout> {
        let _ = fs::remove_dir_all(dir);
        fs::create_dir_all(dir.join("blobs/sha256"))?;
        fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#)?;
        Ok(Layout {
            dir: dir.to_path_buf(),
            tagged: None,
            index_entries: Vec::new(),
        })
    }

    /// Writes a blob, returns `sha256:<hex>` and its size.
    fn blob(&self, data: &[u8]) -> Result<(String, u64)> {
        let hex = sha256_hex(data);
        fs::write(self.dir.join("blobs/sha256").join(&hex), data)?;
        Ok((format!("sha256:{hex}"), data.len() as u64))
    }

    fn image(&mut self, layers: &[(Tar, Compression)], spec: &ConfigSpec) -> Result<ImageInfo> {
        let mut descs = Vec::new();
        let mut info = ImageInfo {
            manifest_digest: String::new(),
            config_digest: String::new(),
            os: spec.os.to_string(),
            architecture: spec.arch.to_string(),
            variant: spec.variant.map(str::to_string),
            layers: Vec::new(),
            layer_sizes: Vec::new(),
            diff_ids: Vec::new(),
            uncompressed_size: 0,
            file_bytes: 0,
        };
        for (tar, c) in layers {
            // Tar is not Clone: rebuild the bytes through a shared reference.
            let bytes = tar_bytes(tar);
            info.diff_ids.push(format!("sha256:{}", sha256_hex(&bytes)));
            info.uncompressed_size += bytes.len() as u64;
            info.file_bytes += tar.file_bytes;
            let (digest, size) = self.blob(&compress(&bytes, *c)?)?;
            descs.push(json!({"mediaType": c.media_type(), "digest": digest, "size": size}));
            info.layers.push(digest);
            info.layer_sizes.push(size);
        }
        let mut cfg = serde_json::Map::new();
        let mut env = vec!["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"];
        env.extend_from_slice(spec.env);
        cfg.insert("Env".into(), json!(env));
        cfg.insert("Cmd".into(), json!(spec.cmd));
        if !spec.working_dir.is_empty() {
            cfg.insert("WorkingDir".into(), json!(spec.working_dir));
        }
        if !spec.user.is_empty() {
            cfg.insert("User".into(), json!(spec.user));
        }
        if !spec.exposed_ports.is_empty() {
            let ports: serde_json::Map<_, _> = spec
                .exposed_ports
                .iter()
                .map(|p| (p.to_string(), json!({})))
                .collect();
            cfg.insert("ExposedPorts".into(), Value::Object(ports));
        }
        if !spec.labels.is_empty() {
            let labels: serde_json::Map<_, _> = spec
                .labels
                .iter()
                .map(|(k, v)| (k.to_string(), json!(v)))
                .collect();
            cfg.insert("Labels".into(), Value::Object(labels));
        }
        if let Some(s) = spec.stop_signal {
            cfg.insert("StopSignal".into(), json!(s));
        }
        let mut config = json!({
            "created": "2023-11-14T22:13:20Z",
            "architecture": spec.arch,
            "os": spec.os,
            "config": cfg,
            "rootfs": {"type": "layers", "diff_ids": info.diff_ids},
            "history": layers.iter().enumerate()
                .map(|(i, _)| json!({"created": "2023-11-14T22:13:20Z", "created_by": format!("deckhand fixture layer {i}")}))
                .collect::<Vec<_>>(),
        });
        if let Some(v) = spec.variant {
            config["variant"] = json!(v);
        }
        let (cdigest, csize) = self.blob(&serde_json::to_vec(&config)?)?;
        info.config_digest = cdigest.clone();
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": MT_MANIFEST,
            "config": {"mediaType": MT_CONFIG, "digest": cdigest, "size": csize},
            "layers": descs,
        });
        let (mdigest, _) = self.blob(&serde_json::to_vec(&manifest)?)?;
        info.manifest_digest = mdigest;
        Ok(info)
    }

    fn descriptor(&self, digest: &str, media_type: &str) -> Result<Value> {
        let hex = digest.trim_start_matches("sha256:");
        let size = fs::metadata(self.dir.join("blobs/sha256").join(hex))?.len();
        Ok(json!({"mediaType": media_type, "digest": digest, "size": size}))
    }

    fn tag_manifest(&mut self, img: &ImageInfo, tag: &str) -> Result<()> {
        let mut d = self.descriptor(&img.manifest_digest, MT_MANIFEST)?;
        d["annotations"] = json!({"org.opencontainers.image.ref.name": tag});
        self.index_entries.push(d);
        self.tagged = Some((img.manifest_digest.clone(), MT_MANIFEST.to_string()));
        Ok(())
    }

    fn tag_index(&mut self, imgs: &[ImageInfo], tag: &str) -> Result<()> {
        let mut manifests = Vec::new();
        for img in imgs {
            let mut d = self.descriptor(&img.manifest_digest, MT_MANIFEST)?;
            let mut p = json!({"os": img.os, "architecture": img.architecture});
            if let Some(v) = &img.variant {
                p["variant"] = json!(v);
            }
            d["platform"] = p;
            manifests.push(d);
        }
        let index = json!({"schemaVersion": 2, "mediaType": MT_INDEX, "manifests": manifests});
        let (digest, _) = self.blob(&serde_json::to_vec(&index)?)?;
        let mut d = self.descriptor(&digest, MT_INDEX)?;
        d["annotations"] = json!({"org.opencontainers.image.ref.name": tag});
        self.index_entries.push(d);
        self.tagged = Some((digest, MT_INDEX.to_string()));
        Ok(())
    }

    fn finish(&self) -> Result<()> {
        let index =
            json!({"schemaVersion": 2, "mediaType": MT_INDEX, "manifests": self.index_entries});
        fs::write(self.dir.join("index.json"), serde_json::to_vec(&index)?)?;
        Ok(())
    }
}

fn tar_bytes(t: &Tar) -> Vec<u8> {
    // tar::Builder only hands out its buffer by value; the two end-of-archive blocks are
    // appended here, exactly as `Builder::into_inner` would.
    let mut v = t.builder.get_ref().clone();
    v.extend_from_slice(&[0u8; 1024]);
    v
}

/// xorshift64*: fast, seeded, incompressible enough for gzip.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        let mut v = Vec::with_capacity(n + 8);
        while v.len() < n {
            v.extend_from_slice(&self.next().to_le_bytes());
        }
        v.truncate(n);
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tar_bytes_matches_into_inner() {
        let mut t = Tar::new();
        t.file("a", b"x", 0o644, 0, 0);
        let a = tar_bytes(&t);
        assert_eq!(a, t.into_bytes());
    }
}
