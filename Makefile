# deckhand's build and test entry points. `make test` is the one test command (README, .ci/run):
# it installs every system package the build and the tests need, builds, and runs all tests.

SHELL := /bin/bash
CARGO ?= cargo
export DECKHAND_BIN := $(CURDIR)/target/release/deckhand

# Debian packages the build, the tests and the benchmarks use.
PACKAGES := build-essential pkg-config libseccomp-dev protobuf-compiler \
	busybox-static docker-registry skopeo umoci runc containerd containernetworking-plugins \
	nftables iproute2 apache2-utils zstd curl jq etcd-server etcd-client dnsutils conntrack \
	hyperfine

.PHONY: all deps build test lint fmt bench clean

all: build

# Install only what is missing, so repeated runs cost nothing.
deps:
	@missing=""; for p in $(PACKAGES); do \
		dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		export DEBIAN_FRONTEND=noninteractive; \
		apt-get update -qq && apt-get install -y -qq --no-install-recommends $$missing; \
	fi
	@command -v cargo-nextest >/dev/null || $(CARGO) install --locked cargo-nextest

build: deps
	$(CARGO) build --release --workspace --bins

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --release --workspace --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

test: build lint
	@if [ "$$(id -u)" != 0 ]; then echo "make test must run as root: the tests create namespaces, mounts and device nodes" >&2; exit 1; fi
	$(CARGO) nextest run --release --workspace --no-fail-fast

bench: build
	scripts/bench/image-pull.sh
	scripts/bench/unpack-vs-containerd.sh 3
	scripts/bench/oci-start.sh
	scripts/bench/cri.sh
	scripts/bench/footprint.sh

clean:
	$(CARGO) clean
