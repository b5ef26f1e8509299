//! The image configuration (OCI `config.json` / Docker container config): the parts a runtime
//! needs, plus the rootfs diff IDs that key the snapshots.

use crate::digest::Digest;
use std::collections::BTreeMap;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("image config {digest} is not valid: {source}")]
    Parse {
        digest: Digest,
        #[source]
        source: serde_json::Error,
    },
    #[error(
        "image config {digest} lists {diff_ids} diff IDs but the manifest has {layers} layers"
    )]
    LayerCountMismatch {
        digest: Digest,
        diff_ids: usize,
        layers: usize,
    },
}

/// What the runtime reads from an image's configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ImageConfig {
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub env: Vec<String>,
    pub working_dir: Option<String>,
    pub user: Option<String>,
    /// `"80/tcp"` style keys, as in the config.
    pub exposed_ports: Vec<String>,
    pub labels: BTreeMap<String, String>,
    pub stop_signal: Option<String>,
    pub volumes: Vec<String>,
    /// Uncompressed layer digests, bottom first (`rootfs.diff_ids`).
    pub diff_ids: Vec<Digest>,
    pub created: Option<String>,
}

impl ImageConfig {
    /// Parse the OCI / Docker config JSON (the `config` object holds the runtime fields; nulls
    /// and absent fields become empty).
    pub fn parse(digest: &Digest, bytes: &[u8]) -> Result<ImageConfig, ConfigError> {
        let raw: RawImage = serde_json::from_slice(bytes).map_err(|source| ConfigError::Parse {
            digest: digest.clone(),
            source,
        })?;
        let c = raw.config.unwrap_or_default();
        let nonempty = |s: Option<String>| s.filter(|s| !s.is_empty());
        let keys = |m: Option<BTreeMap<String, serde::de::IgnoredAny>>| -> Vec<String> {
            m.unwrap_or_default().into_keys().collect()
        };
        Ok(ImageConfig {
            os: raw.os.unwrap_or_default(),
            architecture: raw.architecture.unwrap_or_default(),
            variant: nonempty(raw.variant),
            entrypoint: c.entrypoint.map(StrSlice::into_vec).unwrap_or_default(),
            cmd: c.cmd.map(StrSlice::into_vec).unwrap_or_default(),
            env: c.env.unwrap_or_default(),
            working_dir: nonempty(c.working_dir),
            user: nonempty(c.user),
            // BTreeMap keys come out sorted, which keeps the output stable.
            exposed_ports: keys(c.exposed_ports),
            labels: c.labels.unwrap_or_default(),
            stop_signal: nonempty(c.stop_signal),
            volumes: keys(c.volumes),
            diff_ids: raw.rootfs.and_then(|r| r.diff_ids).unwrap_or_default(),
            created: nonempty(raw.created),
        })
    }

    /// Check the config against the manifest that refers to it: one diff ID per layer.
    pub fn check_layers(&self, digest: &Digest, layers: usize) -> Result<(), ConfigError> {
        if self.diff_ids.len() != layers {
            return Err(ConfigError::LayerCountMismatch {
                digest: digest.clone(),
                diff_ids: self.diff_ids.len(),
                layers,
            });
        }
        Ok(())
    }
}

/// The on-disk shape. Every field is optional because real images carry `null`s freely
/// (`"Env": null`, `"Labels": null`), and Docker and the OCI spec agree on these names.
#[derive(serde::Deserialize, Default)]
struct RawImage {
    #[serde(default)]
    os: Option<String>,
    #[serde(default)]
    architecture: Option<String>,
    #[serde(default)]
    variant: Option<String>,
    #[serde(default)]
    created: Option<String>,
    #[serde(default)]
    config: Option<RawRuntimeConfig>,
    #[serde(default)]
    rootfs: Option<RawRootfs>,
}

#[derive(serde::Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct RawRuntimeConfig {
    #[serde(default)]
    entrypoint: Option<StrSlice>,
    #[serde(default)]
    cmd: Option<StrSlice>,
    #[serde(default)]
    env: Option<Vec<String>>,
    #[serde(default)]
    working_dir: Option<String>,
    #[serde(default)]
    user: Option<String>,
    #[serde(default)]
    exposed_ports: Option<BTreeMap<String, serde::de::IgnoredAny>>,
    #[serde(default)]
    labels: Option<BTreeMap<String, String>>,
    #[serde(default)]
    stop_signal: Option<String>,
    #[serde(default)]
    volumes: Option<BTreeMap<String, serde::de::IgnoredAny>>,
}

#[derive(serde::Deserialize, Default)]
struct RawRootfs {
    #[serde(default)]
    diff_ids: Option<Vec<Digest>>,
}

