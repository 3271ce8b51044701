#!/usr/bin/env bash
# The pure-Python wheels a GPU machine lacks for the audio run (its RVQ is vector-quantize-pytorch's
# ResidualVQ): downloaded here, where PyPI answers, into .whl/ (kept out of git), carried with the
# run and installed there by run.sh (--no-index: the machine reaches no network). The versions are
# the ones this project's install resolves to.
set -euo pipefail
cd "$(dirname "$0")/../.."
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || grep -qx '/.whl/' .gitignore || echo '/.whl/' >> .git/info/exclude
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform any -d .whl \
    vector-quantize-pytorch==1.32.0 einx==0.4.3 frozendict==2.5.1 loguru==0.7.3 torch-einops-utils==0.2.0
ls -l .whl
