#!/usr/bin/env bash
# Prepare a GPU session on a rented machine that has PyTorch, timm and Lightning but nothing else of ours and no
# network (the workplace's `device` tool; any air-gapped GPU box works the same way). Run here, in the repo root:
#
#   bash scripts/device_prepare.sh            # fills .whl/ and .data/ (both git-ignored locally)
#   # then, on the GPU machine, with .whl and .data carried along:
#   bash scripts/device_run.sh
#
# .whl/  wheels (CPython 3.12, manylinux x86-64) of the packages such an image lacks: pydantic (+ its core,
#        annotated-types, typing-inspection, typing-extensions), kornia (+ kornia-rs). faiss is left out (19 MB):
#        without it the k-NN probe runs the same exact search in torch on the GPU.
# .data/ a copy of imagenette64 (38 MB) and GIT_SHA, the commit the records will name.
set -euo pipefail
cd "$(git rev-parse --show-toplevel)"
PY=${PY:-3.12}
DATA=${BENCH_DATA_ROOT:-../shared/datasets}/imagenette64
for p in /.whl/ /.data/; do grep -qxF "$p" .git/info/exclude 2>/dev/null || echo "$p" >> .git/info/exclude; done
rm -rf .whl && mkdir -p .whl .data
python3 -m pip download -q --no-deps --only-binary=:all: --python-version "$PY" --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl \
  pydantic pydantic_core annotated_types typing_inspection typing_extensions kornia kornia_rs
[ -d "$DATA" ] || { echo "error: no imagenette64 at $DATA (set BENCH_DATA_ROOT)" >&2; exit 2; }
rm -rf .data/imagenette64 && cp -r "$DATA" .data/imagenette64
echo "$(git rev-parse HEAD)$([ -n "$(git status --porcelain)" ] && echo -dirty)" > .data/GIT_SHA
du -sh --apparent-size .whl .data
echo "ready: carry .whl and .data; run: bash scripts/device_run.sh"
