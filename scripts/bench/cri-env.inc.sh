# Shared by cri.sh and footprint.sh (sourced, not run): start and stop `cri-env` (see
# tests/e2e/src/bin/cri-env.rs), which brings up one CRI runtime the way the CRI suite does and
# keeps it up while its stdin stays open.
#
#   env_start containerd|deckhand   sets ENDPOINT IMAGE CGROUP_PARENT RUNTIME_PID SHIM_MATCH
#   env_stop                        closes its stdin and waits for the teardown

env_start() {
    ENV_DIR=$(mktemp -d /tmp/deckhand-cri-bench.XXXXXX)
    mkfifo "$ENV_DIR/in"
    "$BIN/cri-env" "$1" --cache "$FIXTURE_CACHE" <"$ENV_DIR/in" >"$ENV_DIR/out" 2>"$ENV_DIR/err" &
    ENV_PID=$!
    # Holding the fifo's write end open keeps cri-env alive until env_stop.
    exec 7>"$ENV_DIR/in"
    i=0
    until grep -q '^READY$' "$ENV_DIR/out" 2>/dev/null; do
        if ! kill -0 "$ENV_PID" 2>/dev/null || [ $i -gt 600 ]; then
            echo "cri-env $1 did not come up:" >&2
            tail -n 30 "$ENV_DIR/err" >&2
            exec 7>&-
            return 1
        fi
        i=$((i + 1))
        sleep 0.2
    done
    eval "$(grep -E '^(ENDPOINT|IMAGE|CGROUP_PARENT|RUNTIME_PID|SHIM_MATCH)=' "$ENV_DIR/out")"
}

env_stop() {
    exec 7>&-
    wait "$ENV_PID" 2>/dev/null || true
    rm -rf "$ENV_DIR"
}
