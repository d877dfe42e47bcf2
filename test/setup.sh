#!/bin/bash
# Install what personalize needs on Debian 12 (PostgreSQL 15 from Debian), then build
# and install the extension. Idempotent; used by both README commands.
set -euo pipefail
cd "$(dirname "$0")/.."
SUDO=; [ "$(id -u)" = 0 ] || SUDO=sudo
packages=(make gcc gzip ca-certificates postgresql-15 postgresql-server-dev-15 postgresql-15-cron
          postgresql-15-pgtap postgresql-15-plproxy libtap-parser-sourcehandler-pgtap-perl libcurl4-openssl-dev
          postgresql-contrib gnuplot-nox python3 python3-yaml curl nodejs
          prometheus-postgres-exporter libopenblas0-serial libopenblas-serial-dev python3-numpy)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  $SUDO apt-get update -q >/dev/null
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
fi
# Debian's exporter package enables and starts its own service on :9187 (with an empty
# DSN); test/scripts/prometheus.sh starts the binary on a free loopback port of its own.
# When setup has just installed it, stop and disable that service (one a DBA had set up
# before is left alone).
if [[ " ${missing[*]} " == *" prometheus-postgres-exporter "* ]] && [ -d /run/systemd/system ]; then
  $SUDO systemctl disable --now -q prometheus-postgres-exporter 2>/dev/null || true
fi
# npm (for the OpenAI spec check's prism): Debian's npm package, unless the node
# installed already brings its own (NodeSource's nodejs conflicts with Debian's npm)
if ! command -v npm >/dev/null 2>&1; then
  echo "setup: installing npm"
  $SUDO apt-get update -q >/dev/null
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends npm >/dev/null
fi
echo "setup: building personalize"
make -s PG_CONFIG=/usr/lib/postgresql/15/bin/pg_config >/dev/null
$SUDO make -s install PG_CONFIG=/usr/lib/postgresql/15/bin/pg_config >/dev/null
