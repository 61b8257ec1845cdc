#!/usr/bin/env bash
# Benchmark smoke stage: runs the harness with tiny N and our clients only
# (bare floor, Rust pull/callback, C API when its header exists, Python wheel
# when it builds) against the emulator and the raw echo server, over ws and
# wss, and checks that every client printed a complete JSON result. Builds in
# the dev profile (reusing the test build); no third-party installs. The full
# measurement is `bench/run` (see bench/README.md) and stays out of CI.
# Then `bench/cost --smoke`: the per-round-trip counts (callgrind, strace,
# perf) of two Rust clients over a few round trips, checking the tool works.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 bench/run --smoke "$@"
python3 bench/cost --smoke
