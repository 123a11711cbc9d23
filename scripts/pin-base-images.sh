#!/usr/bin/env bash
# Pins the Dockerfile's base images by digest: each `FROM image:tag` becomes `FROM image:tag@sha256:…`
# with the digest the registry serves for that tag now (the multi-arch index, so every platform
# keeps working). Run before a release, review the diff, commit it.
#
# Needs one registry client: `crane` (go-containerregistry) or `docker buildx imagetools`.
# The build-stage image's tag holds ${RUST_VERSION}; it is resolved with the ARG's default.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
dockerfile="$root/Dockerfile"
rust_version=$(sed -n 's/^ARG RUST_VERSION=//p' "$dockerfile")

digest_of() {
  if command -v crane >/dev/null; then
    crane digest "$1"
  elif docker buildx version >/dev/null 2>&1; then
    docker buildx imagetools inspect "$1" --format '{{json .Manifest}}' | sed -n 's/.*"digest":"\(sha256:[0-9a-f]*\)".*/\1/p'
  else
    echo "need crane or docker buildx to resolve $1" >&2
    exit 1
  fi
}

tmp=$(mktemp)
while IFS= read -r line; do
  if [[ $line =~ ^FROM[[:space:]]+([^[:space:]@]+)(@sha256:[0-9a-f]+)?(.*)$ ]]; then
    image=${BASH_REMATCH[1]}
    rest=${BASH_REMATCH[3]}
    resolved=${image//\$\{RUST_VERSION\}/$rust_version}
    digest=$(digest_of "$resolved")
    [[ $digest =~ ^sha256:[0-9a-f]{64}$ ]] || { echo "no digest for $resolved: $digest" >&2; exit 1; }
    echo "FROM ${image}@${digest}${rest}" >> "$tmp"
    echo "pinned $resolved -> $digest" >&2
  else
    printf '%s\n' "$line" >> "$tmp"
  fi
done < "$dockerfile"
mv "$tmp" "$dockerfile"
