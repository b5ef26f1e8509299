//! Importing images from files: OCI archives (tar of an OCI layout), docker-archives (`docker
//! save`, `skopeo copy … docker-archive:`), and OCI layout directories. Names come from the
//! `org.opencontainers.image.ref.name` annotation / `index.json` (OCI) or `RepoTags`
//! (docker-archive), or the `name` option. Docker-archive layers are stored as blobs with a
//! synthesised OCI manifest so the image is pullable-identical afterwards.
//!
//! Archives are read in one streaming pass (they may be gzip- or zstd-compressed, and a
//! compressed tar cannot be seeked): every `blobs/sha256/<hex>` entry goes straight into the
//! content store, verified against its name; other large files (docker-archive layers) are
//! hashed into the store as they stream; small files (`index.json`, `manifest.json`, configs)
//! are kept in memory. Only then are the index or manifest list read and the images committed.

use crate::content::{ContentError, ContentStore};
use crate::digest::Digest;
use crate::manifest::{Descriptor, Index, Manifest, ManifestDocument, Platform};
use crate::media::{self, Compression};
use crate::progress::{ProgressEvent, ProgressSink};
use crate::reference::Reference;
use crate::store::{Image, ImageStore, StoreError};
use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Component, Path, PathBuf};
use std::time::Instant;

#[derive(Clone)]
pub struct ImportOptions {
    /// Name to give the image when the archive carries none (or to override a single one).
    pub name: Option<String>,
    pub platform: Platform,
    pub progress: ProgressSink,
}

impl Default for ImportOptions {
    fn default() -> Self {
        ImportOptions {
            name: None,
            platform: Platform::host(),
            progress: crate::progress::discard(),
        }
    }
}

/// containerd's annotation for the full image name (also written by Docker ≥ 25 and nerdctl).
pub const ANNOTATION_CONTAINERD_NAME: &str = "io.containerd.image.name";
/// The OCI annotation: a tag, or (as skopeo and buildah write it) a full name.
pub const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";

/// Files up to this size that are not `blobs/sha256/…` are kept in memory while the archive
/// streams (manifests, configs, `index.json`); larger ones are layers and go to the store.
const SMALL_FILE: u64 = 1 << 20;

impl ImageStore {
    /// Import every image in `path` (a file: OCI or docker archive, possibly gzip-compressed;
    /// a directory: OCI layout). Blocking work runs on the blocking pool.
    pub async fn import(
        &self,
        path: &Path,
        options: ImportOptions,
    ) -> Result<Vec<Image>, StoreError> {
        let store = self.clone();
        let path = path.to_path_buf();
        tokio::task::spawn_blocking(move || store.import_blocking(&path, &options))
            .await
            .map_err(|e| StoreError::Internal(format!("import task failed: {e}")))?
    }

    fn import_blocking(
        &self,
        path: &Path,
        options: &ImportOptions,
    ) -> Result<Vec<Image>, StoreError> {
        // Blobs land before records: keep prune off them until the records are written.
        let _gc = self.gc_guard()?;
        let staged = stage(&self.content, path, options)?;
        let mut images = Vec::with_capacity(staged.len());
        for s in staged {
            let start = Instant::now();
            if let Ok(bytes) = self.content.read(&s.manifest) {
                if let Ok(ManifestDocument::Manifest(m)) =
                    ManifestDocument::parse("", &s.manifest, &bytes)
                {
                    (options.progress)(ProgressEvent::Resolved {
                        reference: s.name.clone(),
                        manifest: s.manifest.clone(),
                        layers: m
                            .layers
                            .iter()
                            .map(|l| (l.digest.clone(), l.size))
                            .collect(),
                    });
                }
            }
            let image = self.commit_image_reporting(
                &s.name,
                &s.target,
                &s.manifest,
                &options.platform,
                &*options.progress,
            )?;
            (options.progress)(ProgressEvent::Done {
                reference: s.name.clone(),
                manifest: s.manifest.clone(),
                elapsed: start.elapsed(),
            });
            images.push(image);
        }
        Ok(images)
    }
}

/// An image whose blobs are all in the content store, ready for `commit_image`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Staged {
    pub name: String,
    pub target: Descriptor,
    pub manifest: Digest,
}

