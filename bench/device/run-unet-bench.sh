#!/usr/bin/env bash
# bench/device/run-unet-bench.sh - run ON THE GPU MACHINE from the repository root, with .devicepack/ carried (made by
# bench/device/pack.sh here: it packs bench/PoissonFlow.Bench without TorchSharp). Builds nothing. In order:
#   1. UNetStepBenchmarks on CUDA: our U-Net training step and forward pass (tiny preset, 28x28x1, the batches of
#      UNetStepBenchmarks.Cases); without TorchSharp in the pack, these rows have no baseline;
#   2. bench/device/torch_unet_cuda.py: the same architecture in PyTorch eager FP32 on the same GPU (TF32 off and on),
#      the stand-in for TorchSharp-CUDA, which NuGet does not serve for Linux.
# Full logs go under $OUT; a summary is printed last. Exit status: non-zero if either step failed.
# Device run: carry [".devicepack"], command "bash bench/device/run-unet-bench.sh", timeout_s 420.
# Smoke test without a GPU (step 2 then reports no CUDA): DEVICEPACK_CUDA=auto PFGM_BENCH_DEVICE=cpu UNET_BENCH_FILTER='*UNetStep*OurForward*'.
set -uo pipefail
ROOT=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/../.." && pwd -P)
PACK=$ROOT/.devicepack
OUT=${OUT:-$ROOT/device-out}
mkdir -p -- "$OUT"
[[ -f $PACK/devicepack.manifest ]] || { echo "no .devicepack: run bench/device/pack.sh first and carry it" >&2; exit 125; }
export DEVICEPACK_CUDA=${DEVICEPACK_CUDA:-require} DEVICEPACK_DIR=${DEVICEPACK_DIR:-/tmp/dotnet-devicepack}
status=0

{ date -u; uname -a; nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv 2>&1; nproc; } >"$OUT/machine.txt"

# 1. Ours on CUDA (kernel compilation happens in the setup and warm-up, outside the measured iterations).
(cd "$OUT" && PFGM_BENCH_DEVICE=${PFGM_BENCH_DEVICE:-cuda} timeout 240 \
   bash "$PACK/run-on-device.sh" --filter "${UNET_BENCH_FILTER:-*UNetStep*}" --artifacts "$OUT/bdn") \
  >"$OUT/unet-bench.log" 2>&1
rc_bench=$?; ((rc_bench == 0)) || status=1

# 2. PyTorch eager FP32 on the same GPU.
PYTHONUNBUFFERED=1 timeout 150 python3 "$ROOT/bench/device/torch_unet_cuda.py" --batches "${UNET_TORCH_BATCHES:-8,64}" \
  >"$OUT/torch-unet-cuda.md" 2>"$OUT/torch-unet-cuda.log"
rc_torch=$?; ((rc_torch == 0)) || status=1

echo "== machine"; cat "$OUT/machine.txt"
echo "== our U-Net on CUDA (exit $rc_bench)"
cat "$OUT"/bdn/results/*UNetStep*-report-github.md 2>/dev/null || tail -n 30 "$OUT/unet-bench.log"
echo "== PyTorch eager FP32 on CUDA (exit $rc_torch)"; cat "$OUT/torch-unet-cuda.md"; tail -n 6 "$OUT/torch-unet-cuda.log"
exit "$status"
