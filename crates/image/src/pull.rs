//! Pulling an image from a registry into the store: resolve (mirrors first), pick the platform
//! manifest, fetch config, download layers in parallel (bounded) with retries and resumption
//! into the content store, unpack snapshots in order as soon as each layer and its parent are
//! ready, then write the record. Progress goes to a [`ProgressSink`].
//!
//! Shape of a pull (one task drives it; downloads are tasks in a `JoinSet` so dropping the pull
//! aborts them):
//!
//! ```text
//! resolve ─ index? ─ manifest ─ config ─┬─ download layer 0 ─┐ (≤ max_concurrent_downloads)
//!                                       ├─ download layer 1 ─┤
//!                                       └─ ...               ┴─ unpack 0, 1, ... in order ─ record
//! ```
//!
//! A layer download writes into the content store's ingest file through a blocking writer
//! thread fed by a bounded channel, so hashing and disk writes never stall the runtime and a
//! slow disk slows the network read down instead of buffering without limit.

use crate::config::{ConfigError, ImageConfig};
use crate::content::{ContentError, ContentStore, Ingest};
use crate::digest::Digest;
use crate::manifest::{Descriptor, Manifest, ManifestDocument, ManifestError, Platform};
use crate::media::Compression;
use crate::progress::{ProgressEvent, ProgressSink};
use crate::reference::Reference;
use crate::registry::auth::Credentials;
use crate::registry::client::{RegistryClient, RegistryError};
use crate::snapshot::{chain_ids, Snapshotter};
use crate::store::{Image, ImageStore, StoreError};
use futures::StreamExt as _;
use std::io::{BufRead as _, BufReader, Read};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;

/// Options of one pull.
#[derive(Clone)]
pub struct PullOptions {
    pub platform: Platform,
    /// CRI auth config or `--creds`; overrides configured credentials.
    pub credentials: Option<Credentials>,
    pub progress: ProgressSink,
}

impl Default for PullOptions {
    fn default() -> Self {
        PullOptions {
            platform: Platform::host(),
            credentials: None,
            progress: crate::progress::discard(),
        }
    }
}

/// Attempts per layer before a transient error fails the pull.
const MAX_ATTEMPTS: u32 = 5;
/// First retry delay; doubled per attempt (0.5 s, 1 s, 2 s, 4 s).
const RETRY_BASE_DELAY: Duration = Duration::from_millis(500);
/// Progress is reported at most this often per layer, or every [`PROGRESS_BYTES`].
const PROGRESS_INTERVAL: Duration = Duration::from_millis(100);
const PROGRESS_BYTES: u64 = 256 << 10;
/// Network chunks are coalesced up to this size before crossing to the writer thread: fewer
/// channel hand-offs and write syscalls per megabyte.
const WRITE_BATCH: usize = 256 << 10;
/// Batches in flight between the network reader and the writer thread.
const WRITE_QUEUE: usize = 16;
/// Configs are read whole into memory; real ones are a few KiB.
const MAX_CONFIG_SIZE: u64 = 16 << 20;

/// What every download task needs, cheap to clone into `'static` tasks.
#[derive(Clone)]
struct PullContext {
    reference: Reference,
    credentials: Option<Credentials>,
    registry: RegistryClient,
    content: ContentStore,
    progress: ProgressSink,
}

