#!/usr/bin/env bash
# System packages the local stack needs: Java 17+ and Maven (Kafka), redis-server (Redis),
# openssl (the secure stack's certificates).
# Idempotent: when everything is present it only checks and prints, in well under a second.
set -euo pipefail

say() { printf 'setup-system: %s\n' "$*"; }
die() { printf 'setup-system: error: %s\n' "$*" >&2; exit 1; }

if [ "$(id -u)" -eq 0 ]; then SUDO=(); else SUDO=(sudo); fi
apt_updated=0
apt_install() {
    command -v apt-get >/dev/null || die "apt-get not found; install these by hand: $*"
    if [ "$apt_updated" -eq 0 ]; then
        say "running apt-get update"
        "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
        apt_updated=1
    fi
    say "installing $*"
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

# Java 17+ (the `java -version` banner goes to stderr: 'openjdk version "17.0.15" ...').
if ! command -v java >/dev/null; then
    apt_install openjdk-17-jre-headless
fi
java_major=$(java -version 2>&1 | awk -F'"' '/version/ {print $2; exit}' | sed -E 's/^1\.//; s/[^0-9].*$//')
[ -n "$java_major" ] && [ "$java_major" -ge 17 ] \
    || die "Kafka needs Java 17 or newer; found '$(java -version 2>&1 | head -n1)'"
say "java $java_major ok"

if ! command -v mvn >/dev/null; then
    apt_install maven
fi
say "$(mvn -v 2>/dev/null | head -n1 | sed -E 's/\x1b\[[0-9;]*m//g') ok"

if [ ! -x /usr/bin/redis-server ]; then
    apt_install redis-server
    # If the package started a system-wide redis on the configured port, the stack
    # reports it as 'foreign' and reuses it; nothing here stops it.
fi
say "$(/usr/bin/redis-server --version | cut -d' ' -f1-3) ok"

# openssl: the secure local stack (`novacron stack up --secure`) makes its CA with it.
if ! command -v openssl >/dev/null; then
    apt_install openssl
fi
say "$(openssl version | cut -d' ' -f1-2) ok"

# Go: the consumer example in examples/go (and its integration test) needs at least the
# `go` directive of its go.mod: the first such Go on PATH or in /usr/local/go/bin (where
# go.dev's tarball goes; Debian's golang-go may be older).
go_mod="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/examples/go/go.mod"
go_need=$(awk '$1 == "go" {print $2; exit}' "$go_mod")
[ -n "$go_need" ] || die "no 'go' directive in $go_mod"
go_found=()
find_go() {
    go_found=()
    local candidate have
    for candidate in "$(command -v go || true)" /usr/local/go/bin/go; do
        [ -n "$candidate" ] && [ -x "$candidate" ] || continue
        # GOTOOLCHAIN=local: this Go's own version, never one it would download.
        have=$(GOTOOLCHAIN=local "$candidate" version | awk '{print $3; exit}')
        have=${have#go}
        go_found+=("go$have at $candidate")
        if [ "$(printf '%s\n%s\n' "$go_need" "$have" | sort -V | head -n1)" = "$go_need" ]; then
            go_bin=$candidate go_have=$have
            return 0
        fi
    done
    return 1
}
if ! find_go; then
    if [ "${#go_found[@]}" -eq 0 ]; then
        apt_install golang-go
    fi
    find_go || die "examples/go needs Go $go_need or newer (the go directive of examples/go/go.mod); found ${go_found[*]:-no go on PATH}. Install a newer Go (https://go.dev/dl/) into /usr/local/go"
fi
say "go $go_have ok ($go_bin)"
