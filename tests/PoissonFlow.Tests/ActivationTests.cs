using PoissonFlow.Kernels;
using static PoissonFlow.Tests.FiniteDifference;

namespace PoissonFlow.Tests;

public sealed class SiluTests
{
    [TestCase(1)]
    [TestCase(1000)]
    public void ForwardAndBackwardMatchReferenceAndFiniteDifferences(int length)
    {
        var rng = new Random(length);
        // Includes large magnitudes, where exp(-x) overflows for the negative ones.
        var x = Numerics.Uniform(rng, length, -8f, 8f);
        if (length > 2)
        {
            x[0] = -120f;
            x[1] = 95f;
        }

        var dy = Numerics.Uniform(rng, length);
        var device = TestDevice.Cpu;
        using var xb = device.Accelerator.Allocate1D(x);
        using var yb = device.Accelerator.Allocate1D(Numerics.Poison(length));
        using var dyb = device.Accelerator.Allocate1D(dy);
        using var dxb = device.Accelerator.Allocate1D(Numerics.Poison(length));
        Silu.For(device).Forward(xb.View, yb.View);
        Silu.For(device).Backward(xb.View, dyb.View, dxb.View);
        // One exp, one divide and a product in float32: a few ulps relative, plus an absolute 1e-6 near zero.
        Numerics.AssertClose(yb.GetAsArray1D(), x.Select(v => Silu.Reference(v)).ToArray(), 1e-6, 1e-6, "silu");
        var dx = dxb.GetAsArray1D();
        Numerics.AssertClose(dx, x.Select((v, i) => dy[i] * Silu.DerivativeReference(v)).ToArray(), 1e-6, 1e-6, "silu backward");
        Numerics.AssertClose(dx, Gradient(v => Dot(dy.Wide(), v.Select(Silu.Reference).ToArray()), x.Wide()), 1e-5, 1e-5,
            "silu backward vs finite differences");
    }
}

public sealed class SinusoidalEmbeddingTests
{
    [TestCase(EmbeddingInput.Z, 0)]
    [TestCase(EmbeddingInput.Z, 2)]
    [TestCase(EmbeddingInput.LogZ, 3)]
    public void ConcatMatchesSpecReference(EmbeddingInput input, int dim)
    {
        const int batch = 9, size = 64;
        var rng = new Random(dim + 17);
        var points = Numerics.Uniform(rng, batch * dim, -3f, 3f);
        // z over PFGM's range, 1e-5 .. a few hundred.
        var z = Enumerable.Range(0, batch).Select(i => (float)Math.Pow(10, -5 + 7.5 * rng.NextDouble())).ToArray();
        var device = TestDevice.Cpu;
        using var pb = device.Accelerator.Allocate1D(dim > 0 ? points : [0f]);
        using var zb = device.Accelerator.Allocate1D(z);
        using var ob = device.Accelerator.Allocate1D(Numerics.Poison(batch * (dim + size)));
        SinusoidalEmbedding.For(device).Concat(dim > 0 ? pb.View : default, zb.View, ob.View, batch, dim, size, input);
        var expected = SinusoidalEmbedding.Reference(points.Wide(), z.Wide(), batch, dim, size, input);
        // sin/cos of an angle up to ~300 rad computed in float32: the angle's relative error (~2e-7 from exp and the
        // product) times 300 gives ~1e-4 absolute.
        Numerics.AssertClose(ob.GetAsArray1D(), expected, 0, 2e-4, "embedding");
    }

    [Test]
    public void FirstFrequencyIsOneAndLastIsOneOverTenThousand()
    {
        // The spec's w_k: w_0 = 1 and w_{half-1} = 1e-4, so for z = 1 the first sine is sin(1).
        var e = SinusoidalEmbedding.Reference([], [1.0], 1, 0, 8, EmbeddingInput.Z);
        Assert.Multiple(() =>
        {
            Assert.That(e[0], Is.EqualTo(Math.Sin(1.0)).Within(1e-15));
            Assert.That(e[3], Is.EqualTo(Math.Sin(1e-4)).Within(1e-15));
            Assert.That(e[4], Is.EqualTo(Math.Cos(1.0)).Within(1e-15));
        });
    }

    [Test]
    public void RejectsOddOrTinySizes() =>
        Assert.That(() => SinusoidalEmbedding.Reference([], [1.0], 1, 0, 2), Throws.ArgumentException.With.Message.Contains("embedding size"));
}

public sealed class FieldLossTests
{
    [TestCase(false, 1f)]
    [TestCase(true, 1f)]
    [TestCase(false, 0.25f)]
    public void LossAndGradientMatchReferenceAndFiniteDifferences(bool reduceMean, float weight)
    {
        const int batch = 11, width = 3;
        var rng = new Random(reduceMean ? 1 : 2);
        var pred = Numerics.Uniform(rng, batch * width, -2f, 2f);
        var target = Numerics.Uniform(rng, batch * width, -2f, 2f);
        var rowStart = Numerics.Uniform(rng, batch);
        var device = TestDevice.Cpu;
        using var pb = device.Accelerator.Allocate1D(pred);
        using var tb = device.Accelerator.Allocate1D(target);
        using var gb = device.Accelerator.Allocate1D(Numerics.Poison(batch * width));
        using var rb = device.Accelerator.Allocate1D(rowStart);
        FieldLoss.For(device).ForwardBackward(pb.View, tb.View, gb.View, rb.View, batch, width, reduceMean, weight);
        // Row losses accumulate: subtract the start values, then their sum is the (weighted) batch loss.
        double loss = rb.GetAsArray1D().Select((v, i) => (double)v - rowStart[i]).Sum();
        double expected = weight * FieldLoss.Reference(pred.Wide(), target.Wide(), batch, width, reduceMean);
        // A handful of float32 operations per row, then one float32 add to a start value of size ~1: ~1e-6 relative.
        Assert.That(loss, Is.EqualTo(expected).Within(1e-5 * Math.Max(1, Math.Abs(expected))));
        var gradient = gb.GetAsArray1D();
        Numerics.AssertClose(gradient, FieldLoss.GradientReference(pred.Wide(), target.Wide(), batch, width, reduceMean).Select(v => v * weight).ToArray(),
            1e-6, 1e-7, "dPred");
        var fd = Gradient(p => weight * FieldLoss.Reference(p, target.Wide(), batch, width, reduceMean), pred.Wide());
        Numerics.AssertClose(gradient, fd, 1e-5, 1e-7, "dPred vs finite differences");
    }
}