impl ImageStore {
    /// Pull `reference` and return the stored image. Safe to run concurrently with other pulls
    /// of the same or overlapping images (each blob downloads once). Cancel-safe: dropping the
    /// future leaves partial downloads in `ingest/` for the next pull to resume, never a
    /// visible half image.
    pub async fn pull(
        &self,
        reference: &Reference,
        options: PullOptions,
    ) -> Result<Image, StoreError> {
        let started = Instant::now();
        let ctx = PullContext {
            reference: reference.clone(),
            credentials: options.credentials.clone(),
            registry: self.registry.clone(),
            content: self.content.clone(),
            progress: options.progress.clone(),
        };
        let creds = ctx.credentials.as_ref();

        let (target, target_bytes) = with_retries("resolve", &reference.to_string(), || {
            self.registry.resolve(reference, creds)
        })
        .await?;
        // Blobs land before the record: keep prune off them until commit_image has written it.
        // Held by this future, so a cancelled pull releases it too.
        let _gc = run_blocking_here(|| self.gc_guard())?;
        write_blob(&ctx.content, &target.digest, target_bytes.clone()).await?;
        let document = ManifestDocument::parse(&target.media_type, &target.digest, &target_bytes)?;
        let (manifest_digest, manifest) = match document {
            ManifestDocument::Manifest(manifest) => (target.digest.clone(), manifest),
            ManifestDocument::Index(index) => {
                let chosen = index.select(&options.platform, &target.digest)?.clone();
                let bytes = fetch_manifest(&ctx, &chosen).await?;
                match ManifestDocument::parse(&chosen.media_type, &chosen.digest, &bytes)? {
                    ManifestDocument::Manifest(manifest) => (chosen.digest.clone(), manifest),
                    // Nested indexes exist in theory only; refusing beats guessing a platform.
                    ManifestDocument::Index(_) => {
                        return Err(ManifestError::UnsupportedMediaType(format!(
                            "{} (an index inside index {})",
                            chosen.media_type, target.digest
                        ))
                        .into())
                    }
                }
            }
        };

        let config_bytes = fetch_config(&ctx, &manifest.config).await?;
        let config = ImageConfig::parse(&manifest.config.digest, &config_bytes)?;
        if config.diff_ids.len() != manifest.layers.len() {
            return Err(ConfigError::LayerCountMismatch {
                digest: manifest.config.digest.clone(),
                diff_ids: config.diff_ids.len(),
                layers: manifest.layers.len(),
            }
            .into());
        }
        (ctx.progress)(ProgressEvent::Resolved {
            reference: reference.to_string(),
            manifest: manifest_digest.clone(),
            layers: manifest
                .layers
                .iter()
                .map(|l| (l.digest.clone(), l.size))
                .collect(),
        });

        self.fetch_and_unpack_layers(&ctx, &manifest, &config)
            .await?;

        let name = reference.to_string();
        let platform = options.platform.clone();
        let image =
            run_blocking_here(|| self.commit_image(&name, &target, &manifest_digest, &platform))?;
        (ctx.progress)(ProgressEvent::Done {
            reference: name,
            manifest: manifest_digest,
            elapsed: started.elapsed(),
        });
        Ok(image)
    }

    /// Download every layer (bounded concurrency) and unpack each, bottom first, as soon as it
    /// and its parent are ready, so unpacking overlaps with the remaining downloads.
    async fn fetch_and_unpack_layers(
        &self,
        ctx: &PullContext,
        manifest: &Manifest,
        config: &ImageConfig,
    ) -> Result<(), StoreError> {
        let layers = manifest.layers.clone();
        let chains = chain_ids(&config.diff_ids);
        let permits = Arc::new(Semaphore::new(self.config.max_concurrent_downloads.max(1)));
        // Dropping the set (an error below, or the pull future dropped) aborts the downloads;
        // their ingest files stay for the next pull to resume.
        let mut downloads: JoinSet<Result<usize, StoreError>> = JoinSet::new();
        for (index, layer) in layers.iter().cloned().enumerate() {
            let ctx = ctx.clone();
            let permits = permits.clone();
            downloads.spawn(async move {
                let _permit = permits
                    .acquire_owned()
                    .await
                    .map_err(|_| internal("download semaphore closed"))?;
                download_layer(&ctx, &layer).await?;
                Ok(index)
            });
        }

        let mut downloaded = vec![false; layers.len()];
        let mut next = 0;
        let mut unpacking: Option<tokio::task::JoinHandle<Result<u64, StoreError>>> = None;
        let mut unpack_started = Instant::now();
        while next < layers.len() {
            if unpacking.is_none() && downloaded[next] {
                let snapshots = self.snapshots.clone();
                let content = self.content.clone();
                let layer = layers[next].clone();
                let parent = next.checked_sub(1).map(|p| chains[p].clone());
                let chain = chains[next].clone();
                let diff_id = config.diff_ids[next].clone();
                unpack_started = Instant::now();
                unpacking = Some(tokio::task::spawn_blocking(move || {
                    unpack_layer(
                        &snapshots,
                        &content,
                        parent.as_ref(),
                        &chain,
                        &diff_id,
                        &layer,
                    )
                }));
            }
            tokio::select! {
                done = downloads.join_next(), if !downloads.is_empty() => {
                    if let Some(done) = done {
                        let index = done.map_err(|e| internal(&format!("layer download task failed: {e}")))??;
                        downloaded[index] = true;
                    }
                }
                done = async { unpacking.as_mut().expect("guarded by the select condition").await }, if unpacking.is_some() => {
                    unpacking = None;
                    let bytes = done.map_err(|e| internal(&format!("layer unpack task failed: {e}")))??;
                    (ctx.progress)(ProgressEvent::LayerUnpacked {
                        digest: layers[next].digest.clone(),
                        chain: chains[next].clone(),
                        bytes,
                        elapsed: unpack_started.elapsed(),
                    });
                    next += 1;
                }
            }
        }
        Ok(())
    }
}

