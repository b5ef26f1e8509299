//! Manifests and indexes, OCI and Docker schema 2 alike (their JSON shapes agree), and platform
//! selection from an index / manifest list.

use crate::digest::Digest;
use std::collections::BTreeMap;
use std::fmt;

#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("manifest {digest} is not valid JSON of type {media_type}: {source}")]
    Parse {
        digest: Digest,
        media_type: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("unsupported manifest media type {0:?} (Docker schema 1 is not supported)")]
    UnsupportedMediaType(String),
    #[error("no manifest for platform {wanted} in index {index}; available: {available}")]
    NoMatchingPlatform { wanted: Platform, index: Digest, available: String },
    #[error("invalid platform {0:?}: expected os/arch[/variant], e.g. linux/amd64")]
    InvalidPlatform(String),
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    #[serde(default)]
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub urls: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    pub config: Descriptor,
    #[serde(default)]
    pub layers: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Index {
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    pub manifests: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// Either kind of top-level manifest document.
#[derive(Debug, Clone)]
pub enum ManifestDocument {
    Index(Index),
    Manifest(Manifest),
}

impl ManifestDocument {
    /// Parse `bytes` given the media type from the registry's `Content-Type` or the parent
    /// descriptor; when the media type is empty or generic, it is taken from the document's own
    /// `mediaType` field, or inferred (`manifests` → index, `config` → manifest).
    pub fn parse(_media_type: &str, _digest: &Digest, _bytes: &[u8]) -> Result<ManifestDocument, ManifestError> {
        todo!("ManifestDocument::parse")
    }
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    #[serde(rename = "os.version", default, skip_serializing_if = "Option::is_none")]
    pub os_version: Option<String>,
}

impl Platform {
    /// linux/amd64, or what this host is.
    pub fn host() -> Platform {
        let architecture = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            other => other,
        };
        Platform { os: "linux".into(), architecture: architecture.into(), variant: None, os_version: None }
    }

    /// `os/arch[/variant]`.
    pub fn parse(_s: &str) -> Result<Platform, ManifestError> {
        todo!("Platform::parse")
    }

    /// Whether an index entry's platform satisfies this wanted platform (a missing variant on
    /// either side matches; arm64 treats a missing variant as v8).
    pub fn matches(&self, _candidate: &Platform) -> bool {
        todo!("Platform::matches")
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

impl Index {
    /// Pick the manifest for `wanted`; the first match in document order wins, as containerd.
    pub fn select(&self, _wanted: &Platform, _index_digest: &Digest) -> Result<&Descriptor, ManifestError> {
        todo!("Index::select")
    }
}
