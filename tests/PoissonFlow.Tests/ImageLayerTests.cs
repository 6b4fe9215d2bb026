using ILGPU;
using ILGPU.Runtime;
using PoissonFlow.Kernels.Image;

namespace PoissonFlow.Tests;

/// <summary>
/// The small U-Net layers (upsample, concat, residual add, channel bias, field head, dropout): every forward and
/// backward kernel against its float64 reference with the output poisoned, and every reference backward against
/// central finite differences of the reference forward. These ops are copies, single adds or short sums, so float32
/// results are exact or within a few ulps: tolerances are 1e-6 (copies get 0).
/// </summary>
public sealed class ImageLayerTests
{
    private const int Batch = 2, Channels = 3, Height = 4, Width = 5, Spatial = Height * Width;

    /// <summary>
    /// Every op here is linear in its input, so central differences of the float64 forward equal the exact gradient up to
    /// rounding (~1e-16 |loss| / h ~ 1e-10); 1e-7 absolute and relative catches any misplaced element.
    /// </summary>
    private static void AssertReferenceBackwardIsGradient(double[] referenceGradient, Func<double[], double[]> forward, double[] input, double[] dOutput, string what) =>
        Numerics.AssertClose(referenceGradient.Select(v => (float)v).ToArray(),
            FiniteDifference.Gradient(x => FiniteDifference.Dot(dOutput, forward(x)), input), 1e-6, 1e-6, $"{what}: reference backward vs FD");

    private static MemoryBuffer1D<float, Stride1D.Dense> Upload(float[] data) => TestDevice.Cpu.Accelerator.Allocate1D(data);

    [Test]
    public void Upsample2xForwardAndBackward()
    {
        var rng = new Random(1);
        int planes = Batch * Channels;
        var x = Numerics.Uniform(rng, planes * Spatial);
        var dy = Numerics.Uniform(rng, 4 * planes * Spatial);
        var op = Upsample2x.For(TestDevice.Cpu);
        using var xBuffer = Upload(x);
        using var yBuffer = Upload(Numerics.Poison(4 * planes * Spatial));
        using var dyBuffer = Upload(dy);
        using var dxBuffer = Upload(Numerics.Poison(planes * Spatial));
        op.Forward(xBuffer.View, yBuffer.View, planes, Height, Width);
        op.Backward(dyBuffer.View, dxBuffer.View, planes, Height, Width);
        Numerics.AssertClose(yBuffer.GetAsArray1D(), Upsample2x.ForwardReference(x.Wide(), planes, Height, Width), 0, 0, "upsample forward (a copy)");
        var dx = Upsample2x.BackwardReference(dy.Wide(), planes, Height, Width);
        // Four float32 adds of O(1) values.
        Numerics.AssertClose(dxBuffer.GetAsArray1D(), dx, 1e-6, 1e-6, "upsample backward");
        AssertReferenceBackwardIsGradient(dx, p => Upsample2x.ForwardReference(p, planes, Height, Width), x.Wide(), dy.Wide(), "upsample");
    }

    [Test]
    public void ChannelConcatForwardAndBackward()
    {
        var rng = new Random(2);
        const int second = 2;
        var a = Numerics.Uniform(rng, Batch * Channels * Spatial);
        var b = Numerics.Uniform(rng, Batch * second * Spatial);
        int total = Batch * (Channels + second) * Spatial;
        var dy = Numerics.Uniform(rng, total);
        var op = ChannelConcat.For(TestDevice.Cpu);
        using var aBuffer = Upload(a);
        using var bBuffer = Upload(b);
        using var yBuffer = Upload(Numerics.Poison(total));
        using var dyBuffer = Upload(dy);
        using var daBuffer = Upload(Numerics.Poison(a.Length));
        using var dbBuffer = Upload(Numerics.Poison(b.Length));
        op.Forward(aBuffer.View, bBuffer.View, yBuffer.View, Batch, Channels, second, Spatial);
        op.Backward(dyBuffer.View, daBuffer.View, dbBuffer.View, Batch, Channels, second, Spatial);
        Numerics.AssertClose(yBuffer.GetAsArray1D(), ChannelConcat.ForwardReference(a.Wide(), b.Wide(), Batch, Channels, second, Spatial), 0, 0, "concat forward");
        var (da, db) = ChannelConcat.BackwardReference(dy.Wide(), Batch, Channels, second, Spatial);
        Numerics.AssertClose(daBuffer.GetAsArray1D(), da, 0, 0, "concat dFirst");
        Numerics.AssertClose(dbBuffer.GetAsArray1D(), db, 0, 0, "concat dSecond");
        AssertReferenceBackwardIsGradient(da, p => ChannelConcat.ForwardReference(p, b.Wide(), Batch, Channels, second, Spatial), a.Wide(), dy.Wide(), "concat first");
        AssertReferenceBackwardIsGradient(db, p => ChannelConcat.ForwardReference(a.Wide(), p, Batch, Channels, second, Spatial), b.Wide(), dy.Wide(), "concat second");
    }

