using System.Text.Json;
using PoissonFlow.Data;
using PoissonFlow.IO;

namespace PoissonFlow.Tests;

public sealed class CliFeaturesTests
{
    private string _folder = "";

    [SetUp]
    public void CreateFolder() => _folder = Directory.CreateTempSubdirectory("pfgm-cli-features-").FullName;

    [TearDown]
    public void DeleteFolder() => Directory.Delete(_folder, recursive: true);

    private string File(string name) => Path.Combine(_folder, name);

    private string Samples(string name, float[] data, params int[] shape)
    {
        string path = File(name);
        Npy.Write(path, data, shape);
        return path;
    }

    private static void RequireFashionMnist()
    {
        if (!System.IO.File.Exists(IdxFile.FashionMnistPaths("test").Images)) Assert.Ignore($"Fashion-MNIST is not installed ({IdxFile.FashionMnistInstallHint})");
    }

    [Test]
    public void EvalRejectsBadImageSamplesWithOneLine()
    {
        var good = new float[3 * 784];
        CliHarness.Run("eval", "--samples", Samples("wide.npy", new float[3 * 785], 3, 785)).AssertUserError("wide.npy", "shape (3, 785)", "(n, 1, 28, 28)");
        CliHarness.Run("eval", "--samples", Samples("rgb.npy", new float[2 * 3 * 784], 2, 3, 28, 28)).AssertUserError("shape (2, 3, 28, 28)");
        CliHarness.Run("eval", "--samples", Samples("one.npy", new float[784], 1, 1, 28, 28)).AssertUserError("one.npy", "at least 2");
        var nan = (float[])good.Clone();
        nan[785] = float.NaN;
        CliHarness.Run("eval", "--samples", Samples("nan.npy", nan, 3, 784)).AssertUserError("nan.npy", "NaN", "[1, 1]");
        CliHarness.Run("eval", "--samples", File("absent.npy")).AssertUserError("absent.npy");
        CliHarness.Run("eval", "--samples", Samples("good.npy", good, 3, 784), "--features", File("none.safetensors"))
            .AssertUserError("--features", "none.safetensors", "pfgm train-features");
        string notFeatures = File("bad.safetensors");
        System.IO.File.WriteAllBytes(notFeatures, [1, 2, 3]);
        CliHarness.Run("eval", "--samples", Samples("good2.npy", good, 3, 28, 28), "--features", notFeatures, "--data-dir", _folder)
            .AssertUserError("fashion-mnist"); // the data check comes first: a missing package says how to install it
        CliHarness.Run("eval").AssertUserError("--run", "--samples");
    }

    [Test]
    public void TrainFeaturesRejectsBadOptionsAndMissingData()
    {
        CliHarness.Run("train-features", "--hidden", "16,x", "--out", File("f.safetensors")).AssertUserError("--hidden", "16,x");
        CliHarness.Run("train-features", "--epochs", "0", "--out", File("f.safetensors")).AssertUserError("--epochs");
        CliHarness.Run("train-features", "--data-dir", _folder, "--out", File("f.safetensors"))
            .AssertUserError(IdxFile.FashionMnistInstallHint);
        CliHarness.Run("train-features", "--out", Path.Combine(_folder, "no", "f.safetensors")).AssertUserError("does not exist");
    }

    [Test]
    public void TrainFeaturesIsByteIdenticalOnRerunAndEvalWritesMetrics()
    {
        RequireFashionMnist();
        string[] Train(string output) => ["train-features", "--train-count", "256", "--epochs", "1", "--batch", "64", "--hidden", "16,8", "--out", output];
        var first = CliHarness.Run(Train(File("a.safetensors")));
        Assert.That(first.ExitCode, Is.EqualTo(0), first.Error);
        Assert.That(first.Out, Does.Contain("test accuracy").And.Contain("256 training and 10000 test images"));
        Assert.That(CliHarness.Run(Train(File("b.safetensors"))).ExitCode, Is.EqualTo(0));
        Assert.That(System.IO.File.ReadAllBytes(File("a.safetensors")), Is.EqualTo(System.IO.File.ReadAllBytes(File("b.safetensors"))), "same seed, same bytes");

        // Test images as "samples": their FD to the test set is near the floor's scale, and unseen images are not
        // copies of training images.
        var (test, _) = IdxFile.ReadFashionMnist("test");
        string samples = Samples("s.npy", test.Pixels[(500 * 784)..(800 * 784)], 300, 1, 28, 28);
        var eval = CliHarness.Run("eval", "--samples", samples, "--features", File("a.safetensors"), "--nn-count", "20");
        Assert.That(eval.ExitCode, Is.EqualTo(0), eval.Error);
        Assert.That(eval.Out, Does.Contain("Frechet distance").And.Contain("floor").And.Contain("nearest training image"));
        using var metrics = JsonDocument.Parse(System.IO.File.ReadAllText(File("s.metrics.json")));
        var report = metrics.RootElement.GetProperty("report");
        double fd = report.GetProperty("frechetDistance").GetDouble(), floor = report.GetProperty("floor").GetDouble();
        Assert.That(fd, Is.GreaterThan(0).And.LessThan(3 * floor + 1e-3), "test images score like training images");
        Assert.That(report.GetProperty("sampleToTrainMin").GetDouble(), Is.GreaterThan(0.5), "test images are not training images");
        Assert.That(report.GetProperty("nearestNeighbourCount").GetInt32(), Is.EqualTo(20));
    }
}
