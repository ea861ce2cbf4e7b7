#!/usr/bin/env bash
# Create .venv and install Flowport with its pinned dependencies.
# Idempotent: re-runs the install only when the lock file or pyproject changed.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
VENV="${FLOWPORT_VENV:-.venv}"
STAMP="$VENV/.flowport-installed"
WANT="$(cat requirements.lock pyproject.toml | sha256sum | cut -d' ' -f1)"

if ! "$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' 2>/dev/null; then
    echo "Flowport needs Python 3.11 or newer; '$PYTHON' is $("$PYTHON" --version 2>&1). Set PYTHON=/path/to/python3.11." >&2
    exit 2
fi

if [ ! -x "$VENV/bin/python" ]; then
    "$PYTHON" -m venv "$VENV"
fi

if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$WANT" ]; then
    "$VENV/bin/python" -m pip install --quiet --upgrade "pip==26.3" "setuptools==84.2.1" "wheel==0.48.0"
    "$VENV/bin/python" -m pip install --quiet -r requirements.lock
    "$VENV/bin/python" -m pip install --quiet --no-deps --no-build-isolation -e .
    echo "$WANT" > "$STAMP"
fi

# Flowport's own modules compiled once (an editable install leaves that to the first import, which
# skips writing them when PYTHONDONTWRITEBYTECODE is set: every process would compile ~250 modules,
# about 0.1 s). A module edited later is compiled again on import, as usual.
"$VENV/bin/python" -m compileall -q src/flowport > /dev/null

# dbt-core and dbt-postgres for pipelines' dbt tasks, in a virtual environment of their own: their
# pins (pydantic, protobuf, jsonschema, click ...) conflict with Flowport's. The Makefile points
# FLOWPORT_DBT at its `dbt`.
DBT_VENV="${FLOWPORT_DBT_VENV:-.venv-dbt}"
DBT_STAMP="$DBT_VENV/.flowport-installed"
DBT_WANT="$(sha256sum requirements-dbt.lock | cut -d' ' -f1)"
if [ ! -f "$DBT_STAMP" ] || [ "$(cat "$DBT_STAMP")" != "$DBT_WANT" ]; then
    if [ ! -x "$DBT_VENV/bin/python" ]; then
        "$PYTHON" -m venv "$DBT_VENV"
    fi
    "$DBT_VENV/bin/python" -m pip install --quiet --upgrade "pip==26.3"
    "$DBT_VENV/bin/python" -m pip install --quiet -r requirements-dbt.lock
    echo "$DBT_WANT" > "$DBT_STAMP"
fi
