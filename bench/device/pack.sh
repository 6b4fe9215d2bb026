#!/usr/bin/env bash
# bench/device/pack.sh - run HERE (the dev machine, with the .NET SDK) before a device run. Writes .devicepack/
# (git-ignored) for bench/device/run-field-bench.sh on the GPU machine, which has no .NET and no network:
#   .devicepack/{dotnet-runtime,app}.tar.xz, manifest, run-on-device.sh  the field benchmark without TorchSharp
#                                                                         (libtorch is ~500 MB: over the carry limit)
#   .devicepack/tests.tar.xz   tests/PoissonFlow.Tests as a self-running Microsoft.Testing.Platform app, run there
#                              on the same carried runtime ('dotnet test' needs the SDK)
# Then: device run, carry [".devicepack"], command "bash bench/device/run-field-bench.sh".
set -euo pipefail
ROOT=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/../.." && pwd -P)
TOOLS=${DEVICEPACK_TOOLS:-}
if [[ -z $TOOLS ]]; then
  for d in "$ROOT/shared/device" "$ROOT/../shared/device" "$ROOT/../../shared/device"; do
    [[ -f $d/pack-for-device.sh ]] && { TOOLS=$d; break; }
  done
fi
[[ -n $TOOLS ]] || { echo "pack.sh: no shared/device/pack-for-device.sh found (set DEVICEPACK_TOOLS)" >&2; exit 1; }
OUTDIR=$ROOT/.devicepack
grep -qxF '/.devicepack/' "$ROOT/.gitignore" || { echo "pack.sh: /.devicepack/ must be git-ignored" >&2; exit 1; }

bash "$TOOLS/pack-for-device.sh" "$ROOT/bench/PoissonFlow.Bench" "$OUTDIR" -- -p:BenchTorch=false

stage=$(mktemp -d "${TMPDIR:-/tmp}/pf-tests.XXXXXX")
trap 'rm -rf -- "$stage"' EXIT
echo "pack.sh: publishing tests/PoissonFlow.Tests as a test app ..." >&2
if ! dotnet publish "$ROOT/tests/PoissonFlow.Tests" -c Release -r linux-x64 --self-contained false --nologo \
     -p:EnableNUnitRunner=true -p:PublishTrimmed=false -o "$stage/tests" >"$stage/publish.log" 2>&1; then
  tail -n 30 "$stage/publish.log" >&2; exit 1
fi
# The code-coverage collector (32 MB) is never used there.
tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 --exclude=./Microsoft.CodeCoverage \
    -C "$stage/tests" -cf - . | xz -6 -T2 -c >"$OUTDIR/tests.tar.xz"

total=$(du -cb "$OUTDIR"/* | tail -n1 | cut -f1)
ls -l "$OUTDIR" >&2
echo "pack.sh: .devicepack is $((total / 1048576)) MiB (carry limit 64 MiB)" >&2
((total < 60 * 1048576)) || { echo "pack.sh: too large to carry" >&2; exit 1; }
