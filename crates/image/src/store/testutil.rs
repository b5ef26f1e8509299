//! Test fixtures: small images built by hand (layer tars, configs, manifests) and written as
//! OCI layouts, OCI archives and docker-archives, so import and store tests need no network.

use crate::digest::Digest;
use crate::manifest::{Descriptor, Index, Manifest, Platform};
use crate::media;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

/// A tar stream with the given regular files (parent directories are added).
pub fn layer_tar(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut dirs = std::collections::BTreeSet::new();
    for (path, data) in files {
        let mut parent = Path::new(path).parent();
        let mut chain = Vec::new();
        while let Some(p) = parent.filter(|p| !p.as_os_str().is_empty()) {
            chain.push(p.to_path_buf());
            parent = p.parent();
        }
        for dir in chain.into_iter().rev() {
            if dirs.insert(dir.clone()) {
                let mut h = tar::Header::new_gnu();
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(0o755);
                h.set_size(0);
                h.set_mtime(1_700_000_000);
                b.append_data(&mut h, format!("{}/", dir.display()), &[][..])
                    .unwrap();
            }
        }
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_mode(0o644);
        h.set_size(data.len() as u64);
        h.set_mtime(1_700_000_000);
        b.append_data(&mut h, path, *data).unwrap();
    }
    b.into_inner().unwrap()
}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

pub fn descriptor(media_type: &str, data: &[u8]) -> Descriptor {
    Descriptor {
        media_type: media_type.into(),
        digest: Digest::of(data),
        size: data.len() as u64,
        platform: None,
        annotations: BTreeMap::new(),
        urls: vec![],
    }
}

/// One image: its blobs as they would be stored.
#[derive(Clone)]
pub struct TestImage {
    /// (uncompressed tar, stored blob, media type)
    pub layers: Vec<(Vec<u8>, Vec<u8>, String)>,
    pub config: Vec<u8>,
    pub manifest: Vec<u8>,
    pub platform: Platform,
}

impl TestImage {
    /// An image whose layers are the given tars, gzip-compressed when `gzipped`.
    pub fn new(tars: Vec<Vec<u8>>, gzipped: bool, platform: &str) -> TestImage {
        let platform = Platform::parse(platform).unwrap();
        let layers: Vec<_> = tars
            .into_iter()
            .map(|t| {
                if gzipped {
                    let z = gzip(&t);
                    (t, z, media::OCI_LAYER_GZIP.to_string())
                } else {
                    (t.clone(), t, media::OCI_LAYER.to_string())
                }
            })
            .collect();
        let diff_ids: Vec<String> = layers
            .iter()
            .map(|(t, _, _)| Digest::of(t).to_string())
            .collect();
        let mut cfg = serde_json::json!({
            "created": "2024-01-01T00:00:00Z",
            "architecture": platform.architecture,
            "os": platform.os,
            "config": {"Env": ["PATH=/bin"], "Cmd": ["/bin/sh"], "WorkingDir": "/", "Labels": {"fixture": "yes"}},
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
        });
        if let Some(v) = &platform.variant {
            cfg["variant"] = serde_json::json!(v);
        }
        let config = serde_json::to_vec(&cfg).unwrap();
        let manifest = Manifest {
            schema_version: 2,
            media_type: Some(media::OCI_MANIFEST.into()),
            config: descriptor(media::OCI_CONFIG, &config),
            layers: layers
                .iter()
                .map(|(_, blob, mt)| descriptor(mt, blob))
                .collect(),
            annotations: BTreeMap::new(),
        };
        let manifest = serde_json::to_vec(&manifest).unwrap();
        TestImage {
            layers,
            config,
            manifest,
            platform,
        }
    }

    /// A one-layer image with `/etc/hostname` holding `tag`, so images differ by content.
    pub fn simple(tag: &str) -> TestImage {
        TestImage::new(
            vec![layer_tar(&[("etc/hostname", tag.as_bytes())])],
            true,
            "linux/amd64",
        )
    }

