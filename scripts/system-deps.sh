#!/usr/bin/env bash
# Installs the Debian programs the tests start (Chromium, Redis, PostgreSQL, nginx, npm) when they
# are missing and we are root on Debian; elsewhere it only says which are missing, and the
# tests that need them are skipped with the package name (a failure when CI=true).
set -euo pipefail

missing=()
command -v chromium >/dev/null 2>&1 || [ -x /usr/bin/chromium ] || missing+=(chromium)
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing+=(nginx-light)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing+=(postgresql)
command -v npm >/dev/null 2>&1 || missing+=(npm)  # installs axe-core for the accessibility tests

[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "Installing system packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" fonts-dejavu-core >/dev/null
  # The Debian packages start their own services; the tests start private ones instead.
  for service in redis-server nginx postgresql; do
    (service "$service" stop >/dev/null 2>&1 || true)
  done
else
  echo "Missing system packages (tests needing them will be skipped): ${missing[*]}" >&2
fi
