#!/usr/bin/env bash
# The device check for a GPU machine (the `device` tool's H200 here): build, then
# `jaxconv bench` with PyTorch on the same GPU, then the test suite, everything
# logged under $OUT. The image there has jax[cuda], torch, pytest, hypothesis, optax,
# orbax, scikit-learn; nothing can be downloaded, so the install takes no index.
#   bash experiments/gpu_check.sh [bench_seconds] [test_seconds] [pytest args...]
set -uo pipefail
OUT=${OUT:-/tmp/gpu_check}; mkdir -p "$OUT"
bench_s=${1:-200}; test_s=${2:-270}; shift 2 || true
export PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false JAXCONV_REQUIRE_TORCH=1
{ nvidia-smi -L; lscpu | grep -m1 "Model name"; python3 --version; } 2>&1 | tee "$OUT/env.txt"
python3 -m pip install -q --no-deps --no-build-isolation --no-index -e . 2>&1 | tail -3
python3 - <<'PY' 2>&1 | tee -a "$OUT/env.txt"
import jax, torch, jaxconv
from jaxconv import _native
print("jax", jax.__version__, jax.devices(), "| torch", torch.__version__,
      torch.cuda.is_available(), "| native built:", _native.available())
PY
timeout "$bench_s" python3 experiments/bench_ops.py --repeats 9 > "$OUT/bench.log" 2>&1
echo "bench rc=$?"; cp experiments/results/bench_ops_gpu.* "$OUT/" 2>/dev/null
tail -5 "$OUT/bench.log"
timeout -s INT "$test_s" python3 -m pytest -q -n 8 -rfE -p no:cacheprovider "$@" \
    > "$OUT/tests.log" 2>&1
echo "tests rc=$?"; tail -60 "$OUT/tests.log"
