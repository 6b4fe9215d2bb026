using System.Diagnostics;
using PoissonFlow.Data;
using PoissonFlow.Kernels;
using PoissonFlow.Network;
using PoissonFlow.Network.Features;

namespace PoissonFlow.Tests;

public sealed class FeatureClassifierTests
{
    /// <summary>Mean cross-entropy of float64 logits.</summary>
    private static double MeanCrossEntropy(double[] logits, int[] labels, int classes) =>
        SoftmaxCrossEntropy.Reference(logits, labels, labels.Length, classes, 1.0).RowLoss.Average();

    /// <summary>
    /// Ten separable classes: each image is its class's random prototype plus noise, so a working network fits them
    /// within a few steps.
    /// </summary>
    private static (IdxImages Images, byte[] Labels) Prototypes(int count, int side, int seed)
    {
        var rng = new Random(seed);
        int pixels = side * side;
        var prototypes = Numerics.Uniform(rng, 10 * pixels);
        var data = new float[count * pixels];
        var labels = new byte[count];
        var noise = Numerics.Normal(rng, count * pixels, 0.3f);
        for (int i = 0; i < count; i++)
        {
            labels[i] = (byte)(i % 10);
            for (int p = 0; p < pixels; p++) data[i * pixels + p] = Math.Clamp(prototypes[labels[i] * pixels + p] + noise[i * pixels + p], -1f, 1f);
        }

        return (new IdxImages(data, count, side, side), labels);
    }

    [Test]
    public void GradientsMatchFiniteDifferencesOfTheFloat64Network()
    {
        var config = new ClassifierConfig(12, [7, 5], 4);
        const int batch = 6;
        var rng = new Random(11);
        var images = Numerics.Uniform(rng, batch * config.Input);
        var labels = Enumerable.Range(0, batch).Select(_ => rng.Next(config.Classes)).ToArray();
        var device = TestDevice.Cpu;
        using var model = new FeatureClassifier(device, config, seed: 3);
        using var imageBuffer = device.Accelerator.Allocate1D(images);
        using var labelBuffer = device.Accelerator.Allocate1D(labels);
        model.AccumulateGradients(imageBuffer.View, labelBuffer.View, batch);
        var store = model.Parameters;
        var gradients = store.Download(ParameterBuffer.Gradients);
        var weights = store.Download(ParameterBuffer.Weights).Wide();
        double Loss(double[] w) => MeanCrossEntropy(FeatureClassifier.ForwardReference(config, store, w, images.Wide(), batch, config.Layers), labels, config.Classes);
        var (actual, expected) = ParameterProbe.Sample(store.Tensors.Select(t => (t.Offset, t.Length)), 30, rng, gradients, weights, Loss);
        // float32 forward and backward through three small layers against float64 central differences (h = 1e-5):
        // ~1e-6 relative on gradients of size ~1e-2..1e-1.
        Numerics.AssertClose(actual, expected, 2e-3, 2e-6, "parameter gradients");
    }

    [Test]
    public void LogitsAndFeaturesMatchTheFloat64Forward()
    {
        var config = new ClassifierConfig(20, [9, 6], 3);
        const int count = 7;
        var images = Numerics.Uniform(new Random(12), count * config.Input);
        using var model = new FeatureClassifier(TestDevice.Cpu, config, seed: 4) { InferenceBatch = 3 }; // several inference batches
        var weights = model.Parameters.Download(ParameterBuffer.Ema).Wide();
        // Two or three dot products of <= 20 float32 terms and a SiLU: ~1e-6 relative.
        Numerics.AssertClose(model.Logits(images, count),
            FeatureClassifier.ForwardReference(config, model.Parameters, weights, images.Wide(), count, config.Layers), 1e-5, 1e-6, "logits");
        Numerics.AssertClose(model.Features(images, count),
            FeatureClassifier.ForwardReference(config, model.Parameters, weights, images.Wide(), count, config.Layers - 1), 1e-5, 1e-6, "features");
    }

    [Test]
    public void TrainingFitsSeparableClasses()
    {
        var (images, labels) = Prototypes(320, 8, 13);
        var options = new FeatureTrainingOptions(Epochs: 6, Batch: 32, LearningRate: 1e-2f, WarmupSteps: 5, EmaRate: 0.9f, LossInterval: 20);
        var losses = new List<double>();
        using var model = FeatureTraining.Train(TestDevice.Cpu, new ClassifierConfig(64, [32, 16], 10), images, labels, options, p => losses.Add(p.Loss));
        Assert.That(model.StepCount, Is.EqualTo(60));
        Assert.That(losses, Has.Count.EqualTo(3));
        Assert.That(losses[^1], Is.LessThan(losses[0] * 0.5), "the loss falls");
        Assert.That(model.Accuracy(images.Pixels, labels), Is.GreaterThan(0.9));
    }

