# A thin wrapper over CMake. The two commands a newcomer needs are `make demo` and `make test`;
# both install what is missing first. Everything else is for developers.
#
#   make deps        install the Debian packages the build, tests and benchmarks need (root)
#   make build       configure and build (RelWithDebInfo) into build/
#   make test        deps, build, every test through ctest
#   make demo        deps, build, run the local multi-node demo (stops by itself)
#   make bench       deps, optimized build into build-release/, run tests/bench programs
#   make sanitize    deps, ASan+UBSan build of the unit tests into build-asan/, run them
#   make clean       remove the build folders

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c

BUILD_DIR ?= build
BUILD_TYPE ?= RelWithDebInfo
JOBS ?= $(shell nproc)
# CI passes WERROR=ON; a developer may want warnings to stay warnings while hacking.
WERROR ?= ON
CTEST_ARGS ?=

# ccache keys on paths; with these, a fresh clone elsewhere (CI's) still hits the cache.
export CCACHE_BASEDIR ?= $(CURDIR)
export CCACHE_NOHASHDIR ?= 1

GENERATOR := $(shell command -v ninja >/dev/null 2>&1 && echo "-G Ninja")

# Packages for the build (BUILD-NOTES.md), then for tests and benchmarks: real Go memberlist and
# serf peers, HTTP load tools, proxies to compare against, namespaces and packet filters, clang
# for libFuzzer and sanitizers.
BUILD_PKGS := build-essential cmake libboost-dev libboost-system-dev libssl-dev librocksdb-dev \
  capnproto libcapnp-dev libh2o-evloop-dev libspdlog-dev libmsgpack-cxx-dev libgtest-dev \
  libgmock-dev libnghttp2-dev libcli11-dev nlohmann-json3-dev libyaml-cpp-dev pkg-config \
  zlib1g-dev libmimalloc-dev ninja-build ccache curl git
TEST_PKGS := golang-go golang-github-hashicorp-memberlist-dev golang-github-hashicorp-serf-dev \
  nghttp2-client wrk haproxy nginx-light iproute2 iptables procps psmisc clang-14 \
  libclang-rt-14-dev python3 python3-grpcio
DEPS_PKGS := $(BUILD_PKGS) $(TEST_PKGS)

.PHONY: all deps build test unit integration demo bench sanitize fuzz clean

all: build

# Idempotent and fast when everything is there: one dpkg-query, no apt-get at all. haproxy and
# nginx are benchmark peers that the benchmarks start on loopback ports: a policy-rc.d (as in
# containers) keeps their packages from starting system services while they install.
deps:
	@missing=$$( (dpkg-query -W -f='$${Package} $${Status}\n' $(DEPS_PKGS) 2>/dev/null || true) \
	    | awk '$$NF=="installed"{print $$1}' | sort -u \
	    | comm -13 - <(tr ' ' '\n' <<<"$(DEPS_PKGS)" | grep -v '^$$' | sort -u)); \
	if [ -z "$$missing" ]; then echo "deps: all $(words $(DEPS_PKGS)) packages present"; exit 0; fi; \
	echo "deps: installing:" $$missing; \
	if [ "$$(id -u)" != 0 ]; then SUDO=sudo; else SUDO=; fi; \
	export DEBIAN_FRONTEND=noninteractive; \
	$$SUDO apt-get update -qq; \
	rcd=/usr/sbin/policy-rc.d; made_rcd=; \
	if [ ! -e $$rcd ]; then printf '#!/bin/sh\nexit 101\n' | $$SUDO tee $$rcd >/dev/null; \
	  $$SUDO chmod +x $$rcd; made_rcd=1; fi; \
	$$SUDO apt-get install -y -qq --no-install-recommends $$missing >/dev/null || \
	  { [ -n "$$made_rcd" ] && $$SUDO rm -f $$rcd; exit 1; }; \
	[ -n "$$made_rcd" ] && $$SUDO rm -f $$rcd; \
	echo "deps: done"

$(BUILD_DIR)/CMakeCache.txt:
	cmake -S . -B $(BUILD_DIR) $(GENERATOR) -DCMAKE_BUILD_TYPE=$(BUILD_TYPE) -DMESH_WERROR=$(WERROR)

build: $(BUILD_DIR)/CMakeCache.txt
	cmake --build $(BUILD_DIR) -j $(JOBS)

test: deps
	$(MAKE) --no-print-directory build
	cd $(BUILD_DIR) && ctest --output-on-failure -j $(JOBS) $(CTEST_ARGS)

unit: build
	cd $(BUILD_DIR) && ctest --output-on-failure -j $(JOBS) -L unit $(CTEST_ARGS)

integration: build
	cd $(BUILD_DIR) && ctest --output-on-failure -L integration $(CTEST_ARGS)

demo: deps
	$(MAKE) --no-print-directory build
	MESH_BIN=$(BUILD_DIR) deploy/local/demo.sh

bench: deps
	$(MAKE) --no-print-directory build BUILD_DIR=build-release BUILD_TYPE=Release
	tests/bench/run.sh build-release

sanitize: deps
	cmake -S . -B build-asan $(GENERATOR) -DCMAKE_BUILD_TYPE=Debug -DMESH_WERROR=$(WERROR) \
	  -DMESH_SANITIZE=ON -DMESH_BUILD_BENCH=OFF
	cmake --build build-asan -j $(JOBS)
	cd build-asan && ASAN_OPTIONS=detect_leaks=1 \
	  LSAN_OPTIONS=suppressions=$(CURDIR)/tests/lsan.supp \
	  ctest --output-on-failure -j $(JOBS) -L unit $(CTEST_ARGS)

# libFuzzer targets need clang; FUZZ_SECONDS each (default 60).
fuzz: deps
	tests/fuzz/run.sh build-fuzz $${FUZZ_SECONDS:-60}

clean:
	rm -rf build build-release build-asan build-fuzz
