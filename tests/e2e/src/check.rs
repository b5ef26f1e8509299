//! Assertions shared by the image CLI tests: an image record matches its fixture, and the
//! image's merged rootfs matches umoci's unpack of the same layout file by file.

use serde_json::Value;

use crate::deckhand::Deckhand;
use crate::fixtures::{Fixtures, ImageInfo, TAG};
use crate::rootfs::{chain_ids, hex_of, umoci_unpack, Tree};

fn hex_field<'a>(v: &'a Value, field: &str) -> &'a str {
    hex_of(
        v[field]
            .as_str()
            .unwrap_or_else(|| panic!("image record has no string `{field}`: {v}")),
    )
}

/// `image inspect <reference>` describes `img`: manifest, config (image ID), diff_ids, top
/// chain, platform; and `image ls` lists it under `name`.
pub fn image_record(dh: &Deckhand, reference: &str, name: &str, img: &ImageInfo) -> Value {
    let v = dh.inspect(reference);
    assert_eq!(
        v["name"].as_str(),
        Some(name),
        "image name in `image inspect {reference}`: {v}"
    );
    assert_eq!(
        hex_field(&v, "manifest"),
        hex_of(&img.manifest_digest),
        "manifest digest: {v}"
    );
    assert_eq!(
        hex_field(&v, "id"),
        hex_of(&img.config_digest),
        "image id = config digest: {v}"
    );
    let chains = chain_ids(&img.diff_ids);
    assert_eq!(
        hex_field(&v, "top_chain"),
        hex_of(chains.last().unwrap()),
        "top_chain: {v}"
    );
    let diff_ids: Vec<&str> = v["config"]["diff_ids"]
        .as_array()
        .unwrap_or_else(|| panic!("config.diff_ids missing: {v}"))
        .iter()
        .map(|d| hex_of(d.as_str().unwrap()))
        .collect();
    let want: Vec<&str> = img.diff_ids.iter().map(|d| hex_of(d)).collect();
    assert_eq!(diff_ids, want, "config.diff_ids: {v}");
    assert_eq!(
        v["platform"]["os"].as_str(),
        Some(img.os.as_str()),
        "platform.os: {v}"
    );
    assert_eq!(
        v["platform"]["architecture"].as_str(),
        Some(img.architecture.as_str()),
        "platform.architecture: {v}"
    );
    assert!(v["size"].as_u64().unwrap_or(0) > 0, "size: {v}");
    let names = dh.image_names();
    assert!(
        names.iter().any(|n| n == name),
        "`image ls` must list {name}: {names:?}"
    );
    v
}

/// Mounts deckhand's rootfs of `reference` and compares it with `umoci unpack` of fixture
/// `umoci_fixture` (for a zstd image: its gzip twin, which has the same diff_ids, since
/// Debian's umoci 0.4.7 cannot read zstd layers).
pub fn rootfs_matches_umoci(dh: &Deckhand, reference: &str, fx: &Fixtures, umoci_fixture: &str) {
    let bundle = dh.tmp.path().join(format!("umoci-{umoci_fixture}"));
    let reference_root = umoci_unpack(&fx.layout(umoci_fixture), TAG, &bundle)
        .unwrap_or_else(|e| panic!("umoci unpack {umoci_fixture}: {e:#}"));
    let expected = Tree::scan(&reference_root).expect("scan umoci rootfs");
    let m = dh.mount_rootfs(reference, &format!("rootfs-{umoci_fixture}"));
    let actual = Tree::scan(&m.target).expect("scan deckhand rootfs");
    Tree::assert_same(
        &expected,
        &actual,
        &format!("{reference} vs umoci unpack of {umoci_fixture}"),
    );
    if umoci_fixture == "multilayer" {
        crate::expect::multilayer(&m.target);
    } else if umoci_fixture == "busybox" {
        crate::expect::busybox(&m.target);
    }
}