/// Apply one layer blob as snapshot `chain`. Returns the compressed bytes read (0 when the
/// snapshot already existed and nothing had to be unpacked).
fn unpack_layer(
    snapshots: &Snapshotter,
    content: &ContentStore,
    parent: Option<&Digest>,
    chain: &Digest,
    diff_id: &Digest,
    layer: &Descriptor,
) -> Result<u64, StoreError> {
    let file = content.open_blob(&layer.digest)?;
    let mut reader = BufReader::with_capacity(256 << 10, file);
    let compression = match Compression::from_media_type(&layer.media_type) {
        Some(compression) => compression,
        // Unknown or missing media type: trust the bytes. fill_buf peeks without consuming.
        None => {
            let head = reader.fill_buf().map_err(|source| ContentError::Io {
                path: content.blob_path(&layer.digest),
                source,
            })?;
            Compression::detect(head)
        }
    };
    let mut counting = CountingReader {
        inner: reader,
        count: 0,
    };
    snapshots.apply(parent, chain, diff_id, &mut counting, compression)?;
    Ok(counting.count)
}

struct CountingReader<R> {
    inner: R,
    count: u64,
}

impl<R: Read> Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count += n as u64;
        Ok(n)
    }
}

/// Download one layer into the content store, resuming a partial ingest and retrying
/// transient failures with exponential backoff.
async fn download_layer(ctx: &PullContext, layer: &Descriptor) -> Result<(), StoreError> {
    match download_pass(ctx, layer, true).await? {
        Pass::Done => Ok(()),
        // The commit removed the bad partial file, so this pass starts from byte 0; a
        // mismatch now is the registry's fault and fails the pull.
        Pass::Restart => download_pass(ctx, layer, false).await.map(|_| ()),
    }
}

/// How a download pass ended without an error.
enum Pass {
    Done,
    /// The blob failed verification after resuming data an earlier, interrupted pull left
    /// (unsynced pages lost in a crash read back as zeros): worth one download from scratch.
    Restart,
}

