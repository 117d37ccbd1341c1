#!/bin/sh
# Installs a CRIU that works on this kernel, only when the installed one is missing or too old.
#
# Debian 12's criu 3.17 fails `criu check` on recent kernels ("Unexpected rt vDSO area
# bounds", fixed in CRIU 4.1). Debian's next release (trixie) ships criu 4.1.x, whose build
# dependencies all exist in bookworm, so we build that source package:
#
#   1. a deb-src line for trixie in a PRIVATE apt configuration under the cache folder
#      (its own sources.list, lists and archives): the system's sources and package lists
#      are never changed, and nothing from trixie is installed as a binary package;
#   2. the build dependencies, from the system's own (bookworm) sources;
#   3. `apt-get source criu` into the cache folder (apt verifies every file against the
#      signed Sources index); when a mirror serves the upstream tarball but not Debian's
#      .dsc, the verified tarball is built as is;
#   4. plain `make criu` (well under a minute), the binary installed as $CRIU_PREFIX/criu;
#   5. `criu check` must pass, or the script fails saying so.
#
# Our patches (scripts/criu-patches/*.patch, applied in order before the build) fix what
# 4.1 gets wrong on this kernel: 0001, Linux 6.16+ refuses SO_PASSCRED/SO_PASSSEC on TCP
# sockets, which made every dump of a socket fail (a live move's --tcp-established).
# The installed binary carries a stamp ($CRIU_PREFIX/criu.dockyard-patches, the patches'
# sha256); a criu without the current stamp is rebuilt, so a new patch reaches machines
# that ran an older version of this script.
#
# Idempotent: nothing is done when $CRIU_PREFIX/criu is good and carries the stamp; a
# binary built earlier with the same patches is reused from the cache.
#
# Environment: CRIU_MIN (4.1), CRIU_CACHE (/var/cache/dockyard/criu),
# CRIU_PREFIX (/usr/local/sbin), CRIU_SUITE (trixie), CRIU_MIRROR (http://deb.debian.org/debian).
set -eu

