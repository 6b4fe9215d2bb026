using PoissonFlow.Network.UNet;

namespace PoissonFlow.Tests;

/// <summary>
/// The residual block end to end on the CPU accelerator: forward against the float64 composition of the kernels'
/// references, backward (input, embedding bias and every parameter) against float64 central finite differences of it.
/// </summary>
public sealed class ResBlockTests
{
    private const int Batch = 2, Size = 4, Embedding = 6;

    [TestCase(4, 8, 0f, false)]
    [TestCase(4, 8, 0.25f, true)]
    [TestCase(8, 8, 0.25f, false)]
    public void ForwardAndBackwardMatchFloat64CompositionAndFiniteDifferences(int inChannels, int outChannels, float dropout, bool skipRescale)
    {
        var device = TestDevice.Cpu;
        using var block = new ResBlock(device, Batch, inChannels, outChannels, Size, Embedding, dropout, skipRescale, seed: 99, layer: 2);
        var rng = new Random(inChannels * 100 + outChannels + (int)(dropout * 4));
        var x = Numerics.Uniform(rng, (int)block.InputLength);
        var e = Numerics.Uniform(rng, Batch * outChannels);
        // Conv weights ~ U(-0.3, 0.3) keep the activations O(1), as a trained block's are; GN gamma around 1.
        var parameters = Numerics.Uniform(rng, (int)block.ParameterCount, -0.3f, 0.3f);
        var dy = Numerics.Uniform(rng, (int)block.OutputLength);
        using var xBuffer = device.Accelerator.Allocate1D(x);
        using var eBuffer = device.Accelerator.Allocate1D(e);
        using var parameterBuffer = device.Accelerator.Allocate1D(parameters);
        using var gradientBuffer = device.Accelerator.Allocate1D(new float[block.ParameterCount]);
        using var yBuffer = device.Accelerator.Allocate1D(Numerics.Poison((int)block.OutputLength));
        using var dyBuffer = device.Accelerator.Allocate1D(dy);
        using var dxBuffer = device.Accelerator.Allocate1D(Numerics.Poison((int)block.InputLength));
        using var deBuffer = device.Accelerator.Allocate1D(Numerics.Poison(Batch * outChannels));
        block.Bind(parameterBuffer.View, gradientBuffer.View);
        const uint step = 5;
        block.Forward(xBuffer.View, eBuffer.View, yBuffer.View, step);
        block.Backward(dyBuffer.View, dxBuffer.View, deBuffer.View);

        var wideX = x.Wide();
        var wideE = e.Wide();
        var wideParameters = parameters.Wide();
        var wideDy = dy.Wide();
        // Eleven float32 kernels in a row (two GroupNorms, three convs of depth <= 72): ~1e-6 relative each.
        Numerics.AssertClose(yBuffer.GetAsArray1D(), block.ForwardReference(wideX, wideE, wideParameters, step), 1e-4, 1e-4, "block forward");

        double Loss(double[] input, double[] bias, double[] p) => FiniteDifference.Dot(wideDy, block.ForwardReference(input, bias, p, step));
        // Gradients are O(1..10) sums over the chain; float32 backward through two GroupNorms (whose dx cancels two row
        // means) loses ~1e-5 relative of the largest terms. FD in float64 (h = 1e-5) is exact to ~1e-9 here.
        // The embed slots belong to the caller's Dense layer: FD says 0 there and the block must leave them 0 (sampled too).
        Numerics.AssertClose(dxBuffer.GetAsArray1D(), FiniteDifference.Gradient(v => Loss(v, wideE, wideParameters), wideX), 1e-3, 1e-3, "dInput");
        Numerics.AssertClose(deBuffer.GetAsArray1D(), FiniteDifference.Gradient(v => Loss(wideX, v, wideParameters), wideE), 1e-3, 1e-3, "dEmbeddingBias");
        var (actual, expected) = ParameterProbe.Sample(ParameterProbe.Slots(ResBlock.ParameterShapes("", inChannels, outChannels, Embedding)), extra: 30, rng,
            gradientBuffer.GetAsArray1D(), wideParameters, p => Loss(wideX, wideE, p));
        Numerics.AssertClose(actual, expected, 1e-3, 1e-3, "parameter gradients (one element of every tensor + 30 random)");
    }

    [Test]
    public void ParameterLayoutIsTheOneUNetConfigCounts()
    {
        var shapes = ResBlock.ParameterShapes("b.", 4, 8, Embedding).ToList();
        using var block = new ResBlock(TestDevice.Cpu, 1, 4, 8, 4, Embedding, 0f, false, 0, 0);
        Assert.That(block.ParameterCount, Is.EqualTo(shapes.Sum(s => s.Length)));
        Assert.That(shapes.Select(s => s.Name), Has.Member("b.shortcut.weight"));
        Assert.That(ResBlock.ParameterShapes("", 8, 8, Embedding).Select(s => s.Name), Has.No.Member("shortcut.weight"), "identity shortcut has no parameters");
        Assert.That(() => block.Forward(default, default, default, 0), Throws.InvalidOperationException.With.Message.Contains("Bind"));
    }
}