/// Bring every blob of every image in `path` into `content` and work out names. Blocking.
pub(crate) fn stage(
    content: &ContentStore,
    path: &Path,
    options: &ImportOptions,
) -> Result<Vec<Staged>, StoreError> {
    let meta =
        std::fs::metadata(path).map_err(|e| import_err(path, format!("cannot read it: {e}")))?;
    let staged = if meta.is_dir() {
        let index = std::fs::read(path.join("index.json")).map_err(|e| {
            import_err(
                path,
                format!("not an OCI layout directory (cannot read index.json: {e})"),
            )
        })?;
        check_oci_layout(path, std::fs::read(path.join("oci-layout")).ok().as_deref())?;
        let source = DirSource {
            root: path.to_path_buf(),
            progress: options.progress.clone(),
        };
        stage_oci(content, &source, path, &index, options)?
    } else {
        let files = read_archive(content, path, &options.progress)?;
        if let Some(index) = files.small("index.json") {
            check_oci_layout(path, files.small("oci-layout"))?;
            stage_oci(content, &files, path, index, options)?
        } else if let Some(manifest) = files.small("manifest.json") {
            stage_docker(content, &files, path, manifest, options)?
        } else {
            return Err(import_err(
                path,
                "neither an OCI archive (no index.json) nor a docker-archive (no manifest.json)"
                    .into(),
            ));
        }
    };
    if staged.is_empty() {
        return Err(import_err(path, "the archive contains no images".into()));
    }
    // Two different images under one name would silently shadow each other.
    let mut seen: HashMap<&str, &Digest> = HashMap::new();
    for s in &staged {
        if let Some(prev) = seen.insert(&s.name, &s.manifest) {
            if prev != &s.manifest {
                return Err(import_err(
                    path,
                    format!("several images would be named {}: pass a name per image or import them separately", s.name),
                ));
            }
        }
    }
    Ok(staged)
}

fn import_err(path: &Path, message: String) -> StoreError {
    StoreError::Import {
        path: path.to_path_buf(),
        message,
    }
}

fn check_oci_layout(path: &Path, layout: Option<&[u8]>) -> Result<(), StoreError> {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Layout {
        image_layout_version: String,
    }
    let Some(bytes) = layout else {
        // Some writers omit it; index.json is what matters.
        tracing::warn!(path = %path.display(), "OCI layout has no oci-layout file");
        return Ok(());
    };
    let layout: Layout = serde_json::from_slice(bytes)
        .map_err(|e| import_err(path, format!("oci-layout is not valid: {e}")))?;
    if !layout.image_layout_version.starts_with("1.") {
        return Err(import_err(
            path,
            format!(
                "unsupported OCI layout version {:?} (1.x is supported)",
                layout.image_layout_version
            ),
        ));
    }
    Ok(())
}

/// Where the blobs of an OCI layout come from.
trait BlobSource {
    /// Make sure `desc` is in the content store (copying it in if needed); false when the
    /// source does not have it.
    fn ensure(&self, content: &ContentStore, desc: &Descriptor) -> Result<bool, StoreError>;
}

/// An OCI layout directory: blobs are copied (verified) on demand, only those needed.
struct DirSource {
    root: PathBuf,
    progress: ProgressSink,
}

impl BlobSource for DirSource {
    fn ensure(&self, content: &ContentStore, desc: &Descriptor) -> Result<bool, StoreError> {
        if content.contains(&desc.digest) {
            (self.progress)(ProgressEvent::LayerExists {
                digest: desc.digest.clone(),
                size: desc.size,
            });
            return check_size(content, desc, &self.root).map(|()| true);
        }
        let path = self
            .root
            .join("blobs")
            .join(desc.digest.algorithm())
            .join(desc.digest.hex());
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(import_err(&path, format!("cannot read blob: {e}"))),
        };
        let start = Instant::now();
        copy_verified(content, &desc.digest, desc.size, file, &path)?;
        (self.progress)(ProgressEvent::LayerDownloaded {
            digest: desc.digest.clone(),
            size: desc.size,
            elapsed: start.elapsed(),
        });
        Ok(true)
    }
}