    pub fn manifest_digest(&self) -> Digest {
        Digest::of(&self.manifest)
    }
    pub fn config_digest(&self) -> Digest {
        Digest::of(&self.config)
    }
    pub fn manifest_descriptor(&self) -> Descriptor {
        let mut d = descriptor(media::OCI_MANIFEST, &self.manifest);
        d.platform = Some(self.platform.clone());
        d
    }
    pub fn diff_ids(&self) -> Vec<Digest> {
        self.layers.iter().map(|(t, _, _)| Digest::of(t)).collect()
    }
    /// Every blob: manifest, config, layers.
    pub fn blobs(&self) -> Vec<Vec<u8>> {
        let mut v = vec![self.manifest.clone(), self.config.clone()];
        v.extend(self.layers.iter().map(|(_, b, _)| b.clone()));
        v
    }
}

/// An index over several platform images.
pub fn index_of(images: &[&TestImage]) -> Vec<u8> {
    serde_json::to_vec(&Index {
        schema_version: 2,
        media_type: Some(media::OCI_INDEX.into()),
        manifests: images.iter().map(|i| i.manifest_descriptor()).collect(),
        annotations: BTreeMap::new(),
    })
    .unwrap()
}

pub fn write_blob(layout: &Path, data: &[u8]) {
    let dir = layout.join("blobs/sha256");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(Digest::of(data).hex()), data).unwrap();
}

/// Write an OCI layout at `dir`: every image's blobs, extra blobs, and `index.json` with the
/// given top-level entries.
pub fn write_layout(
    dir: &Path,
    images: &[&TestImage],
    extra_blobs: &[&[u8]],
    entries: Vec<Descriptor>,
) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    for image in images {
        for blob in image.blobs() {
            write_blob(dir, &blob);
        }
    }
    for blob in extra_blobs {
        write_blob(dir, blob);
    }
    let index = Index {
        schema_version: 2,
        media_type: Some(media::OCI_INDEX.into()),
        manifests: entries,
        annotations: BTreeMap::new(),
    };
    std::fs::write(dir.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
}

/// An index.json entry for `image` with annotations.
pub fn entry(image: &TestImage, annotations: &[(&str, &str)]) -> Descriptor {
    let mut d = image.manifest_descriptor();
    d.annotations = annotations
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    d
}

/// Tar up a directory (as an OCI archive is).
pub fn tar_dir(dir: &Path) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    b.follow_symlinks(false);
    b.append_dir_all(".", dir).unwrap();
    b.into_inner().unwrap()
}

/// A docker-archive as `docker save` (before Docker 25) writes it: `<hex>.json` config,
/// `<id>/layer.tar` layers, a repeated layer stored once and symlinked, `manifest.json`.
pub fn docker_archive(images: &[(&TestImage, Vec<&str>)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut manifest = Vec::new();
    let mut written: BTreeMap<Digest, String> = BTreeMap::new();
    let file = |b: &mut tar::Builder<Vec<u8>>, name: &str, data: &[u8]| {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_mode(0o644);
        h.set_size(data.len() as u64);
        b.append_data(&mut h, name, data).unwrap();
    };
    for (n, (image, tags)) in images.iter().enumerate() {
        let config_name = format!("{}.json", image.config_digest().hex());
        file(&mut b, &config_name, &image.config);
        let mut layers = Vec::new();
        for (i, (_, blob, _)) in image.layers.iter().enumerate() {
            let name = format!("layer{n}-{i}/layer.tar");
            let d = Digest::of(blob);
            if let Some(existing) = written.get(&d) {
                let mut h = tar::Header::new_gnu();
                h.set_entry_type(tar::EntryType::Symlink);
                h.set_size(0);
                b.append_link(&mut h, &name, format!("../{existing}"))
                    .unwrap();
            } else {
                file(&mut b, &name, blob);
                written.insert(d, name.clone());
            }
            file(&mut b, &format!("layer{n}-{i}/VERSION"), b"1.0");
            layers.push(name);
        }
        manifest
            .push(serde_json::json!({"Config": config_name, "RepoTags": tags, "Layers": layers}));
    }
    file(
        &mut b,
        "manifest.json",
        &serde_json::to_vec(&manifest).unwrap(),
    );
    b.into_inner().unwrap()
}

pub fn is_root() -> bool {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// Tests that mount overlays or chown files need root; they fail loudly rather than skip.
pub fn require_root() {
    assert!(is_root(), "this test needs root (it unpacks layers with ownership and mounts overlays): run it as root");
}
