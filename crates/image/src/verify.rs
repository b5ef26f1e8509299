//! `deckhand image verify`: an fsck for the store. Re-hashes every committed blob and checks
//! that every listed image is complete (its documents and layers present, its snapshot chain
//! committed). Used after crashes and by the kill-mid-pull tests.

use crate::store::{ImageStore, StoreError};
use std::fmt;

/// One thing wrong with the store.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub enum Problem {
    /// A committed blob whose content does not match its name.
    CorruptBlob(String),
    /// An image record points at something absent.
    Incomplete { image: String, missing: String },
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::CorruptBlob(d) => write!(f, "blob {d} does not match its digest"),
            Problem::Incomplete { image, missing } => {
                write!(f, "image {image}: {missing} is missing")
            }
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct VerifyReport {
    pub images: usize,
    pub blobs: usize,
    pub snapshots: usize,
    pub problems: Vec<Problem>,
}

impl ImageStore {
    /// Check the whole store. Blocking; reads every blob.
    pub fn verify(&self) -> Result<VerifyReport, StoreError> {
        let mut report = VerifyReport {
            blobs: self.content.list()?.len(),
            snapshots: self.snapshots.list()?.len(),
            ..VerifyReport::default()
        };
        for digest in self.content.verify_all()? {
            report
                .problems
                .push(Problem::CorruptBlob(digest.to_string()));
        }
        for record in self.metadata.list()? {
            report.images += 1;
            let image = record.name.clone();
            let mut missing = |what: String| {
                report.problems.push(Problem::Incomplete {
                    image: image.clone(),
                    missing: what,
                })
            };
            for (what, digest) in [
                ("target", &record.target.digest),
                ("manifest", &record.manifest),
                ("config", &record.config),
            ] {
                if !self.content.contains(digest) {
                    missing(format!("{what} blob {digest}"));
                }
            }
            if let Ok(bytes) = self.content.read(&record.manifest) {
                if let Ok(crate::manifest::ManifestDocument::Manifest(m)) =
                    // The record does not keep the platform manifest's media type; parse infers it.
                    crate::manifest::ManifestDocument::parse("", &record.manifest, &bytes)
                {
                    for layer in &m.layers {
                        if !self.content.contains(&layer.digest) {
                            missing(format!("layer blob {}", layer.digest));
                        }
                    }
                }
            }
            if let Err(e) = self.snapshots.lower_dirs(&record.top_chain) {
                missing(format!("snapshot chain of {} ({e})", record.top_chain));
            }
        }
        Ok(report)
    }
}