fn check_size(content: &ContentStore, desc: &Descriptor, path: &Path) -> Result<(), StoreError> {
    let size = content.size(&desc.digest)?;
    if size != desc.size {
        return Err(import_err(
            path,
            format!(
                "descriptor of {} says {} bytes but the blob has {size}; the archive is damaged",
                desc.digest, desc.size
            ),
        ));
    }
    Ok(())
}

/// Stream `reader` into the store as `digest`, verifying digest and size.
fn copy_verified(
    content: &ContentStore,
    digest: &Digest,
    size: u64,
    mut reader: impl Read,
    origin: &Path,
) -> Result<(), StoreError> {
    let Some(mut ingest) = content.begin(digest, size)? else {
        return Ok(());
    };
    // Our source reads from the start; a partial download of the same blob is not a prefix
    // we can skip in a tar stream.
    ingest.truncate()?;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(import_err(origin, format!("reading blob {digest}: {e}"))),
        };
        ingest.write(&buf[..n]).map_err(|e| verify_err(origin, e))?;
    }
    ingest.commit().map_err(|e| verify_err(origin, e))
}

fn verify_err(origin: &Path, e: ContentError) -> StoreError {
    match e {
        e @ ContentError::DigestMismatch { .. } => import_err(origin, e.to_string()),
        other => other.into(),
    }
}

/// What one pass over an archive left: blobs in the store by archive path, small files in
/// memory, links to resolve.
#[derive(Default)]
struct ArchiveFiles {
    small: HashMap<String, Vec<u8>>,
    blobs: HashMap<String, (Digest, u64)>,
    links: HashMap<String, String>,
}

impl ArchiveFiles {
    /// Follow symlinks and hard links (docker save links repeated layers to one file).
    fn resolve<'a>(&'a self, mut name: &'a str) -> &'a str {
        for _ in 0..16 {
            match self.links.get(name) {
                Some(target) => name = target,
                None => break,
            }
        }
        name
    }
    fn small(&self, name: &str) -> Option<&[u8]> {
        self.small.get(self.resolve(name)).map(Vec::as_slice)
    }
    /// A file's blob in the content store, writing small files in on demand.
    fn blob(
        &self,
        content: &ContentStore,
        name: &str,
    ) -> Result<Option<(Digest, u64)>, StoreError> {
        let normalized = normalize(name);
        let name = self.resolve(&normalized);
        if let Some(b) = self.blobs.get(name) {
            return Ok(Some(b.clone()));
        }
        if let Some(bytes) = self.small.get(name) {
            let d = Digest::of(bytes);
            content.write_all(&d, bytes)?;
            return Ok(Some((d, bytes.len() as u64)));
        }
        Ok(None)
    }
}

impl BlobSource for ArchiveFiles {
    fn ensure(&self, content: &ContentStore, desc: &Descriptor) -> Result<bool, StoreError> {
        if !content.contains(&desc.digest) {
            return Ok(false);
        }
        check_size(
            content,
            desc,
            Path::new(&format!("blobs/sha256/{}", desc.digest.hex())),
        )
        .map(|()| true)
    }
}

/// Archive member names without `./` or leading `/`, with `..` resolved.
fn normalize(name: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for c in Path::new(name).components() {
        match c {
            Component::Normal(s) => parts.push(s.to_str().unwrap_or("")),
            Component::ParentDir => {
                parts.pop();
            }
            _ => {}
        }
    }
    parts.join("/")
}

