using ILGPU;
using ILGPU.Runtime;
using PoissonFlow.Kernels;
using PoissonFlow.Network;
using PoissonFlow.Network.UNet;

namespace PoissonFlow.Tests;

/// <summary>
/// The whole image network (embedding MLP + U-Net) on the CPU accelerator at a toy size: the training forward pass
/// against the float64 composition of the kernels' references, every gradient (parameters including the embedding MLP,
/// and the opt-in input gradient) against float64 central finite differences, Predict against the training pass and
/// the EMA weights, the config JSON and the initialisation.
/// </summary>
public sealed class UNetNetworkTests
{
    private static UNetConfig Toy(float dropout) => new()
    {
        ImageChannels = 2,
        ImageSize = 8,
        BaseChannels = 8,
        ChannelMultipliers = [1, 2],
        ResBlocksPerLevel = 1,
        Dropout = dropout,
    };

    private static float[] Read(ArrayView<float> view)
    {
        var host = new float[view.Length];
        view.CopyToCPU(host);
        return host;
    }

    [Test]
    public void GradientsMatchFiniteDifferencesOfTheFloat64Network()
    {
        const int batch = 2;
        const long step = 5;
        var device = TestDevice.Cpu;
        using var net = new UNetNetwork(device, Toy(dropout: 0.1f), seed: 3) { ComputeInputGradient = true };
        var rng = new Random(11);
        var parameters = Numerics.Uniform(rng, (int)net.Parameters.Count, -0.3f, 0.3f);
        var points = Numerics.Uniform(rng, batch * net.Dim);
        // z over the range a PFGM batch sees (the embedding reads raw z).
        float[] z = [0.07f, 2.5f];
        var dPrediction = Numerics.Uniform(rng, batch * net.OutputWidth);
        net.Parameters.Upload(ParameterBuffer.Weights, parameters);
        using var pointsBuffer = device.Accelerator.Allocate1D(points);
        using var zBuffer = device.Accelerator.Allocate1D(z);
        using var dPredictionBuffer = device.Accelerator.Allocate1D(dPrediction);
        net.SetTrainingStep(step);

        // A first pass allocates the batch's buffers; poison them, clear the gradients, and run the pass under test.
        var output = net.ForwardTraining(pointsBuffer.View, zBuffer.View, batch);
        net.Backward(dPredictionBuffer.View, batch);
        output.CopyFromCPU(Numerics.Poison((int)output.Length));
        net.InputGradient.CopyFromCPU(Numerics.Poison(batch * net.Dim));
        net.Parameters.Upload(ParameterBuffer.Gradients, new float[net.Parameters.Count]);
        output = net.ForwardTraining(pointsBuffer.View, zBuffer.View, batch);
        net.Backward(dPredictionBuffer.View, batch);
        device.Synchronize();

        var wideParameters = parameters.Wide();
        var widePoints = points.Wide();
        var wideZ = z.Wide();
        var wideDPrediction = dPrediction.Wide();
        // ~45 float32 kernels in a chain, each ~1e-6 relative: 1e-4 on O(1) outputs.
        Numerics.AssertClose(Read(output), net.ForwardReference(wideParameters, widePoints, wideZ, batch, step), 1e-4, 1e-4, "forward");

        double Loss(double[] p, double[] x) => FiniteDifference.Dot(wideDPrediction, net.ForwardReference(p, x, wideZ, batch, step));
        // As in UNetTests: float32 backward sums keep ~1e-5 of the largest terms, FD (float64, h = 1e-5) ~1e-9; 2e-3
        // relative + absolute leaves margin while a wrong index or a missing term gives O(1) errors.
        Numerics.AssertClose(Read(net.InputGradient), FiniteDifference.Gradient(x => Loss(wideParameters, x), widePoints), 2e-3, 2e-3,
            "input gradient");
        var (actual, expected) = ParameterProbe.Sample(ParameterProbe.Slots(net.Config.ParameterShapes()), extra: 20, rng,
            net.Parameters.Download(ParameterBuffer.Gradients), wideParameters, p => Loss(p, widePoints));
        Numerics.AssertClose(actual, expected, 2e-3, 2e-3, "parameter gradients (one element of every tensor, embedding MLP included, + 20 random)");
        // The embedding MLP's every element: its gradient flows through every block, so it is the one most easily broken.
        var gradients = net.Parameters.Download(ParameterBuffer.Gradients);
        foreach (var name in new[] { "embed.dense0.weight", "embed.dense1.bias" })
        {
            var tensor = net.Parameters.Tensor(name);
            var indices = Enumerable.Range((int)tensor.Offset, (int)tensor.Length).Where((_, i) => i % 7 == 0).ToArray();
            Numerics.AssertClose(indices.Select(i => gradients[i]).ToArray(), FiniteDifference.Gradient(p => Loss(p, widePoints), wideParameters, indices),
                2e-3, 2e-3, name);
        }
    }

