#!/usr/bin/env bash
# CRI-level pod start benchmark: containerd 1.6 (CRI plugin, runc v2 shims) vs `deckhand
# runtime`, driven by the same client over CRI (tests/e2e/src/bin/cri-bench.rs): N pods in
# parallel, each RunPodSandbox + CreateContainer + StartContainer until RUNNING, then
# StopContainer + StopPodSandbox + RemovePodSandbox. Each runtime runs as the CRI suite runs it
# (own mount and network namespace, CNI bridge + host-local, cgroupfs), started once per
# runtime; the image is pulled before timing. Needs root, containerd, runc,
# containernetworking-plugins, docker-registry, skopeo, busybox-static, jq.
#
#   scripts/bench/cri.sh                        # 1 and 50 pods, 5 repeats, both runtimes
#   PODS="1 10" REPEATS=3 RUNTIMES=containerd scripts/bench/cri.sh
#   PROFILE=debug scripts/bench/cri.sh          # use debug builds of the tools
#
# Prints one JSON line per run, then per runtime and pod count the mean and median of the total
# (start + teardown wall time) and of the start half, and deckhand/containerd ratios.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
PROFILE=${PROFILE:-release}
PODS=${PODS:-"1 50"}
REPEATS=${REPEATS:-5}
RUNTIMES=${RUNTIMES:-"containerd deckhand"}
BIN=$CARGO_TARGET_DIR/$PROFILE
FIXTURE_CACHE=${FIXTURE_CACHE:-$CARGO_TARGET_DIR/cri-bench-fixtures}
export DECKHAND_BIN=${DECKHAND_BIN:-$BIN/deckhand}
[ "$(id -u)" = 0 ] || { echo "cri.sh: run as root" >&2; exit 1; }
for t in containerd runc jq docker-registry skopeo /bin/busybox; do
    command -v "$t" >/dev/null || { echo "cri.sh: $t is missing (make deps)" >&2; exit 1; }
done

if [ -z "${NO_BUILD:-}" ]; then
    flag=--release
    [ "$PROFILE" = debug ] && flag=
    cargo build -q $flag -p deckhand-e2e --bins
    case " $RUNTIMES " in *" deckhand "*) cargo build -q $flag -p deckhand ;; esac
fi
. "$ROOT/scripts/bench/cri-env.inc.sh"

RESULTS=$(mktemp /tmp/deckhand-cri-bench-results.XXXXXX)
trap 'exec 7>&- 2>/dev/null; rm -f "$RESULTS"' EXIT

for rt in $RUNTIMES; do
    if ! env_start "$rt"; then
        echo "cri.sh: skipping $rt" >&2
        continue
    fi
    for n in $PODS; do
        for r in $(seq 1 "$REPEATS"); do
            if out=$("$BIN/cri-bench" --endpoint "$ENDPOINT" --pods "$n" --image "$IMAGE" \
                --cgroup-parent "$CGROUP_PARENT"); then
                echo "$out" | jq -c --arg rt "$rt" --argjson r "$r" '{runtime: $rt, run: $r} + .'
                echo "$out" | jq -c --arg rt "$rt" '{runtime: $rt, pods, total_ms, start_wall_ms}' >>"$RESULTS"
            else
                echo "cri.sh: $rt, $n pods, run $r failed" >&2
            fi
        done
    done
    env_stop
done

echo
printf '%-11s %5s %5s %24s %24s\n' runtime pods runs "total mean (median) ms" "start mean (median) ms"
jq -rs '
  group_by([.runtime, .pods])[] |
  (map(.total_ms) | sort) as $t | (map(.start_wall_ms) | sort) as $s |
  "\(.[0].runtime) \(.[0].pods) \(length) \(($t | add / length) | floor) \($t[length / 2 | floor] | floor) \(($s | add / length) | floor) \($s[length / 2 | floor] | floor)"
' "$RESULTS" | while read -r rt n runs tm tmed sm smed; do
    printf '%-11s %5s %5s %24s %24s\n' "$rt" "$n" "$runs" "$tm ($tmed)" "$sm ($smed)"
done
echo
jq -rs '
  group_by(.pods)[] | . as $g |
  ($g | map(select(.runtime == "deckhand")) | map(.total_ms)) as $d |
  ($g | map(select(.runtime == "containerd")) | map(.total_ms)) as $c |
  if ($d | length) > 0 and ($c | length) > 0 then
    "\($g[0].pods) pods: deckhand/containerd total = \((($d | add / length) / ($c | add / length)) * 100 | floor / 100)x"
  else
    "\($g[0].pods) pods: no ratio (a runtime has no successful run)"
  end
' "$RESULTS"
