#!/usr/bin/env bash
# bench/device/run-field-bench.sh - run ON THE GPU MACHINE from the repository root, with .devicepack/ carried
# (made by bench/device/pack.sh here). Builds nothing. In order, each with its own time limit:
#   1. the CUDA tests of tests/PoissonFlow.Tests (Category Cuda), on the carried .NET runtime;
#   2. the field benchmark (BenchmarkDotNet): our fused kernel on CUDA vs the plain C# loop on this machine's cores,
#      at 128x1024x784, 128x4096x3072 and 256x60000x784;
#   3. PyTorch on the same GPU (the machine's own Python): the tuned and the official formula, TF32 off and on.
# Full logs go under $OUT; a short summary is printed last. Exit status: non-zero if any step failed.
# For a smoke test on a machine without a GPU: DEVICEPACK_CUDA=auto PFGM_BENCH_DEVICE=cpu FIELD_BENCH_FILTER='*CSharpLoop*'.
set -uo pipefail
ROOT=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/../.." && pwd -P)
PACK=$ROOT/.devicepack
OUT=${OUT:-$ROOT/device-out}
mkdir -p -- "$OUT"
[[ -f $PACK/devicepack.manifest && -f $PACK/tests.tar.xz ]] || { echo "no .devicepack: run bench/device/pack.sh first and carry it" >&2; exit 125; }
export DEVICEPACK_CUDA=${DEVICEPACK_CUDA:-require} DEVICEPACK_DIR=${DEVICEPACK_DIR:-/tmp/dotnet-devicepack}
status=0

{ date -u; uname -a; nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv 2>&1; nproc; } >"$OUT/machine.txt"

# 1. CUDA tests. Unpack the runtime through the launcher, then run the test app on it. (The app finds
#    libcuda.so.1 itself: ComputeDevice installs a resolver for it.)
env_lines=$(DEVICEPACK_UNPACK_ONLY=1 bash "$PACK/run-on-device.sh" 2>"$OUT/unpack.log") || { cat "$OUT/unpack.log"; exit 125; }
DOTNET_ROOT=$(sed -n 's/^DOTNET_ROOT=//p' <<<"$env_lines")
TESTS_DIR=$DEVICEPACK_DIR/tests-$(sha256sum "$PACK/tests.tar.xz" | cut -c1-16)
if [[ ! -f $TESTS_DIR/PoissonFlow.Tests.dll ]]; then
  mkdir -p -- "$TESTS_DIR.partial" && xz -dc "$PACK/tests.tar.xz" | tar -xf - -C "$TESTS_DIR.partial" && mv -T -- "$TESTS_DIR.partial" "$TESTS_DIR"
fi
DOTNET_ROOT=$DOTNET_ROOT DOTNET_SYSTEM_GLOBALIZATION_INVARIANT=1 timeout 150 \
  "$DOTNET_ROOT/dotnet" "$TESTS_DIR/PoissonFlow.Tests.dll" --filter "TestCategory=Cuda" --no-ansi >"$OUT/cuda-tests.log" 2>&1
rc_tests=$?; ((rc_tests == 0)) || status=1

# 2. Field benchmark on CUDA (the ratios are to the C# loop: TorchSharp has no CUDA build for Linux on NuGet).
(cd "$OUT" && PFGM_BENCH_DEVICE=${PFGM_BENCH_DEVICE:-cuda} timeout 300 \
   bash "$PACK/run-on-device.sh" --filter "${FIELD_BENCH_FILTER:-*Field*}" --artifacts "$OUT/bdn") \
  >"$OUT/field-bench.log" 2>&1
rc_bench=$?; ((rc_bench == 0)) || status=1

# 3. PyTorch on the same GPU, if this machine's Python has it.
timeout 120 python3 "$ROOT/bench/device/torch_field_cuda.py" >"$OUT/torch-cuda.md" 2>"$OUT/torch-cuda.log"
rc_torch=$?

echo "== machine";     cat "$OUT/machine.txt"
echo "== CUDA tests (exit $rc_tests)"; grep -E '^(failed|skipped|passed)|total:|failed:|succeeded:|skipped:' "$OUT/cuda-tests.log" | tail -n 12
echo "== field benchmark (exit $rc_bench)"; grep -E '^// (FusedKernel|CSharpLoop).*error|^// Note' "$OUT/field-bench.log"
cat "$OUT"/bdn/results/*-report-github.md 2>/dev/null || tail -n 20 "$OUT/field-bench.log"
echo "== PyTorch CUDA (exit $rc_torch)"; cat "$OUT/torch-cuda.md"; tail -n 3 "$OUT/torch-cuda.log"
exit "$status"
