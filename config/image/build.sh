#!/usr/bin/env bash
# Builds the factorio-isr image as an OCI image layout from a static binary that is already
# built, pulling nothing: the same files, user, entrypoint, port, volume, environment and
# labels as the Dockerfile's last stage (tests/config/image.sh checks that they agree).
#
#   config/image/build.sh [--with-libs] BINARY OUT_DIR [TAG]
#
# BINARY: a static build, e.g. from
#   cargo build --release --target x86_64-unknown-linux-musl -p factorio-isr
# With --with-libs, a dynamically linked binary is taken too, with the shared libraries it
# needs (as ldd lists them) copied beside it into the image: how CI packs the binary its
# tests built, instead of building every crate again for musl.
# OUT_DIR: the OCI layout to write (replaced). Copy it anywhere with skopeo:
#   skopeo copy oci:OUT_DIR:TAG docker-daemon:factorio-isr:TAG
# Needs umoci (Debian: umoci) and root: the image's /state belongs to uid 10001.
set -euo pipefail

with_libs=false
if [[ ${1:-} == --with-libs ]]; then
    with_libs=true
    shift
fi
if [[ $# -lt 2 ]]; then
    echo "usage: $0 [--with-libs] BINARY OUT_DIR [TAG]" >&2
    exit 2
fi
root=$(cd "$(dirname "$0")/../.." && pwd)
binary=$1
out=$2
version=$(sed -n 's/^version = "\(.*\)"/\1/p' "$root/Cargo.toml" | head -n1)
tag=${3:-$version}

command -v umoci >/dev/null || { echo "error: umoci is not installed (apt-get install umoci)" >&2; exit 2; }
[[ $(id -u) == 0 ]] || { echo "error: run as root: the image's /state must belong to uid 10001" >&2; exit 2; }
[[ -f $binary && -x $binary ]] || { echo "error: $binary is not an executable file" >&2; exit 2; }
dynamic=false
if readelf -l "$binary" 2>/dev/null | grep -q 'program interpreter'; then
    dynamic=true
    if ! $with_libs; then
        echo "error: $binary is dynamically linked; the image has no libc (build for x86_64-unknown-linux-musl, or pass --with-libs)" >&2
        exit 2
    fi
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
bundle=$work/bundle

rm -rf "$out"
umoci init --layout "$out"
umoci new --image "$out:$tag"
umoci unpack --image "$out:$tag" "$bundle"

rootfs=$bundle/rootfs
cp -R "$root/config/image/rootfs/." "$rootfs/"
mkdir -p "$rootfs/patterns" "$rootfs/config" "$rootfs/plugins" "$rootfs/state" "$rootfs/tmp"
cp -R "$root/patterns/." "$rootfs/patterns/"
if command -v strip >/dev/null; then
    strip -o "$rootfs/factorio-isr" "$binary"
else
    cp "$binary" "$rootfs/factorio-isr"
fi
chmod 0755 "$rootfs/factorio-isr"
if $dynamic; then
    # Every library the binary loads, at the path the loader looks for it.
    for lib in $(ldd "$binary" | grep -o '/[^ ]*'); do
        mkdir -p "$rootfs$(dirname "$lib")"
        cp -L "$lib" "$rootfs$lib"
    done
fi
chown -R 0:0 "$rootfs"
chmod -R u=rwX,go=rX "$rootfs/etc" "$rootfs/patterns"
chown 10001:10001 "$rootfs/state"
chmod 1777 "$rootfs/tmp"

umoci repack --image "$out:$tag" "$bundle"
umoci config --image "$out:$tag" \
    --os linux --architecture amd64 \
    --config.user 10001:10001 \
    --config.entrypoint /factorio-isr \
    --config.cmd run \
    --config.workingdir / \
    --config.exposedports 8080/tcp \
    --config.volume /state \
    --config.env FACTORIO_ISR_CONFIG=/config/servers.yml \
    --config.env FACTORIO_ISR_STATE_DIR=/state \
    --config.env FACTORIO_ISR_CACHE_DIR=/state/plugin-cache \
    --config.env HEALTH_CHECK_HOST=0.0.0.0 \
    --config.env HEALTH_CHECK_PORT=8080 \
    --config.label org.opencontainers.image.title=factorio-isr \
    --config.label "org.opencontainers.image.description=Watches Factorio servers and reports to Discord; its rules are sandboxed WebAssembly plugins." \
    --config.label "org.opencontainers.image.licenses=MIT OR Apache-2.0" \
    --config.label "org.opencontainers.image.version=$version" \
    --config.label org.opencontainers.image.source=https://github.com/factorio-isr/factorio-isr
umoci gc --layout "$out"
echo "built $out:$tag"
