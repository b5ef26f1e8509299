#!/usr/bin/env bash
# Memory footprint of a CRI runtime with 0 and N running pods: RSS and PSS (from
# /proc/<pid>/smaps_rollup) of the runtime daemon plus all its shims, i.e. containerd +
# containerd-shim-runc-v2 processes vs `deckhand runtime` + `deckhand shim` processes. The
# containers' own processes (pause, sleep) are not counted: they are the same for both.
# Pods are started with cri-bench --hold (busybox `sleep`), the runtime as the CRI suite runs
# it (tests/e2e/src/bin/cri-env.rs).
#
#   scripts/bench/footprint.sh                   # both runtimes, 0 and 100 pods
#   PODS=50 RUNTIMES=containerd PROFILE=debug scripts/bench/footprint.sh
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
PROFILE=${PROFILE:-release}
PODS=${PODS:-100}
RUNTIMES=${RUNTIMES:-"containerd deckhand"}
BIN=$CARGO_TARGET_DIR/$PROFILE
FIXTURE_CACHE=${FIXTURE_CACHE:-$CARGO_TARGET_DIR/cri-bench-fixtures}
export DECKHAND_BIN=${DECKHAND_BIN:-$BIN/deckhand}
[ "$(id -u)" = 0 ] || { echo "footprint.sh: run as root" >&2; exit 1; }

if [ -z "${NO_BUILD:-}" ]; then
    flag=--release
    [ "$PROFILE" = debug ] && flag=
    cargo build -q $flag -p deckhand-e2e --bins
    case " $RUNTIMES " in *" deckhand "*) cargo build -q $flag -p deckhand ;; esac
fi
. "$ROOT/scripts/bench/cri-env.inc.sh"

# The runtime's pid and every pid whose command line contains $SHIM_MATCH (its shims), except
# the benchmark's own tools, which name the socket too.
runtime_pids() {
    local p cmd
    echo "$RUNTIME_PID"
    for d in /proc/[0-9]*; do
        p=${d#/proc/}
        [ "$p" = "$RUNTIME_PID" ] && continue
        cmd=$({ tr '\0' ' ' <"$d/cmdline"; } 2>/dev/null) || continue
        case $cmd in
        *cri-bench* | *cri-env*) continue ;;
        *"$SHIM_MATCH"*) echo "$p" ;;
        esac
    done
}

# "<processes> <rss kB> <pss kB>" summed over runtime_pids.
measure() {
    local n=0 rss=0 pss=0 r s
    for p in $(runtime_pids); do
        [ -r "/proc/$p/smaps_rollup" ] || continue
        r=$(awk '/^Rss:/ {print $2}' "/proc/$p/smaps_rollup")
        s=$(awk '/^Pss:/ {print $2}' "/proc/$p/smaps_rollup")
        n=$((n + 1)); rss=$((rss + ${r:-0})); pss=$((pss + ${s:-0}))
    done
    echo "$n $rss $pss"
}

report() { # runtime pods "n rss pss"
    set -- "$1" "$2" $3
    awk -v rt="$1" -v pods="$2" -v n="$3" -v rss="$4" -v pss="$5" 'BEGIN {
        printf "%-11s %5s pods: %4s processes, RSS %8.1f MiB, PSS %8.1f MiB\n", rt, pods, n, rss / 1024, pss / 1024
    }'
}

for rt in $RUNTIMES; do
    if ! env_start "$rt"; then
        echo "footprint.sh: skipping $rt" >&2
        continue
    fi
    sleep 2
    report "$rt" 0 "$(measure)"
    HOLD=$(mktemp -d /tmp/deckhand-footprint.XXXXXX)
    mkfifo "$HOLD/in"
    "$BIN/cri-bench" --endpoint "$ENDPOINT" --pods "$PODS" --image "$IMAGE" \
        --cgroup-parent "$CGROUP_PARENT" --hold <"$HOLD/in" >"$HOLD/out" &
    BENCH=$!
    exec 8>"$HOLD/in"
    until grep -q '"ready"' "$HOLD/out" 2>/dev/null; do
        kill -0 "$BENCH" 2>/dev/null || { echo "footprint.sh: cri-bench failed" >&2; break; }
        sleep 0.5
    done
    sleep 3 # let the shims settle after the start burst
    report "$rt" "$PODS" "$(measure)"
    exec 8>&-
    wait "$BENCH" || true
    rm -rf "$HOLD"
    env_stop
done
