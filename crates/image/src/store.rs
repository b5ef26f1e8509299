//! [`ImageStore`]: the facade over content, snapshots, records and the registry client, used
//! by the `deckhand image` CLI and by the runtime. Pull lives in `pull.rs`, import in
//! `import.rs`; this file holds the rest (open, list, inspect, remove, prune, rootfs).
//!
//! Layout under `<data-dir>/images`: `blobs/`, `ingest/`, `snapshots/`, `active/`, `refs/`.
//!
//! Garbage collection is mark and sweep from the image records and the active snapshots
//! ([`ImageStore::prune`]). Writers that commit blobs before their record exists (pull,
//! import) hold a shared [`GcGuard`] meanwhile and prune takes the lock exclusively, so a sweep
//! never removes the blobs of an image being written. Were a writer to skip the guard, the
//! worst case is a failed pull, never a broken image: the record is written last and
//! `commit_image` re-checks every blob.

use crate::config::ImageConfig;
use crate::content::{ContentError, ContentStore};
use crate::digest::Digest;
use crate::manifest::{Descriptor, ManifestDocument, ManifestError, Platform};
use crate::media::Compression;
use crate::metadata::{ImageRecord, MetadataError, MetadataStore};
use crate::progress::ProgressEvent;
use crate::reference::{Reference, ReferenceError};
use crate::registry::auth::{AuthError, DockerConfig};
use crate::registry::client::{ClientConfig, RegistryClient, RegistryError};
use crate::registry::hosts::{HostsError, RegistriesConfig};
use crate::snapshot::{chain_ids, SnapshotError, Snapshotter};
use deckhand_sys::mount::OverlaySpec;
use std::collections::{BTreeSet, HashSet};
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::Instant;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Reference(#[from] ReferenceError),
    #[error(transparent)]
    Content(#[from] ContentError),
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
    #[error(transparent)]
    Metadata(#[from] MetadataError),
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error(transparent)]
    Hosts(#[from] HostsError),
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error("image {0:?} not found: `deckhand image ls` lists the images present")]
    ImageNotFound(String),
    #[error(
        "image {image} is in use by container(s) {containers}: remove them first, or pass --force"
    )]
    InUse { image: String, containers: String },
    #[error("layer {digest} of {reference} failed verification: {message}; nothing was stored")]
    Layer {
        reference: String,
        digest: Digest,
        message: String,
    },
    #[error("image ID prefix {prefix:?} is ambiguous: it matches images {matches}; give more characters")]
    AmbiguousId { prefix: String, matches: String },
    #[error("image {name}: {message}")]
    InvalidImage { name: String, message: String },
    #[error("import {path}: {message}")]
    Import { path: PathBuf, message: String },
    #[error("{0}")]
    Internal(String),
}

/// Where the store lives and how it reaches registries.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// deckhand's data dir; the store uses `<data_dir>/images`, and reads
    /// `<data_dir>/registries.yaml` when `registries` is `None`.
    pub data_dir: PathBuf,
    pub registries: Option<crate::registry::RegistriesConfig>,
    /// Docker `config.json` to read credentials from; `None` uses the default location.
    pub docker_config: Option<PathBuf>,
    /// Layers downloaded at once per pull.
    pub max_concurrent_downloads: usize,
}

impl StoreConfig {
    pub fn new(data_dir: impl Into<PathBuf>) -> StoreConfig {
        StoreConfig {
            data_dir: data_dir.into(),
            registries: None,
            docker_config: None,
            max_concurrent_downloads: 3,
        }
    }
}

/// An image present in the store (complete: all blobs and snapshots committed).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Image {
    /// Fully-qualified name the image is stored under.
    pub name: String,
    /// Image ID: the config digest.
    pub id: Digest,
    /// Repo digest: digest of what the name resolved to (index or manifest).
    pub digest: Digest,
    pub manifest: Digest,
    pub top_chain: Digest,
    pub size: u64,
    pub platform: Platform,
    pub created_at: String,
    pub config: ImageConfig,
}

/// A shared hold on `<data-dir>/images/gc.lock` (see [`ImageStore::gc_guard`]); released on
/// drop (the flock goes with the descriptor, also when the process dies).
#[derive(Debug)]
pub struct GcGuard {
    _file: std::fs::File,
}