    [Test]
    public void PredictMatchesTheTrainingPassAndUsesTheEmaWeights()
    {
        var device = TestDevice.Cpu;
        using var net = new UNetNetwork(device, Toy(dropout: 0f), seed: 1);
        var rng = new Random(5);
        var weights = Numerics.Uniform(rng, (int)net.Parameters.Count, -0.3f, 0.3f);
        var ema = Numerics.Uniform(rng, (int)net.Parameters.Count, -0.3f, 0.3f);
        net.Parameters.Upload(ParameterBuffer.Weights, weights);
        net.Parameters.Upload(ParameterBuffer.Ema, ema);
        foreach (int batch in new[] { 3, 1, 2, 3 })
        {
            var points = Numerics.Uniform(rng, batch * net.Dim);
            var z = Numerics.Uniform(rng, batch, 0.01f, 5f);
            using var pointsBuffer = device.Accelerator.Allocate1D(points);
            using var zBuffer = device.Accelerator.Allocate1D(z);
            using var outputBuffer = device.Accelerator.Allocate1D(Numerics.Poison(batch * net.OutputWidth));
            var training = Read(net.ForwardTraining(pointsBuffer.View, zBuffer.View, batch));
            net.InferenceWeights = InferenceWeights.Live;
            net.Predict(pointsBuffer.View, zBuffer.View, outputBuffer.View, batch);
            // Same kernels on the same weights, without dropout: equal up to nothing but summation order (none differs).
            Numerics.AssertClose(outputBuffer.GetAsArray1D(), training.Select(v => (double)v).ToArray(), 1e-6, 1e-6, $"live predict, batch {batch}");
            outputBuffer.CopyFromCPU(Numerics.Poison(batch * net.OutputWidth));
            net.InferenceWeights = InferenceWeights.Ema;
            net.Predict(pointsBuffer.View, zBuffer.View, outputBuffer.View, batch);
            Numerics.AssertClose(outputBuffer.GetAsArray1D(), net.ForwardReference(ema.Wide(), points.Wide(), z.Wide(), batch, 0), 1e-4, 1e-4,
                $"EMA predict, batch {batch}");
        }
    }

    [Test]
    public void FreshNetworkIsInitialisedLikeDdpmAndPredictsZero()
    {
        var device = TestDevice.Cpu;
        using var net = new UNetNetwork(device, Toy(dropout: 0.1f), seed: 9);
        var store = net.Parameters;
        Assert.That(store.Count, Is.EqualTo(net.Config.ParameterCount()), "unpadded layout of UNetConfig.ParameterShapes");
        Assert.That(store.Tensors.Select(t => t.Name), Is.EqualTo(net.Config.ParameterShapes().Select(s => s.Name)));
        var weights = store.Download(ParameterBuffer.Weights);
        float[] Values(string name) => store.Slice(weights, store.Tensor(name));
        Assert.That(Values("down0.block0.norm0.gamma"), Is.All.EqualTo(1f));
        Assert.That(Values("norm_out.beta").Concat(Values("conv_in.bias")).Concat(Values("down0.block0.embed.bias")), Is.All.EqualTo(0f));
        Assert.That(Values("conv_out.weight").Concat(Values("up1.block0.conv1.weight")), Is.All.EqualTo(0f), "DDPM's zero-initialised convs");
        var conv = Values("down1.block0.conv0.weight");
        double bound = 1 / Math.Sqrt(8 * 9);
        Assert.That(conv, Is.All.InRange(-bound, bound));
        Assert.That(conv.Max() - conv.Min(), Is.GreaterThan(bound), "spread over the bound, not constant");
        Assert.That(store.Download(ParameterBuffer.Ema), Is.EqualTo(weights));

        using var points = device.Accelerator.Allocate1D(Numerics.Uniform(new Random(1), 2 * net.Dim));
        using var z = device.Accelerator.Allocate1D(new[] { 0.5f, 20f });
        using var output = device.Accelerator.Allocate1D(Numerics.Poison(2 * net.OutputWidth));
        net.Predict(points.View, z.View, output.View, 2);
        Assert.That(output.GetAsArray1D(), Is.All.EqualTo(0f), "a zero output conv with zero bias predicts 0");
    }

    [Test]
    public void ConfigJsonRoundTripsAndBadJsonNamesTheField()
    {
        var config = new UNetConfig
        {
            ImageChannels = 3,
            ImageSize = 32,
            BaseChannels = 16,
            ChannelMultipliers = [1, 2, 2, 2],
            ResBlocksPerLevel = 2,
            Dropout = 0.13f,
            SkipRescale = true,
            EmbeddingInput = EmbeddingInput.LogZ,
        };
        string json = config.ToJson();
        using var net = UNetNetwork.FromConfigJson(TestDevice.Cpu, json);
        Assert.That(net.ConfigJson, Is.EqualTo(json));
        var back = net.Config;
        Assert.That((back.ImageChannels, back.ImageSize, back.BaseChannels, back.ResBlocksPerLevel, back.Dropout, back.SkipRescale, back.EmbeddingInput),
            Is.EqualTo((3, 32, 16, 2, 0.13f, true, EmbeddingInput.LogZ)));
        Assert.That(back.ChannelMultipliers, Is.EqualTo(new[] { 1, 2, 2, 2 }));
        Assert.That(net.ModelType, Is.EqualTo(UNetNetwork.TypeTag));
        Assert.That(net.OutputWidth, Is.EqualTo(3 * 32 * 32 + 1));

        static void Rejects(string json, string field) =>
            Assert.That(() => UNetConfig.FromJson(json), Throws.ArgumentException.With.Message.Contains(field), json);
        Rejects(json.Replace("\"image_size\":32,", ""), "image_size");
        Rejects(json.Replace("\"image_size\":32", "\"image_size\":\"big\""), "image_size");
        Rejects(json.Replace("\"dropout\"", "\"dropout_rate\""), "dropout_rate");
        Rejects(json.Replace("\"image_size\":32", "\"image_size\":30"), "image size 30");
        Rejects(json.Replace("\"log_z\"", "\"sqrt_z\""), "embedding_input");
        Rejects("{", "unet config JSON");
    }
}
