#!/usr/bin/env bash
# Install the C library, headers, pkg-config file, CMake package and licences into PREFIX.
# Usage: bindings/c/install.sh PREFIX   (after `cargo build --release -p fal-realtime`)
#
#   PREFIX/include/fal_realtime.h, PREFIX/include/fal_realtime.hpp (C++17 wrapper)
#   PREFIX/lib/libfal_realtime.so.VERSION            the shared library (stripped), SONAME libfal_realtime.so.MAJOR
#   PREFIX/lib/libfal_realtime.so.MAJOR -> libfal_realtime.so.VERSION
#   PREFIX/lib/libfal_realtime.so       -> libfal_realtime.so.VERSION
#   PREFIX/lib/libfal_realtime.a                     the static library (debug info stripped)
#   PREFIX/lib/pkgconfig/fal-realtime.pc
#   PREFIX/lib/cmake/fal_realtime/fal_realtimeConfig.cmake, fal_realtimeConfigVersion.cmake
#   PREFIX/share/doc/fal-realtime/LICENSE-MIT, LICENSE-APACHE, README.md
#
# Environment:
#   DESTDIR           stage the files under $DESTDIR$PREFIX (packaging; PREFIX must be absolute)
#   CARGO_TARGET_DIR  where cargo built the library (default: target); the release profile is used
#   STRIP             the strip program (default: strip); STRIP=true keeps all symbols
set -euo pipefail
cd "$(dirname "$0")/../.."
prefix="${1:?usage: bindings/c/install.sh PREFIX}"
destdir="${DESTDIR:-}"
if [ -n "$destdir" ]; then
  case "$prefix" in
    /*) ;;
    *) echo "install.sh: with DESTDIR, PREFIX must be absolute" >&2; exit 2 ;;
  esac
  prefix="${prefix%/}"
else
  mkdir -p "$prefix"
  prefix="$(cd "$prefix" && pwd)"
fi
dest="$destdir$prefix"
target="${CARGO_TARGET_DIR:-target}/release"
strip="${STRIP:-strip}"
version="$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)"

so="$target/libfal_realtime.so"
for f in "$so" "$target/libfal_realtime.a"; do
  [ -f "$f" ] || { echo "install.sh: $f is missing: run cargo build --release -p fal-realtime" >&2; exit 1; }
done
# The SONAME comes from the library itself (build.rs sets it).
soname="$(readelf -d "$so" | sed -n 's/.*Library soname: \[\(.*\)\].*/\1/p')"
case "$soname" in
  libfal_realtime.so.[0-9]*) ;;
  *) echo "install.sh: $so has no SONAME (built before build.rs set it?): rebuild it" >&2; exit 1 ;;
esac
real="libfal_realtime.so.$version"
case "$(readelf -h "$so" | sed -n 's/^ *Class: *//p')" in
  ELF64) sizeof_void_p=8 ;;
  ELF32) sizeof_void_p=4 ;;
  *) echo "install.sh: cannot tell the word size of $so" >&2; exit 1 ;;
esac

lib="$dest/lib"
cmakedir="$lib/cmake/fal_realtime"
docdir="$dest/share/doc/fal-realtime"
install -d "$dest/include" "$lib/pkgconfig" "$cmakedir" "$docdir"

install -m 0644 include/fal_realtime.h bindings/c/include/fal_realtime.hpp "$dest/include/"

rm -f "$lib/libfal_realtime.so" "$lib/$soname" # links or files of an earlier install
install -m 0755 "$so" "$lib/$real"
"$strip" --strip-unneeded "$lib/$real"
ln -s "$real" "$lib/$soname"
ln -s "$real" "$lib/libfal_realtime.so"
install -m 0644 "$target/libfal_realtime.a" "$lib/"
"$strip" --strip-debug "$lib/libfal_realtime.a"

sed -e "s|@PREFIX@|$prefix|g" -e "s|@VERSION@|$version|g" bindings/c/fal-realtime.pc.in \
  > "$lib/pkgconfig/fal-realtime.pc"
sed -e "s|@SHARED_FILE@|$real|g" -e "s|@SONAME@|$soname|g" bindings/c/cmake/fal_realtimeConfig.cmake.in \
  > "$cmakedir/fal_realtimeConfig.cmake"
sed -e "s|@VERSION@|$version|g" -e "s|@SIZEOF_VOID_P@|$sizeof_void_p|g" -e "s|@BITS@|$((sizeof_void_p * 8))|g" \
  bindings/c/cmake/fal_realtimeConfigVersion.cmake.in > "$cmakedir/fal_realtimeConfigVersion.cmake"
chmod 0644 "$lib/pkgconfig/fal-realtime.pc" "$cmakedir"/*.cmake

install -m 0644 LICENSE-MIT LICENSE-APACHE "$docdir/"
install -m 0644 bindings/c/README.md "$docdir/README.md"

echo "installed fal-realtime $version ($soname) into $dest"
