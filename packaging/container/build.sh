#!/usr/bin/env bash
# Builds the agent's container image with podman (or buildah), FROM scratch: the binary and the
# shared libraries it links, copied from the build host's Debian packages (libc6, libgcc-s1). No
# registry is contacted: nothing is pulled, nothing is pushed.
#
# Usage: packaging/container/build.sh [BINARY] [TAG]
#   BINARY  the agent to package (default: target/dist/mqtt-keepalive, built first with
#           `cargo build --locked --profile dist` when missing; the shipped, tuned profile)
#   TAG     image name (default: localhost/mqtt-keepalive:VERSION from Cargo.toml)
# Environment: BUILDER=podman|buildah (default: podman if present), STRIP=0 to keep symbols.
# Prints the image's name on its last line.
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
bin=${1:-}
if [ -z "$bin" ]; then
  bin=$repo/target/dist/mqtt-keepalive
  [ -x "$bin" ] || (cd "$repo" && cargo build --locked --profile dist)
fi
[ -x "$bin" ] || { echo "build.sh: no executable at $bin" >&2; exit 2; }
version=$(sed -n 's/^version = "\(.*\)"/\1/p' "$repo/Cargo.toml" | head -1)
tag=${2:-localhost/mqtt-keepalive:$version}
builder=${BUILDER:-$(command -v podman >/dev/null && echo podman || echo buildah)}

ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT
root=$ctx/rootfs
mkdir -p "$root/usr/local/bin" "$root/tmp"
chmod 1777 "$root/tmp"
cp "$bin" "$root/usr/local/bin/mqtt-keepalive"
if [ "${STRIP:-1}" != 0 ]; then strip "$root/usr/local/bin/mqtt-keepalive"; fi

# Every library the dynamic loader resolves for the binary (and the loader itself), at the path it
# resolves to, so the loader finds them in the image where it found them here.
libs=$(ldd "$bin" | awk '/=> \//{print $3} /^[ \t]*\/[^ ]*ld-linux/{print $1}' | sort -u)
packages=
for lib in $libs; do
  mkdir -p "$root$(dirname "$lib")"
  cp -L "$lib" "$root$lib"
  # The Debian package the file came from (its real path, as dpkg recorded it), for the label.
  real=$(readlink -f "$lib")
  pkg=$( (dpkg -S "$lib" 2>/dev/null || dpkg -S "$real" 2>/dev/null || dpkg -S "${real#/usr}" 2>/dev/null || true) | head -1 | cut -d: -f1)
  if [ -n "$pkg" ]; then packages="$packages$pkg=$(dpkg-query -W -f='${Version}' "$pkg" 2>/dev/null)"$'\n'; fi
done
packages=$(printf '%s' "$packages" | sort -u | tr '\n' ' ')
# /lib64 and /lib are symlinks into /usr on merged-/usr Debian: keep them so the paths ldd printed
# (and the ELF interpreter, /lib64/ld-linux-x86-64.so.2) resolve in the image too.
for d in lib lib64; do
  if [ -L "/$d" ] && [ -d "$root/$d" ] && [ ! -L "$root/$d" ]; then
    mkdir -p "$root/usr/$d"
    cp -a "$root/$d/." "$root/usr/$d/"
    rm -rf "${root:?}/$d"
    ln -s "usr/$d" "$root/$d"
  fi
done
# Name lookups (--listen HOST:PORT) use the files the loader would read; root's line for getpwuid.
mkdir -p "$root/etc"
printf 'root:x:0:0:root:/:/usr/local/bin/mqtt-keepalive\nnobody:x:65534:65534:nobody:/:/usr/local/bin/mqtt-keepalive\n' >"$root/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' >"$root/etc/group"
printf 'hosts: files dns\n' >"$root/etc/nsswitch.conf"
cp "$repo/packaging/container/Containerfile" "$ctx/Containerfile"

labels=(--label "org.opencontainers.image.title=mqtt-keepalive"
  --label "org.opencontainers.image.version=$version"
  --label "org.opencontainers.image.description=MQTT keepalive monitoring agent (Prometheus metrics on :9883)"
  --label "io.mqtt-keepalive.debian-packages=${packages% }")
case "$builder" in
  podman) podman build --pull=never --network=none -q "${labels[@]}" -t "$tag" -f "$ctx/Containerfile" "$ctx" >/dev/null ;;
  buildah) buildah bud --pull-never --network=none -q "${labels[@]}" -t "$tag" -f "$ctx/Containerfile" "$ctx" >/dev/null ;;
  *) echo "build.sh: BUILDER must be podman or buildah" >&2; exit 2 ;;
esac
echo "$tag"
