#!/usr/bin/env bash
# Image pull + unpack benchmark: deckhand vs containerd (ctr), same registry, same images, same run.
#
# Builds the fixture images (tests/e2e `fixtures` binary), starts a loopback docker-registry and
# a private containerd (own root/state/socket, CRI plugin disabled), then times ROUNDS cold pulls
# (fetch + verify + unpack) of each image with both, via hyperfine. Every round starts from an
# empty store: a fresh deckhand data dir; for containerd the image is removed with a synchronous
# GC and the script checks that no content blob or snapshot survived.
#
# Usage: scripts/bench/image-pull.sh            (make bench)
#   ROUNDS=5 IMAGES="large multilayer" DECKHAND_BIN=... CARGO_TARGET_DIR=... scripts/bench/image-pull.sh
# Output: a markdown table on stdout (progress on stderr). Root required (containerd, overlay).
set -euo pipefail

ROUNDS=${ROUNDS:-5}
IMAGES=${IMAGES:-"large multilayer"}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
DECKHAND=${DECKHAND_BIN:-$TARGET/release/deckhand}
CARGO=${CARGO:-cargo}

log() { echo "bench: $*" >&2; }
die() { echo "bench: error: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "must run as root (containerd and overlay mounts)"
for t in docker-registry skopeo containerd ctr hyperfine jq curl awk; do
	command -v "$t" >/dev/null || die "$t not found (make deps installs it)"
done

WORK=$(mktemp -d /tmp/deckhand-bench.XXXXXX)
REG_PID=""
CTRD_PID=""
cleanup() {
	set +e
	[ -n "$CTRD_PID" ] && kill "$CTRD_PID" 2>/dev/null && wait "$CTRD_PID" 2>/dev/null
	[ -n "$REG_PID" ] && kill "$REG_PID" 2>/dev/null && wait "$REG_PID" 2>/dev/null
	# containerd leaves its snapshot mounts (none for pulls, but be safe) under WORK.
	grep -o " $WORK[^ ]*" /proc/self/mounts 2>/dev/null | sort -r | while read -r m; do umount -l "$m"; done
	rm -rf "$WORK"
}
trap cleanup EXIT

# A loopback port nothing listens on (the registry start is checked, so a race just fails loudly).
free_port() {
	local p
	while :; do
		p=$((20000 + RANDOM % 40000))
		if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then echo "$p"; return; fi
	done
}

wait_until() { # seconds, command...
	local deadline=$((SECONDS + $1)); shift
	until "$@" >/dev/null 2>&1; do
		[ $SECONDS -lt $deadline ] || return 1
		sleep 0.1
	done
}

# 1. Fixtures.
log "building fixtures"
(cd "$ROOT" && $CARGO build --release -q -p deckhand-e2e --bin fixtures 2>/dev/null) ||
	(cd "$ROOT" && $CARGO build --release -p deckhand-e2e --bin fixtures)
"$TARGET/release/fixtures" "$WORK/fixtures" >/dev/null

# 2. Registry.
PORT=$(free_port)
mkdir -p "$WORK/registry"
cat >"$WORK/registry/config.yml" <<YAML
version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $WORK/registry/storage
http:
  addr: 127.0.0.1:$PORT
  secret: deckhand-bench
YAML
docker-registry serve "$WORK/registry/config.yml" >"$WORK/registry/log" 2>&1 &
REG_PID=$!
wait_until 15 curl -sf "http://127.0.0.1:$PORT/v2/" || die "registry did not start: $(cat "$WORK/registry/log")"
REG=127.0.0.1:$PORT
for img in $IMAGES; do
	log "pushing $img"
	skopeo copy --quiet --preserve-digests --dest-tls-verify=false \
		"oci:$WORK/fixtures/$img:1" "docker://$REG/$img:1"
done

# 3. containerd, private.
C="$WORK/containerd"
mkdir -p "$C"
cat >"$C/config.toml" <<TOML
version = 2
root = "$C/root"
state = "$C/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]

[grpc]
  address = "$C/containerd.sock"

[ttrpc]
  address = "$C/containerd.sock.ttrpc"

[debug]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = "$C/opt"
TOML
containerd --config "$C/config.toml" >"$C/log" 2>&1 &
CTRD_PID=$!
CTR=(ctr -a "$C/containerd.sock" -n bench)
wait_until 20 "${CTR[@]}" version || die "containerd did not start: $(tail -20 "$C/log")"
CONTENT_DIR="$C/root/io.containerd.content.v1.content/blobs/sha256"
SNAP_DIR="$C/root/io.containerd.snapshotter.v1.overlayfs/snapshots"

count() { (find "$1" -mindepth 1 -maxdepth 1 2>/dev/null || true) | wc -l; }

# Cold-start check for containerd: after `images rm --sync` nothing may be left.
cat >"$WORK/ctr-reset.sh" <<SH
#!/usr/bin/env bash
set -euo pipefail
${CTR[*]} images rm --sync "\$1" >/dev/null 2>&1 || true
blobs=\$( (find "$CONTENT_DIR" -mindepth 1 -maxdepth 1 2>/dev/null || true) | wc -l)
snaps=\$( (find "$SNAP_DIR" -mindepth 1 -maxdepth 1 2>/dev/null || true) | wc -l)
if [ "\$blobs" != 0 ] || [ "\$snaps" != 0 ]; then
	echo "containerd not cold: \$blobs blobs, \$snaps snapshots left" >&2; exit 1
fi
SH
chmod +x "$WORK/ctr-reset.sh"

# Proves both sides really pull and unpack, before timing anything.
DECKHAND_OK=1
DECKHAND_WHY=""
if [ ! -x "$DECKHAND" ]; then
	DECKHAND_OK=0; DECKHAND_WHY="binary $DECKHAND not built"
fi

ROWS=()
for img in $IMAGES; do
	REF="$REG/$img:1"
	INFO="$WORK/fixtures/$img.json"
	COMPRESSED=$(jq '[.images[0].layer_sizes[]] | add' "$INFO")
	UNCOMPRESSED=$(jq '.images[0].uncompressed_size' "$INFO")
	LAYERS=$(jq '.images[0].layers | length' "$INFO")

	"$WORK/ctr-reset.sh" "$REF" || die "could not reset containerd to a cold store"
	"${CTR[@]}" images pull --plain-http "$REF" >/dev/null
	[ "$(count "$SNAP_DIR")" = "$LAYERS" ] || die "ctr pull of $img did not unpack $LAYERS layers"
	"$WORK/ctr-reset.sh" "$REF"

	if [ "$DECKHAND_OK" = 1 ]; then
		rm -rf "$WORK/dh" && mkdir -p "$WORK/dh"
		if ! out=$("$DECKHAND" --data-dir "$WORK/dh" image pull "$REF" 2>&1 </dev/null); then
			DECKHAND_OK=0
			DECKHAND_WHY="deckhand image pull failed: $(echo "$out" | grep -m1 -E 'error|panicked' || echo "$out" | tail -1)"
		elif [ "$(count "$WORK/dh/images/snapshots")" != "$LAYERS" ]; then
			DECKHAND_OK=0; DECKHAND_WHY="deckhand pull of $img did not unpack $LAYERS layers"
		fi
	fi

	CMDS=(-n containerd --prepare "$WORK/ctr-reset.sh $REF" "${CTR[*]} images pull --plain-http $REF >/dev/null")
	if [ "$DECKHAND_OK" = 1 ]; then
		CMDS+=(-n deckhand --prepare "rm -rf $WORK/dh && mkdir -p $WORK/dh"
			"$DECKHAND --data-dir $WORK/dh image pull $REF >/dev/null </dev/null")
	fi
	log "timing $img: $ROUNDS cold pulls each"
	hyperfine --runs "$ROUNDS" --style basic --export-json "$WORK/$img.json" "${CMDS[@]}" >&2
	"$WORK/ctr-reset.sh" "$REF"

	CTR_MED=$(jq '.results[] | select(.command=="containerd") | .median' "$WORK/$img.json")
	if [ "$DECKHAND_OK" = 1 ]; then
		DH_MED=$(jq '.results[] | select(.command=="deckhand") | .median' "$WORK/$img.json")
		ROW=$(awk -v img="$img" -v c="$COMPRESSED" -v u="$UNCOMPRESSED" -v dh="$DH_MED" -v ct="$CTR_MED" 'BEGIN {
			printf "| %s | %.1f | %.1f | %.3f | %.3f | %.2f | %.0f | %.0f |\n", img, c/1e6, u/1e6, dh, ct, dh/ct, u/1e6/dh, u/1e6/ct }')
	else
		ROW=$(awk -v img="$img" -v c="$COMPRESSED" -v u="$UNCOMPRESSED" -v ct="$CTR_MED" 'BEGIN {
			printf "| %s | %.1f | %.1f | not yet measured | %.3f | - | - | %.0f |\n", img, c/1e6, u/1e6, ct, u/1e6/ct }')
	fi
	ROWS+=("$ROW")
done

echo
echo "Image pull + unpack, cold, loopback registry, median of $ROUNDS rounds ($(date -u +%Y-%m-%d), $(nproc) cores, $(uname -r))"
echo
echo "| image | compressed MB | uncompressed MB | deckhand s | containerd s | deckhand/containerd | deckhand MB/s | containerd MB/s |"
echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
printf '%s\n' "${ROWS[@]}"
if [ "$DECKHAND_OK" != 1 ]; then
	echo
	echo "deckhand not measured: $DECKHAND_WHY"
fi
