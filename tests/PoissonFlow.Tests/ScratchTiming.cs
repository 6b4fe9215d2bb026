using System.Diagnostics;
using PoissonFlow.Kernels;

namespace PoissonFlow.Tests;

public sealed class ScratchTiming
{
    [Explicit, Test]
    public void TimeKernels()
    {
        var device = TestDevice.Cpu;
        var acc = device.Accelerator;
        int rows = 256, inF = 128, outF = 128;
        using var x = acc.Allocate1D(Numerics.Uniform(new Random(1), rows * inF));
        using var w = acc.Allocate1D(Numerics.Uniform(new Random(2), outF * inF));
        using var b = acc.Allocate1D(Numerics.Uniform(new Random(3), outF));
        using var y = acc.Allocate1D<float>(rows * outF);
        using var pre = acc.Allocate1D<float>(rows * outF);
        var linear = Linear.For(device);
        var el = Elementwise.For(device);
        void Time(string what, Action a)
        {
            for (int i = 0; i < 40; i++) a();
            device.Synchronize();
            Thread.Sleep(300);
            var cpu0 = Process.GetCurrentProcess().TotalProcessorTime;
            var c = Stopwatch.StartNew();
            for (int i = 0; i < 10; i++) a();
            device.Synchronize();
            var cpu = Process.GetCurrentProcess().TotalProcessorTime - cpu0;
            TestContext.Out.WriteLine($"{what}: {c.Elapsed.TotalMilliseconds / 10:F2} ms wall {cpu.TotalMilliseconds / 10:F2} ms cpu");
        }
        Time("fill 1", () => el.Fill(b.View.SubView(0, 1), 1f));
        Time("fill 32k", () => el.Fill(y.View, 1f));
        Time("gemm fwd silu", () => linear.Forward(x.View, w.View, b.View, y.View, pre.View, rows, inF, outF, Activation.Silu));
        Time("gemm dX", () => linear.BackwardInput(y.View, w.View, x.View, pre.View, rows, inF, outF, Activation.Silu));
        Time("gemm dW", () => linear.BackwardWeights(x.View, y.View, w.View, b.View, rows, inF, outF));
    }
}
