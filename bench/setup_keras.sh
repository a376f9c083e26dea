#!/usr/bin/env bash
# Creates bench/.venv-keras: Keras 3 on TensorFlow CPU, the *baseline* that the
# benchmarks in bench/ compare cnnkit against. It is never a dependency of
# cnnkit and is never installed into the project's own .venv.
#
# Usage: bash bench/setup_keras.sh        (idempotent: a stamp file marks success)
#        KERAS_VENV=/some/dir bash bench/setup_keras.sh
# Exit codes: 0 ready; 3 cannot be installed here (no Python 3.11, no network,
# no wheel for this Python/platform) - callers skip the Keras comparison then.
set -u

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENV="${KERAS_VENV:-$HERE/.venv-keras}"
STAMP="$VENV/.keras-baseline-ok"
PY="${KERAS_PYTHON:-python3.11}"

fail() {  # one clear line, exit 3 ("cannot be installed here")
    echo "setup_keras: cannot install the Keras/TensorFlow baseline: $1" >&2
    exit 3
}

if [ -f "$STAMP" ] && [ -x "$VENV/bin/python" ]; then
    echo "setup_keras: ready ($(cat "$STAMP")) at $VENV"
    exit 0
fi

# First of $KERAS_PYTHON / python3.11 / python3 that really runs as 3.11 (a pyenv
# shim exists even where its version is not selected, so run it to be sure).
is311() { "$1" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' >/dev/null 2>&1; }
for cand in "$PY" python3.11 python3; do
    if is311 "$cand"; then PY="$cand"; break; fi
    cand=""
done
[ -n "$cand" ] || fail "needs Python 3.11 (python3 here is $(python3 -V 2>&1 | head -1))"

start=$(date +%s)
if [ ! -x "$VENV/bin/python" ]; then
    "$PY" -m venv "$VENV" || fail "python3 -m venv $VENV failed"
fi
PIP=("$VENV/bin/python" -m pip install --quiet --disable-pip-version-check)

# tensorflow-cpu first (no CUDA payload); plain tensorflow where -cpu has no
# wheel for this Python. Keras 3 comes with TF >= 2.16 as a dependency.
log="$VENV/.install.log"
if ! "${PIP[@]}" tensorflow-cpu numpy >"$log" 2>&1; then
    if ! "${PIP[@]}" tensorflow numpy >>"$log" 2>&1; then
        fail "pip could not install tensorflow-cpu or tensorflow (no network or no wheel); see $log"
    fi
fi

# Check that it imports and that Keras is version 3 on the TensorFlow backend.
versions=$("$VENV/bin/python" - <<'EOF' 2>>"$log"
import os
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import tensorflow as tf, keras, numpy
assert keras.__version__.split(".")[0] == "3", keras.__version__
assert keras.backend.backend() == "tensorflow", keras.backend.backend()
print(f"tensorflow {tf.__version__}, keras {keras.__version__}, numpy {numpy.__version__}")
EOF
) || fail "installed but 'import tensorflow, keras' failed; see $log"

echo "$versions" >"$STAMP"
size=$(du -sh "$VENV" 2>/dev/null | cut -f1)
echo "setup_keras: installed $versions at $VENV ($size, $(( $(date +%s) - start )) s)"
