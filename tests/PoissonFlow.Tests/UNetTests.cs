using PoissonFlow.Network.UNet;

namespace PoissonFlow.Tests;

/// <summary>
/// The whole U-Net on the CPU accelerator at a toy size (nf 8, two levels, 4x4 images): forward against the float64
/// composition of the kernels' references, backward against float64 central finite differences of it for the
/// embedding input and for at least one element of every parameter tensor (plus random extra elements).
/// </summary>
public sealed class UNetTests
{
    private static UNetConfig Toy(int[] attention) => new()
    {
        ImageChannels = 1,
        ImageSize = 4,
        BaseChannels = 8,
        ChannelMultipliers = [1, 2],
        ResBlocksPerLevel = 1,
        AttentionLevels = attention,
        Dropout = 0.1f,
        SkipRescale = true,
    };

    // Without attention, and with attention at both levels (after every block and in the middle).
    [TestCase(new int[0])]
    [TestCase(new[] { 0, 1 })]
    public void ForwardAndBackwardMatchFloat64CompositionAndFiniteDifferences(int[] attention)
    {
        const int batch = 2;
        const uint step = 3;
        var config = Toy(attention);
        var device = TestDevice.Cpu;
        using var net = new UNet(device, config, batch, seed: 7);
        Assert.That(net.ParameterCount, Is.EqualTo(config.ParameterCount()));
        var rng = new Random(2024);
        var images = Numerics.Uniform(rng, batch * 16);
        var embedding = Numerics.Uniform(rng, batch * config.EmbeddingChannels);
        var parameters = Numerics.Uniform(rng, (int)net.ParameterCount, -0.3f, 0.3f);
        var dPrediction = Numerics.Uniform(rng, batch * net.PredictionLength);
        using var imageBuffer = device.Accelerator.Allocate1D(images);
        using var embeddingBuffer = device.Accelerator.Allocate1D(embedding);
        using var parameterBuffer = device.Accelerator.Allocate1D(parameters);
        using var gradientBuffer = device.Accelerator.Allocate1D(new float[net.ParameterCount]);
        using var predictionBuffer = device.Accelerator.Allocate1D(Numerics.Poison(batch * net.PredictionLength));
        using var dPredictionBuffer = device.Accelerator.Allocate1D(dPrediction);
        using var dEmbeddingBuffer = device.Accelerator.Allocate1D(Numerics.Poison(embedding.Length));
        net.Bind(parameterBuffer.View, gradientBuffer.View);
        net.Forward(imageBuffer.View, embeddingBuffer.View, predictionBuffer.View, step);
        net.Backward(dPredictionBuffer.View, dEmbeddingBuffer.View);

        var wideImages = images.Wide();
        var wideEmbedding = embedding.Wide();
        var wideParameters = parameters.Wide();
        var wideDPrediction = dPrediction.Wide();
        // ~40 float32 kernels in a chain, each ~1e-6 relative: 1e-4 on O(1) outputs.
        Numerics.AssertClose(predictionBuffer.GetAsArray1D(), net.ForwardReference(wideImages, wideEmbedding, wideParameters, step), 1e-4, 1e-4, "unet forward");

        double Loss(double[] e, double[] p) => FiniteDifference.Dot(wideDPrediction, net.ForwardReference(wideImages, e, p, step));
        // Gradients are sums over the whole chain through five GroupNorms; float32 backward keeps ~1e-5 relative of the
        // largest terms, FD (float64, h = 1e-5) ~1e-9: 2e-3 relative plus absolute bounds both with margin, while any
        // wrong index, missing accumulation or skipped skip-gradient gives O(1) errors.
        Numerics.AssertClose(dEmbeddingBuffer.GetAsArray1D(), FiniteDifference.Gradient(e => Loss(e, wideParameters), wideEmbedding), 2e-3, 2e-3, "dEmbedding");

        var (actual, expected) = ParameterProbe.Sample(ParameterProbe.Slots(config.ParameterShapes()), extra: 10, rng,
            gradientBuffer.GetAsArray1D(), wideParameters, p => Loss(wideEmbedding, p));
        Numerics.AssertClose(actual, expected, 2e-3, 2e-3, "parameter gradients (one element of every tensor + 10 random)");
    }

    [Test]
    public void TinyPresetBuildsAtMnistSize()
    {
        using var net = new UNet(TestDevice.Cpu, UNetConfig.Tiny(), batch: 1, seed: 0);
        Assert.That(net.ParameterCount, Is.EqualTo(UNetConfig.Tiny().ParameterCount()));
        Assert.That(net.PredictionLength, Is.EqualTo(28 * 28 + 1));
        Assert.That(() => net.Slot("no.such"), Throws.ArgumentException.With.Message.Contains("no parameter named 'no.such'"));
    }
}