/// What `remove` did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct RemoveReport {
    pub untagged: Vec<String>,
}

/// What `prune` freed.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct PruneReport {
    pub blobs: Vec<Digest>,
    pub snapshots: Vec<Digest>,
    pub bytes_freed: u64,
}

/// Cheap to clone: every part is a path or a shared client, so blocking work can take a clone
/// onto the blocking pool.
#[derive(Clone)]
pub struct ImageStore {
    pub(crate) config: StoreConfig,
    pub(crate) content: ContentStore,
    pub(crate) snapshots: Snapshotter,
    pub(crate) metadata: MetadataStore,
    pub(crate) registry: RegistryClient,
}

impl ImageStore {
    /// Open (creating) the store; loads `registries.yaml` and the Docker config; removes temp
    /// leftovers of interrupted unpacks (partial downloads in `ingest/` are kept for resume).
    pub fn open(config: StoreConfig) -> Result<ImageStore, StoreError> {
        let root = config.data_dir.join("images");
        let content = ContentStore::open(&root)?;
        let snapshots = Snapshotter::open(&root)?;
        let metadata = MetadataStore::open(&root)?;
        let registries = match &config.registries {
            Some(r) => r.clone(),
            None => RegistriesConfig::load(&config.data_dir.join("registries.yaml"))?,
        };
        let docker_config = config
            .docker_config
            .clone()
            .or_else(DockerConfig::default_path)
            .map(|p| DockerConfig::load(&p))
            .transpose()?;
        let registry = RegistryClient::new(ClientConfig {
            registries,
            docker_config,
        })?;
        snapshots.cleanup_temp()?;
        Ok(ImageStore {
            config,
            content,
            snapshots,
            metadata,
            registry,
        })
    }
    pub fn content(&self) -> &ContentStore {
        &self.content
    }
    pub fn snapshotter(&self) -> &Snapshotter {
        &self.snapshots
    }
    pub fn registry(&self) -> &RegistryClient {
        &self.registry
    }
    /// `<data-dir>/images`.
    pub fn root(&self) -> PathBuf {
        self.config.data_dir.join("images")
    }

    /// Given blobs already committed to content (the target document, the platform manifest,
    /// its config and layers), unpack any missing snapshots in order, verify diff IDs, and write
    /// the record for `name`. Shared by pull and import. Blocking.
    pub fn commit_image(
        &self,
        name: &str,
        target: &Descriptor,
        manifest: &Digest,
        platform: &Platform,
    ) -> Result<Image, StoreError> {
        self.commit_image_reporting(name, target, manifest, platform, &|_| {})
    }

