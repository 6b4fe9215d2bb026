using PoissonFlow.Kernels.Image;

namespace PoissonFlow.Tests;

/// <summary>GroupNorm (plain and fused with SiLU) against its float64 reference and finite differences.</summary>
public sealed class GroupNormTests
{
    // (channels, groups, silu, threads per row): 8 channels in the DDPM++ min(C/4, 32) = 2 groups; 6 channels in 3 groups
    // of 2; 4 in one group. Threads per row 0 = the device default (one on the CPU); 32 runs the shared-memory tree CUDA uses.
    private static readonly object[] Cases =
    [
        new object[] { 8, 2, false, 0 },
        new object[] { 8, 2, true, 0 },
        new object[] { 6, 3, true, 0 },
        new object[] { 4, 1, false, 0 },
        new object[] { 8, 2, true, 32 },
    ];

    private static GroupNormShape Shape(int channels, int groups) => new(batch: 2, channels: channels, spatial: 6 * 5, groups: groups);

    [TestCaseSource(nameof(Cases))]
    public void ForwardMatchesFloat64Reference(int channels, int groups, bool silu, int threadsPerRow)
    {
        var shape = Shape(channels, groups);
        var rng = new Random(channels * 10 + groups);
        // Off-centre inputs (mean ~0.5) so a wrong mean shows; gamma around 1 and beta around 0 like a trained layer.
        var x = Numerics.Uniform(rng, (int)shape.Length, -0.5f, 1.5f);
        var gamma = Numerics.Uniform(rng, channels, 0.5f, 1.5f);
        var beta = Numerics.Uniform(rng, channels, -0.5f, 0.5f);
        var device = TestDevice.Cpu;
        using var xBuffer = device.Accelerator.Allocate1D(x);
        using var gammaBuffer = device.Accelerator.Allocate1D(gamma);
        using var betaBuffer = device.Accelerator.Allocate1D(beta);
        using var yBuffer = device.Accelerator.Allocate1D(Numerics.Poison((int)shape.Length));
        using var meanBuffer = device.Accelerator.Allocate1D(Numerics.Poison(shape.Rows));
        using var rstdBuffer = device.Accelerator.Allocate1D(Numerics.Poison(shape.Rows));
        var norm = GroupNorm.For(device);
        norm.ThreadsPerRow = threadsPerRow;
        try
        {
            norm.Forward(shape, xBuffer.View, gammaBuffer.View, betaBuffer.View, yBuffer.View, meanBuffer.View, rstdBuffer.View, silu);
        }
        finally
        {
            norm.ThreadsPerRow = 0;
        }

        var (y, mean, rstd) = GroupNorm.ForwardReference(shape, x.Wide(), gamma.Wide(), beta.Wide(), silu);
        // Float32 row sums over 120 elements of O(1) values: relative error of the statistics ~1e-6; the outputs are
        // O(3) after normalisation, so 1e-5 relative plus 1e-5 absolute leaves a 10x margin.
        Numerics.AssertClose(meanBuffer.GetAsArray1D(), mean, 1e-5, 1e-6, "mean");
        Numerics.AssertClose(rstdBuffer.GetAsArray1D(), rstd, 1e-5, 1e-6, "rstd");
        Numerics.AssertClose(yBuffer.GetAsArray1D(), y, 1e-5, 1e-5, $"group norm (silu {silu}) output");
    }

    [TestCaseSource(nameof(Cases))]
    public void BackwardMatchesFloat64ReferenceAndAccumulates(int channels, int groups, bool silu, int threadsPerRow)
    {
        var shape = Shape(channels, groups);
        var rng = new Random(100 + channels * 10 + groups);
        var x = Numerics.Uniform(rng, (int)shape.Length, -0.5f, 1.5f);
        var gamma = Numerics.Uniform(rng, channels, 0.5f, 1.5f);
        var beta = Numerics.Uniform(rng, channels, -0.5f, 0.5f);
        var dy = Numerics.Uniform(rng, (int)shape.Length);
        var dGammaBefore = Numerics.Uniform(rng, channels);
        var dBetaBefore = Numerics.Uniform(rng, channels);
        var device = TestDevice.Cpu;
        var norm = GroupNorm.For(device);
        using var xBuffer = device.Accelerator.Allocate1D(x);
        using var gammaBuffer = device.Accelerator.Allocate1D(gamma);
        using var betaBuffer = device.Accelerator.Allocate1D(beta);
        using var yBuffer = device.Accelerator.Allocate1D<float>(shape.Length);
        using var meanBuffer = device.Accelerator.Allocate1D<float>(shape.Rows);
        using var rstdBuffer = device.Accelerator.Allocate1D<float>(shape.Rows);
        using var dyBuffer = device.Accelerator.Allocate1D(dy);
        using var dxBuffer = device.Accelerator.Allocate1D(Numerics.Poison((int)shape.Length));
        using var dGammaBuffer = device.Accelerator.Allocate1D(dGammaBefore);
        using var dBetaBuffer = device.Accelerator.Allocate1D(dBetaBefore);
        norm.ThreadsPerRow = threadsPerRow;
        try
        {
            norm.Forward(shape, xBuffer.View, gammaBuffer.View, betaBuffer.View, yBuffer.View, meanBuffer.View, rstdBuffer.View, silu);
            norm.Backward(shape, xBuffer.View, gammaBuffer.View, betaBuffer.View, meanBuffer.View, rstdBuffer.View, dyBuffer.View,
                dxBuffer.View, dGammaBuffer.View, dBetaBuffer.View, silu);
        }
        finally
        {
            norm.ThreadsPerRow = 0;
        }
        var (dx, dGamma, dBeta) = GroupNorm.BackwardReference(shape, x.Wide(), gamma.Wide(), beta.Wide(), dy.Wide(), silu);
        // dx subtracts two row means from dxhat (cancellation) and is scaled by rstd ~ 1.7: float32 gives ~1e-6
        // relative to |dxhat| ~ 1, so 1e-4 absolute; the parameter gradients sum 60 terms of O(1): 1e-5 relative, 1e-5 absolute.
        Numerics.AssertClose(dxBuffer.GetAsArray1D(), dx, 1e-4, 1e-4, $"dInput (silu {silu})");
        Numerics.AssertClose(dGammaBuffer.GetAsArray1D(), dGamma.Zip(dGammaBefore, (g, b) => g + b).ToArray(), 1e-5, 1e-5, "dGamma");
        Numerics.AssertClose(dBetaBuffer.GetAsArray1D(), dBeta.Zip(dBetaBefore, (g, b) => g + b).ToArray(), 1e-5, 1e-5, "dBeta");
    }

