//! Image references, normalised as Docker does: `busybox` → `docker.io/library/busybox:latest`,
//! `127.0.0.1:5000/x:1`, `name@sha256:…`, `name:tag@sha256:…`.

use crate::digest::Digest;
use std::fmt;
use std::str::FromStr;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ReferenceError {
    /// The string is not a valid reference; the message says which part is wrong.
    #[error("invalid image reference {input:?}: {reason}")]
    Invalid { input: String, reason: String },
}

/// A fully-qualified image reference. `tag` defaults to `latest` when neither tag nor digest is
/// given; when a digest is given it wins for resolution and the tag is kept only for naming.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    /// Registry host with optional port, e.g. `docker.io`, `127.0.0.1:5000`.
    pub registry: String,
    /// Repository path, e.g. `library/busybox`.
    pub repository: String,
    pub tag: Option<String>,
    pub digest: Option<Digest>,
}

impl Reference {
    /// Parse and normalise (`docker.io` default registry, `library/` for single-component
    /// Docker Hub names, `latest` default tag). Rejects upper-case repositories, empty
    /// components, bad tags (`[\w][\w.-]{0,127}`) and bad digests.
    pub fn parse(_input: &str) -> Result<Reference, ReferenceError> {
        todo!("Reference::parse")
    }

    /// `registry/repository`.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// Whether the registry is a loopback address (`localhost`, `127.0.0.0/8`, `[::1]`), which
    /// is the only case plain HTTP is allowed without configuration.
    pub fn is_loopback_registry(&self) -> bool {
        todo!("Reference::is_loopback_registry")
    }

    /// The string a registry is asked for: the digest if any, else the tag.
    pub fn object(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(d), _) => d.to_string(),
            (None, Some(t)) => t.clone(),
            (None, None) => "latest".to_string(),
        }
    }
}

impl FromStr for Reference {
    type Err = ReferenceError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Reference::parse(s)
    }
}

/// Fully-qualified form: `docker.io/library/busybox:latest`, `x/y:1@sha256:…`.
impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.name())?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}