    /// [`ImageStore::commit_image`], reporting a `LayerUnpacked` event per layer (`bytes` 0
    /// when the snapshot was already there).
    pub(crate) fn commit_image_reporting(
        &self,
        name: &str,
        target: &Descriptor,
        manifest: &Digest,
        platform: &Platform,
        progress: &dyn Fn(ProgressEvent),
    ) -> Result<Image, StoreError> {
        let invalid = |message: String| StoreError::InvalidImage {
            name: name.to_string(),
            message,
        };
        // The target's media type describes the manifest only when the name resolved to it
        // directly; a platform manifest under an index is typed by its own `mediaType`.
        let media_type = if &target.digest == manifest {
            target.media_type.as_str()
        } else {
            ""
        };
        let manifest_doc =
            match ManifestDocument::parse(media_type, manifest, &self.content.read(manifest)?)? {
                ManifestDocument::Manifest(m) => m,
                ManifestDocument::Index(_) => {
                    return Err(invalid(format!(
                        "{manifest} is an index, not a platform manifest"
                    )));
                }
            };
        let config_digest = &manifest_doc.config.digest;
        let config_bytes = self.content.read(config_digest)?;
        let config = ImageConfig::parse(config_digest, &config_bytes)?;
        config.check_layers(config_digest, manifest_doc.layers.len())?;
        if manifest_doc.layers.is_empty() {
            return Err(invalid(format!(
                "manifest {manifest} has no layers, so there is no root file system"
            )));
        }
        // Fail before unpacking anything when a blob is missing.
        for layer in &manifest_doc.layers {
            if !self.content.contains(&layer.digest) {
                return Err(ContentError::NotFound(layer.digest.clone()).into());
            }
        }

        let chains = chain_ids(&config.diff_ids);
        for (i, layer) in manifest_doc.layers.iter().enumerate() {
            let chain = &chains[i];
            let started = Instant::now();
            let unpacked = |bytes| ProgressEvent::LayerUnpacked {
                digest: layer.digest.clone(),
                chain: chain.clone(),
                bytes,
                elapsed: started.elapsed(),
            };
            if self.snapshots.exists(chain) {
                progress(unpacked(0));
                continue;
            }
            let parent = i.checked_sub(1).map(|p| &chains[p]);
            let mut blob = self.content.open_blob(&layer.digest)?;
            let compression = match Compression::from_media_type(&layer.media_type) {
                Some(c) => c,
                None => sniff_compression(&mut blob, &self.content.blob_path(&layer.digest))?,
            };
            let reader = std::io::BufReader::with_capacity(256 << 10, blob);
            self.snapshots
                .apply(parent, chain, &config.diff_ids[i], reader, compression)
                .map_err(|e| match e {
                    e @ SnapshotError::DiffIdMismatch { .. } => StoreError::Layer {
                        reference: name.to_string(),
                        digest: layer.digest.clone(),
                        message: e.to_string(),
                    },
                    other => other.into(),
                })?;
            progress(unpacked(layer.size));
        }

        // The config knows what the image is built for; `platform` is what the caller asked for.
        let platform = if config.os.is_empty() || config.architecture.is_empty() {
            platform.clone()
        } else {
            Platform {
                os: config.os.clone(),
                architecture: config.architecture.clone(),
                variant: config.variant.clone(),
                os_version: None,
            }
        };
        let record = ImageRecord {
            name: name.to_string(),
            target: target.clone(),
            manifest: manifest.clone(),
            config: config_digest.clone(),
            top_chain: chains.last().cloned().expect("at least one layer"),
            size: manifest_doc.config.size
                + manifest_doc.layers.iter().map(|l| l.size).sum::<u64>(),
            platform,
            created_at: crate::metadata::now_rfc3339(),
        };
        // Last: once the record exists the image is complete.
        self.metadata.put(&record)?;
        Ok(image(&record, config))
    }