async fn download_pass(
    ctx: &PullContext,
    layer: &Descriptor,
    may_restart: bool,
) -> Result<Pass, StoreError> {
    let digest = layer.digest.clone();
    let size = layer.size;
    let begin = {
        let content = ctx.content.clone();
        let digest = digest.clone();
        // Blocks while another pull (task or process) downloads the same blob.
        tokio::task::spawn_blocking(move || content.begin(&digest, size))
            .await
            .map_err(join_error)??
    };
    let Some(mut ingest) = begin else {
        (ctx.progress)(ProgressEvent::LayerExists { digest, size });
        return Ok(Pass::Done);
    };
    let started = Instant::now();
    let mut have = ingest.offset();
    if have > size {
        // Longer than the blob can be: garbage from some earlier bug; start over.
        match truncate(ingest).await {
            (Some(truncated), Ok(())) => ingest = truncated,
            (_, result) => return result.map(|()| Pass::Done),
        }
        have = 0;
    }
    let resumed = have > 0;
    (ctx.progress)(ProgressEvent::LayerStarted {
        digest: digest.clone(),
        size,
        offset: have,
    });

    let mut attempt = 0;
    while have < size {
        attempt += 1;
        let (returned, result) = stream_into(ctx, layer, ingest, &mut have).await;
        let Some(returned) = returned else {
            return result.map(|()| Pass::Done);
        };
        ingest = returned;
        match result {
            Ok(()) => break,
            // The partial data does not fit what the registry has (416 Range Not Satisfiable):
            // start over from byte 0 rather than fail.
            Err(StoreError::Registry(RegistryError::Status { status: 416, .. }))
                if have > 0 && attempt < MAX_ATTEMPTS =>
            {
                match truncate(ingest).await {
                    (Some(truncated), Ok(())) => ingest = truncated,
                    (_, result) => return result.map(|()| Pass::Done),
                }
                have = 0;
            }
            Err(StoreError::Registry(e)) if e.is_retryable() && attempt < MAX_ATTEMPTS => {
                (ctx.progress)(ProgressEvent::LayerRetry {
                    digest: digest.clone(),
                    attempt,
                    error: e.to_string(),
                });
                tracing::warn!(layer = %digest, attempt, error = %e, "layer download failed; retrying");
                tokio::time::sleep(RETRY_BASE_DELAY * 2u32.pow(attempt - 1)).await;
            }
            Err(e) => return Err(e),
        }
    }

    let committed = tokio::task::spawn_blocking(move || ingest.commit())
        .await
        .map_err(join_error)?;
    match committed {
        Ok(()) => {}
        Err(ContentError::DigestMismatch {
            actual,
            actual_size,
            expected_size,
            ..
        }) => {
            if resumed && may_restart {
                let error = format!(
                    "layer failed verification after resuming a partial download from an earlier pull; downloading it again from the start (got {actual})"
                );
                tracing::warn!(layer = %digest, "{error}");
                (ctx.progress)(ProgressEvent::LayerRetry {
                    digest,
                    attempt,
                    error,
                });
                return Ok(Pass::Restart);
            }
            return Err(StoreError::Layer {
                reference: ctx.reference.to_string(),
                digest,
                message: format!(
                    "the registry served {actual_size} bytes hashing to {actual} where {expected_size} bytes were expected"
                ),
            });
        }
        Err(e) => return Err(e.into()),
    }
    (ctx.progress)(ProgressEvent::LayerDownloaded {
        digest,
        size,
        elapsed: started.elapsed(),
    });
    Ok(Pass::Done)
}

