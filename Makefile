# Petrel's entry points. Every target installs what it needs first (idempotently).
#   make test    - everything CI runs: unit, envtest, e2e, and ASan/UBSan unit tests
#   make demo    - build, then run `petrel local` with the example cluster
#   make bench   - benchmarks (results go to bench/README.md by hand, with date and machine)
#   make bench-failover - failover/switchover unavailability and lost writes (about 15 min)
BUILD ?= build
ASAN_BUILD ?= build-asan
JOBS ?= $(shell nproc)
# Two tests at a time: what the suite is run with day to day on these 2-core machines.
CTEST_FLAGS ?= --output-on-failure --timeout 600 -j 2

.PHONY: all deps envtest-assets build build-asan test test-unit test-envtest test-e2e test-asan bench bench-failover demo clean format

all: build

deps:
	@bash scripts/install-deps.sh

envtest-assets: deps
	@bash scripts/envtest-assets.sh >/dev/null

$(BUILD)/build.ninja:
	cmake -S . -B $(BUILD) -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo

build: deps $(BUILD)/build.ninja
	cmake --build $(BUILD) -j $(JOBS)

$(ASAN_BUILD)/build.ninja:
	cmake -S . -B $(ASAN_BUILD) -G Ninja -DCMAKE_BUILD_TYPE=Debug -DPETREL_SANITIZE=ON

# The sanitizer tree builds only the unit tests: they are what it runs.
build-asan: deps $(ASAN_BUILD)/build.ninja
	cmake --build $(ASAN_BUILD) -j $(JOBS) --target unit_tests

test-unit: build
	cd $(BUILD) && ctest $(CTEST_FLAGS) -L unit

test-envtest: build envtest-assets
	cd $(BUILD) && KUBEBUILDER_ASSETS=$$(bash ../scripts/envtest-assets.sh) ctest $(CTEST_FLAGS) -L envtest

test-e2e: build envtest-assets
	cd $(BUILD) && KUBEBUILDER_ASSETS=$$(bash ../scripts/envtest-assets.sh) ctest $(CTEST_FLAGS) -L e2e

test-asan: build-asan
	cd $(ASAN_BUILD) && ctest $(CTEST_FLAGS) -L unit

# The whole suite, as CI runs it.
test: build build-asan envtest-assets
	cd $(BUILD) && KUBEBUILDER_ASSETS=$$(bash ../scripts/envtest-assets.sh) ctest $(CTEST_FLAGS)
	cd $(ASAN_BUILD) && ctest $(CTEST_FLAGS) -L unit

# `petrel local` with the example 3-instance cluster and an attached app, in the foreground
# (Ctrl-C stops it; data stays in $(DEMO_STATE)). DEMO_BLOCK must be a free 127.x.y.0/24.
DEMO_STATE ?= $(HOME)/.local/state/petrel-demo
DEMO_BLOCK ?= 127.0.10.0/24
demo: build
	$(BUILD)/cli/petrel local up -f examples/local-demo.yaml --state-dir $(DEMO_STATE) --address-block $(DEMO_BLOCK)

bench: build envtest-assets
	KUBEBUILDER_ASSETS=$$(bash scripts/envtest-assets.sh) bash bench/run.sh

# Issue 8's method: SIGSTOP / SIGKILL of the primary and planned switchovers, 5 runs each, in
# async and sync mode (BENCH_FAILOVER_RUNS=N to change; arguments in bench/failover/run.sh).
bench-failover: build envtest-assets
	KUBEBUILDER_ASSETS=$$(bash scripts/envtest-assets.sh) bash bench/failover/run.sh

clean:
	rm -rf $(BUILD) $(ASAN_BUILD)

format:
	git ls-files '*.cc' '*.h' | xargs clang-format -i
