using PoissonFlow.Kernels.Image;
using PoissonFlow.Network.UNet;

namespace PoissonFlow.Tests;

/// <summary>
/// The self-attention kernels against their float64 references (outputs poisoned), the reference backward against
/// central finite differences of the reference forward, the softmax on logits far beyond float32's exp range, and the
/// attention block (GroupNorm, qkv conv, attention, proj_out conv, residual) end to end against finite differences.
/// </summary>
public sealed class SelfAttentionTests
{
    private static float[] RunForward(SelfAttentionShape shape, float[] qkv, out float[] probabilities)
    {
        var device = TestDevice.Cpu;
        using var qkvBuffer = device.Accelerator.Allocate1D(qkv);
        using var pBuffer = device.Accelerator.Allocate1D(Numerics.Poison((int)shape.ProbabilitiesLength));
        using var outBuffer = device.Accelerator.Allocate1D(Numerics.Poison((int)shape.OutputLength));
        SelfAttention.For(device).Forward(shape, qkvBuffer.View, pBuffer.View, outBuffer.View);
        probabilities = pBuffer.GetAsArray1D();
        return outBuffer.GetAsArray1D();
    }

    // Channels and positions that are not multiples of four exercise the tails of the hand-unrolled dot products.
    [TestCase(2, 6, 10)]
    [TestCase(1, 8, 16)]
    [TestCase(3, 1, 3)]
    public void ForwardAndBackwardMatchFloat64References(int batch, int channels, int spatial)
    {
        var shape = new SelfAttentionShape(batch, channels, spatial);
        var rng = new Random(batch * 1000 + channels * 10 + spatial);
        // N(0, 1.5) projections give logits of a few units: peaked but not one-hot softmax rows.
        var qkv = Numerics.Normal(rng, (int)shape.QkvLength, 1.5f);
        var dOutput = Numerics.Uniform(rng, (int)shape.OutputLength);
        var output = RunForward(shape, qkv, out var probabilities);
        var (expected, expectedP) = SelfAttention.ForwardReference(shape, qkv.Wide());
        // Dots of <= 16 float32 terms and one exp per probability: a few ulps, 1e-5 with margin.
        Numerics.AssertClose(probabilities, expectedP, 1e-5, 1e-6, "probabilities");
        Numerics.AssertClose(output, expected, 1e-5, 1e-5, "output");

        var device = TestDevice.Cpu;
        using var qkvBuffer = device.Accelerator.Allocate1D(qkv);
        using var pBuffer = device.Accelerator.Allocate1D(probabilities);
        using var dOutBuffer = device.Accelerator.Allocate1D(dOutput);
        using var scratch = device.Accelerator.Allocate1D(Numerics.Poison((int)shape.ProbabilitiesLength));
        using var dQkvBuffer = device.Accelerator.Allocate1D(Numerics.Poison((int)shape.QkvLength));
        SelfAttention.For(device).Backward(shape, qkvBuffer.View, pBuffer.View, dOutBuffer.View, scratch.View, dQkvBuffer.View);
        var dQkv = SelfAttention.BackwardReference(shape, qkv.Wide(), dOutput.Wide());
        // Two chained short float32 sums (dP, then dS times q, k or P): 1e-5 relative of O(1) values.
        Numerics.AssertClose(dQkvBuffer.GetAsArray1D(), dQkv, 1e-4, 1e-5, "dQkv");
        // The reference backward is the gradient of the reference forward: float64 FD (h = 1e-5) agrees to ~1e-9.
        var fd = FiniteDifference.Gradient(x => FiniteDifference.Dot(dOutput.Wide(), SelfAttention.ForwardReference(shape, x).Output), qkv.Wide());
        Numerics.AssertClose(dQkv.Select(v => (float)v).ToArray(), fd, 1e-6, 1e-6, "reference dQkv vs finite differences");
    }

    [Test]
    public void SoftmaxSurvivesLogitsBeyondTheExpRange()
    {
        // Projections of size 60 over 16 channels give logits of several hundred to thousands: exp would overflow to
        // infinity (and the rows to NaN) without the max subtraction.
        var shape = new SelfAttentionShape(2, 16, 9);
        var qkv = Numerics.Normal(new Random(4), (int)shape.QkvLength, 60f);
        var output = RunForward(shape, qkv, out var probabilities);
        var (expected, expectedP) = SelfAttention.ForwardReference(shape, qkv.Wide());
        Assert.That(expectedP.Max(), Is.EqualTo(1.0).Within(1e-6), "the test's rows are one-hot: the regime that overflows");
        // Logits ~1e3 carry float32 rounding ~1e-4 absolute into the exponent: probabilities agree to ~1e-4 relative.
        Numerics.AssertClose(probabilities, expectedP, 1e-3, 1e-6, "probabilities");
        Numerics.AssertClose(output, expected, 1e-3, 1e-3, "output");
    }