    [TestCase(1f)]
    [TestCase(ResidualAdd.SkipRescale)]
    public void ResidualAddForwardAndBackward(float scale)
    {
        var rng = new Random(3);
        int length = Batch * Channels * Spatial;
        var a = Numerics.Uniform(rng, length);
        var b = Numerics.Uniform(rng, length);
        var dy = Numerics.Uniform(rng, length);
        var op = ResidualAdd.For(TestDevice.Cpu);
        using var aBuffer = Upload(a);
        using var bBuffer = Upload(b);
        using var yBuffer = Upload(Numerics.Poison(length));
        using var dyBuffer = Upload(dy);
        using var daBuffer = Upload(Numerics.Poison(length));
        using var dbBuffer = Upload(Numerics.Poison(length));
        op.Forward(aBuffer.View, bBuffer.View, yBuffer.View, scale);
        op.Backward(dyBuffer.View, daBuffer.View, dbBuffer.View, scale);
        // One add and one multiply in float32 (scale itself is 1/sqrt(2) rounded to float32: 3e-8 relative).
        Numerics.AssertClose(yBuffer.GetAsArray1D(), ResidualAdd.ForwardReference(a.Wide(), b.Wide(), scale), 1e-6, 1e-7, "residual forward");
        var gradient = ResidualAdd.BackwardReference(dy.Wide(), scale);
        Numerics.AssertClose(daBuffer.GetAsArray1D(), gradient, 1e-6, 1e-7, "residual dShortcut");
        Numerics.AssertClose(dbBuffer.GetAsArray1D(), gradient, 1e-6, 1e-7, "residual dBranch");
        AssertReferenceBackwardIsGradient(gradient, p => ResidualAdd.ForwardReference(p, b.Wide(), scale), a.Wide(), dy.Wide(), "residual shortcut");
        AssertReferenceBackwardIsGradient(gradient, p => ResidualAdd.ForwardReference(a.Wide(), p, scale), b.Wide(), dy.Wide(), "residual branch");
    }

    // 0 threads = the device default (one thread per row on the CPU); 32 and 8 run the shared-memory tree that CUDA uses.
    [TestCase(0)]
    [TestCase(8)]
    [TestCase(32)]
    public void ChannelBiasForwardAndBackward(int threadsPerRow)
    {
        var rng = new Random(4 + threadsPerRow);
        int rows = Batch * Channels;
        var x = Numerics.Uniform(rng, rows * Spatial);
        var bias = Numerics.Uniform(rng, rows);
        var dy = Numerics.Uniform(rng, rows * Spatial);
        var op = ChannelBias.For(TestDevice.Cpu);
        using var xBuffer = Upload(x);
        using var biasBuffer = Upload(bias);
        using var yBuffer = Upload(Numerics.Poison(rows * Spatial));
        using var dyBuffer = Upload(dy);
        using var dBiasBuffer = Upload(Numerics.Poison(rows));
        op.ThreadsPerRow = threadsPerRow;
        try
        {
            op.Forward(xBuffer.View, biasBuffer.View, yBuffer.View, rows, Spatial);
            op.Backward(dyBuffer.View, dBiasBuffer.View, rows, Spatial);
        }
        finally
        {
            op.ThreadsPerRow = 0;
        }

        Numerics.AssertClose(yBuffer.GetAsArray1D(), ChannelBias.ForwardReference(x.Wide(), bias.Wide(), rows, Spatial), 1e-6, 1e-7, "channel bias forward");
        var dBias = ChannelBias.BackwardReference(dy.Wide(), rows, Spatial);
        // Sum of 20 float32 values in [-1, 1]: a few ulps of 20.
        Numerics.AssertClose(dBiasBuffer.GetAsArray1D(), dBias, 1e-6, 1e-5, "channel bias dBias");
        AssertReferenceBackwardIsGradient(dBias, p => ChannelBias.ForwardReference(x.Wide(), p, rows, Spatial), bias.Wide(), dy.Wide(), "channel bias");
    }