/// One streaming pass over the (possibly compressed) archive at `path`.
fn read_archive(
    content: &ContentStore,
    path: &Path,
    progress: &ProgressSink,
) -> Result<ArchiveFiles, StoreError> {
    let file = File::open(path).map_err(|e| import_err(path, format!("cannot open: {e}")))?;
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let head = reader
        .fill_buf()
        .map_err(|e| import_err(path, format!("cannot read: {e}")))?;
    let stream: Box<dyn Read> = match Compression::detect(head) {
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(reader)),
        Compression::Zstd => Box::new(
            zstd::Decoder::with_buffer(reader)
                .map_err(|e| import_err(path, format!("zstd: {e}")))?,
        ),
        Compression::None => Box::new(reader),
    };
    let tar_err = |e: std::io::Error| import_err(path, format!("not a valid (tar) archive: {e}"));
    let mut archive = tar::Archive::new(stream);
    let mut files = ArchiveFiles::default();
    for entry in archive.entries().map_err(tar_err)? {
        let mut entry = entry.map_err(tar_err)?;
        let raw_name = entry
            .path()
            .map_err(tar_err)?
            .to_string_lossy()
            .into_owned();
        let name = normalize(&raw_name);
        let member = path.join(&name);
        match entry.header().entry_type() {
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                let size = entry.size();
                let start = Instant::now();
                let known = name
                    .strip_prefix("blobs/sha256/")
                    .and_then(|h| Digest::from_hex(h).ok());
                if let Some(digest) = known {
                    copy_verified(content, &digest, size, &mut entry, &member)?;
                    progress(ProgressEvent::LayerDownloaded {
                        digest: digest.clone(),
                        size,
                        elapsed: start.elapsed(),
                    });
                    files.blobs.insert(name, (digest, size));
                } else if size <= SMALL_FILE {
                    let mut buf = Vec::with_capacity(size as usize);
                    entry.read_to_end(&mut buf).map_err(tar_err)?;
                    files.small.insert(name, buf);
                } else {
                    let (digest, size) = content.ingest_unknown(&mut entry)?;
                    progress(ProgressEvent::LayerDownloaded {
                        digest: digest.clone(),
                        size,
                        elapsed: start.elapsed(),
                    });
                    files.blobs.insert(name, (digest, size));
                }
            }
            tar::EntryType::Symlink => {
                if let Some(target) = entry.link_name().map_err(tar_err)? {
                    // Relative to the link's own directory.
                    let dir = Path::new(&name).parent().unwrap_or(Path::new(""));
                    let target = normalize(&dir.join(target).to_string_lossy());
                    files.links.insert(name, target);
                }
            }
            tar::EntryType::Link => {
                if let Some(target) = entry.link_name().map_err(tar_err)? {
                    files
                        .links
                        .insert(name, normalize(&target.to_string_lossy()));
                }
            }
            _ => {}
        }
    }
    Ok(files)
}

/// The name an OCI index entry carries.
enum Annotated {
    Full(String),
    Tag(String),
}

fn is_bare_tag(s: &str) -> bool {
    !s.contains(['/', ':', '@']) && Reference::parse(&format!("x:{s}")).is_ok()
}

/// Whether a user-given name states its own tag or digest (else `:latest` would be implied).
fn has_tag_or_digest(name: &str) -> bool {
    let last = name.rsplit('/').next().unwrap_or(name);
    last.contains(':') || last.contains('@')
}

fn full_name(s: &str) -> Result<String, StoreError> {
    Ok(Reference::parse(s)?.to_string())
}

fn oci_name(
    path: &Path,
    desc: &Descriptor,
    options: &ImportOptions,
    single: bool,
) -> Result<String, StoreError> {
    let annotated = match (
        desc.annotations.get(ANNOTATION_CONTAINERD_NAME),
        desc.annotations.get(ANNOTATION_REF_NAME),
    ) {
        (Some(full), _) if !full.is_empty() => Some(Annotated::Full(full.clone())),
        (_, Some(r)) if is_bare_tag(r) => Some(Annotated::Tag(r.clone())),
        (_, Some(r)) if !r.is_empty() => Some(Annotated::Full(r.clone())),
        _ => None,
    };
    match (&options.name, annotated) {
        // `--name example.com/app` with an annotated tag `1.0` gives `example.com/app:1.0`.
        (Some(n), Some(Annotated::Tag(t))) if !has_tag_or_digest(n) => {
            full_name(&format!("{n}:{t}"))
        }
        // The archive's own full name stands, unless --name overrides the only image.
        (Some(n), Some(Annotated::Full(_))) if single => full_name(n),
        (_, Some(Annotated::Full(f))) => full_name(&f),
        (Some(n), _) => full_name(n),
        (None, Some(Annotated::Tag(t))) => Err(import_err(
            path,
            format!(
                "image {} is tagged {t:?} but has no repository name: pass --name (e.g. --name example.com/app)",
                desc.digest
            ),
        )),
        (None, None) => Err(import_err(
            path,
            format!("image {} carries no name: pass --name to name it", desc.digest),
        )),
    }
}

