#!/usr/bin/env bash
# Install what the tests need (Debian's chromium, postgresql and dataset-fashion-mnist, the dev requirements)
# and run them all.
# Usage: bash scripts/test.sh [pytest arguments]
# The data: SOFTMAX_DATA_DIR=ROOT (ROOT/fashion-mnist/ and ROOT/mnist/) if set; otherwise the tests find the data
# sets as the app does: Fashion-MNIST from the Debian package (installed here), the cache or a download, MNIST
# from the cache or a download (its tests are skipped, with the reason, when it cannot be downloaded).
set -euo pipefail
cd "$(dirname "$0")/.."
as_root=""
[ "$(id -u)" -eq 0 ] || as_root="sudo"
missing=""
[ -x /usr/bin/chromium ] || missing="$missing chromium"  # the browser tests
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || missing="$missing postgresql"  # the PostgreSQL run store
data_package=""
[ -d /usr/share/datasets/fashion-mnist ] || data_package="dataset-fashion-mnist"  # Fashion-MNIST as a user gets it
if [ -n "$missing$data_package" ]; then
  $as_root apt-get update -qq
fi
if [ -n "$missing" ]; then
  # shellcheck disable=SC2086
  DEBIAN_FRONTEND=noninteractive $as_root apt-get install -y -qq $missing >/dev/null
fi
if [ -n "$data_package" ] && ! DEBIAN_FRONTEND=noninteractive $as_root apt-get install -y -qq "$data_package" >/dev/null; then
  echo "scripts/test.sh: could not install $data_package; the tests look for Fashion-MNIST in the cache or download it." >&2
fi
python -m pip install -q --disable-pip-version-check -r requirements-dev.txt
if [ -z "${SOFTMAX_DATA_DIR:-}" ]; then
  # Fetch Fashion-MNIST now, as the app would (Debian package, cache, else a download), so a problem shows up first.
  python - <<'EOF'
import sys

from softmax_core import DataError, load_dataset

try:
    print(f"Fashion-MNIST: {load_dataset('fashion-mnist', download=True).source}")
except DataError as err:
    sys.exit(f"scripts/test.sh: the tests need Fashion-MNIST. {err}")
EOF
fi
python -m pytest "$@"