min=${CRIU_MIN:-4.1}
cache=${CRIU_CACHE:-/var/cache/dockyard/criu}
prefix=${CRIU_PREFIX:-/usr/local/sbin}
suite=${CRIU_SUITE:-trixie}
mirror=${CRIU_MIRROR:-http://deb.debian.org/debian}
keyring=/usr/share/keyrings/debian-archive-keyring.gpg
build_deps="libbsd-dev libcap-dev libgnutls28-dev libnet1-dev libnftables-dev libnl-3-dev
libprotobuf-c-dev libprotobuf-dev protobuf-c-compiler protobuf-compiler uuid-dev pkg-config
python3-protobuf gcc make patch xz-utils dpkg-dev"

say() { echo "install-criu: $*" >&2; }
die() { say "error: $*"; exit 1; }

# version_of BINARY: prints the version `criu --version` reports ("Version: 4.1.1").
version_of() {
    "$1" --version 2>/dev/null | sed -n 's/^Version: *//p' | head -n1
}

here=$(cd "$(dirname "$0")" && pwd)
patches=$(ls "$here"/criu-patches/*.patch 2>/dev/null | sort || true)
# shellcheck disable=SC2086
stamp=$( (echo v1; [ -z "$patches" ] || cat $patches) | sha256sum | cut -d' ' -f1)

# stamped FILE: true when FILE holds the current patches' stamp.
stamped() {
    [ -f "$1" ] && [ "$(cat "$1")" = "$stamp" ]
}

# patch_and_build DIR: apply our patches to a pristine source tree once, then make criu.
patch_and_build() {
    if [ -f "$1/.dockyard-patches" ]; then
        stamped "$1/.dockyard-patches" || return 1  # patched by another set: refetch
    else
        for p in $patches; do
            patch -d "$1" -p1 --forward --quiet < "$p" || die "patch $(basename "$p") does not apply to $1"
            say "applied $(basename "$p")"
        done
        echo "$stamp" > "$1/.dockyard-patches"
    fi
    say "building criu in $1 (make criu, $(nproc) jobs)"
    make -C "$1" -j"$(nproc)" criu >"$cache/build.log" 2>&1 \
        || die "build failed; see $cache/build.log: $(tail -n5 "$cache/build.log")"
}

# good BINARY: true when BINARY is at least $min and `criu check` passes on this kernel.
good() {
    [ -x "$1" ] || return 1
    v=$(version_of "$1")
    [ -n "$v" ] || return 1
    dpkg --compare-versions "$v" ge "$min" || return 1
    "$1" check >/dev/null 2>&1
}

[ "$(id -u)" = 0 ] || die "must run as root (installs build dependencies and $prefix/criu)"

if good "$prefix/criu" && stamped "$prefix/criu.dockyard-patches"; then
    say "$prefix/criu $(version_of "$prefix/criu") has our patches and passes 'criu check'; nothing to do"
    exit 0
fi

mkdir -p "$cache"
built=$(ls -d "$cache"/src/criu-*/criu/criu 2>/dev/null | sort -V | tail -n1 || true)
if [ -n "$built" ] && ! stamped "${built%/criu/criu}/.dockyard-patches"; then
    # built before our patches: patch the same (pristine) tree and build again
    patch_and_build "${built%/criu/criu}" || built=""
fi
if [ -z "$built" ] || ! good "$built"; then
    missing=""
    for p in $build_deps; do
        dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"
    done
    if [ -n "$missing" ]; then
        say "installing build dependencies:$missing"
        apt-get update -qq || die "apt-get update failed"
        # shellcheck disable=SC2086
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing \
            || die "could not install the build dependencies:$missing"
    fi

    [ -r "$keyring" ] || die "$keyring is missing (package debian-archive-keyring)"
    apt_dir="$cache/apt"
    mkdir -p "$apt_dir/lists/partial" "$apt_dir/archives/partial" "$cache/src"
    echo "deb-src [signed-by=$keyring] $mirror $suite main" > "$apt_dir/sources.list"
    # Everything apt reads or writes lives under $apt_dir; the system's lists are untouched.
    set -- -o "Dir::Etc::sourcelist=$apt_dir/sources.list" -o "Dir::Etc::sourceparts=-" \
        -o "Dir::State::Lists=$apt_dir/lists" -o "Dir::Cache=$apt_dir" \
        -o "Dir::Cache::pkgcache=" -o "Dir::Cache::srcpkgcache=" \
        -o "APT::Sandbox::User=root"
    say "fetching the criu source package of $suite from $mirror"
    apt-get "$@" -qq update || die "apt-get update of the private $suite deb-src list failed"
    version=$(apt-cache "$@" showsrc criu | sed -n 's/^Version: *//p' | sort -V | tail -n1)
    [ -n "$version" ] || die "no criu source package in $suite"
    upstream=${version#*:}
    upstream=${upstream%-*}
    dir="$cache/src/criu-$upstream"
    rm -rf "$dir"
    cd "$cache/src"
    if apt-get "$@" -qq source "criu=$version" >/dev/null 2>"$cache/source.log"; then
        say "unpacked criu $version (Debian's patches applied)"
    else
        # apt-get source fetches the files one by one and checks each against the signed
        # index; a mirror may serve only the upstream tarball. Verify it ourselves again
        # and build it without Debian's packaging (which only adds docs and packaging).
        orig="criu_$upstream.orig.tar.xz"
        want=$(apt-cache "$@" showsrc criu | awk -v f="$orig" -v v="$version" '
            /^Version:/ {ok=($2 == v)} /^Checksums-Sha256:/ {s=ok; next} /^[^ ]/ {s=0}
            s && $3 == f {print $1; exit}')
        [ -f "$orig" ] && [ -n "$want" ] || die "could not fetch criu $version: $(tail -n3 "$cache/source.log")"
        got=$(sha256sum "$orig" | cut -d' ' -f1)
        [ "$got" = "$want" ] || die "$orig: sha256 $got, the signed index says $want"
        say "mirror lacks Debian's .dsc; building the verified upstream tarball $orig"
        rm -rf "$dir" && mkdir -p "$dir"
        tar -xJf "$orig" -C "$dir" --strip-components=1 || die "could not unpack $orig"
    fi
    [ -d "$dir/criu" ] || die "$dir does not look like a criu source tree"
    patch_and_build "$dir" || die "$dir was patched already with other patches"
    built="$dir/criu/criu"
fi

good "$built" || die "the criu built at $built does not pass 'criu check': $("$built" check 2>&1 | tail -n3)"
mkdir -p "$prefix"
install -m 0755 "$built" "$prefix/criu.new" && mv -f "$prefix/criu.new" "$prefix/criu"
echo "$stamp" > "$prefix/criu.dockyard-patches"
say "installed $prefix/criu $(version_of "$prefix/criu"); 'criu check' passes"
