#!/usr/bin/env bash
# Build lossnet's wheel, install it (--no-deps, offline) into a clean venv and run the CLI from it.
#
#   tools/check_wheel.sh [PYTHON]     # PYTHON: the dev venv's python (default .venv/bin/python)
#
# Cheap (seconds) and offline: no torch reinstall, no pip bootstrap; `make test` runs it. The clean
# venv holds only the wheel; the dependencies are borrowed read-only from the dev venv's
# site-packages through PYTHONPATH (its .pth files, e.g. the editable install of src/, are NOT
# processed there), and the check asserts that `lossnet` itself is imported from the clean venv,
# with its package data (configs, py.typed).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
py=${1:-$repo/.venv/bin/python}
[ -x "$py" ] || { echo "check_wheel: no python at $py (pass the dev venv's python)" >&2; exit 2; }
"$py" -c 'import setuptools, sys; sys.exit(int(setuptools.__version__.split(".")[0]) < 77)' || {
  echo "check_wheel: the build needs setuptools>=77 in $py's venv (pip install 'setuptools>=77'; make setup does)" >&2
  exit 2; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
unset PYTHONPATH
# --no-build-isolation: build with the dev venv's setuptools/wheel (offline)
"$py" -m pip wheel -q --no-deps --no-build-isolation -w "$tmp/dist" "$repo"
whl=$(ls "$tmp"/dist/lossnet-*.whl)
"$py" -m venv --without-pip "$tmp/venv"  # no pip bootstrap (seconds); the dev venv's pip installs into it
"$py" -m pip --python "$tmp/venv/bin/python" install -q --no-deps --no-index "$whl"
site=$("$py" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
export PYTHONPATH=$site
cd "$tmp"  # away from the checkout's src/
"$tmp/venv/bin/python" - "$tmp/venv" <<'PY'
import importlib.resources as r, sys, lossnet
assert lossnet.__file__.startswith(sys.argv[1]), f"lossnet imported from {lossnet.__file__}, not the wheel"
pkg = r.files("lossnet")
assert (pkg / "py.typed").is_file(), "py.typed missing from the wheel"
assert any(p.name.endswith(".yaml") for p in (pkg / "configs").iterdir()), "configs/*.yaml missing from the wheel"
PY
"$tmp/venv/bin/lossnet" --help > /dev/null
v=$("$tmp/venv/bin/lossnet" --version)
case "$v" in "lossnet "[0-9]*) ;; *) echo "check_wheel: unexpected --version output: $v" >&2; exit 1;; esac
echo "check_wheel: OK ($(basename "$whl"); $v)"
