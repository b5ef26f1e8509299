#!/bin/sh
# OCI-level container start benchmark: create+start+wait+delete of /bin/true in a busybox
# bundle, deckhand's path (crates/runtime/examples/oci-start.rs, libcontainer under a
# subreaper, create in a forked helper) vs `runc run` on the same rootfs and the same
# generated config.json. Needs root, runc, hyperfine, /bin/busybox.
# deckhand caches the compiled seccomp program under its data dir (the warmup runs fill it),
# as a node does; runc compiles the profile in every `runc init`.
#
#   scripts/bench/oci-start.sh            # hyperfine, 50 runs each (RUNS=N to change)
#   SECCOMP=unconfined scripts/bench/oci-start.sh   # both without a seccomp filter
#   STATE_DIR=/dev/shm scripts/bench/oci-start.sh   # both runtimes' state on tmpfs
#
# By default both runtimes keep their state (deckhand's data dir, runc's --root) beside the
# bundle under /tmp. On a node that state lives on tmpfs (/run/runc, /run/containerd); with
# STATE_DIR on tmpfs the runs leave out the ext4 metadata costs of the state files (a rename
# or truncate there costs 0.5-2 ms on the shared build host, and deckhand writes more of them).
set -eu

RUNS=${RUNS:-50}
SECCOMP_FLAG=
[ "${SECCOMP:-}" = unconfined ] && SECCOMP_FLAG="--seccomp unconfined"
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
[ "$(id -u)" = 0 ] || { echo "oci-start.sh: run as root" >&2; exit 1; }
for t in runc hyperfine /bin/busybox; do
    command -v "$t" >/dev/null || { echo "oci-start.sh: $t is missing" >&2; exit 1; }
done

cargo build -q --release -p deckhand-runtime --example oci-start
BIN=$CARGO_TARGET_DIR/release/examples/oci-start

WORK=$(mktemp -d /tmp/deckhand-oci-bench.XXXXXX)
STATE=$(mktemp -d "${STATE_DIR:-$WORK}/deckhand-oci-state.XXXXXX")
CG=deckhand-bench-$$
cleanup() {
    runc --root "$STATE/runc-state" delete -f bench >/dev/null 2>&1 || true
    for h in /sys/fs/cgroup/*/ /sys/fs/cgroup/; do
        [ -d "$h$CG" ] && find "$h$CG" -depth -type d -exec rmdir {} \; 2>/dev/null
    done
    rm -rf "$WORK" "$STATE"
}
trap cleanup EXIT INT TERM

# busybox bundle
B=$WORK/bundle
mkdir -p "$B/rootfs/bin" "$B/rootfs/proc" "$B/rootfs/sys" "$B/rootfs/dev" "$B/rootfs/etc"
cp /bin/busybox "$B/rootfs/bin/busybox"
for a in sh true; do ln -s busybox "$B/rootfs/bin/$a"; done
"$BIN" spec --rootfs "$B/rootfs" --id bench --cgroup-parent "$CG" $SECCOMP_FLAG -- /bin/true > "$B/config.json"

# sanity: both succeed once
"$BIN" run --rootfs "$B/rootfs" --data "$STATE/deckhand" --cgroup-parent "$CG" $SECCOMP_FLAG
runc --root "$STATE/runc-state" run --bundle "$B" bench

hyperfine -N --warmup 3 --runs "$RUNS" --export-json "$WORK/result.json" \
    -n deckhand "$BIN run --rootfs $B/rootfs --data $STATE/deckhand --cgroup-parent $CG $SECCOMP_FLAG" \
    -n runc "runc --root $STATE/runc-state run --bundle $B bench"

python3 - "$WORK/result.json" <<'PY'
import json, sys
r = {x["command"]: x for x in json.load(open(sys.argv[1]))["results"]}
d, c = r["deckhand"], r["runc"]
print(f"deckhand mean {d['mean']*1e3:.2f} ms (median {d['median']*1e3:.2f}), "
      f"runc mean {c['mean']*1e3:.2f} ms (median {c['median']*1e3:.2f})")
print(f"ratio deckhand/runc: {d['mean']/c['mean']:.2f}x (goal <= 0.5x)")
# CPU time (all processes of a run) is steadier than wall time on a shared host.
cpu = lambda x: (x["user"] + x["system"]) * 1e3
print(f"CPU user+sys per run: deckhand {cpu(d):.2f} ms, runc {cpu(c):.2f} ms, "
      f"ratio {cpu(d)/cpu(c):.2f}x")
PY