    /// Every image, sorted by name. A record whose config is gone (a damaged store) is logged
    /// and skipped so one bad image does not hide the others.
    pub fn list(&self) -> Result<Vec<Image>, StoreError> {
        let mut out = Vec::new();
        for record in self.metadata.list()? {
            match self.image_from_record(&record) {
                Ok(i) => out.push(i),
                Err(e) => {
                    tracing::warn!(image = %record.name, error = %e, "skipping damaged image record")
                }
            }
        }
        Ok(out)
    }
    /// Look an image up by reference (normalised: `busybox` finds
    /// `docker.io/library/busybox:latest`), by image ID or unique ID prefix (with or without
    /// `sha256:`), or by repo digest.
    pub fn get(&self, reference: &str) -> Result<Image, StoreError> {
        let records = self.metadata.list()?;
        let matched = lookup(&records, reference)?;
        self.image_from_record(
            matched
                .records()
                .first()
                .expect("lookup returns at least one record"),
        )
    }
    /// Remove the name(s) matched by `reference` (an ID removes every name of that image).
    /// Refuses with [`StoreError::InUse`] while an active snapshot uses the image, unless
    /// `force`. Blobs and snapshots are freed by [`ImageStore::prune`] (the CLI runs it after).
    pub fn remove(&self, reference: &str, force: bool) -> Result<RemoveReport, StoreError> {
        let records = self.metadata.list()?;
        let matched = lookup(&records, reference)?;
        let removing: HashSet<&str> = matched.records().iter().map(|r| r.name.as_str()).collect();
        // Untagging one of several names leaves the image in place, so only manifests losing
        // their last name can make a container lose its image.
        let kept: HashSet<&Digest> = records
            .iter()
            .filter(|r| !removing.contains(r.name.as_str()))
            .map(|r| &r.manifest)
            .collect();
        let orphaned: HashSet<&Digest> = matched
            .records()
            .iter()
            .map(|r| &r.manifest)
            .filter(|m| !kept.contains(m))
            .collect();
        if !force && !orphaned.is_empty() {
            let users: BTreeSet<String> = self
                .snapshots
                .list_active()?
                .into_iter()
                .filter(|a| orphaned.contains(&a.image))
                .map(|a| a.key)
                .collect();
            if !users.is_empty() {
                return Err(StoreError::InUse {
                    image: reference.to_string(),
                    containers: users.into_iter().collect::<Vec<_>>().join(", "),
                });
            }
        }
        let mut report = RemoveReport::default();
        for record in matched.records() {
            if self.metadata.delete(&record.name)? {
                report.untagged.push(record.name.clone());
            }
        }
        Ok(report)
    }
    /// Delete blobs and snapshots no image record or active snapshot references, and stale
    /// ingest files.
    ///
    /// Waits for pulls and imports in flight (they hold a [`GcGuard`]) so it never sweeps the
    /// blobs of an image whose record is not written yet.
    pub fn prune(&self) -> Result<PruneReport, StoreError> {
        let (gc_lock, path) = self.open_gc_lock()?;
        gc_lock
            .lock()
            .map_err(|source| ContentError::Io { path, source })?;
        let records = self.metadata.list()?;
        let mut live_blobs = HashSet::new();
        let mut live_snapshots = HashSet::new();
        for record in &records {
            mark_record(&self.content, record, &mut live_blobs, &mut live_snapshots)?;
            self.mark_chain(&record.top_chain, &mut live_snapshots)?;
        }
        for active in self.snapshots.list_active()? {
            self.mark_chain(&active.top, &mut live_snapshots)?;
        }

        let mut report = PruneReport::default();
        // Snapshots first, top-most first is not needed: a live child always keeps its parents
        // live, so everything removed here is unreferenced as a whole.
        for chain in self.snapshots.list()? {
            if live_snapshots.contains(&chain) {
                continue;
            }
            let dir = self.snapshots.fs_path(&chain);
            let size = dir_size(dir.parent().unwrap_or(&dir));
            self.snapshots.remove(&chain)?;
            report.bytes_freed += size;
            report.snapshots.push(chain);
        }
        for digest in self.content.list()? {
            if live_blobs.contains(&digest) {
                continue;
            }
            let size = self.content.size(&digest).unwrap_or(0);
            self.content.delete(&digest)?;
            report.bytes_freed += size;
            report.blobs.push(digest);
        }
        let (_, ingest_bytes) = self.content.prune_ingest()?;
        report.bytes_freed += ingest_bytes;
        Ok(report)
    }

    /// Protect what the caller is about to write from [`ImageStore::prune`] until the guard is
    /// dropped: take it before the first blob of a pull or import and drop it after
    /// `commit_image`. Many guards coexist; prune waits for all of them. Blocking (only while a
    /// prune runs).
    pub fn gc_guard(&self) -> Result<GcGuard, StoreError> {
        let (file, path) = self.open_gc_lock()?;
        file.lock_shared()
            .map_err(|source| ContentError::Io { path, source })?;
        Ok(GcGuard { _file: file })
    }

    fn open_gc_lock(&self) -> Result<(std::fs::File, PathBuf), StoreError> {
        let path = self.root().join("gc.lock");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(false)
            .open(&path)
            .map_err(|source| ContentError::Io {
                path: path.clone(),
                source,
            })?;
        Ok((file, path))
    }