/// Docker accepts a bare string for `Entrypoint`/`Cmd` (its `strslice` type) and old images
/// carry that form.
#[derive(serde::Deserialize)]
#[serde(untagged)]
enum StrSlice {
    One(String),
    Many(Vec<String>),
}

impl StrSlice {
    fn into_vec(self) -> Vec<String> {
        match self {
            StrSlice::One(s) => vec![s],
            StrSlice::Many(v) => v,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d() -> Digest {
        Digest::of(b"config")
    }

    #[test]
    fn parses_docker_config() {
        let json = r#"{
          "architecture": "amd64", "os": "linux", "created": "2024-01-01T00:00:00Z",
          "config": {
            "Hostname": "", "User": "nobody", "Env": ["PATH=/bin", "A=b"],
            "Entrypoint": ["/docker-entrypoint.sh"], "Cmd": ["nginx", "-g", "daemon off;"],
            "WorkingDir": "/srv", "ExposedPorts": {"80/tcp": {}, "443/tcp": {}, "53/udp": {}},
            "Labels": {"maintainer": "x", "a": "b"}, "StopSignal": "SIGQUIT",
            "Volumes": {"/data": {}, "/cache": {}}, "OnBuild": null
          },
          "container_config": {"Cmd": ["ignored"]},
          "rootfs": {"type": "layers", "diff_ids": [
             "sha256:1111111111111111111111111111111111111111111111111111111111111111",
             "sha256:2222222222222222222222222222222222222222222222222222222222222222"]},
          "history": [{"created_by": "x"}]
        }"#;
        let c = ImageConfig::parse(&d(), json.as_bytes()).unwrap();
        assert_eq!(c.os, "linux");
        assert_eq!(c.architecture, "amd64");
        assert_eq!(c.variant, None);
        assert_eq!(c.entrypoint, ["/docker-entrypoint.sh"]);
        assert_eq!(c.cmd, ["nginx", "-g", "daemon off;"]);
        assert_eq!(c.env, ["PATH=/bin", "A=b"]);
        assert_eq!(c.working_dir.as_deref(), Some("/srv"));
        assert_eq!(c.user.as_deref(), Some("nobody"));
        assert_eq!(c.exposed_ports, ["443/tcp", "53/udp", "80/tcp"]);
        assert_eq!(c.labels.get("maintainer").map(String::as_str), Some("x"));
        assert_eq!(c.stop_signal.as_deref(), Some("SIGQUIT"));
        assert_eq!(c.volumes, ["/cache", "/data"]);
        assert_eq!(c.diff_ids.len(), 2);
        assert_eq!(c.diff_ids[1].hex(), "2".repeat(64));
        assert_eq!(c.created.as_deref(), Some("2024-01-01T00:00:00Z"));
        assert!(c.check_layers(&d(), 2).is_ok());
        let e = c.check_layers(&d(), 3).unwrap_err();
        assert!(
            e.to_string().contains("2 diff IDs") && e.to_string().contains("3 layers"),
            "{e}"
        );
    }

    #[test]
    fn parses_oci_config_with_nulls() {
        let json = r#"{"architecture":"arm64","variant":"v8","os":"linux",
          "config":{"Env":null,"Entrypoint":null,"Cmd":null,"Labels":null,"ExposedPorts":null,
                    "Volumes":null,"WorkingDir":"","User":""},
          "rootfs":{"type":"layers","diff_ids":null}}"#;
        let c = ImageConfig::parse(&d(), json.as_bytes()).unwrap();
        assert_eq!(c.variant.as_deref(), Some("v8"));
        assert!(c.env.is_empty() && c.entrypoint.is_empty() && c.cmd.is_empty());
        assert!(c.labels.is_empty() && c.exposed_ports.is_empty() && c.volumes.is_empty());
        assert_eq!(c.working_dir, None);
        assert_eq!(c.user, None);
        assert!(c.diff_ids.is_empty());
    }

    #[test]
    fn minimal_and_legacy_forms() {
        let c = ImageConfig::parse(&d(), br#"{"config":null}"#).unwrap();
        assert_eq!(c, ImageConfig::default());
        let c = ImageConfig::parse(
            &d(),
            br#"{"config":{"Cmd":"/bin/sh -c true","Entrypoint":"/init"}}"#,
        )
        .unwrap();
        assert_eq!(c.cmd, ["/bin/sh -c true"]);
        assert_eq!(c.entrypoint, ["/init"]);
    }

    #[test]
    fn errors_name_the_config() {
        for bad in [
            &br#""x""#[..],
            b"{",
            br#"{"rootfs":{"diff_ids":["md5:x"]}}"#,
            br#"{"config":{"Env":"x"}}"#,
        ] {
            let e = ImageConfig::parse(&d(), bad).unwrap_err();
            assert!(e.to_string().contains(&d().to_string()), "{e}");
        }
    }
}