fn stage_oci(
    content: &ContentStore,
    source: &dyn BlobSource,
    path: &Path,
    index_json: &[u8],
    options: &ImportOptions,
) -> Result<Vec<Staged>, StoreError> {
    let index: Index = serde_json::from_slice(index_json)
        .map_err(|e| import_err(path, format!("index.json is not valid: {e}")))?;
    // Entries for other platforms are skipped (a layout may list one manifest per platform).
    let wanted: Vec<&Descriptor> = index
        .manifests
        .iter()
        .filter(|d| {
            d.platform
                .as_ref()
                .is_none_or(|p| options.platform.matches(p))
        })
        .collect();
    if wanted.is_empty() && !index.manifests.is_empty() {
        let available: Vec<String> = index
            .manifests
            .iter()
            .filter_map(|d| d.platform.as_ref().map(|p| p.to_string()))
            .collect();
        return Err(import_err(
            path,
            format!(
                "no image for platform {} (available: {})",
                options.platform,
                available.join(", ")
            ),
        ));
    }
    let single = wanted.len() == 1;
    let mut staged = Vec::new();
    for desc in wanted {
        let name = oci_name(path, desc, options, single)?;
        let manifest = resolve_manifest(content, source, path, desc, &options.platform)?;
        staged.push(Staged {
            name,
            target: desc.clone(),
            manifest,
        });
    }
    Ok(staged)
}

fn require(
    content: &ContentStore,
    source: &dyn BlobSource,
    path: &Path,
    desc: &Descriptor,
    what: &str,
) -> Result<(), StoreError> {
    if !source.ensure(content, desc)? {
        return Err(import_err(
            path,
            format!("the archive lacks blob {} ({what})", desc.digest),
        ));
    }
    Ok(())
}

/// From an `index.json` entry to the platform manifest, with every blob the image needs in
/// the store.
fn resolve_manifest(
    content: &ContentStore,
    source: &dyn BlobSource,
    path: &Path,
    desc: &Descriptor,
    platform: &Platform,
) -> Result<Digest, StoreError> {
    require(content, source, path, desc, "image index or manifest")?;
    let manifest_desc = match ManifestDocument::parse(
        &desc.media_type,
        &desc.digest,
        &content.read(&desc.digest)?,
    )? {
        ManifestDocument::Manifest(_) => desc.clone(),
        ManifestDocument::Index(index) => {
            // Single-platform saves keep the multi-platform index but only one platform's
            // blobs: choose among what is present.
            let mut present = Vec::new();
            for child in &index.manifests {
                if source.ensure(content, child)? {
                    present.push(child.clone());
                }
            }
            let present = Index {
                manifests: present,
                ..index
            };
            present.select(platform, &desc.digest)?.clone()
        }
    };
    let manifest = match ManifestDocument::parse(
        &manifest_desc.media_type,
        &manifest_desc.digest,
        &content.read(&manifest_desc.digest)?,
    )? {
        ManifestDocument::Manifest(m) => m,
        ManifestDocument::Index(_) => {
            return Err(import_err(
                path,
                format!(
                    "{} is an index nested in an index; only one level is supported",
                    manifest_desc.digest
                ),
            ));
        }
    };
    require(content, source, path, &manifest.config, "image config")?;
    for layer in &manifest.layers {
        require(content, source, path, layer, "layer")?;
    }
    Ok(manifest_desc.digest)
}

/// One entry of a docker-archive's `manifest.json`.
#[derive(serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerManifestEntry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    #[serde(default)]
    layers: Vec<String>,
}

