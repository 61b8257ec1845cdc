#!/usr/bin/env bash
# Install the C library, headers and pkg-config file into PREFIX.
# Usage: bindings/c/install.sh PREFIX   (after `cargo build --release -p fal-realtime`)
#   PREFIX/lib/libfal_realtime.{so,a}
#   PREFIX/include/fal_realtime.h, PREFIX/include/fal_realtime.hpp
#   PREFIX/lib/pkgconfig/fal-realtime.pc
set -euo pipefail
cd "$(dirname "$0")/../.."
prefix="${1:?usage: bindings/c/install.sh PREFIX}"
mkdir -p "$prefix"
prefix="$(cd "$prefix" && pwd)"
target="${CARGO_TARGET_DIR:-target}/release"
version="$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)"
install -d "$prefix/lib/pkgconfig" "$prefix/include"
install -m 0755 "$target/libfal_realtime.so" "$prefix/lib/"
install -m 0644 "$target/libfal_realtime.a" "$prefix/lib/"
install -m 0644 include/fal_realtime.h bindings/c/include/fal_realtime.hpp "$prefix/include/"
sed -e "s|@PREFIX@|$prefix|" -e "s|@VERSION@|$version|" bindings/c/fal-realtime.pc.in \
  > "$prefix/lib/pkgconfig/fal-realtime.pc"
echo "installed fal-realtime $version into $prefix"
