#!/usr/bin/env bash
# Run the whole test suite in .venv (made by scripts/setup.sh --dev). Extra arguments go to pytest.
set -uo pipefail
cd "$(dirname "$0")/.."
.venv/bin/python -m pytest -q -ra "$@"
rc=$?
# pytest's 5 means "no tests collected" (e.g. a -k that matches nothing): not a failure of the code.
[ "$rc" = 5 ] && { echo "no tests ran"; exit 0; }
exit "$rc"
