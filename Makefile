# dockwatch. `make build` needs only Go (the generated BPF objects are committed);
# `make test` installs the test dependencies on Debian 12 first (as root).

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := build

# Go: from PATH, else the official tarball's location.
GO ?= $(shell command -v go 2>/dev/null || { test -x /usr/local/go/bin/go && echo /usr/local/go/bin/go; } || true)
ifneq ($(strip $(GO)),)
export PATH := $(patsubst %/,%,$(dir $(GO))):$(PATH)
endif

VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo devel)
LDFLAGS := -X main.version=$(VERSION)
TEST_TIMEOUT ?= 30m
# Packages run one at a time: the root tests load BPF programs, attach to the cgroup root, start
# dockerd and create users, and some assert that nothing of dockwatch is left loaded afterwards.
TEST_FLAGS ?= -p 1
FUZZTIME ?= 20s
CLANG ?= clang-16

# Debian packages the tests use (DESIGN.md §2, §8).
DEB_PACKAGES := clang-16 llvm-16 libbpf-dev bpftool docker.io busybox-static netcat-openbsd \
	curl python3 qemu-system-x86 nix-bin

.PHONY: go-found build run deps test vet fmt-check generate check-generated fuzz bench vm-test clean

go-found:
	@if [ -z "$(GO)" ]; then \
		echo "Go not found: put go on PATH or install it to /usr/local/go (https://go.dev/dl/)" >&2; exit 1; fi

build: go-found
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/dockwatch ./cmd/dockwatch

# Runs the daemon here in the foreground with RUN_CONFIG: installs what is missing, builds, and
# creates the example's supervised user ai-worker and events group when they do not exist.
# Ctrl-C stops the daemon; its pinned programs keep enforcing until `./bin/dockwatch unload`.
RUN_CONFIG ?= examples/dockwatch.toml
run: deps build
	@if [ "$$(id -u)" != 0 ]; then echo "run: dockwatch run needs root" >&2; exit 1; fi
	@if [ "$(RUN_CONFIG)" = examples/dockwatch.toml ]; then \
		id -u ai-worker >/dev/null 2>&1 || { echo "run: creating the supervised user ai-worker"; useradd --create-home ai-worker; }; \
		getent group dockwatch >/dev/null || { echo "run: creating the events group dockwatch"; groupadd --system dockwatch; }; \
	fi
	./bin/dockwatch run --config $(RUN_CONFIG)

# Installs only what is missing; does nothing (and needs no network) when all is present.
deps:
	@missing=""; \
	for p in $(DEB_PACKAGES); do \
		dpkg-query -W -f='$${Status}' "$$p" 2>/dev/null | grep -q 'install ok installed' || missing="$$missing $$p"; \
	done; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" != 0 ]; then \
		echo "deps: missing Debian packages:$$missing; run 'sudo make deps'" >&2; exit 1; \
	fi; \
	echo "deps: installing$$missing"; \
	export DEBIAN_FRONTEND=noninteractive NEEDRESTART_SUSPEND=1; \
	log=$$(mktemp); trap 'rm -f "$$log"' EXIT; \
	{ apt-get update -qq && apt-get install -y -qq --no-install-recommends $$missing; } </dev/null >"$$log" 2>&1 \
		|| { cat "$$log" >&2; echo "deps: apt-get failed" >&2; exit 1; }

vet: go-found
	$(GO) vet ./...

fmt-check: go-found
	@unformatted=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go' -not -path './.git/*')); \
	if [ -n "$$unformatted" ]; then echo "gofmt: not formatted:" $$unformatted >&2; exit 1; fi

# Prints the output of failed tests, every skip with its reason, one line per package and totals.
test: go-found deps vet fmt-check check-generated
	$(GO) test -count=1 -timeout $(TEST_TIMEOUT) $(TEST_FLAGS) -json ./... | $(GO) run ./.ci/testsummary

# Regenerates the grammar tables and the bpf2go objects (needs clang-16).
generate: go-found
	BPF2GO_CC=$(CLANG) BPF2GO_STRIP=llvm-strip-16 $(GO) generate ./...

# CI: the committed generated files must be what the generators produce.
check-generated: generate
	@git diff --exit-code --stat -- . || { echo "generated files are out of date: run 'make generate' and commit" >&2; exit 1; }
	@untracked=$$(git ls-files --others --exclude-standard -- '*_bpfel.go' '*_bpfel.o' '*_gen.go'); \
	if [ -n "$$untracked" ]; then echo "generated files not committed: $$untracked" >&2; exit 1; fi

# Runs every fuzz target for FUZZTIME each.
fuzz: go-found
	@for pkg in $$($(GO) list ./...); do \
		for f in $$($(GO) test -list '^Fuzz' "$$pkg" | grep '^Fuzz' || true); do \
			echo "fuzz: $$pkg $$f ($(FUZZTIME))"; \
			$(GO) test -run '^$$' -fuzz "^$$f\$$" -fuzztime $(FUZZTIME) "$$pkg"; \
		done; \
	done

# Measures what dockwatch costs (DESIGN.md §9), with and without it in the same run, and writes
# BENCHMARKS.md. Needs root; takes a few minutes; not part of `make test`.
# BENCH_FLAGS="-only REGEXP -o -" runs some rows only and prints the report instead.
bench: build
	$(GO) run ./bench/cmd/benchrun -dockwatch bin/dockwatch -go $(GO) $(BENCH_FLAGS)

# The qemu kernel matrix alone (it also runs as part of `make test`): Debian's 6.1 and 6.12
# cloud kernels, lsm and fallback configurations (DESIGN.md §2).
vm-test: go-found deps
	$(GO) test -v -count=1 -timeout 20m ./test/vm -run TestVMMatrix

clean:
	rm -rf bin .cache
