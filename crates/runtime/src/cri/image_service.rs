//! CRI ImageService over [`ImageStore`]: ListImages, ImageStatus, PullImage, RemoveImage,
//! ImageFsInfo, with containerd's CRI plugin semantics where the API leaves room (an absent
//! image is not an error for ImageStatus and RemoveImage; PullImage answers the image ID).
//!
//! Store calls that touch the disk run on the blocking pool; pull is async in the store.

use super::api;
use super::api::image_service_server::ImageService as ImageServiceApi;
use super::status_from_store;
use base64::Engine as _;
use deckhand_image::pull::PullOptions;
use deckhand_image::registry::auth::Credentials;
use deckhand_image::{Image, ImageStore, Reference, StoreError};
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use tonic::{Request, Response, Status};

/// The ImageService. Cheap to clone (the store is a set of paths and a shared client).
#[derive(Clone)]
pub struct ImageService {
    store: ImageStore,
}

/// Read for the image store's mount point; parsing ([`mountpoint_of`]) is tested on fixtures.
const MOUNTINFO: &str = "/proc/self/mountinfo";

impl ImageService {
    pub fn new(store: ImageStore) -> ImageService {
        ImageService { store }
    }

    /// Run a blocking store call on the blocking pool.
    async fn blocking<T, F>(&self, f: F) -> Result<T, Status>
    where
        T: Send + 'static,
        F: FnOnce(ImageStore) -> Result<T, StoreError> + Send + 'static,
    {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || f(store))
            .await
            .map_err(|e| Status::internal(format!("image store task failed: {e}")))?
            .map_err(|e| status_from_store(&e))
    }

    /// The image `reference` names (the store's record of that name and the CRI view of its
    /// ID), or `None` when absent.
    async fn lookup(&self, reference: String) -> Result<Option<(Image, api::Image)>, Status> {
        let found = self
            .blocking(move |store| match store.get(&reference) {
                Ok(image) => Ok(Some(image)),
                Err(StoreError::ImageNotFound(_)) => Ok(None),
                Err(e) => Err(e),
            })
            .await?;
        match found {
            Some(image) => {
                let id = image.id.clone();
                let all = self.blocking(|store| store.list()).await?;
                let cri = cri_image(&id, &all);
                Ok(Some((image, cri)))
            }
            None => Ok(None),
        }
    }
}

fn image_name(spec: Option<&api::ImageSpec>) -> Result<String, Status> {
    match spec.map(|s| s.image.trim()) {
        Some(name) if !name.is_empty() => Ok(name.to_string()),
        _ => Err(Status::invalid_argument(
            "the request names no image: set image.image to a reference, an image ID or a digest",
        )),
    }
}

/// The CRI image for image ID `id`: every name stored for that ID contributes its tag and its
/// repo digest (as containerd does).
fn cri_image(id: &deckhand_image::Digest, all: &[Image]) -> api::Image {
    let names: Vec<&Image> = all.iter().filter(|i| &i.id == id).collect();
    let mut repo_tags = BTreeSet::new();
    let mut repo_digests = BTreeSet::new();
    for image in &names {
        match Reference::parse(&image.name) {
            Ok(r) => {
                if let (Some(tag), None) = (&r.tag, &r.digest) {
                    repo_tags.insert(format!("{}:{tag}", r.name()));
                }
                repo_digests.insert(format!("{}@{}", r.name(), image.digest));
            }
            Err(_) => {
                repo_tags.insert(image.name.clone());
            }
        }
    }
    let first = names.first();
    let (uid, username) = first
        .and_then(|i| i.config.user.as_deref())
        .map(user_of)
        .unwrap_or((None, String::new()));
    api::Image {
        id: id.to_string(),
        repo_tags: repo_tags.into_iter().collect(),
        repo_digests: repo_digests.into_iter().collect(),
        size: first.map(|i| i.size).unwrap_or(0),
        uid,
        username,
        spec: Some(api::ImageSpec {
            image: id.to_string(),
            ..Default::default()
        }),
        pinned: false,
    }
}

