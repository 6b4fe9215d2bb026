using PoissonFlow.Kernels;
using static PoissonFlow.Tests.FiniteDifference;

namespace PoissonFlow.Tests;

/// <summary>
/// Both GEMM kernels (tiled: the CUDA one, run here on the CPU emulator; coarse: the CPU one) against the float64
/// reference and against finite differences. Shapes are small, odd and not multiples of the 4x4 or 64x64 blocks so
/// every edge path runs.
/// </summary>
public sealed class LinearTests
{
    // Forward: a dot product of K <= 70 float32 terms of size ~1: error ~ sqrt(K) * 6e-8 * sum|terms| < 1e-5.
    private const double Tolerance = 2e-5;

    [TestCase(GemmVariant.Coarse, 7, 13, 5, Activation.None, true)]
    [TestCase(GemmVariant.Coarse, 37, 66, 70, Activation.Silu, true)]
    [TestCase(GemmVariant.Coarse, 5, 16, 3, Activation.Silu, false)]
    [TestCase(GemmVariant.Tiled, 7, 13, 5, Activation.None, true)]
    [TestCase(GemmVariant.Tiled, 70, 37, 67, Activation.Silu, true)]
    public void ForwardMatchesFloat64Reference(GemmVariant variant, int rows, int inF, int outF, Activation activation, bool withBias)
    {
        var rng = new Random(rows * 1000 + inF);
        var x = Numerics.Uniform(rng, rows * inF);
        var w = Numerics.Uniform(rng, outF * inF);
        var b = withBias ? Numerics.Uniform(rng, outF) : [];
        var device = TestDevice.Cpu;
        var linear = Linear.For(device);
        linear.Variant = variant;
        using var xb = device.Accelerator.Allocate1D(x);
        using var wb = device.Accelerator.Allocate1D(w);
        using var bb = device.Accelerator.Allocate1D(withBias ? b : [0f]);
        using var yb = device.Accelerator.Allocate1D(Numerics.Poison(rows * outF));
        using var pb = device.Accelerator.Allocate1D(Numerics.Poison(rows * outF));
        linear.Forward(xb.View, wb.View, withBias ? bb.View : default, yb.View, activation == Activation.Silu ? pb.View : default,
            rows, inF, outF, activation);
        var expected = Linear.ForwardReference(x.Wide(), w.Wide(), b.Wide(), rows, inF, outF, activation, out var pre);
        Numerics.AssertClose(yb.GetAsArray1D(), expected, Tolerance, Tolerance, $"{variant} forward");
        if (activation == Activation.Silu) Numerics.AssertClose(pb.GetAsArray1D(), pre, Tolerance, Tolerance, $"{variant} pre-activation");
        linear.Variant = GemmVariant.Auto;
    }

    [TestCase(GemmVariant.Coarse, 5, 9, 6, false)]
    [TestCase(GemmVariant.Coarse, 33, 18, 7, true)]
    [TestCase(GemmVariant.Tiled, 5, 9, 6, true)]
    [TestCase(GemmVariant.Tiled, 21, 70, 3, true)]
    public void BackwardMatchesReferenceAndFiniteDifferences(GemmVariant variant, int rows, int inF, int outF, bool siluInput)
    {
        var rng = new Random(rows * 7 + outF);
        // With siluInput the layer's input is silu(p); the gradient asked for is then with respect to p.
        var p = Numerics.Uniform(rng, rows * inF, -2f, 2f);
        var x = siluInput ? p.Select(v => (float)Silu.Reference(v)).ToArray() : p;
        var w = Numerics.Uniform(rng, outF * inF);
        var b = Numerics.Uniform(rng, outF);
        var dy = Numerics.Uniform(rng, rows * outF);
        var dwStart = Numerics.Uniform(rng, outF * inF);
        var dbStart = Numerics.Uniform(rng, outF);
        var device = TestDevice.Cpu;
        var linear = Linear.For(device);
        linear.Variant = variant;
        using var pb = device.Accelerator.Allocate1D(p);
        using var xb = device.Accelerator.Allocate1D(x);
        using var wb = device.Accelerator.Allocate1D(w);
        using var dyb = device.Accelerator.Allocate1D(dy);
        using var dxb = device.Accelerator.Allocate1D(Numerics.Poison(rows * inF));
        using var dwb = device.Accelerator.Allocate1D(dwStart);
        using var dbb = device.Accelerator.Allocate1D(dbStart);
        linear.BackwardInput(dyb.View, wb.View, dxb.View, siluInput ? pb.View : default, rows, inF, outF, siluInput ? Activation.Silu : Activation.None);
        linear.BackwardWeights(xb.View, dyb.View, dwb.View, dbb.View, rows, inF, outF);
        linear.Variant = GemmVariant.Auto;
        var dx = dxb.GetAsArray1D();
        var dw = dwb.GetAsArray1D().Select((v, i) => v - dwStart[i]).ToArray();   // parameter gradients accumulate
        var db = dbb.GetAsArray1D().Select((v, i) => v - dbStart[i]).ToArray();

        var (rdx, rdw, rdb) = Linear.BackwardReference(x.Wide(), w.Wide(), dy.Wide(), siluInput ? p.Wide() : [], rows, inF, outF);
        // Sums of <= 70 float32 products of size ~1, plus (for dW, db) one subtraction of the start value ~1: ~1e-6.
        Numerics.AssertClose(dx, rdx, Tolerance, Tolerance, $"{variant} dX");
        Numerics.AssertClose(dw, rdw, Tolerance, Tolerance, $"{variant} dW");
        Numerics.AssertClose(db, rdb, Tolerance, Tolerance, $"{variant} db");

        // The same gradients from finite differences of L = sum dY * (act(p) W^T + b) on the float64 forward.
        double Loss(double[] pp, double[] ww, double[] bb)
        {
            var input = siluInput ? pp.Select(Silu.Reference).ToArray() : pp;
            return Dot(dy.Wide(), Linear.ForwardReference(input, ww, bb, rows, inF, outF, Activation.None, out _));
        }

        var pw = p.Wide();
        var ww = w.Wide();
        var bw = b.Wide();
        // Float32 kernel vs exact derivative: the same ~1e-6 error; the FD error is ~1e-10 (see FiniteDifference).
        Numerics.AssertClose(dx, Gradient(v => Loss(v, ww, bw), pw), 5e-5, 5e-5, $"{variant} dX vs finite differences");
        Numerics.AssertClose(dw, Gradient(v => Loss(pw, v, bw), ww), 5e-5, 5e-5, $"{variant} dW vs finite differences");
        Numerics.AssertClose(db, Gradient(v => Loss(pw, ww, v), bw), 5e-5, 5e-5, $"{variant} db vs finite differences");
    }

    [Test]
    public void RejectsViewsTooShortForTheShape()
    {
        var device = TestDevice.Cpu;
        using var small = device.Accelerator.Allocate1D<float>(4);
        var error = Assert.Throws<ArgumentException>(() =>
            Linear.For(device).Forward(small.View, small.View, default, small.View, default, 3, 3, 3, Activation.None));
        Assert.That(error!.Message, Does.Contain("input"));
    }
}