/// One attempt: request the blob from `*have` on and write what arrives. Hands the ingest
/// back (with `*have` updated) so a retry resumes where this attempt stopped; `None` only when
/// a blocking task panicked, which ends the pull.
async fn stream_into(
    ctx: &PullContext,
    layer: &Descriptor,
    mut ingest: Ingest,
    have: &mut u64,
) -> (Option<Ingest>, Result<(), StoreError>) {
    let size = layer.size;
    let mut stream = match ctx
        .registry
        .fetch_blob(&ctx.reference, layer, *have, ctx.credentials.as_ref())
        .await
    {
        Ok(stream) => stream,
        Err(e) => return (Some(ingest), Err(e.into())),
    };
    if stream.offset != *have {
        // The registry ignored the Range header and sends the whole blob.
        match truncate(ingest).await {
            (Some(truncated), Ok(())) => ingest = truncated,
            (returned, result) => return (returned, result),
        }
        *have = 0;
    }
    let start = *have;

    let (sender, mut receiver) = mpsc::channel::<bytes::Bytes>(WRITE_QUEUE);
    let writer = tokio::task::spawn_blocking(move || {
        let mut result = Ok(());
        while let Some(batch) = receiver.blocking_recv() {
            if let Err(e) = ingest.write(&batch) {
                result = Err(e);
                break;
            }
        }
        (ingest, result)
    });

    let mut outcome: Result<(), StoreError> = Ok(());
    // Bytes handed to the writer, which writes all it receives unless it reports an error.
    let mut sent: u64 = 0;
    let mut batch = bytes::BytesMut::new();
    let mut reported = (start, Instant::now());
    while let Some(chunk) = stream.body.next().await {
        let chunk = match chunk {
            Ok(chunk) => chunk,
            Err(e) => {
                outcome = Err(e.into());
                break;
            }
        };
        if start + sent + (batch.len() + chunk.len()) as u64 > size {
            outcome = Err(StoreError::Layer {
                reference: ctx.reference.to_string(),
                digest: layer.digest.clone(),
                message: format!(
                    "the registry sent more than the {size} bytes the manifest declares"
                ),
            });
            break;
        }
        batch.extend_from_slice(&chunk);
        if batch.len() >= WRITE_BATCH {
            let len = batch.len() as u64;
            // A send error means the writer stopped on a write error, reported below.
            if sender.send(batch.split().freeze()).await.is_err() {
                break;
            }
            sent += len;
        }
        let now = Instant::now();
        let downloaded = start + sent + batch.len() as u64;
        if downloaded - reported.0 >= PROGRESS_BYTES || now - reported.1 >= PROGRESS_INTERVAL {
            reported = (downloaded, now);
            (ctx.progress)(ProgressEvent::LayerProgress {
                digest: layer.digest.clone(),
                downloaded,
                size,
            });
        }
    }
    if !batch.is_empty() {
        let len = batch.len() as u64;
        if sender.send(batch.freeze()).await.is_ok() {
            sent += len;
        }
    }
    drop(sender);
    let (ingest, written) = match writer.await {
        Ok(returned) => returned,
        Err(e) => return (None, Err(join_error(e))),
    };
    // A write error (disk full, I/O error) is not something a retry fixes: it ends the pull.
    if let Err(e) = written {
        return (Some(ingest), Err(e.into()));
    }
    *have = start + sent;
    if outcome.is_ok() && *have < size {
        // The body ended early without a transport error: treat it as a broken connection.
        outcome = Err(StoreError::Registry(RegistryError::Connect {
            reference: ctx.reference.to_string(),
            endpoint: ctx.reference.registry.clone(),
            message: format!(
                "blob {} ended after {} of {size} bytes",
                layer.digest, *have
            ),
        }));
    }
    (Some(ingest), outcome)
}

async fn truncate(mut ingest: Ingest) -> (Option<Ingest>, Result<(), StoreError>) {
    match tokio::task::spawn_blocking(move || {
        let result = ingest.truncate();
        (ingest, result)
    })
    .await
    {
        Ok((ingest, result)) => (Some(ingest), result.map_err(StoreError::from)),
        Err(e) => (None, Err(join_error(e))),
    }
}

/// Write a small verified blob (manifest, config) unless present.
async fn write_blob(
    content: &ContentStore,
    digest: &Digest,
    bytes: Vec<u8>,
) -> Result<(), StoreError> {
    let content = content.clone();
    let digest = digest.clone();
    tokio::task::spawn_blocking(move || content.write_all(&digest, &bytes))
        .await
        .map_err(join_error)??;
    Ok(())
}

