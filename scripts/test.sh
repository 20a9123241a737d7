#!/usr/bin/env bash
# Install what the tests need (Debian's chromium and postgresql, the dev requirements) and run them all.
# Usage: SOFTMAX_DATA_DIR=ROOT bash scripts/test.sh [pytest arguments]
set -euo pipefail
cd "$(dirname "$0")/.."
missing=""
[ -x /usr/bin/chromium ] || missing="$missing chromium"  # the browser tests
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || missing="$missing postgresql"  # the PostgreSQL run store
if [ -n "$missing" ]; then
  as_root=""
  [ "$(id -u)" -eq 0 ] || as_root="sudo"
  $as_root apt-get update -qq
  # shellcheck disable=SC2086
  DEBIAN_FRONTEND=noninteractive $as_root apt-get install -y -qq $missing >/dev/null
fi
python -m pip install -q --disable-pip-version-check -r requirements-dev.txt
python -m pytest "$@"
