#!/usr/bin/env bash
# The GPU path, checked in a few minutes on one CUDA machine, by whichever session has one:
#   1. the test suite's cuda-marked tests (tests/train/test_cuda.py: bf16, fp16 with loss
#      scaling and fp32 training reach a sane accuracy; a mapped folder trains on the GPU);
#   2. the `fast` recipe on CUDA (Fashion-MNIST when it is on the machine, else digits):
#      wall time and test accuracy, bf16 and fp16;
#   3. warm one-image latency of the trained model on the GPU;
#   4. a 2-process NCCL run, when there are 2+ GPUs and `cnnkit train --nproc` exists.
# It prints markdown lines to paste into bench/README.md ("GPU path" section).
#
#   bash bench/gpu_check.sh            # from the repository root, with .venv set up
#   PY=python3 bash bench/gpu_check.sh # another interpreter
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
OUT=${OUT_DIR:-$(mktemp -d /tmp/cnnkit-gpu-check.XXXXXX)}
export CNNKIT_DATA=${CNNKIT_DATA:-$OUT/data}
status=0

"$PY" - <<'PY' || { echo "gpu_check: no CUDA GPU visible to torch; nothing to check"; exit 2; }
import sys
import torch
if not torch.cuda.is_available():
    sys.exit(1)
print(f"GPU: {torch.cuda.get_device_name(0)} x{torch.cuda.device_count()}, torch {torch.__version__}, "
      f"CUDA {torch.version.cuda}, bf16 {'yes' if torch.cuda.is_bf16_supported() else 'no'}")
PY

echo "== 1. cuda-marked tests"
t0=$(date +%s)
if timeout 300 "$PY" -m pytest -q -m cuda tests/train/test_cuda.py -p no:cacheprovider; then
  tests="pass"
else
  tests="FAIL"; status=1
fi
echo "- cuda tests (pytest -m cuda): $tests in $(( $(date +%s) - t0 )) s"

echo "== 2-3. fast recipe on CUDA, one-image latency"
timeout 420 "$PY" - "$OUT" <<'PY' || status=1
import sys, time
import torch
import cnnkit
from cnnkit.data import dataset_status

out = sys.argv[1]
offline = {name: ok for name, ok, _ in dataset_status()}
dataset = "fashion-mnist" if offline.get("fashion-mnist") else "digits"
rows = []
for precision in ("bf16", "fp16"):
    t0 = time.perf_counter()
    r = cnnkit.run(cnnkit.RunSpec(recipe="fast", dataset=dataset, device="cuda",
                                  precision=precision, seed=0, verbose=0,
                                  out=f"{out}/fast-{precision}", artifacts="metrics"))
    wall = time.perf_counter() - t0
    rows.append(f"- `fast` recipe on {dataset}, cuda {precision}: {wall:.1f} s wall "
                f"({sum(r.history['time']):.1f} s in epochs), test accuracy "
                f"{100 * r.metrics['test_accuracy']:.2f}%")
    print(rows[-1], flush=True)
net = r.model.net.eval()
h, w, c = r.model.input_shape
x = torch.rand(1, c, h, w, device="cuda").contiguous(memory_format=torch.channels_last)
with torch.inference_mode():
    for _ in range(50):
        net(x)
    torch.cuda.synchronize()
    times = []
    for _ in range(200):
        t0 = time.perf_counter()
        net(x)
        torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
times.sort()
print(f"- one-image latency, {r.model.name} on cuda fp32 (warm, synchronized): median "
      f"{1e3 * times[100]:.3f} ms, p90 {1e3 * times[180]:.3f} ms")
PY

echo "== 4. 2-process NCCL"
gpus=$("$PY" -c "import torch; print(torch.cuda.device_count())")
if [ "$gpus" -lt 2 ]; then
  echo "- 2-process NCCL run: skipped, $gpus GPU on this machine"
elif ! "$PY" -m cnnkit train --help 2>/dev/null | grep -q -- "--nproc"; then
  echo "- 2-process NCCL run: skipped, this cnnkit has no \`train --nproc\`"
else
  t0=$(date +%s)
  if timeout 300 "$PY" -m cnnkit train --recipe fast --dataset digits --device cuda --nproc 2 \
       --seed 0 --quiet --out "$OUT/nccl"; then
    echo "- 2-process NCCL run (\`--nproc 2 --device cuda\`, digits): ok in $(( $(date +%s) - t0 )) s, $(cat "$OUT/nccl/metrics.json" | "$PY" -c 'import json,sys; m=json.load(sys.stdin); print(f"test accuracy {100*m[\"test_accuracy\"]:.2f}%")')"
  else
    echo "- 2-process NCCL run: FAIL"; status=1
  fi
fi
echo "(run directories in $OUT)"
exit $status