async fn read_blob(content: &ContentStore, digest: &Digest) -> Result<Option<Vec<u8>>, StoreError> {
    if !content.contains(digest) {
        return Ok(None);
    }
    let content = content.clone();
    let digest = digest.clone();
    match tokio::task::spawn_blocking(move || content.read(&digest))
        .await
        .map_err(join_error)?
    {
        Ok(bytes) => Ok(Some(bytes)),
        // Pruned between the check and the read: fetch it again.
        Err(ContentError::NotFound(_)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// A platform manifest: from the store when a previous pull committed it (blobs are verified
/// on commit, so the bytes are right), else from the registry, then stored.
async fn fetch_manifest(ctx: &PullContext, descriptor: &Descriptor) -> Result<Vec<u8>, StoreError> {
    if let Some(bytes) = read_blob(&ctx.content, &descriptor.digest).await? {
        return Ok(bytes);
    }
    let what = descriptor.digest.to_string();
    let bytes = with_retries("manifest download", &what, || {
        ctx.registry
            .fetch_manifest(&ctx.reference, descriptor, ctx.credentials.as_ref())
    })
    .await?;
    write_blob(&ctx.content, &descriptor.digest, bytes.clone()).await?;
    Ok(bytes)
}

/// The image config blob: from the store if present, else downloaded (whole, bounded),
/// verified and stored.
async fn fetch_config(ctx: &PullContext, descriptor: &Descriptor) -> Result<Vec<u8>, StoreError> {
    if let Some(bytes) = read_blob(&ctx.content, &descriptor.digest).await? {
        return Ok(bytes);
    }
    if descriptor.size > MAX_CONFIG_SIZE {
        return Err(StoreError::Registry(RegistryError::Protocol {
            reference: ctx.reference.to_string(),
            message: format!(
                "image config {} declares {} bytes, more than the {MAX_CONFIG_SIZE} accepted",
                descriptor.digest, descriptor.size
            ),
        }));
    }
    let what = descriptor.digest.to_string();
    let bytes = with_retries("config download", &what, || {
        fetch_small_blob(ctx, descriptor)
    })
    .await?;
    let digest = Digest::of(&bytes);
    if digest != descriptor.digest {
        return Err(StoreError::Content(ContentError::DigestMismatch {
            expected: descriptor.digest.clone(),
            actual: digest,
            expected_size: descriptor.size,
            actual_size: bytes.len() as u64,
        }));
    }
    write_blob(&ctx.content, &descriptor.digest, bytes.clone()).await?;
    Ok(bytes)
}

/// Run a registry request, retrying transient failures (connection errors, 5xx, 429) with
/// the same backoff as layers. Layers have their own loop, which also resumes.
async fn with_retries<T, F, Fut>(
    what: &str,
    object: &str,
    mut request: F,
) -> Result<T, RegistryError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, RegistryError>>,
{
    let mut attempt = 0;
    loop {
        attempt += 1;
        match request().await {
            Err(e) if e.is_retryable() && attempt < MAX_ATTEMPTS => {
                tracing::warn!(object, attempt, error = %e, "{what} failed; retrying");
                tokio::time::sleep(RETRY_BASE_DELAY * 2u32.pow(attempt - 1)).await;
            }
            result => return result,
        }
    }
}

async fn fetch_small_blob(
    ctx: &PullContext,
    descriptor: &Descriptor,
) -> Result<Vec<u8>, RegistryError> {
    let mut stream = ctx
        .registry
        .fetch_blob(&ctx.reference, descriptor, 0, ctx.credentials.as_ref())
        .await?;
    let mut bytes = Vec::with_capacity(descriptor.size as usize);
    while let Some(chunk) = stream.body.next().await {
        let chunk = chunk?;
        if bytes.len() as u64 + chunk.len() as u64 > descriptor.size {
            // Oversized: stop reading; the digest check reports it.
            bytes.extend_from_slice(&chunk);
            break;
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes)
}

/// Run a blocking closure that borrows from the caller. On the multi-threaded runtime,
/// `block_in_place` keeps the other tasks moving; on a current-thread runtime (tests, small
/// tools) it simply runs, as there is no other worker to hand tasks to.
fn run_blocking_here<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(handle) if handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}

fn join_error(e: tokio::task::JoinError) -> StoreError {
    internal(&format!("blocking task failed: {e}"))
}

fn internal(message: &str) -> StoreError {
    StoreError::Internal(message.to_string())
}
