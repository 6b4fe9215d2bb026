#!/usr/bin/env bash
# Publishes the sample app (against freshly packed PoissonFlow packages) and its TorchSharp twin, framework-dependent
# and self-contained for linux-x64, prints their sizes, trains a 2-D model with the default network and times each
# app's cold start (process launch to the first samples written) N times. Nothing is installed outside a temporary
# folder. Usage: bench/embed/measure.sh [RUNS]   (from the repository root)
set -euo pipefail
cd "$(dirname "$0")/../.."
runs=${1:-5}
tmp=$(mktemp -d /tmp/pfgm-embed-XXXXXX)
version=0.0.0-measure.$(date -u +%Y%m%d%H%M%S)
export MSBUILDDISABLENODEREUSE=1 DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1
cache=${NUGET_PACKAGES:-$HOME/.nuget/packages}
cat > "$tmp/NuGet.config" <<XML
<configuration>
  <packageSources><add key="local-feed" value="$tmp/feed" /></packageSources>
  <config><add key="globalPackagesFolder" value="$tmp/packages" /></config>
  <fallbackPackageFolders><add key="machine" value="$cache" /></fallbackPackageFolders>
</configuration>
XML
dotnet pack PoissonFlow.Packages.slnf -c Release -p:Version="$version" -p:PackageOutputPath="$tmp/feed" \
  -p:UseArtifactsOutput=true -p:ArtifactsPath="$tmp/artifacts" >"$tmp/pack.log"
mkdir -p "$tmp/app" && cp samples/PoissonFlow.SampleApp/{PoissonFlow.SampleApp.csproj,Program.cs} "$tmp/app/"
for mode in fd sc; do
  sc=false; [ $mode = sc ] && sc=true
  dotnet publish "$tmp/app" -c Release -r linux-x64 --self-contained $sc -p:PoissonFlowVersion="$version" -o "$tmp/pfgm-$mode" >"$tmp/publish-pfgm-$mode.log"
  dotnet publish bench/TorchSampleApp -c Release -r linux-x64 --self-contained $sc -p:UseArtifactsOutput=true \
    -p:ArtifactsPath="$tmp/torch-artifacts-$mode" -o "$tmp/torch-$mode" >"$tmp/publish-torch-$mode.log"
done
echo "published size (MiB, du --apparent-size):"
for d in pfgm-fd pfgm-sc torch-fd torch-sc; do
  printf '  %-9s %8.1f MiB  %5d files\n' $d "$(du -sb --apparent-size "$tmp/$d" | awk '{print $1/1048576}')" "$(find "$tmp/$d" -type f | wc -l)"
done

# A checkpoint with the default 2-D network (the weights' quality does not matter for the timing).
dotnet src/Cli/bin/Release/net10.0/pfgm.dll train --data moons --out "$tmp/run" --steps 20 --device cpu >"$tmp/train.log"
model="$tmp/run/model.safetensors"
for count in 1 1000; do
  for app in pfgm-fd torch-fd; do
    program="$tmp/$app/PoissonFlow.SampleApp"; [ $app = torch-fd ] && program="$tmp/$app/PoissonFlow.TorchSampleApp"
    times=()
    for ((i = 0; i < runs; i++)); do
      start=$(date +%s.%N); "$program" "$model" "$tmp/$app.npy" $count >/dev/null; end=$(date +%s.%N)
      times+=("$(echo "$end - $start" | bc)")
    done
    printf '  cold start, %4d samples, %-8s: %s s (median of %d: %s s)\n' $count $app "${times[*]}" $runs \
      "$(printf '%s\n' "${times[@]}" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')"
  done
done
echo "logs and outputs: $tmp"