    [Test]
    public void BackwardMayOverwriteItsOutputGradient()
    {
        var shape = Shape(8, 2);
        var rng = new Random(7);
        var x = Numerics.Uniform(rng, (int)shape.Length);
        var gamma = Numerics.Uniform(rng, 8, 0.5f, 1.5f);
        var beta = Numerics.Uniform(rng, 8);
        var dy = Numerics.Uniform(rng, (int)shape.Length);
        var device = TestDevice.Cpu;
        var norm = GroupNorm.For(device);
        using var xBuffer = device.Accelerator.Allocate1D(x);
        using var gammaBuffer = device.Accelerator.Allocate1D(gamma);
        using var betaBuffer = device.Accelerator.Allocate1D(beta);
        using var yBuffer = device.Accelerator.Allocate1D<float>(shape.Length);
        using var meanBuffer = device.Accelerator.Allocate1D<float>(shape.Rows);
        using var rstdBuffer = device.Accelerator.Allocate1D<float>(shape.Rows);
        using var gradBuffer = device.Accelerator.Allocate1D(dy);
        using var dGammaBuffer = device.Accelerator.Allocate1D(new float[8]);
        using var dBetaBuffer = device.Accelerator.Allocate1D(new float[8]);
        norm.Forward(shape, xBuffer.View, gammaBuffer.View, betaBuffer.View, yBuffer.View, meanBuffer.View, rstdBuffer.View, silu: true);
        norm.Backward(shape, xBuffer.View, gammaBuffer.View, betaBuffer.View, meanBuffer.View, rstdBuffer.View, gradBuffer.View,
            gradBuffer.View, dGammaBuffer.View, dBetaBuffer.View, silu: true);
        var (dx, dGamma, _) = GroupNorm.BackwardReference(shape, x.Wide(), gamma.Wide(), beta.Wide(), dy.Wide(), silu: true);
        Numerics.AssertClose(gradBuffer.GetAsArray1D(), dx, 1e-4, 1e-4, "in-place dInput");
        Numerics.AssertClose(dGammaBuffer.GetAsArray1D(), dGamma, 1e-5, 1e-5, "dGamma with in-place dInput");
    }

    [TestCase(false)]
    [TestCase(true)]
    public void ReferenceBackwardMatchesFiniteDifferences(bool silu)
    {
        var shape = new GroupNormShape(batch: 2, channels: 8, spatial: 3 * 4, groups: 2);
        var rng = new Random(silu ? 31 : 30);
        var x = Numerics.Uniform(rng, (int)shape.Length, -0.5f, 1.5f).Wide();
        var gamma = Numerics.Uniform(rng, 8, 0.5f, 1.5f).Wide();
        var beta = Numerics.Uniform(rng, 8, -0.5f, 0.5f).Wide();
        var dy = Numerics.Uniform(rng, (int)shape.Length).Wide();
        var (dx, dGamma, dBeta) = GroupNorm.BackwardReference(shape, x, gamma, beta, dy, silu);
        double Loss(double[] input, double[] g, double[] b) => FiniteDifference.Dot(dy, GroupNorm.ForwardReference(shape, input, g, b, silu).Output);
        // h = 1e-5 central differences: truncation O(h^2 |f'''|) ~ 1e-9 for rstd ~ 1.7; 1e-6 relative and absolute
        // is far above that and far below any formula error.
        Numerics.AssertClose(dx.Select(v => (float)v).ToArray(), FiniteDifference.Gradient(p => Loss(p, gamma, beta), x), 1e-6, 1e-6, "dInput vs FD");
        Numerics.AssertClose(dGamma.Select(v => (float)v).ToArray(), FiniteDifference.Gradient(p => Loss(x, p, beta), gamma), 1e-6, 1e-6, "dGamma vs FD");
        Numerics.AssertClose(dBeta.Select(v => (float)v).ToArray(), FiniteDifference.Gradient(p => Loss(x, gamma, p), beta), 1e-6, 1e-6, "dBeta vs FD");
    }

    [Test]
    public void DefaultGroupsFollowTheDdpmPlusPlusRule()
    {
        Assert.That(GroupNorm.DefaultGroups(32), Is.EqualTo(8));
        Assert.That(GroupNorm.DefaultGroups(64), Is.EqualTo(16));
        Assert.That(GroupNorm.DefaultGroups(256), Is.EqualTo(32));
        Assert.That(GroupNorm.DefaultGroups(2), Is.EqualTo(1));
        Assert.That(() => new GroupNormShape(1, 6, 4, 4), Throws.ArgumentException.With.Message.Contains("4 groups do not divide 6 channels"));
    }
}
