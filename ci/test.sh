#!/usr/bin/env bash
# The test command (README): the pinned environment (ci/env.sh), then pytest.
# Default run: unit tests, real small builds (marker `build`, a few minutes) and
# the publish round trip; `long` builds are deselected; GPU tests skip with their
# reason where no GPU is visible. Extra arguments go to pytest (e.g. -m long).
set -euo pipefail
cd "$(dirname "$0")/.."
source ci/env.sh
if [ "$#" -eq 0 ]; then
  set -- -m "not long"
fi
exec python -m pytest "$@"