    [Test]
    public void FieldHeadForwardAndBackward()
    {
        var rng = new Random(5);
        int outputLength = Batch * Channels * Spatial, predictionLength = Batch * ((Channels - 1) * Spatial + 1);
        var h = Numerics.Uniform(rng, outputLength);
        var dPrediction = Numerics.Uniform(rng, predictionLength);
        var op = FieldHead.For(TestDevice.Cpu);
        using var hBuffer = Upload(h);
        using var predictionBuffer = Upload(Numerics.Poison(predictionLength));
        using var dPredictionBuffer = Upload(dPrediction);
        using var dhBuffer = Upload(Numerics.Poison(outputLength));
        op.Forward(hBuffer.View, predictionBuffer.View, Batch, Channels, Spatial);
        op.Backward(dPredictionBuffer.View, dhBuffer.View, Batch, Channels, Spatial);
        // Copies are exact; the mean of 20 float32 values is within a few ulps.
        Numerics.AssertClose(predictionBuffer.GetAsArray1D(), FieldHead.ForwardReference(h.Wide(), Batch, Channels, Spatial), 1e-6, 1e-7, "field head forward");
        var dh = FieldHead.BackwardReference(dPrediction.Wide(), Batch, Channels, Spatial);
        Numerics.AssertClose(dhBuffer.GetAsArray1D(), dh, 1e-6, 1e-8, "field head backward");
        AssertReferenceBackwardIsGradient(dh, p => FieldHead.ForwardReference(p, Batch, Channels, Spatial), h.Wide(), dPrediction.Wide(), "field head");
    }

    [Test]
    public void DropoutForwardAndBackwardRedrawTheSameMask()
    {
        var rng = new Random(6);
        const float rate = 0.3f;
        const ulong seed = 0x1234_5678_9ABCUL;
        int length = 4001; // not a multiple of 4: the last Philox block is partial
        var x = Numerics.Uniform(rng, length);
        var dy = Numerics.Uniform(rng, length);
        var op = Dropout.For(TestDevice.Cpu);
        using var xBuffer = Upload(x);
        using var yBuffer = Upload(Numerics.Poison(length));
        using var dyBuffer = Upload(dy);
        using var dxBuffer = Upload(Numerics.Poison(length));
        op.Forward(xBuffer.View, yBuffer.View, rate, seed, layer: 3, step: 17);
        op.Backward(dyBuffer.View, dxBuffer.View, rate, seed, layer: 3, step: 17);
        var y = yBuffer.GetAsArray1D();
        // One float32 multiply by 1/(1 - rate) rounded to float32.
        Numerics.AssertClose(y, Dropout.ApplyReference(x.Wide(), rate, seed, 3, 17), 1e-6, 0, "dropout forward");
        var dx = Dropout.ApplyReference(dy.Wide(), rate, seed, 3, 17);
        Numerics.AssertClose(dxBuffer.GetAsArray1D(), dx, 1e-6, 0, "dropout backward");
        AssertReferenceBackwardIsGradient(dx, p => Dropout.ApplyReference(p, rate, seed, 3, 17), x.Wide(), dy.Wide(), "dropout");

        // The kept fraction is Binomial(4001, 0.7)/4001: standard deviation 0.0072, so +-0.04 is a 5.5-sigma bound.
        double kept = y.Count(v => v != 0) / (double)length;
        Assert.That(kept, Is.EqualTo(1 - rate).Within(0.04), "kept fraction");
        // Another step or layer draws another mask.
        using var otherBuffer = Upload(Numerics.Poison(length));
        op.Forward(xBuffer.View, otherBuffer.View, rate, seed, layer: 3, step: 18);
        int differing = otherBuffer.GetAsArray1D().Zip(y, (a, b) => (a == 0) != (b == 0) ? 1 : 0).Sum();
        Assert.That(differing, Is.GreaterThan(length / 5), "a new step must draw a new mask (expected 42% of decisions to differ)");
        Assert.That(() => op.Forward(xBuffer.View, yBuffer.View, 1f, seed, 0, 0), Throws.ArgumentException.With.Message.Contains("rate 1"));
    }
}
