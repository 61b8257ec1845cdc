#!/usr/bin/env bash
# Regenerate include/fal_realtime.h with the pinned cbindgen (installed if missing).
# Usage: scripts/gen-header.sh [OUTPUT]   (default: include/fal_realtime.h)
set -euo pipefail
cd "$(dirname "$0")/.."
CBINDGEN_VERSION=0.29.4
if ! command -v cbindgen >/dev/null 2>&1 || [ "$(cbindgen --version)" != "cbindgen $CBINDGEN_VERSION" ]; then
  echo "installing cbindgen $CBINDGEN_VERSION" >&2
  cargo install cbindgen --version "$CBINDGEN_VERSION" --locked --force >&2
fi
out="${1:-include/fal_realtime.h}"
cbindgen --quiet --config cbindgen.toml --crate fal-realtime --output "$out"
