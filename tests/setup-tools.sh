#!/usr/bin/env bash
# Make sure the tools the tests need beyond the virtualenv are on this machine:
# - node and the official AsyncAPI parser, @asyncapi/parser, pinned, in .tools/node_modules
#   (tests/integration/test_asyncapi_parser.py validates schemas/asyncapi.yaml with it);
#   node/npm from Debian's `nodejs` and `npm` packages when node is missing;
# - promtool (tests/unit/test_alert_rules.py checks and unit-tests deploy/prometheus/ with it);
# - pgbouncer (tests run the workers through it: devservices/pgbouncer.py), from Debian's
#   `pgbouncer` package, its server not started;
# - pgbackrest (tests/integration/test_backup.py, test_drill.py and `make drill`), from Debian's
#   `pgbackrest` package (no recommends; it starts no server);
# - patroni and etcd (tests/chaos/test_patroni_short.py and `make chaos-patroni`: a 3-member
#   Patroni cluster on one etcd member, devservices/patroni.py), from Debian's `patroni` and
#   `etcd-server` packages, neither server started.
# Idempotent: does nothing for a tool already there. Installs Debian's `prometheus`
# package otherwise, and makes sure the install leaves no Prometheus server running
# (nothing may listen on 9090 afterwards). Needs root (apt-get) only when it installs.
set -euo pipefail

ASYNCAPI_PARSER_VERSION="3.6.3"
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS="$REPO/.tools"

# Where it cannot install (no apt-get, not root), a developer's run goes on and the tests that
# need the tool skip; CI (CI=true) must run them, so there it is an error.
cannot_install_node() {
    echo "setup-tools: node is missing and $1; install Node.js and npm by hand" >&2
    if [ "${CI:-}" = "true" ]; then exit 1; fi
}

install_node() {
    command -v apt-get >/dev/null 2>&1 || { cannot_install_node "there is no apt-get here"; return 1; }
    [ "$(id -u)" -eq 0 ] || { cannot_install_node "installing it needs root (apt-get install nodejs npm)"; return 1; }
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null
    echo "setup-tools: installed node $(node --version) from Debian's nodejs and npm packages"
}

asyncapi_parser_version() {
    node -e 'process.stdout.write(require(process.argv[1]).version)' \
        "$TOOLS/node_modules/@asyncapi/parser/package.json" 2>/dev/null || true
}

ensure_asyncapi_parser() {
    if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
        install_node || return 0
    fi
    if [ "$(asyncapi_parser_version)" = "$ASYNCAPI_PARSER_VERSION" ]; then
        echo "setup-tools: @asyncapi/parser $ASYNCAPI_PARSER_VERSION found in .tools/ (node $(node --version))"
        return 0
    fi
    mkdir -p "$TOOLS"
    npm install --prefix "$TOOLS" --no-audit --no-fund --no-save --silent \
        "@asyncapi/parser@$ASYNCAPI_PARSER_VERSION" >/dev/null
    if [ "$(asyncapi_parser_version)" != "$ASYNCAPI_PARSER_VERSION" ]; then
        echo "setup-tools: npm ran but @asyncapi/parser $ASYNCAPI_PARSER_VERSION is not in .tools/" >&2
        exit 1
    fi
    echo "setup-tools: installed @asyncapi/parser $ASYNCAPI_PARSER_VERSION into .tools/ (node $(node --version))"
}

ensure_asyncapi_parser

cannot_install_pgbackrest() {
    echo "setup-tools: pgbackrest is missing and $1; install Debian's pgbackrest package by hand" >&2
    if [ "${CI:-}" = "true" ]; then exit 1; fi
}