/// The image config's `User` as CRI wants it: a numeric user becomes `uid`, a name becomes
/// `username`; a group after `:` is not part of either (containerd does the same).
fn user_of(user: &str) -> (Option<api::Int64Value>, String) {
    let user = user.split(':').next().unwrap_or("");
    if user.is_empty() {
        return (None, String::new());
    }
    match user.parse::<i64>() {
        Ok(uid) => (Some(api::Int64Value { value: uid }), String::new()),
        Err(_) => (None, user.to_string()),
    }
}

/// CRI `AuthConfig` → store credentials. Precedence as containerd: a registry token, then an
/// identity token, then username/password, then the base64 `auth` field.
fn credentials(auth: Option<&api::AuthConfig>) -> Result<Option<Credentials>, Status> {
    let Some(auth) = auth else {
        return Ok(None);
    };
    if !auth.registry_token.is_empty() {
        return Ok(Some(Credentials::RegistryToken(
            auth.registry_token.clone(),
        )));
    }
    if !auth.identity_token.is_empty() {
        return Ok(Some(Credentials::IdentityToken(
            auth.identity_token.clone(),
        )));
    }
    if !auth.username.is_empty() {
        return Ok(Some(Credentials::Basic {
            username: auth.username.clone(),
            password: auth.password.clone(),
        }));
    }
    if !auth.auth.is_empty() {
        let bad = || {
            Status::invalid_argument(
                "auth.auth must be base64 of USER:PASSWORD (as in Docker's config.json)",
            )
        };
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(auth.auth.trim())
            .map_err(|_| bad())?;
        let decoded = String::from_utf8(decoded).map_err(|_| bad())?;
        let (username, password) = decoded.split_once(':').ok_or_else(bad)?;
        return Ok(Some(Credentials::Basic {
            username: username.to_string(),
            password: password.to_string(),
        }));
    }
    Ok(None)
}

/// Bytes and inodes used under `root`, counted like `du` (allocated blocks; hard links once).
fn disk_usage(root: &Path) -> (u64, u64) {
    let mut seen = HashSet::new();
    let mut bytes = 0;
    let mut inodes = 0;
    let mut stack = vec![root.to_path_buf()];
    while let Some(path) = stack.pop() {
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue; // removed meanwhile
        };
        if !seen.insert((meta.dev(), meta.ino())) {
            continue;
        }
        bytes += meta.blocks() * 512;
        inodes += 1;
        if meta.is_dir() {
            if let Ok(entries) = std::fs::read_dir(&path) {
                stack.extend(entries.flatten().map(|e| e.path()));
            }
        }
    }
    (bytes, inodes)
}

