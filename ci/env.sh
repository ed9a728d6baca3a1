# Sourced by ci/build.sh and ci/test.sh: one venv (.venv, or $BLACKWHEEL_VENV) with
# the pinned tools and test requirements (ci/requirements-test.txt), on PATH.
VENV="${BLACKWHEEL_VENV:-.venv}"
if [ ! -x "$VENV/bin/python" ]; then
  "${PYTHON:-python3}" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install -q --upgrade pip
"$VENV/bin/python" -m pip install -q -r ci/requirements-test.txt
VENV="$(cd "$VENV" && pwd)"   # absolute, whether given relative or not
export PATH="$VENV/bin:$PATH"
export PYTHONPATH="$PWD/python"
