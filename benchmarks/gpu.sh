#!/usr/bin/env bash
# One prepared run for a lent GPU machine (device tool): install, check the GPU paths, then measure. Everything it
# prints goes to $OUT/gpu.log as well. Sized to finish in under 8 minutes on one H200, leaving time to rerun.
#   run: bash benchmarks/gpu.sh      (timeout_s 540)
set -uo pipefail
OUT=${OUT:-/tmp/gpu-out}; mkdir -p "$OUT"
exec > >(tee "$OUT/gpu.log") 2>&1
SECONDS=0
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
python3 -m venv .venv-gpu && . .venv-gpu/bin/activate
pip install -q --upgrade pip && pip install -q -e '.[dev]' || { echo "install failed"; exit 1; }
python -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name())"
echo "== install: ${SECONDS}s"
timeout 120 python -m pytest tests -q -x -k "gpu or cuda or network" 2>&1 | tail -n 5
echo "== tests: ${SECONDS}s"
timeout 150 python benchmarks/network.py --configs cuhk sen12mscr sen2mtc --dtype bf16 --repeats 3
echo "== network bf16: ${SECONDS}s"
timeout 90 python benchmarks/train.py --configs cuhk sen2mtc --repeats 3
echo "== train: ${SECONDS}s"
timeout 60 python benchmarks/inference.py --config cuhk --size 1024 --batch 8 --device cuda
echo "== done in ${SECONDS}s"
