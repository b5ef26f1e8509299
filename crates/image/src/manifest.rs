//! Manifests and indexes, OCI and Docker schema 2 alike (their JSON shapes agree), and platform
//! selection from an index / manifest list.

use crate::digest::Digest;
use crate::media;
use std::collections::BTreeMap;
use std::fmt;

/// Docker schema 1 (deprecated since 2017, removed from Docker 28): recognised only to refuse
/// it with a clear message.
pub const DOCKER_SCHEMA1: &str = "application/vnd.docker.distribution.manifest.v1+json";
pub const DOCKER_SCHEMA1_SIGNED: &str = "application/vnd.docker.distribution.manifest.v1+prettyjws";

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
    NoMatchingPlatform {
        /// Boxed to keep every `Result` carrying this error small (clippy `result_large_err`).
        wanted: Box<Platform>,
        index: Digest,
        available: String,
    },
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
    pub fn parse(
        media_type: &str,
        digest: &Digest,
        bytes: &[u8],
    ) -> Result<ManifestDocument, ManifestError> {
        // Registries append parameters (`; charset=utf-8`); they do not change the type.
        let media_type = media_type.split(';').next().unwrap_or("").trim();
        let parse_err = |source| ManifestError::Parse {
            digest: digest.clone(),
            media_type: if media_type.is_empty() {
                "(unspecified)".into()
            } else {
                media_type.into()
            },
            source,
        };
        match media_type {
            media::OCI_INDEX | media::DOCKER_MANIFEST_LIST => serde_json::from_slice(bytes)
                .map(ManifestDocument::Index)
                .map_err(parse_err),
            media::OCI_MANIFEST | media::DOCKER_MANIFEST => serde_json::from_slice(bytes)
                .map(ManifestDocument::Manifest)
                .map_err(parse_err),
            DOCKER_SCHEMA1 | DOCKER_SCHEMA1_SIGNED => {
                Err(ManifestError::UnsupportedMediaType(media_type.to_string()))
            }
            generic if is_generic(generic) => Self::infer(digest, bytes).map_err(parse_err)?,
            other => Err(ManifestError::UnsupportedMediaType(other.to_string())),
        }
    }

    /// Generic content type: trust what the document says it is ([`sniff_media_type`]).
    fn infer(
        digest: &Digest,
        bytes: &[u8],
    ) -> Result<Result<ManifestDocument, ManifestError>, serde_json::Error> {
        match sniff_media_type(bytes)? {
            Some(mt) => Ok(Self::parse(&mt, digest, bytes)),
            None => Err(<serde_json::Error as serde::de::Error>::custom(
                "the document has neither `manifests` (an index) nor `config` (a manifest)",
            )),
        }
    }
}

/// What a manifest document says it is, for when the transport's content type is generic
/// (`application/json`, or none): its own `mediaType` unless that is generic too, else its
/// shape (`manifests` → OCI index, `config` → OCI manifest; `schemaVersion: 1` or `fsLayers` →
/// Docker schema 1). `Ok(None)` when neither tells. Shared by [`ManifestDocument::parse`] and
/// the registry client, which records the type in the descriptor it returns.
pub fn sniff_media_type(bytes: &[u8]) -> Result<Option<String>, serde_json::Error> {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Probe {
        #[serde(default)]
        media_type: Option<String>,
        #[serde(default)]
        schema_version: Option<u32>,
        #[serde(default)]
        manifests: Option<serde_json::Value>,
        #[serde(default)]
        config: Option<serde_json::Value>,
        #[serde(default)]
        fs_layers: Option<serde_json::Value>,
    }
    let probe: Probe = serde_json::from_slice(bytes)?;
    // A generic type in the document itself says nothing (and would make `parse` infer again).
    let own = probe.media_type.filter(|m| !m.is_empty() && !is_generic(m));
    Ok(if own.is_some() {
        own
    } else if probe.schema_version == Some(1) || probe.fs_layers.is_some() {
        Some(DOCKER_SCHEMA1.to_string())
    } else if probe.manifests.is_some() {
        Some(media::OCI_INDEX.to_string())
    } else if probe.config.is_some() {
        Some(media::OCI_MANIFEST.to_string())
    } else {
        None
    })
}