    /// Mark `top` and every snapshot below it.
    fn mark_chain(&self, top: &Digest, live: &mut HashSet<Digest>) -> Result<(), StoreError> {
        live.insert(top.clone());
        match self.snapshots.lower_dirs(top) {
            Ok(dirs) => {
                // `<root>/snapshots/<chain-hex>/fs`: the chain ID is the parent directory's name.
                for dir in dirs {
                    if let Some(d) = dir
                        .parent()
                        .and_then(Path::file_name)
                        .and_then(|n| n.to_str())
                        .and_then(|n| Digest::from_hex(n).ok())
                    {
                        live.insert(d);
                    }
                }
                Ok(())
            }
            // Nothing below a missing snapshot can be marked through it; records also mark
            // their chain from the config.
            Err(SnapshotError::NotFound(_) | SnapshotError::MissingParent { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Prepare a container rootfs (active snapshot `container_id`) from an image.
    pub fn prepare_rootfs(
        &self,
        container_id: &str,
        image: &Image,
    ) -> Result<OverlaySpec, StoreError> {
        Ok(self
            .snapshots
            .prepare(container_id, &image.manifest, &image.top_chain)?)
    }
    pub fn release_rootfs(&self, container_id: &str) -> Result<(), StoreError> {
        Ok(self.snapshots.remove_active(container_id)?)
    }

    pub(crate) fn image_from_record(&self, record: &ImageRecord) -> Result<Image, StoreError> {
        let config = ImageConfig::parse(&record.config, &self.content.read(&record.config)?)?;
        Ok(image(record, config))
    }
}

fn image(record: &ImageRecord, config: ImageConfig) -> Image {
    Image {
        name: record.name.clone(),
        id: record.config.clone(),
        digest: record.target.digest.clone(),
        manifest: record.manifest.clone(),
        top_chain: record.top_chain.clone(),
        size: record.size,
        platform: record.platform.clone(),
        created_at: record.created_at.clone(),
        config,
    }
}

/// Read the first bytes of a layer blob to tell its compression, then rewind.
fn sniff_compression(blob: &mut std::fs::File, path: &Path) -> Result<Compression, StoreError> {
    let io_err = |source| {
        StoreError::Content(ContentError::Io {
            path: path.to_path_buf(),
            source,
        })
    };
    let mut head = [0u8; 4];
    let mut n = 0;
    while n < head.len() {
        match blob.read(&mut head[n..]).map_err(io_err)? {
            0 => break,
            k => n += k,
        }
    }
    blob.seek(SeekFrom::Start(0)).map_err(io_err)?;
    Ok(Compression::detect(&head[..n]))
}

/// What a lookup string matched.
#[derive(Debug)]
pub(crate) enum Matched {
    /// A name (or repo digest): the records it names.
    Name(Vec<ImageRecord>),
    /// An image ID (prefix): every record of that image.
    Id(Vec<ImageRecord>),
}

impl Matched {
    pub(crate) fn records(&self) -> &[ImageRecord] {
        match self {
            Matched::Name(r) | Matched::Id(r) => r,
        }
    }
}

/// The shortest ID prefix accepted, as Docker.
const MIN_ID_PREFIX: usize = 4;

/// Resolve a user's image string against the records: explicit ID (`sha256:…`), then a
/// normalised name, then a repo digest (`name@sha256:…` of an image pulled by tag), then an ID
/// prefix. Never returns an empty match.
pub(crate) fn lookup(records: &[ImageRecord], input: &str) -> Result<Matched, StoreError> {
    let input = input.trim();
    if let Some(hex) = input.strip_prefix("sha256:") {
        return by_id(records, input, hex)?
            .ok_or_else(|| StoreError::ImageNotFound(input.to_string()));
    }
    let parsed = Reference::parse(input);
    if let Ok(reference) = &parsed {
        let full = reference.to_string();
        let exact: Vec<ImageRecord> = records.iter().filter(|r| r.name == full).cloned().collect();
        if !exact.is_empty() {
            return Ok(Matched::Name(exact));
        }
        if let Some(digest) = &reference.digest {
            let by_digest: Vec<ImageRecord> = records
                .iter()
                .filter(|r| {
                    r.target.digest == *digest
                        && Reference::parse(&r.name).is_ok_and(|n| n.name() == reference.name())
                })
                .cloned()
                .collect();
            if !by_digest.is_empty() {
                return Ok(Matched::Name(by_digest));
            }
        }
    }
    if is_hex(input) {
        if let Some(m) = by_id(records, input, input)? {
            return Ok(m);
        }
    }
    match parsed {
        // Say why the string is not a name, unless it could have been an ID.
        Err(e) if !is_hex(input) => Err(e.into()),
        _ => Err(StoreError::ImageNotFound(input.to_string())),
    }
}

fn is_hex(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn by_id(records: &[ImageRecord], input: &str, hex: &str) -> Result<Option<Matched>, StoreError> {
    if hex.len() < MIN_ID_PREFIX || !is_hex(hex) {
        return Ok(None);
    }
    let matches: Vec<ImageRecord> = records
        .iter()
        .filter(|r| r.config.hex().starts_with(hex))
        .cloned()
        .collect();
    let ids: BTreeSet<&Digest> = matches.iter().map(|r| &r.config).collect();
    if ids.len() > 1 {
        return Err(StoreError::AmbiguousId {
            prefix: input.to_string(),
            matches: ids
                .iter()
                .map(|d| d.hex()[..12].to_string())
                .collect::<Vec<_>>()
                .join(", "),
        });
    }
    Ok(Some(Matched::Id(matches)).filter(|m| !m.records().is_empty()))
}

/// Mark every blob `record` needs: the target document; for an index, its child manifests that
/// are present with their configs and layers (kept so the image stays re-exportable for the
/// platforms we hold); the chosen manifest, its config and layers; and the snapshot chain from
/// the config's diff IDs.
pub(crate) fn mark_record(
    content: &ContentStore,
    record: &ImageRecord,
    blobs: &mut HashSet<Digest>,
    snapshots: &mut HashSet<Digest>,
) -> Result<(), StoreError> {
    blobs.insert(record.target.digest.clone());
    blobs.insert(record.manifest.clone());
    blobs.insert(record.config.clone());
    snapshots.insert(record.top_chain.clone());
    if record.target.digest != record.manifest {
        if let Some(ManifestDocument::Index(index)) = read_doc(
            content,
            &record.target.media_type,
            &record.target.digest,
            &record.name,
        )? {
            for child in &index.manifests {
                if content.contains(&child.digest) {
                    blobs.insert(child.digest.clone());
                    mark_manifest(
                        content,
                        &child.media_type,
                        &child.digest,
                        &record.name,
                        blobs,
                    )?;
                }
            }
        }
    }
    let media_type = if record.target.digest == record.manifest {
        record.target.media_type.as_str()
    } else {
        ""
    };
    mark_manifest(content, media_type, &record.manifest, &record.name, blobs)?;
    match content.read(&record.config) {
        Ok(bytes) => match ImageConfig::parse(&record.config, &bytes) {
            Ok(config) => snapshots.extend(chain_ids(&config.diff_ids)),
            Err(e) => {
                tracing::warn!(image = %record.name, error = %e, "prune: cannot read image config")
            }
        },
        Err(ContentError::NotFound(_)) => {}
        Err(e) => return Err(e.into()),
    }
    Ok(())
}

fn mark_manifest(
    content: &ContentStore,
    media_type: &str,
    digest: &Digest,
    name: &str,
    blobs: &mut HashSet<Digest>,
) -> Result<(), StoreError> {
    if let Some(ManifestDocument::Manifest(m)) = read_doc(content, media_type, digest, name)? {
        blobs.insert(m.config.digest);
        blobs.extend(m.layers.into_iter().map(|l| l.digest));
    }
    Ok(())
}

/// A manifest document from content; None when absent or unparseable (logged): prune must not
/// fail because one image is damaged, and an unreadable document references nothing we can see.
fn read_doc(
    content: &ContentStore,
    media_type: &str,
    digest: &Digest,
    name: &str,
) -> Result<Option<ManifestDocument>, StoreError> {
    let bytes = match content.read(digest) {
        Ok(b) => b,
        Err(ContentError::NotFound(_)) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    match ManifestDocument::parse(media_type, digest, &bytes) {
        Ok(doc) => Ok(Some(doc)),
        Err(e) => {
            tracing::warn!(image = %name, error = %e, "prune: cannot parse manifest");
            Ok(None)
        }
    }
}

/// Bytes of regular files under `path`, not following symlinks. Best effort: it only feeds
/// the "bytes freed" figure.
fn dir_size(path: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![path.to_path_buf()];
    while let Some(p) = stack.pop() {
        let Ok(meta) = std::fs::symlink_metadata(&p) else {
            continue;
        };
        if meta.is_dir() {
            if let Ok(entries) = std::fs::read_dir(&p) {
                stack.extend(entries.flatten().map(|e| e.path()));
            }
        } else if meta.is_file() {
            total += meta.len();
        }
    }
    total
}

#[cfg(test)]
pub(crate) mod testutil;

#[cfg(test)]
mod tests;