    [TestCase(8, 4, false)]
    [TestCase(4, 3, true)]
    public void AttentionBlockMatchesFloat64CompositionAndFiniteDifferences(int channels, int size, bool skipRescale)
    {
        const int batch = 2;
        var device = TestDevice.Cpu;
        using var block = new AttentionBlock(device, batch, channels, size, skipRescale);
        var rng = new Random(channels * 10 + size);
        var x = Numerics.Uniform(rng, (int)block.Length);
        // Weights ~ U(-0.6, 0.6) make the 1x1 projections O(1), so the softmax rows are neither flat nor one-hot.
        var parameters = Numerics.Uniform(rng, (int)block.ParameterCount, -0.6f, 0.6f);
        var dy = Numerics.Uniform(rng, (int)block.Length);
        using var xBuffer = device.Accelerator.Allocate1D(x);
        using var parameterBuffer = device.Accelerator.Allocate1D(parameters);
        using var gradientBuffer = device.Accelerator.Allocate1D(new float[block.ParameterCount]);
        using var yBuffer = device.Accelerator.Allocate1D(Numerics.Poison((int)block.Length));
        using var dyBuffer = device.Accelerator.Allocate1D(dy);
        using var dxBuffer = device.Accelerator.Allocate1D(Numerics.Poison((int)block.Length));
        block.Bind(parameterBuffer.View, gradientBuffer.View);
        block.Forward(xBuffer.View, yBuffer.View);
        block.Backward(dyBuffer.View, dxBuffer.View);

        var wideX = x.Wide();
        var wideParameters = parameters.Wide();
        var wideDy = dy.Wide();
        // Seven float32 kernels (GroupNorm, two 1x1 convs of depth <= 3C, attention): ~1e-6 relative each.
        Numerics.AssertClose(yBuffer.GetAsArray1D(), block.ForwardReference(wideX, wideParameters), 1e-4, 1e-4, "attention block forward");
        double Loss(double[] input, double[] p) => FiniteDifference.Dot(wideDy, block.ForwardReference(input, p));
        // Backward through GroupNorm's row-mean cancellations and the softmax Jacobian: ~1e-5 relative of the largest
        // terms in float32; FD in float64 is exact to ~1e-9. 1e-3 leaves margin, a misplaced term is O(1).
        Numerics.AssertClose(dxBuffer.GetAsArray1D(), FiniteDifference.Gradient(v => Loss(v, wideParameters), wideX), 1e-3, 1e-3, "dInput");
        var (actual, expected) = ParameterProbe.Sample(ParameterProbe.Slots(AttentionBlock.ParameterShapes("", channels)), extra: 30, rng,
            gradientBuffer.GetAsArray1D(), wideParameters, p => Loss(wideX, p));
        Numerics.AssertClose(actual, expected, 1e-3, 1e-3, "parameter gradients (one element of every tensor + 30 random)");
    }

    [Test]
    public void AttentionBlockLayoutAndErrors()
    {
        var shapes = AttentionBlock.ParameterShapes("mid.attn.", 8).ToList();
        Assert.That(shapes.Sum(s => s.Length), Is.EqualTo(4 * 8 * 8 + 6 * 8), "4 C^2 + 6 C");
        Assert.That(shapes.Select(s => s.Name), Is.EqualTo(new[]
        {
            "mid.attn.norm.gamma", "mid.attn.norm.beta", "mid.attn.qkv.weight", "mid.attn.qkv.bias", "mid.attn.proj_out.weight", "mid.attn.proj_out.bias",
        }));
        using var inference = new AttentionBlock(TestDevice.Cpu, 1, 4, 2, skipRescale: false, training: false);
        Assert.That(() => inference.Forward(default, default), Throws.InvalidOperationException.With.Message.Contains("Bind"));
        using var parameters = TestDevice.Cpu.Accelerator.Allocate1D<float>(inference.ParameterCount);
        inference.Bind(parameters.View, parameters.View);
        Assert.That(() => inference.Backward(default, default), Throws.InvalidOperationException.With.Message.Contains("inference only"));
        using var small = TestDevice.Cpu.Accelerator.Allocate1D<float>(10);
        var shape = new SelfAttentionShape(1, 4, 4);
        Assert.That(() => SelfAttention.For(TestDevice.Cpu).Forward(shape, small.View, small.View, small.View),
            Throws.ArgumentException.With.Message.Contains("qkv has 10 elements, needs 48"));
    }
}
