#!/usr/bin/env bash
# One GPU session (see scripts/device_prepare.sh): install the carried wheels, measure the harness on the GPU,
# train + probe + record what the CPU machines cannot (imagenette64-v1's missing reference seeds, then DINO and
# I-JEPA for LONG_EPOCHS), and pack everything into $OUT/device.tgz: results/ and leaderboards/ to commit,
# run.json + CSV logs of every run (the perf JSONs and log.txt come back beside it). Budget each part with REF_S / LONG_S (seconds; a part cut by its
# timeout loses only its unfinished run). SKIP_WHEELS=1 uses the packages already importable (a CPU dry run).
set -uo pipefail
OUT=${OUT:-/tmp/device-out}; mkdir -p "$OUT"
exec > >(tee "$OUT/log.txt") 2>&1
if [ -z "${SKIP_WHEELS:-}" ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$PWD
fi
export PYTHONUNBUFFERED=1 BENCH_DATA_ROOT=$PWD/.data BENCH_CACHE_DIR=${BENCH_CACHE_DIR:-/tmp/bench-cache}
export BENCH_GIT_SHA=$(cat .data/GIT_SHA 2>/dev/null)
PYTHON=${PYTHON:-python3}
BENCH="$PYTHON -m bench.cli"   # `timeout` runs programs, not shell functions
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null || echo "no nvidia-smi"
"$PYTHON" -c "import torch, timm, lightning; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), 'timm', timm.__version__, 'lightning', lightning.__version__)"
t0=$(date +%s)
timeout "${PERF_S:-90}" $BENCH perf ${PERF_ARGS:---only train,data,probe} --out "$OUT/perf.json"
for m in ${PERF_METHODS-dino ijepa}; do timeout "${PERF_S:-90}" $BENCH perf --only train --method "$m" --out "$OUT/perf-$m.json"; done
echo "perf: $(( $(date +%s) - t0 )) s"; t0=$(date +%s)
timeout -s TERM "${REF_S:-300}" $BENCH reference "${BENCHMARK:-imagenette64-v1}" --seeds "${SEEDS:-2}" --no-progress
echo "reference: $(( $(date +%s) - t0 )) s"; t0=$(date +%s)
for r in ${LONG_RECIPES-ibot ijepa}; do
  timeout -s TERM "${LONG_S:-120}" $BENCH run --recipe "$r" --epochs "${LONG_EPOCHS:-100}" --seed 0 --no-progress \
    --benchmark "${BENCHMARK:-imagenette64-v1}"
done
echo "long runs: $(( $(date +%s) - t0 )) s"
$BENCH leaderboard "${BENCHMARK:-imagenette64-v1}" --format md csv tex html > /dev/null
tar czf "$OUT/device.tgz" results leaderboards $(ls -d runs/*/*/run.json runs/*/*/logs 2>/dev/null)
ls -la "$OUT"
