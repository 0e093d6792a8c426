#!/usr/bin/env bash
# Builds and runs the failover benchmark (see the header of failover_bench.cc), printing a
# Markdown block to paste into bench/README.md. Extra arguments go to failover_bench, e.g.
#   bash bench/failover/run.sh --runs=1 --modes=async --faults=crash
# Needs KUBEBUILDER_ASSETS (the Makefile's `bench-failover` target sets it).
set -euo pipefail
cd "$(dirname "$0")/../.."
BUILD=${BUILD:-build}
[ -f "$BUILD/build.ninja" ] || cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo
cmake --build "$BUILD" --target failover_bench petrel
export KUBEBUILDER_ASSETS=${KUBEBUILDER_ASSETS:-$(bash scripts/envtest-assets.sh)}
export PETREL_BINARY="$PWD/$BUILD/cli/petrel" PETREL_SOURCE_DIR="$PWD"
exec "$BUILD/bench/failover/failover_bench" --runs="${BENCH_FAILOVER_RUNS:-5}" "$@"
