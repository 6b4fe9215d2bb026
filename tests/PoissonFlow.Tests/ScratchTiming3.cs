using System.Diagnostics;
using ILGPU.Runtime.CPU;
using PoissonFlow.Kernels;

namespace PoissonFlow.Tests;

public static class ScratchKernels
{
    public static void FillInt(ArrayView<float> target, float value)
    {
        int n = (int)target.Length;
        int stride = Grid.DimX * Group.DimX;
        for (int i = Grid.GlobalIndex.X; i < n; i += stride) target[i] = value;
    }

    public static void FillLong(ArrayView<float> target, float value)
    {
        for (long i = Grid.GlobalIndex.X; i < target.Length; i += Grid.DimX * Group.DimX) target[i] = value;
    }
}

public sealed class ScratchTiming3
{
    [Explicit, Test]
    public void IntVersusLong()
    {
        using var ctx = Context.Create(b => b.CPU(new CPUDevice(32, 8, 2)).Optimize(OptimizationLevel.O1));
        using var acc = ctx.CreateCPUAccelerator(0, CPUAcceleratorMode.Parallel);
        var fi = acc.LoadKernel<ArrayView<float>, float>(ScratchKernels.FillInt);
        var fl = acc.LoadKernel<ArrayView<float>, float>(ScratchKernels.FillLong);
        using var buf = acc.Allocate1D<float>(1 << 20);
        var cfg = new KernelConfig(2, 4);
        foreach (var (name, k) in new[] { ("int", fi), ("long", fl), ("int", fi), ("long", fl) })
        {
            k(acc.DefaultStream, cfg, buf.View, 1f); acc.Synchronize();
            var cpu0 = Process.GetCurrentProcess().TotalProcessorTime;
            var c = Stopwatch.StartNew();
            for (int i = 0; i < 5; i++) k(acc.DefaultStream, cfg, buf.View, 1f);
            acc.Synchronize();
            var cpu = Process.GetCurrentProcess().TotalProcessorTime - cpu0;
            TestContext.Out.WriteLine($"{name} fill 1M: {c.Elapsed.TotalMilliseconds / 5:F2} ms wall, {cpu.TotalMilliseconds / 5:F2} ms cpu");
        }
    }
}