/// The mount point under which `path` lives, from mountinfo text: the longest mount point
/// that is a prefix of `path` (which must be canonical).
fn mountpoint_of(path: &Path, mountinfo: &str) -> PathBuf {
    mountinfo
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(unescape_mountinfo)
        .map(PathBuf::from)
        .filter(|mp| path.starts_with(mp))
        .max_by_key(|mp| mp.as_os_str().len())
        .unwrap_or_else(|| PathBuf::from("/"))
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape_mountinfo(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && i + 3 < bytes.len()
            && bytes[i + 1..i + 4].iter().all(u8::is_ascii_digit)
        {
            let octal = std::str::from_utf8(&bytes[i + 1..i + 4]).unwrap_or("0");
            if let Ok(b) = u8::from_str_radix(octal, 8) {
                out.push(b);
                i += 4;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

#[tonic::async_trait]
impl ImageServiceApi for ImageService {
    async fn list_images(
        &self,
        request: Request<api::ListImagesRequest>,
    ) -> Result<Response<api::ListImagesResponse>, Status> {
        let filter = request
            .into_inner()
            .filter
            .and_then(|f| f.image)
            .map(|s| s.image)
            .filter(|s| !s.trim().is_empty());
        let images = match filter {
            Some(reference) => self
                .lookup(reference)
                .await?
                .into_iter()
                .map(|(_, cri)| cri)
                .collect(),
            None => {
                let all = self.blocking(|store| store.list()).await?;
                let ids: BTreeMap<String, &deckhand_image::Digest> =
                    all.iter().map(|i| (i.id.to_string(), &i.id)).collect();
                ids.values().map(|id| cri_image(id, &all)).collect()
            }
        };
        Ok(Response::new(api::ListImagesResponse { images }))
    }

    async fn image_status(
        &self,
        request: Request<api::ImageStatusRequest>,
    ) -> Result<Response<api::ImageStatusResponse>, Status> {
        let request = request.into_inner();
        let name = image_name(request.image.as_ref())?;
        let Some((found, image)) = self.lookup(name).await? else {
            return Ok(Response::new(api::ImageStatusResponse::default()));
        };
        let mut info = std::collections::HashMap::new();
        if request.verbose {
            let id = found.id.clone();
            let config = self
                .blocking(move |store| Ok(store.content().read(&id)?))
                .await?;
            let config: serde_json::Value =
                serde_json::from_slice(&config).unwrap_or(serde_json::Value::Null);
            let details = serde_json::json!({
                "imageSpec": config,
                "chainID": found.top_chain.to_string(),
                "manifest": found.manifest.to_string(),
                "platform": found.platform,
                "createdAt": found.created_at,
            });
            info.insert("info".to_string(), details.to_string());
        }
        Ok(Response::new(api::ImageStatusResponse {
            image: Some(image),
            info,
        }))
    }

    async fn pull_image(
        &self,
        request: Request<api::PullImageRequest>,
    ) -> Result<Response<api::PullImageResponse>, Status> {
        let request = request.into_inner();
        let name = image_name(request.image.as_ref())?;
        let reference =
            Reference::parse(&name).map_err(|e| Status::invalid_argument(e.to_string()))?;
        let options = PullOptions {
            credentials: credentials(request.auth.as_ref())?,
            ..PullOptions::default()
        };
        tracing::info!(image = %name, "pulling image");
        let image = self.store.pull(&reference, options).await.map_err(|e| {
            tracing::warn!(image = %name, error = %e, "pull failed");
            status_from_store(&e)
        })?;
        tracing::info!(image = %name, id = %image.id, "pulled image");
        Ok(Response::new(api::PullImageResponse {
            image_ref: image.id.to_string(),
        }))
    }

    async fn remove_image(
        &self,
        request: Request<api::RemoveImageRequest>,
    ) -> Result<Response<api::RemoveImageResponse>, Status> {
        let name = image_name(request.into_inner().image.as_ref())?;
        let removed = {
            let name = name.clone();
            // As containerd: the request names an image, and the whole image goes, with every
            // name it has (removing by a tag does not merely untag it).
            self.blocking(move |store| {
                let removed = store
                    .get(&name)
                    .and_then(|image| store.remove(&image.id.to_string(), false));
                match removed {
                    Ok(report) => Ok(report.untagged),
                    // Idempotent by contract: already gone is success.
                    Err(StoreError::ImageNotFound(_)) => Ok(Vec::new()),
                    Err(e) => Err(e),
                }
            })
            .await?
        };
        if removed.is_empty() {
            return Ok(Response::new(api::RemoveImageResponse {}));
        }
        tracing::info!(image = %name, untagged = ?removed, "removed image");
        // The image is gone whatever happens here; a failed sweep only delays freeing space
        // until the next removal or `deckhand image prune`.
        match self.blocking(|store| store.prune()).await {
            Ok(report) => tracing::debug!(bytes_freed = report.bytes_freed, "pruned"),
            Err(e) => tracing::warn!(image = %name, error = %e, "prune after removal failed"),
        }
        Ok(Response::new(api::RemoveImageResponse {}))
    }

    async fn image_fs_info(
        &self,
        _request: Request<api::ImageFsInfoRequest>,
    ) -> Result<Response<api::ImageFsInfoResponse>, Status> {
        let root = self.store.root();
        let usage = tokio::task::spawn_blocking(move || -> std::io::Result<_> {
            let canonical = root.canonicalize()?;
            let mountinfo = std::fs::read_to_string(MOUNTINFO)?;
            let (bytes, inodes) = disk_usage(&canonical);
            Ok((mountpoint_of(&canonical, &mountinfo), bytes, inodes))
        })
        .await
        .map_err(|e| Status::internal(format!("image fs task failed: {e}")))?;
        let (mountpoint, bytes, inodes) = usage.map_err(|e| {
            Status::internal(format!(
                "cannot measure the image store {}: {e}",
                self.store.root().display()
            ))
        })?;
        let usage = api::FilesystemUsage {
            timestamp: now_ns(),
            fs_id: Some(api::FilesystemIdentifier {
                mountpoint: mountpoint.to_string_lossy().into_owned(),
            }),
            used_bytes: Some(api::UInt64Value { value: bytes }),
            inodes_used: Some(api::UInt64Value { value: inodes }),
        };
        Ok(Response::new(api::ImageFsInfoResponse {
            image_filesystems: vec![usage],
            container_filesystems: Vec::new(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_field_splits_into_uid_or_name() {
        assert_eq!(user_of("1000:1000").0.map(|u| u.value), Some(1000));
        assert_eq!(user_of("nobody"), (None, "nobody".to_string()));
        assert_eq!(user_of(""), (None, String::new()));
        assert_eq!(user_of("0").0.map(|u| u.value), Some(0));
    }

    #[test]
    fn auth_config_precedence_and_base64() {
        let auth = api::AuthConfig {
            auth: base64::engine::general_purpose::STANDARD.encode("alice:s3cret"),
            ..Default::default()
        };
        match credentials(Some(&auth)).unwrap() {
            Some(Credentials::Basic { username, password }) => {
                assert_eq!((username.as_str(), password.as_str()), ("alice", "s3cret"))
            }
            other => panic!("unexpected {other:?}"),
        }
        let token = api::AuthConfig {
            username: "bob".into(),
            registry_token: "tok".into(),
            ..Default::default()
        };
        assert!(matches!(
            credentials(Some(&token)).unwrap(),
            Some(Credentials::RegistryToken(t)) if t == "tok"
        ));
        let bad = api::AuthConfig {
            auth: "not base64!".into(),
            ..Default::default()
        };
        assert_eq!(
            credentials(Some(&bad)).unwrap_err().code(),
            tonic::Code::InvalidArgument
        );
        assert!(credentials(None).unwrap().is_none());
    }

    #[test]
    fn mountpoint_is_longest_prefix() {
        let mountinfo = "\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
30 22 0:25 / /var/lib rw - tmpfs tmpfs rw
31 22 0:26 / /var/lib\\040x rw - tmpfs tmpfs rw
";
        assert_eq!(
            mountpoint_of(Path::new("/var/lib/deckhand/images"), mountinfo),
            PathBuf::from("/var/lib")
        );
        assert_eq!(
            mountpoint_of(Path::new("/var/lib x/images"), mountinfo),
            PathBuf::from("/var/lib x")
        );
        assert_eq!(
            mountpoint_of(Path::new("/srv/images"), mountinfo),
            PathBuf::from("/")
        );
    }

    #[test]
    fn disk_usage_counts_files_and_dirs() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a"), vec![1u8; 10_000]).unwrap();
        std::fs::hard_link(dir.path().join("a"), dir.path().join("b")).unwrap();
        let (bytes, inodes) = disk_usage(dir.path());
        assert_eq!(inodes, 2, "the dir and one file (hard link counted once)");
        assert!(bytes >= 10_000);
    }
}