/// Content types that say "some JSON" rather than which document.
fn is_generic(media_type: &str) -> bool {
    matches!(
        media_type,
        "" | "application/json" | "application/octet-stream" | "text/plain"
    )
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    #[serde(
        rename = "os.version",
        default,
        skip_serializing_if = "Option::is_none"
    )]
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
        Platform {
            os: "linux".into(),
            architecture: architecture.into(),
            variant: None,
            os_version: None,
        }
    }

    /// `os/arch[/variant]`.
    pub fn parse(s: &str) -> Result<Platform, ManifestError> {
        let parts: Vec<&str> = s.split('/').collect();
        if !(2..=3).contains(&parts.len()) || parts.iter().any(|p| p.trim().is_empty()) {
            return Err(ManifestError::InvalidPlatform(s.to_string()));
        }
        let os = parts[0].to_ascii_lowercase();
        let (architecture, default_variant) = normalize_arch(&parts[1].to_ascii_lowercase());
        let variant = match parts.get(2) {
            Some(v) => Some(normalize_variant(&architecture, &v.to_ascii_lowercase())),
            None => default_variant,
        };
        Ok(Platform {
            os,
            architecture,
            variant,
            os_version: None,
        })
    }

    /// Whether an index entry's platform satisfies this wanted platform (a missing variant on
    /// either side matches; arm64 treats a missing variant as v8).
    pub fn matches(&self, candidate: &Platform) -> bool {
        let (arch, default_variant) = normalize_arch(&candidate.architecture.to_ascii_lowercase());
        if !self.os.eq_ignore_ascii_case(&candidate.os) || self.architecture != arch {
            return false;
        }
        let candidate_variant = candidate
            .variant
            .as_deref()
            .map(|v| normalize_variant(&arch, &v.to_ascii_lowercase()))
            .or(default_variant);
        // arm64 images almost never state a variant; v8 is what they mean.
        let implied = |v: Option<String>| {
            if arch == "arm64" {
                v.or(Some("v8".into()))
            } else {
                v
            }
        };
        match (implied(self.variant.clone()), implied(candidate_variant)) {
            (Some(a), Some(b)) => a == b,
            _ => true,
        }
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
    pub fn select(
        &self,
        wanted: &Platform,
        index_digest: &Digest,
    ) -> Result<&Descriptor, ManifestError> {
        let is_manifest = |d: &Descriptor| {
            matches!(
                d.media_type.as_str(),
                media::OCI_MANIFEST | media::DOCKER_MANIFEST | ""
            )
        };
        let found = self
            .manifests
            .iter()
            .filter(|d| is_manifest(d))
            .find(|d| match &d.platform {
                Some(p) => wanted.matches(p),
                // An entry without a platform is taken only when it is the sole choice.
                None => self.manifests.len() == 1,
            });
        found.ok_or_else(|| {
            let available: Vec<String> = self
                .manifests
                .iter()
                .filter(|d| is_manifest(d))
                .filter_map(|d| d.platform.as_ref().map(|p| p.to_string()))
                .filter(|p| p != "unknown/unknown")
                .collect();
            ManifestError::NoMatchingPlatform {
                wanted: Box::new(wanted.clone()),
                index: index_digest.clone(),
                available: if available.is_empty() {
                    "none".into()
                } else {
                    available.join(", ")
                },
            }
        })
    }
}

