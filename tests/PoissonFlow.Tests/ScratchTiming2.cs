using System.Diagnostics;
using ILGPU.Runtime.CPU;
using PoissonFlow.Kernels;

namespace PoissonFlow.Tests;

public sealed class ScratchTiming2
{
    [Explicit]
    [TestCase(32, 8, 1)]

    public void LaunchCost(int warp, int warps, int groupSize)
    {
        using var ctx = Context.Create(b => b.CPU(new CPUDevice(warp, warps, 2)).Optimize(OptimizationLevel.O1));
        using var acc = ctx.CreateCPUAccelerator(0, CPUAcceleratorMode.Parallel);
        var fill = acc.LoadKernel<ArrayView<float>, float>(Elementwise.FillKernel);
        using var buf = acc.Allocate1D<float>(32768);
        var cfg = new KernelConfig(2, groupSize);
        void Time(string what, ArrayView<float> v)
        {
            fill(acc.DefaultStream, cfg, v, 1f); acc.Synchronize();
            var cpu0 = Process.GetCurrentProcess().TotalProcessorTime;
            var c = Stopwatch.StartNew();
            for (int i = 0; i < 20; i++) fill(acc.DefaultStream, cfg, v, 1f);
            acc.Synchronize();
            var cpu = Process.GetCurrentProcess().TotalProcessorTime - cpu0;
            TestContext.Out.WriteLine($"cpu({warp},{warps}) group {groupSize} {what}: {c.Elapsed.TotalMilliseconds / 20:F2} ms wall, {cpu.TotalMilliseconds / 20:F2} ms cpu");
        }
        Time("fill 1", buf.View.SubView(0, 1));
        Time("fill 32k", buf.View);
        var gemm = acc.LoadKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, GemmArgs>(Linear.CoarseKernel);
        using var x = acc.Allocate1D(Numerics.Uniform(new Random(1), 256 * 128));
        using var w = acc.Allocate1D(Numerics.Uniform(new Random(2), 128 * 128));
        using var y = acc.Allocate1D<float>(256 * 128);
        var args = new GemmArgs(256, 128, 128, 128, 1, 1, 128, 0);
        gemm(acc.DefaultStream, cfg, x.View, w.View, y.View, default, default, args); acc.Synchronize();
        var cpu0 = Process.GetCurrentProcess().TotalProcessorTime;
        var c = Stopwatch.StartNew();
        for (int i = 0; i < 5; i++) gemm(acc.DefaultStream, cfg, x.View, w.View, y.View, default, default, args);
        acc.Synchronize();
        var cpu = Process.GetCurrentProcess().TotalProcessorTime - cpu0;
        var cpu1 = Process.GetCurrentProcess().TotalProcessorTime;
        acc.Synchronize();
        var cpu88 = Process.GetCurrentProcess().TotalProcessorTime - cpu1;
        TestContext.Out.WriteLine($"group {groupSize} gemm 256x128x128: {c.Elapsed.TotalMilliseconds / 5:F2} ms wall, {cpu.TotalMilliseconds / 5:F2} ms cpu, {2.0*256*128*128/(cpu.TotalMilliseconds/5)/1e6:F2} GFLOP/s-cpu");
    }
}
