#!/usr/bin/env bash
# Builds and runs the benchmarks, printing a Markdown block to paste into bench/README.md.
# Needs KUBEBUILDER_ASSETS (the Makefile's `bench` target sets it).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
[ -f "$BUILD/build.ninja" ] || cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo
cmake --build "$BUILD" --target controller_bench
export KUBEBUILDER_ASSETS=${KUBEBUILDER_ASSETS:-$(bash scripts/envtest-assets.sh)}
"$BUILD/bench/controller_bench" --objects="${BENCH_OBJECTS:-1000}" \
  --steady-seconds="${BENCH_STEADY_SECONDS:-30}"