/// Map the names `uname -m` and distributions use onto GOARCH names, as containerd's
/// `platforms.Normalize` does; returns the variant the alias implies.
fn normalize_arch(arch: &str) -> (String, Option<String>) {
    let (a, v) = match arch {
        "x86_64" | "x86-64" | "amd64" => ("amd64", None),
        "i386" | "i486" | "i586" | "i686" => ("386", None),
        "aarch64" | "arm64" => ("arm64", None),
        "armhf" => ("arm", Some("v7")),
        "armel" => ("arm", Some("v6")),
        other => (other, None),
    };
    (a.to_string(), v.map(str::to_string))
}

/// `8` → `v8`; arm64's `v8` stays and is also assumed when absent (see [`Platform::matches`]).
fn normalize_variant(arch: &str, variant: &str) -> String {
    match (arch, variant) {
        ("arm" | "arm64", v) if v.bytes().all(|b| b.is_ascii_digit()) => format!("v{v}"),
        (_, v) => v.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(n: u8) -> Digest {
        Digest::of(&[n])
    }

    #[test]
    fn a_generic_media_type_inside_the_document_falls_back_to_its_shape() {
        // Used to recurse without end: parse(generic) → infer → parse(generic) → …
        let doc = br#"{"schemaVersion":2,"mediaType":"application/json",
            "config":{"mediaType":"x","digest":"sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855","size":0},
            "layers":[]}"#;
        assert!(matches!(
            ManifestDocument::parse("application/json", &digest(1), doc),
            Ok(ManifestDocument::Manifest(_))
        ));
        assert_eq!(
            sniff_media_type(doc).unwrap().as_deref(),
            Some(media::OCI_MANIFEST)
        );
    }

    fn desc(media_type: &str, platform: Option<&str>) -> Descriptor {
        Descriptor {
            media_type: media_type.into(),
            digest: digest(platform.map_or(0, |p| p.len() as u8)),
            size: 10,
            platform: platform.map(|p| Platform::parse(p).unwrap()),
            annotations: BTreeMap::new(),
            urls: vec![],
        }
    }

    const MANIFEST: &str = r#"{"schemaVersion":2,
        "config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:0000000000000000000000000000000000000000000000000000000000000000","size":2},
        "layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:1111111111111111111111111111111111111111111111111111111111111111","size":3}]}"#;
    const INDEX: &str = r#"{"schemaVersion":2,"manifests":[
        {"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:2222222222222222222222222222222222222222222222222222222222222222","size":4,
         "platform":{"os":"linux","architecture":"amd64"}}]}"#;

    #[test]
    fn parses_by_media_type() {
        let d = digest(1);
        for mt in [
            media::OCI_MANIFEST,
            media::DOCKER_MANIFEST,
            "application/vnd.oci.image.manifest.v1+json; charset=utf-8",
        ] {
            match ManifestDocument::parse(mt, &d, MANIFEST.as_bytes()).unwrap() {
                ManifestDocument::Manifest(m) => {
                    assert_eq!(m.layers.len(), 1);
                    assert_eq!(m.config.size, 2);
                }
                other => panic!("{mt}: {other:?}"),
            }
        }
        for mt in [media::OCI_INDEX, media::DOCKER_MANIFEST_LIST] {
            assert!(matches!(
                ManifestDocument::parse(mt, &d, INDEX.as_bytes()).unwrap(),
                ManifestDocument::Index(_)
            ));
        }
    }

    #[test]
    fn infers_generic_media_types() {
        let d = digest(1);
        for mt in ["", "application/json", "application/octet-stream"] {
            assert!(matches!(
                ManifestDocument::parse(mt, &d, MANIFEST.as_bytes()).unwrap(),
                ManifestDocument::Manifest(_)
            ));
            assert!(matches!(
                ManifestDocument::parse(mt, &d, INDEX.as_bytes()).unwrap(),
                ManifestDocument::Index(_)
            ));
        }
        // The document's own mediaType wins over shape.
        let with_type = INDEX.replacen(
            '{',
            &format!("{{\"mediaType\":\"{}\",", media::DOCKER_MANIFEST_LIST),
            1,
        );
        match ManifestDocument::parse("", &d, with_type.as_bytes()).unwrap() {
            ManifestDocument::Index(i) => {
                assert_eq!(i.media_type.as_deref(), Some(media::DOCKER_MANIFEST_LIST))
            }
            other => panic!("{other:?}"),
        }
        let e = ManifestDocument::parse("", &d, br#"{"schemaVersion":2}"#).unwrap_err();
        assert!(e.to_string().contains("neither"), "{e}");
        assert!(e.to_string().contains(&d.to_string()), "{e}");
    }

    #[test]
    fn rejects_schema1_clearly() {
        let d = digest(1);
        let s1 = br#"{"schemaVersion":1,"name":"x","tag":"1","fsLayers":[],"history":[]}"#;
        for mt in [
            DOCKER_SCHEMA1,
            DOCKER_SCHEMA1_SIGNED,
            "",
            "application/json",
        ] {
            let e = ManifestDocument::parse(mt, &d, s1).unwrap_err();
            assert!(
                matches!(e, ManifestError::UnsupportedMediaType(_)),
                "{mt}: {e}"
            );
            assert!(e.to_string().contains("schema 1"), "{e}");
        }
        let e = ManifestDocument::parse("text/html", &d, MANIFEST.as_bytes()).unwrap_err();
        assert!(matches!(e, ManifestError::UnsupportedMediaType(m) if m == "text/html"));
    }

    #[test]
    fn bad_json_names_the_digest() {
        let d = digest(7);
        let e = ManifestDocument::parse(media::OCI_MANIFEST, &d, b"{not json").unwrap_err();
        assert!(matches!(e, ManifestError::Parse { .. }));
        assert!(e.to_string().contains(&d.to_string()));
        // A manifest without config is not a manifest.
        assert!(ManifestDocument::parse(media::OCI_MANIFEST, &d, INDEX.as_bytes()).is_err());
    }

    #[test]
    fn platform_parse() {
        let cases: &[(&str, &str, &str, Option<&str>)] = &[
            ("linux/amd64", "linux", "amd64", None),
            ("linux/x86_64", "linux", "amd64", None),
            ("Linux/AMD64", "linux", "amd64", None),
            ("linux/arm64", "linux", "arm64", None),
            ("linux/aarch64", "linux", "arm64", None),
            ("linux/arm64/v8", "linux", "arm64", Some("v8")),
            ("linux/arm64/8", "linux", "arm64", Some("v8")),
            ("linux/arm/v7", "linux", "arm", Some("v7")),
            ("linux/armhf", "linux", "arm", Some("v7")),
            ("windows/amd64", "windows", "amd64", None),
        ];
        for (s, os, arch, variant) in cases {
            let p = Platform::parse(s).unwrap();
            assert_eq!(
                (p.os.as_str(), p.architecture.as_str(), p.variant.as_deref()),
                (*os, *arch, *variant),
                "{s}"
            );
        }
        for bad in [
            "",
            "linux",
            "linux/",
            "/amd64",
            "linux/amd64/v1/x",
            "linux//v8",
        ] {
            assert!(
                matches!(Platform::parse(bad), Err(ManifestError::InvalidPlatform(_))),
                "{bad:?}"
            );
        }
        assert_eq!(
            Platform::parse("linux/arm/v7").unwrap().to_string(),
            "linux/arm/v7"
        );
    }

    #[test]
    fn platform_matches() {
        let p = |s: &str| Platform::parse(s).unwrap();
        let raw = |os: &str, arch: &str, v: Option<&str>| Platform {
            os: os.into(),
            architecture: arch.into(),
            variant: v.map(Into::into),
            os_version: None,
        };
        let cases: &[(Platform, Platform, bool)] = &[
            (p("linux/amd64"), raw("linux", "amd64", None), true),
            (p("linux/amd64"), raw("linux", "arm64", None), false),
            (p("linux/amd64"), raw("windows", "amd64", None), false),
            (p("linux/amd64"), raw("linux", "x86_64", None), true),
            (p("linux/arm64"), raw("linux", "arm64", Some("v8")), true),
            (p("linux/arm64/v8"), raw("linux", "arm64", None), true),
            (p("linux/arm64"), raw("linux", "arm64", Some("v9")), false),
            (p("linux/arm64/v9"), raw("linux", "arm64", None), false),
            (p("linux/arm/v7"), raw("linux", "arm", Some("v7")), true),
            (p("linux/arm/v7"), raw("linux", "arm", Some("v6")), false),
            (p("linux/arm"), raw("linux", "arm", Some("v6")), true),
            (p("linux/arm/v7"), raw("linux", "arm", None), true),
        ];
        for (wanted, candidate, want) in cases {
            assert_eq!(
                wanted.matches(candidate),
                *want,
                "{wanted} vs {candidate:?}"
            );
        }
    }

    #[test]
    fn index_select() {
        let mut attestation = desc(media::OCI_MANIFEST, None);
        attestation.platform = Some(Platform {
            os: "unknown".into(),
            architecture: "unknown".into(),
            variant: None,
            os_version: None,
        });
        let index = Index {
            schema_version: 2,
            media_type: Some(media::OCI_INDEX.into()),
            manifests: vec![
                desc(media::OCI_MANIFEST, Some("linux/amd64")),
                desc(media::OCI_MANIFEST, Some("linux/arm/v6")),
                desc(media::OCI_MANIFEST, Some("linux/arm/v7")),
                desc(media::OCI_MANIFEST, Some("linux/arm64/v8")),
                desc(media::OCI_INDEX, Some("linux/s390x")),
                attestation,
            ],
            annotations: BTreeMap::new(),
        };
        let idx = digest(9);
        let pick = |s: &str| {
            index
                .select(&Platform::parse(s).unwrap(), &idx)
                .map(|d| d.platform.clone().unwrap().to_string())
        };
        assert_eq!(pick("linux/amd64").unwrap(), "linux/amd64");
        assert_eq!(pick("linux/arm/v7").unwrap(), "linux/arm/v7");
        assert_eq!(pick("linux/arm64").unwrap(), "linux/arm64/v8");
        let e = pick("linux/s390x").unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("linux/s390x") && msg.contains(&idx.to_string()),
            "{msg}"
        );
        assert!(
            msg.contains("available: linux/amd64, linux/arm/v6, linux/arm/v7, linux/arm64/v8"),
            "{msg}"
        );
        assert!(!msg.contains("unknown"), "{msg}");
    }

    #[test]
    fn index_select_first_match_and_platformless() {
        let mut a = desc(media::OCI_MANIFEST, Some("linux/amd64"));
        a.digest = digest(1);
        let mut b = desc(media::DOCKER_MANIFEST, Some("linux/amd64"));
        b.digest = digest(2);
        let index = Index {
            schema_version: 2,
            media_type: None,
            manifests: vec![a, b],
            annotations: BTreeMap::new(),
        };
        assert_eq!(
            index
                .select(&Platform::parse("linux/amd64").unwrap(), &digest(0))
                .unwrap()
                .digest,
            digest(1)
        );

        let single = Index {
            schema_version: 2,
            media_type: None,
            manifests: vec![desc(media::OCI_MANIFEST, None)],
            annotations: BTreeMap::new(),
        };
        assert!(single
            .select(&Platform::parse("linux/arm64").unwrap(), &digest(0))
            .is_ok());
        let empty = Index {
            schema_version: 2,
            media_type: None,
            manifests: vec![],
            annotations: BTreeMap::new(),
        };
        let e = empty.select(&Platform::host(), &digest(0)).unwrap_err();
        assert!(e.to_string().ends_with("available: none"), "{e}");
    }
}
