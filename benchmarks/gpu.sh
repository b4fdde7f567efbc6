#!/usr/bin/env bash
# One prepared run for a lent GPU machine (the device tool). That machine reaches no package index: it runs the
# image's python3 and torch, and installs only the wheels carried with the working tree. Prepare them here, once:
#   pip download -d .gpu-wheels einops lightning rasterio pyyaml tqdm pillow matplotlib pytest --no-deps  (then carry .gpu-wheels)
# and run there:  bash benchmarks/gpu.sh   (timeout_s 540). Output also goes to $OUT/gpu.log. Sized for < 8 minutes;
# benchmarks/gpu.py prints each row as it is measured, so a run cut short still reports what it reached.
set -uo pipefail
OUT=${OUT:-/tmp/gpu-out}; mkdir -p "$OUT"
exec > >(tee "$OUT/gpu.log") 2>&1
SECONDS=0
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
if [ -d .gpu-wheels ]; then python3 -m pip install -q --no-index --no-deps --find-links .gpu-wheels .gpu-wheels/*.whl; fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
python3 -c "import torch, emrdm; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name())" \
  || { echo "emrdm does not import with this image's packages: carry the missing wheels in .gpu-wheels"; exit 1; }
for m in natten flash_attn; do python3 -c "import $m; print('$m', $m.__version__)" 2>/dev/null || echo "$m: not installed"; done
echo "== set-up: ${SECONDS}s"
timeout 120 python3 -m pytest tests/test_networks.py tests/test_official_checkpoints.py -q 2>&1 | tail -n 5
echo "== tests: ${SECONDS}s"
# natten / flash_attn against the pure-PyTorch paths; forward and training step in bf16, eager and compiled
timeout 300 python3 benchmarks/gpu.py --configs cuhk sen2mtc sen12mscr --batch 4
echo "== gpu.py: ${SECONDS}s"
timeout 60 python3 benchmarks/inference.py --config cuhk --size 1024 --batch 8 --device cuda
echo "== done in ${SECONDS}s"
