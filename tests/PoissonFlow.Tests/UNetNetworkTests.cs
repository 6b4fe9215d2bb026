using ILGPU;
using ILGPU.Runtime;
using PoissonFlow.Kernels;
using PoissonFlow.Network;
using PoissonFlow.Network.UNet;

namespace PoissonFlow.Tests;

/// <summary>
/// The whole image network (embedding MLP + U-Net with attention at its lowest level and in the middle) on the CPU
/// accelerator at a toy size: the training forward pass
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
        AttentionLevels = [1],
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
        // Every third pixel of both images and channels (each FD costs two float64 network passes).
        var pixels = Enumerable.Range(0, widePoints.Length).Where(i => i % 3 == 0).ToArray();
        var inputGradient = Read(net.InputGradient);
        Assert.That(inputGradient, Has.All.Matches<float>(float.IsFinite), "input gradient written everywhere");
        Numerics.AssertClose(pixels.Select(i => inputGradient[i]).ToArray(), FiniteDifference.Gradient(x => Loss(wideParameters, x), widePoints, pixels),
            2e-3, 2e-3, "input gradient");
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

        // Two other batch sizes push the last training pass's buffers out of the cache: differentiating it is then a
        // clear error, not a read of freed memory.
        using var points2 = device.Accelerator.Allocate1D(Numerics.Uniform(rng, 2 * net.Dim));
        using var z2 = device.Accelerator.Allocate1D(new[] { 1f, 2f });
        using var dPrediction = device.Accelerator.Allocate1D(Numerics.Uniform(rng, 2 * net.OutputWidth));
        net.ForwardTraining(points2.View, z2.View, 2);
        net.ForwardReference(weights.Wide(), new double[net.Dim], [1.0], 1, 0);
        net.ForwardReference(weights.Wide(), new double[4 * net.Dim], [1.0, 1.0, 1.0, 1.0], 4, 0);
        Assert.That(() => net.Backward(dPrediction.View, 2), Throws.InvalidOperationException.With.Message.Contains("no training forward pass of batch 2"));
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
        Assert.That(Values("conv_out.weight").Concat(Values("up1.block0.conv1.weight")).Concat(Values("mid.attn.proj_out.weight")), Is.All.EqualTo(0f),
            "DDPM's zero-initialised convs");
        Assert.That(Values("up1.attn1.norm.gamma"), Is.All.EqualTo(1f));
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
    public void TenStepsSavedLoadedAndTenMoreEqualTwentyUninterruptedStepsBitForBit()
    {
        var device = TestDevice.Cpu;
        var config = Toy(dropout: 0.2f);
        var options = new TrainerOptions(new AdamOptions(LearningRate: 1e-2f, WarmupSteps: 4, EmaRate: 0.9f), LossInterval: 5);
        const int batch = 2;
        int dim = config.ImageChannels * config.ImageSize * config.ImageSize;
        // A fresh batch every step, reproducible from the step number: images, z and a field-like target.
        var batches = Enumerable.Range(0, 20).Select(step =>
        {
            var rng = new Random(500 + step);
            return new[]
            {
                device.Accelerator.Allocate1D(Numerics.Uniform(rng, batch * dim)),
                device.Accelerator.Allocate1D(Numerics.Uniform(rng, batch, 0.01f, 10f)),
                device.Accelerator.Allocate1D(Numerics.Uniform(rng, batch * (dim + 1), -2f, 2f)),
            };
        }).ToArray();
        string folder = Directory.CreateTempSubdirectory("pfgm-unet-resume-").FullName;
        try
        {
            void Train(Trainer trainer, int from, int to)
            {
                for (int i = from; i < to; i++) trainer.Step(batches[i][0].View, batches[i][1].View, batches[i][2].View, batch);
            }

            float[][] State(Trainer trainer) => Enum.GetValues<ParameterBuffer>().Select(b => trainer.Network.Parameters.Download(b)).ToArray();

            string path = Path.Combine(folder, "resume.safetensors");
            using var net = new UNetNetwork(device, config, seed: 7);
            using var trainer = new Trainer(net, options);
            Train(trainer, 0, 10);
            Checkpoint.Save(path, trainer);
            Train(trainer, 10, 20);
            var expected = State(trainer);

            // The dropout masks come from the network's seed and the trainer's step, so a fresh network with the same
            // seed, loaded from the checkpoint, continues exactly.
            using var resumed = new UNetNetwork(device, config, seed: 7);
            using var resumedTrainer = new Trainer(resumed, options);
            Checkpoint.Load(path, resumedTrainer);
            Train(resumedTrainer, 10, 20);
            var actual = State(resumedTrainer);
            foreach (var buffer in new[] { ParameterBuffer.Weights, ParameterBuffer.Ema, ParameterBuffer.AdamM, ParameterBuffer.AdamV })
            {
                Assert.That(actual[(int)buffer], Is.EqualTo(expected[(int)buffer]), $"{buffer} after 20 steps");
            }

            Assert.That(resumedTrainer.LastLoss, Is.EqualTo(trainer.LastLoss));
            Assert.That(float.IsFinite(trainer.LastLoss), $"loss {trainer.LastLoss}");
            using (var fresh = new UNetNetwork(device, config, seed: 7))
            {
                Assert.That(expected[(int)ParameterBuffer.Weights], Is.Not.EqualTo(fresh.Parameters.Download(ParameterBuffer.Weights)), "the weights moved");
            }

            Assert.That(resumed.TrainingStep, Is.EqualTo(19), "the trainer hands its step to the network before each forward pass");

            // The masks matter and change: the same forward pass under another step or another seed differs, so the
            // equality above is the masks being redrawn at the right steps, not dropout doing nothing.
            float[] Prediction(UNetNetwork network, long step)
            {
                network.SetTrainingStep(step);
                return Read(network.ForwardTraining(batches[0][0].View, batches[0][1].View, batch));
            }

            using var otherSeed = new UNetNetwork(device, config, seed: 8);
            otherSeed.Parameters.Upload(ParameterBuffer.Weights, actual[(int)ParameterBuffer.Weights]);
            var reference = Prediction(resumed, 3);
            Assert.That(Prediction(resumed, 4), Is.Not.EqualTo(reference), "another step draws other masks");
            Assert.That(Prediction(otherSeed, 3), Is.Not.EqualTo(reference), "another seed draws other masks");
            Assert.That(Prediction(resumed, 3), Is.EqualTo(reference), "the same step and seed redraw the same masks");
        }
        finally
        {
            foreach (var buffer in batches.SelectMany(b => b)) buffer.Dispose();
            Directory.Delete(folder, recursive: true);
        }
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
            AttentionLevels = [1, 3],
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
        Assert.That(back.AttentionLevels, Is.EqualTo(new[] { 1, 3 }));
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
        Rejects(json.Replace("\"attention_levels\":[1,3]", "\"attention_levels\":[4]"), "attention levels (4)");
    }
}
