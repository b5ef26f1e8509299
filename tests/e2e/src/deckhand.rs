//! Runs the `deckhand` binary under test with its own temp data dir (and an empty
//! `$DOCKER_CONFIG`, so the host's credentials never leak into a test).

use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::rootfs::{snapshot_chain, OverlayMount};
use crate::util::{run_with_timeout, Run};

/// Time limit for one CLI invocation (a pull of `large` takes seconds).
pub const CLI_TIMEOUT: Duration = Duration::from_secs(300);

/// Path of the binary under test: `$DECKHAND_BIN`, else `$CARGO_TARGET_DIR/release/deckhand`,
/// else `<workspace>/target/release/deckhand`.
pub fn bin() -> PathBuf {
    if let Some(p) = std::env::var_os("DECKHAND_BIN") {
        return PathBuf::from(p);
    }
    if let Some(t) = std::env::var_os("CARGO_TARGET_DIR") {
        let p = PathBuf::from(t).join("release/deckhand");
        if p.exists() {
            return p;
        }
    }
    workspace_root().join("target/release/deckhand")
}

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("workspace root")
}

/// One deckhand "installation": a data dir and the environment its commands run with.
pub struct Deckhand {
    pub tmp: tempfile::TempDir,
    pub data_dir: PathBuf,
    pub docker_config: PathBuf,
    envs: Vec<(OsString, OsString)>,
}

impl Default for Deckhand {
    fn default() -> Self {
        Self::new()
    }
}

impl Deckhand {
    pub fn new() -> Deckhand {
        let tmp = tempfile::Builder::new()
            .prefix("deckhand-e2e-")
            .tempdir()
            .expect("tempdir");
        let data_dir = tmp.path().join("data");
        let docker_config = tmp.path().join("docker-config");
        fs::create_dir_all(&data_dir).expect("create data dir");
        fs::create_dir_all(&docker_config).expect("create docker config dir");
        let b = bin();
        assert!(
            b.exists(),
            "deckhand binary not found at {}: build it (`cargo build --release -p deckhand`) or set DECKHAND_BIN",
            b.display()
        );
        Deckhand {
            tmp,
            data_dir,
            docker_config,
            envs: Vec::new(),
        }
    }

    pub fn env(&mut self, k: impl Into<OsString>, v: impl Into<OsString>) -> &mut Self {
        self.envs.push((k.into(), v.into()));
        self
    }

    pub fn images_dir(&self) -> PathBuf {
        self.data_dir.join("images")
    }

    /// A `deckhand --data-dir <dir>` command with the test environment.
    pub fn command(&self) -> Command {
        let mut c = Command::new(bin());
        c.arg("--data-dir").arg(&self.data_dir);
        c.env("DOCKER_CONFIG", &self.docker_config);
        c.env("NO_COLOR", "1");
        c.env_remove("HTTP_PROXY")
            .env_remove("HTTPS_PROXY")
            .env_remove("http_proxy")
            .env_remove("https_proxy");
        for (k, v) in &self.envs {
            c.env(k, v);
        }
        c
    }

    pub fn run(&self, args: &[&str]) -> Run {
        let mut c = self.command();
        c.args(args);
        run_with_timeout(&mut c, CLI_TIMEOUT)
    }

    /// Runs and panics (with the whole output) unless it exits 0.
    pub fn ok(&self, args: &[&str]) -> Run {
        let r = self.run(args);
        assert!(r.success(), "deckhand command failed:\n{r}");
        r
    }

    /// Runs and panics unless it exits non-zero with an `error: ` message on stderr.
    pub fn fails(&self, args: &[&str]) -> Run {
        let r = self.run(args);
        assert!(!r.success(), "deckhand command should have failed:\n{r}");
        assert!(
            r.stderr.starts_with("error: ") || r.stderr.contains("\nerror: "),
            "a failing deckhand command must say `error: ...` on stderr:\n{r}"
        );
        assert!(
            !r.stderr.contains("panicked at") && !r.stderr.contains("not yet implemented"),
            "deckhand panicked instead of reporting an error:\n{r}"
        );
        r
    }

    /// `image ls -o json`.
    pub fn images(&self) -> Vec<Value> {
        let r = self.ok(&["image", "ls", "-o", "json"]);
        let v: Value = serde_json::from_str(&r.stdout)
            .unwrap_or_else(|e| panic!("`image ls -o json` is not JSON ({e}):\n{r}"));
        v.as_array()
            .unwrap_or_else(|| panic!("`image ls -o json` is not an array:\n{r}"))
            .clone()
    }

    /// Names of all images (`image ls -o json`, field `name`).
    pub fn image_names(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .images()
            .iter()
            .map(|i| {
                i["name"]
                    .as_str()
                    .unwrap_or_else(|| panic!("image without name: {i}"))
                    .to_string()
            })
            .collect();
        v.sort();
        v
    }

    pub fn inspect(&self, reference: &str) -> Value {
        let r = self.ok(&["image", "inspect", reference]);
        serde_json::from_str(&r.stdout)
            .unwrap_or_else(|e| panic!("`image inspect` is not JSON ({e}):\n{r}"))
    }

    /// `image verify` must exit 0 and print `ok`.
    pub fn assert_verify_ok(&self) {
        let r = self.ok(&["image", "verify"]);
        assert!(
            r.stdout.lines().any(is_ok_line),
            "`image verify` did not print ok:\n{r}"
        );
    }

    pub fn write_registries_yaml(&self, yaml: &str) {
        fs::write(self.data_dir.join("registries.yaml"), yaml).expect("write registries.yaml");
    }

    /// Files under `images/<sub>` (recursively, regular files only), relative names.
    pub fn files_under(&self, sub: &str) -> Vec<PathBuf> {
        let mut out = Vec::new();
        collect_files(&self.images_dir().join(sub), Path::new(""), &mut out);
        out.sort();
        out
    }

    /// Digests (`sha256:<hex>`) of the committed blobs.
    pub fn blobs(&self) -> Vec<String> {
        self.files_under("blobs/sha256")
            .iter()
            .map(|p| format!("sha256:{}", p.display()))
            .collect()
    }

    /// Mounts the image's rootfs (its snapshot chain, top = `top_chain` from `image inspect`)
    /// read-only at `<tmp>/<name>`. Call [`crate::util::private_mount_namespace`] first.
    pub fn mount_rootfs(&self, reference: &str, name: &str) -> OverlayMount {
        let info = self.inspect(reference);
        let top = info["top_chain"]
            .as_str()
            .unwrap_or_else(|| panic!("`image inspect {reference}` has no top_chain: {info}"));
        let chain = snapshot_chain(&self.images_dir(), top)
            .unwrap_or_else(|e| panic!("snapshot chain of {reference}: {e:#}"));
        let target = self.tmp.path().join(name);
        OverlayMount::mount(&chain, &target, self.tmp.path())
            .unwrap_or_else(|e| panic!("mount rootfs of {reference}: {e:#}"))
    }
}

/// `ok`, alone or followed by a summary (`ok: 1 images, 3 blobs, ...`).
pub fn is_ok_line(l: &str) -> bool {
    let l = l.trim();
    l == "ok" || l.starts_with("ok:") || l.starts_with("ok ")
}

fn collect_files(root: &Path, rel: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = fs::read_dir(root.join(rel)) else {
        return;
    };
    for e in rd.flatten() {
        let r = rel.join(e.file_name());
        match e.file_type() {
            Ok(t) if t.is_dir() => collect_files(root, &r, out),
            Ok(t) if t.is_file() => out.push(r),
            _ => {}
        }
    }
}