ensure_pgbackrest() {
    if command -v pgbackrest >/dev/null 2>&1; then
        echo "setup-tools: pgbackrest found at $(command -v pgbackrest) ($(pgbackrest version))"
        return 0
    fi
    command -v apt-get >/dev/null 2>&1 || { cannot_install_pgbackrest "there is no apt-get here"; return 0; }
    [ "$(id -u)" -eq 0 ] || { cannot_install_pgbackrest "installing it needs root (apt-get install pgbackrest)"; return 0; }
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends pgbackrest >/dev/null
    command -v pgbackrest >/dev/null 2>&1 || { echo "setup-tools: installed pgbackrest but it is not on PATH" >&2; exit 1; }
    echo "setup-tools: installed $(pgbackrest version) from Debian's pgbackrest package"
}

ensure_pgbackrest

# Packages that ship a server (prometheus for promtool, pgbouncer): installed without starting
# it. Where it cannot install (no apt-get, not root), a developer's run goes on and the tests
# that need the tool skip; CI (CI=true) must run them, so there it is an error.
cannot_install() {
    echo "setup-tools: $1 is missing and $2; install Debian's $3 package by hand" >&2
    if [ "${CI:-}" = "true" ]; then exit 1; fi
}

# Keep the package's maintainer scripts from starting (or restarting) a server: invoke-rc.d
# asks policy-rc.d, and 101 means "action forbidden". An existing policy-rc.d (Docker images
# ship one) is kept aside and put back afterwards, byte for byte.
policy=/usr/sbin/policy-rc.d
policy_backup=""
forbid_service_starts() {
    if [ -e "$policy" ]; then
        policy_backup="$(mktemp /tmp/policy-rc.d.XXXXXX)"
        cp -p "$policy" "$policy_backup"
    fi
    trap restore_policy EXIT
    printf '#!/bin/sh\n# written by tests/setup-tools.sh for the duration of an install\nexit 101\n' >"$policy"
    chmod 0755 "$policy"
}
restore_policy() {
    if [ -n "$policy_backup" ]; then
        cp -p "$policy_backup" "$policy"
        rm -f "$policy_backup"
        policy_backup=""
    else
        rm -f "$policy"
    fi
    trap - EXIT
}

# install_quietly TOOL PACKAGE DAEMON: apt-get install PACKAGE unless TOOL is on PATH, leaving
# no DAEMON of its running (servers running before the install are not ours to stop).
install_quietly() {
    local tool="$1" package="$2" daemon="$3"
    if command -v "$tool" >/dev/null 2>&1; then
        echo "setup-tools: $tool found at $(command -v "$tool")"
        return 0
    fi
    command -v apt-get >/dev/null 2>&1 || { cannot_install "$tool" "there is no apt-get here" "$package"; return 0; }
    [ "$(id -u)" -eq 0 ] || { cannot_install "$tool" "installing it needs root (apt-get install $package)" "$package"; return 0; }
    local before
    before="$(pgrep -x "$daemon" || true)"
    forbid_service_starts
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$package" >/dev/null
    restore_policy
    # Belt and braces: without systemd, a postinst may still have started the daemon some other way.
    if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
        systemctl disable --now "$package.service" >/dev/null 2>&1 || true
    fi
    for pid in $(pgrep -x "$daemon" || true); do
        case " $(echo "$before" | tr '\n' ' ') " in
            *" $pid "*) ;;
            *) kill "$pid" 2>/dev/null || true ;;
        esac
    done
    if ! command -v "$tool" >/dev/null 2>&1 && [ ! -x "/usr/sbin/$tool" ]; then
        echo "setup-tools: installed the $package package but $tool is still not on PATH" >&2
        exit 1
    fi
    echo "setup-tools: installed $tool from Debian's $package package"
}

install_quietly promtool prometheus prometheus
# PgBouncer (devservices/pgbouncer.py; the intake, lifecycle and relay tests run through it).
install_quietly pgbouncer pgbouncer pgbouncer
# Patroni and etcd (devservices/patroni.py; the PostgreSQL failover chaos run). The etcd-server
# package ships /usr/bin/etcd; patroni pulls python3-etcd (its etcd3 client uses it too).
install_quietly patroni patroni patroni
install_quietly etcd etcd-server etcd
