#!/bin/bash
# Layer unpack throughput: deckhand's apply_layer against containerd (`ctr images mount`, which
# unpacks the layer into its overlayfs snapshotter), on the same gzip layer, each run on a
# freshly made ext4 (loop device) so neither sees the other's deleted inodes, timed up to a
# final `sync -f`. Prints the ratio per run. Root only; needs containerd, ctr, python3, mkfs.ext4.
#
#   scripts/bench/unpack-vs-containerd.sh [runs] [dirs to pack into the layer...]
#
# Default layer: /usr/share and /usr/bin of the build machine (~1 GB tar, ~50k entries).
set -euo pipefail
runs=${1:-3}; shift || true
dirs=("${@:-/usr/share /usr/bin}")
[ "$(id -u)" = 0 ] || { echo "run as root: the benchmark mounts loop devices and runs containerd" >&2; exit 1; }
root=$(cd "$(dirname "$0")/../.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$root/target}
cargo build --release -p deckhand-image --example apply_layer >&2
apply=$CARGO_TARGET_DIR/release/examples/apply_layer

work=$(mktemp -d /var/tmp/deckhand-unpack-bench.XXXXXX)
mnt=$work/mnt; img=$work/fs.img; run=$work/run; pid=
cleanup() {
  [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true
  umount -l "$mnt/m" 2>/dev/null || true; umount -l "$mnt" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
mkdir -p "$mnt" "$run" "$work/oci/blobs/sha256"

echo "building the layer from ${dirs[*]}" >&2
# shellcheck disable=SC2068
tar -C / -cf - ${dirs[@]#/} 2>/dev/null | gzip -1 > "$work/layer.tar.gz"
python3 - "$work" <<'PY'
import hashlib, json, os, sys, gzip
w = sys.argv[1]
def sha_file(p, gz=False):
    h = hashlib.sha256()
    with (gzip.open(p, 'rb') if gz else open(p, 'rb')) as f:
        while b := f.read(1 << 20):
            h.update(b)
    return h.hexdigest()
layer = f'{w}/layer.tar.gz'
lz, diff = sha_file(layer), sha_file(layer, gz=True)
os.link(layer, f'{w}/oci/blobs/sha256/{lz}')
def blob(obj):
    data = json.dumps(obj).encode()
    d = hashlib.sha256(data).hexdigest()
    open(f'{w}/oci/blobs/sha256/{d}', 'wb').write(data)
    return d, len(data)
cd, cl = blob({"architecture": "amd64", "os": "linux", "config": {},
               "rootfs": {"type": "layers", "diff_ids": ["sha256:" + diff]}})
md, ml = blob({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
               "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": "sha256:" + cd, "size": cl},
               "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": "sha256:" + lz,
                           "size": os.path.getsize(layer)}]})
json.dump({"schemaVersion": 2, "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
           "digest": "sha256:" + md, "size": ml,
           "annotations": {"org.opencontainers.image.ref.name": "1"}}]}, open(f'{w}/oci/index.json', 'w'))
open(f'{w}/oci/oci-layout', 'w').write('{"imageLayoutVersion":"1.0.0"}')
PY
(cd "$work/oci" && tar -cf "$work/oci.tar" .)
size=$(stat -c %s "$work/layer.tar.gz")
fresh() {
  umount "$mnt" 2>/dev/null || true
  rm -f "$img"; truncate -s $((size * 5 + (1 << 30))) "$img"; mkfs.ext4 -q -F "$img"; mount -o loop "$img" "$mnt"; sync
}
timed() { local s e; s=$(date +%s.%N); "$@" >/dev/null; sync -f "$mnt"; e=$(date +%s.%N); echo "$e - $s" | bc; }

echo "layer: $size bytes gzip" >&2
for i in $(seq "$runs"); do
  fresh
  printf 'version = 2\ndisabled_plugins = ["io.containerd.grpc.v1.cri"]\n' > "$run/config.toml"
  containerd -c "$run/config.toml" --root "$mnt/ctd" --state "$run/state" --address "$run/sock" >"$run/log" 2>&1 &
  pid=$!
  for _ in $(seq 100); do [ -S "$run/sock" ] && break; sleep 0.1; done
  ctr -a "$run/sock" -n bench images import --no-unpack --base-name docker.io/library/bench "$work/oci.tar" >/dev/null
  mkdir -p "$mnt/m"; sync
  c=$(timed ctr -a "$run/sock" -n bench images mount --rw docker.io/library/bench:1 "$mnt/m")
  ctr -a "$run/sock" -n bench images unmount "$mnt/m" >/dev/null 2>&1 || umount -l "$mnt/m"
  kill "$pid"; wait "$pid" 2>/dev/null || true; pid=
  fresh
  d=$(timed "$apply" "$work/layer.tar.gz" "$mnt/t")
  printf 'run %d: containerd %.2fs  deckhand %.2fs  ratio %.2fx  (load %s)\n' "$i" "$c" "$d" "$(echo "$c / $d" | bc -l)" "$(cut -d' ' -f1 /proc/loadavg)"
done