fn stage_docker(
    content: &ContentStore,
    files: &ArchiveFiles,
    path: &Path,
    manifest_json: &[u8],
    options: &ImportOptions,
) -> Result<Vec<Staged>, StoreError> {
    let entries: Vec<DockerManifestEntry> = serde_json::from_slice(manifest_json).map_err(|e| {
        import_err(
            path,
            format!("manifest.json is not a docker-archive manifest: {e}"),
        )
    })?;
    let single = entries.len() == 1;
    let mut staged = Vec::new();
    for entry in entries {
        let (config_digest, config_size) =
            files.blob(content, &entry.config)?.ok_or_else(|| {
                import_err(
                    path,
                    format!("the archive lacks the config file {}", entry.config),
                )
            })?;
        // `<hex>.json` and `blobs/sha256/<hex>` name their digest: check it.
        let stem = Path::new(&entry.config)
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("");
        let stem = stem.strip_suffix(".json").unwrap_or(stem);
        if let Ok(named) = Digest::from_hex(stem) {
            if named != config_digest {
                return Err(import_err(
                    path,
                    format!(
                        "config file {} has digest {config_digest}; the archive is damaged",
                        entry.config
                    ),
                ));
            }
        }
        let config =
            crate::config::ImageConfig::parse(&config_digest, &content.read(&config_digest)?)?;
        config.check_layers(&config_digest, entry.layers.len())?;

        let mut layers = Vec::with_capacity(entry.layers.len());
        for (i, layer_file) in entry.layers.iter().enumerate() {
            let (digest, size) = files.blob(content, layer_file)?.ok_or_else(|| {
                import_err(
                    path,
                    format!("the archive lacks the layer file {layer_file}"),
                )
            })?;
            let compression = {
                let mut head = [0u8; 4];
                let mut f = content.open_blob(&digest)?;
                let n = read_head(&mut f, &mut head);
                Compression::detect(&head[..n])
            };
            // An uncompressed layer's digest is its diff ID: catch a damaged archive before
            // unpacking anything.
            if compression == Compression::None && digest != config.diff_ids[i] {
                return Err(import_err(
                    path,
                    format!(
                        "layer file {layer_file} has digest {digest} but config {config_digest} lists diff ID {} for it; the archive is damaged",
                        config.diff_ids[i]
                    ),
                ));
            }
            let media_type = match compression {
                Compression::None => media::OCI_LAYER,
                Compression::Gzip => media::OCI_LAYER_GZIP,
                Compression::Zstd => media::OCI_LAYER_ZSTD,
            };
            layers.push(descriptor(media_type, digest, size));
        }
        let manifest = Manifest {
            schema_version: 2,
            media_type: Some(media::OCI_MANIFEST.into()),
            config: descriptor(media::OCI_CONFIG, config_digest.clone(), config_size),
            layers,
            annotations: BTreeMap::new(),
        };
        let bytes = serde_json::to_vec(&manifest)
            .map_err(|e| StoreError::Internal(format!("encoding manifest: {e}")))?;
        let manifest_digest = Digest::of(&bytes);
        content.write_all(&manifest_digest, &bytes)?;
        let target = descriptor(
            media::OCI_MANIFEST,
            manifest_digest.clone(),
            bytes.len() as u64,
        );

        let tags: Vec<String> = entry
            .repo_tags
            .unwrap_or_default()
            .into_iter()
            .filter(|t| !t.is_empty())
            .collect();
        let names = match (&options.name, tags.is_empty()) {
            (Some(n), _) if single => vec![full_name(n)?],
            (_, false) => tags
                .iter()
                .map(|t| full_name(t))
                .collect::<Result<_, _>>()?,
            (Some(n), true) => vec![full_name(n)?],
            (None, true) => {
                return Err(import_err(
                    path,
                    format!("image {config_digest} has no RepoTags: pass --name to name it"),
                ));
            }
        };
        for name in names {
            staged.push(Staged {
                name,
                target: target.clone(),
                manifest: manifest_digest.clone(),
            });
        }
    }
    Ok(staged)
}

fn descriptor(media_type: &str, digest: Digest, size: u64) -> Descriptor {
    Descriptor {
        media_type: media_type.into(),
        digest,
        size,
        platform: None,
        annotations: BTreeMap::new(),
        urls: vec![],
    }
}

fn read_head(f: &mut File, head: &mut [u8]) -> usize {
    let mut n = 0;
    while n < head.len() {
        match f.read(&mut head[n..]) {
            Ok(0) | Err(_) => break,
            Ok(k) => n += k,
        }
    }
    n
}

#[cfg(test)]
mod tests;