    [Test]
    public void ShortRealDataRunsAreBitIdentical()
    {
        if (!File.Exists(IdxFile.FashionMnistPaths("test").Images)) Assert.Ignore($"Fashion-MNIST is not installed ({IdxFile.FashionMnistInstallHint})");
        var (test, labels) = IdxFile.ReadFashionMnist("test");
        const int count = 256;
        var subset = test with { Pixels = test.Pixels[..(count * 784)], Count = count };
        var options = new FeatureTrainingOptions(Epochs: 2, Batch: 64, Seed: 5);
        float[] Run()
        {
            using var model = FeatureTraining.Train(TestDevice.Cpu, new ClassifierConfig(784, [24, 12], 10), subset, labels[..count], options);
            return [.. model.Parameters.Download(ParameterBuffer.Weights), .. model.Parameters.Download(ParameterBuffer.Ema)];
        }

        var first = Run();
        var second = Run();
        Assert.That(first.Select(BitConverter.SingleToInt32Bits), Is.EqualTo(second.Select(BitConverter.SingleToInt32Bits)));
        Assert.That(FeatureTraining.Shuffle(10, 5, 0), Is.Not.EqualTo(FeatureTraining.Shuffle(10, 5, 1)), "each epoch shuffles anew");
        Assert.That(FeatureTraining.Shuffle(1000, 5, 0).Order(), Is.EqualTo(Enumerable.Range(0, 1000)), "a permutation");
    }

    [Test]
    public void FeaturesFileRoundTripsAndRejectsOtherVersionsAndShapes()
    {
        string folder = Directory.CreateTempSubdirectory("pfgm-features-").FullName;
        try
        {
            var config = new ClassifierConfig(16, [8], 3);
            var images = Numerics.Uniform(new Random(14), 5 * 16);
            using var model = new FeatureClassifier(TestDevice.Cpu, config, seed: 6);
            var info = new FeatureModelInfo(FeatureModelFile.Version, config.ToString(), "test-set", 5, "abc", 5, "def", 0.5, "none");
            string path = Path.Combine(folder, "f.safetensors");
            FeatureModelFile.Save(path, model, info);
            var (loaded, readInfo) = FeatureModelFile.Load(TestDevice.Cpu, path);
            using (loaded)
            {
                Assert.That(readInfo, Is.EqualTo(info));
                Assert.That(loaded.Config, Is.EqualTo(config));
                Assert.That(loaded.Logits(images, 5), Is.EqualTo(model.Logits(images, 5)));
            }

            var file = SafeTensorsFile.Read(path);
            var tensors = file.Names.Select(n => new NamedTensor(n, file.Shape(n), file.Get(n, file.Shape(n)))).ToList();
            var metadata = file.Metadata.ToDictionary();
            metadata["pfgm_features_version"] = "2";
            string future = Path.Combine(folder, "v2.safetensors");
            SafeTensorsFile.Write(future, tensors, metadata);
            Assert.That(() => FeatureModelFile.Load(TestDevice.Cpu, future), Throws.TypeOf<CheckpointException>().With.Message.Contains("version 2"));
            metadata["pfgm_features_version"] = "1";
            metadata["architecture"] = "mlp 16-9-3 silu";
            string other = Path.Combine(folder, "other.safetensors");
            SafeTensorsFile.Write(other, tensors, metadata);
            Assert.That(() => FeatureModelFile.Load(TestDevice.Cpu, other), Throws.TypeOf<CheckpointException>().With.Message.Contains("layers.0.weight"));
            Assert.That(() => ClassifierConfig.Parse("mlp 16 silu"), Throws.TypeOf<FormatException>());
        }
        finally
        {
            Directory.Delete(folder, recursive: true);
        }
    }

    [Test]
    public void CommittedFeaturesFileReachesItsAccuracyOnTheTestSet()
    {
        string? root = TestContext.CurrentContext.TestDirectory;
        while (root is not null && !File.Exists(Path.Combine(root, "PoissonFlow.sln"))) root = Path.GetDirectoryName(root);
        Assert.That(root, Is.Not.Null, "repository root");
        string path = Path.Combine(root!, FeatureModelFile.DefaultRelativePath);
        Assert.That(File.Exists(path), $"{path} is committed");
        if (!File.Exists(IdxFile.FashionMnistPaths("test").Images)) Assert.Ignore($"Fashion-MNIST is not installed ({IdxFile.FashionMnistInstallHint})");
        var (test, labels) = IdxFile.ReadFashionMnist("test");
        var timer = Stopwatch.StartNew();
        var (model, info) = FeatureModelFile.Load(TestDevice.Cpu, path);
        using (model)
        {
            double accuracy = model.Accuracy(test.Pixels, labels);
            TestContext.Out.WriteLine($"accuracy {accuracy:P2} in {timer.Elapsed.TotalSeconds:F1} s");
            Assert.That(accuracy, Is.GreaterThan(0.88));
            Assert.That(accuracy, Is.EqualTo(info.TestAccuracy).Within(1e-3), "what the file's metadata records (up to float rounding across devices)");
            Assert.That(info.TestSha256, Is.EqualTo(FeatureModelFile.DataHash(test, labels)), "trained against this test set");
        }
    }
}
