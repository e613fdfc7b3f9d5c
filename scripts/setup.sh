#!/usr/bin/env bash
# Make .venv from nothing and install ACFD with everything it needs (CPU machine, Python 3.11).
# Quick when already done: it reinstalls only when pyproject.toml changed since the last run.
# The tests need the dev, track (supervision, norfair) and cluster (ray) extras: ACFD_EXTRAS defaults to them;
# ACFD_EXTRAS=dev,track,cluster,gpu adds the gpu extra (CuPy + NVRTC, about 200 MB: runs the NVRTC compile test).
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null 2>&1 || PY=python3
stamp=.venv/.setup-stamp
extras=${ACFD_EXTRAS:-dev,track,cluster}
want=$( (sha256sum pyproject.toml scripts/setup.sh; echo "$extras") | sha256sum | cut -c1-16)

# perf_analyzer (inside the tritonclient wheel) links against Debian's libb64.
if ! ldconfig -p 2>/dev/null | grep -q libb64.so.0d; then
  if [ "$(id -u)" = 0 ]; then
    echo "setup: installing libb64-0d for perf_analyzer"
    (apt-get install -y -qq libb64-0d >/dev/null 2>&1 || { apt-get update -qq >/dev/null && apt-get install -y -qq libb64-0d >/dev/null; }) \
      || echo "setup: warning: could not install libb64-0d; acfd loadtest will not run" >&2
  else
    echo "setup: warning: libb64-0d missing and not root; acfd loadtest will not run" >&2
  fi
fi

if [ -x .venv/bin/acfd ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi

[ -x .venv/bin/python ] || "$PY" -m venv .venv
echo "setup: installing acfd and its dependencies into .venv (first run takes a few minutes)"
.venv/bin/python -m pip install -q --upgrade pip setuptools wheel
.venv/bin/python -m pip install -q -e ".[$extras]"
echo "$want" > "$stamp"
echo "setup: done (.venv/bin/acfd)"
