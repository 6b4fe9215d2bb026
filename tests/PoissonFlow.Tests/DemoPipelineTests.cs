using System.Text.Json;
using PoissonFlow.IO;

namespace PoissonFlow.Tests;

/// <summary>
/// End-to-end runs of train, sample, eval and demo through <see cref="PoissonFlow.Cli.CliApp"/> at toy sizes (seconds):
/// they check the wiring, the files and the error paths, not the quality (the demo's defaults are measured by hand).
/// </summary>
[NonParallelizable]
public sealed class DemoPipelineTests
{
    private static readonly string[] Tiny = TinyWithWidth(8);

    private static string[] TinyWithWidth(int hidden) =>
        ["--steps", "6", "--batch", "16", "--ref-batch", "32", "--hidden", $"{hidden}", "--depth", "1", "--count", "200", "--device", "cpu"];

    private string _folder = "";

    [SetUp]
    public void CreateFolder() => _folder = Directory.CreateTempSubdirectory("pfgm-demo-").FullName;

    [TearDown]
    public void DeleteFolder() => Directory.Delete(_folder, recursive: true);

    [Test]
    public void Train_then_sample_then_eval_write_a_complete_run_folder()
    {
        string run = Path.Combine(_folder, "run");
        var train = CliHarness.Run(["train", "--data", "moons", "--out", run, .. Tiny]);
        Assert.That(train.ExitCode, Is.EqualTo(0), train.Error);
        Assert.That(train.Out, Does.Contain("PFGM: M ").And.Contain("trained in"));
        Assert.That(File.Exists(Path.Combine(run, "config.json")) && File.Exists(Path.Combine(run, "model.safetensors")));

        var sample = CliHarness.Run("sample", "--run", run, "--samples", "64", "--ode-steps", "4", "--device", "cpu");
        Assert.That(sample.ExitCode, Is.EqualTo(0), sample.Error);
        var samples = Npy.Read(Path.Combine(run, "samples.npy"));
        Assert.That(samples.Shape, Is.EqualTo(new[] { 64, 2 }));
        Assert.That(samples.Data.All(float.IsFinite), Is.True);

        var eval = CliHarness.Run("eval", "--run", run, "--device", "cpu");
        Assert.That(eval.ExitCode, Is.EqualTo(0), eval.Error);
        Assert.That(eval.Out, Does.Contain("sliced W2").And.Contain("floor"));
        using var metrics = JsonDocument.Parse(File.ReadAllText(Path.Combine(run, "metrics.json")));
        double swd = metrics.RootElement.GetProperty("slicedWasserstein").GetDouble();
        double floor = metrics.RootElement.GetProperty("floor").GetDouble();
        Assert.That(swd, Is.GreaterThan(0));
        Assert.That(floor, Is.GreaterThan(0));
        foreach (string png in new[] { "samples.png", "trajectories.png" })
        {
            Assert.That(new FileInfo(Path.Combine(run, png)).Length, Is.GreaterThan(1000), png);
        }

        // nothing half-written left behind
        Assert.That(Directory.GetFiles(run).Where(f => f.EndsWith(".tmp", StringComparison.Ordinal)), Is.Empty);
    }

    [Test]
    public void Demo_runs_everything_into_the_given_folder()
    {
        string run = Path.Combine(_folder, "demo");
        var demo = CliHarness.Run(["demo", "--out", run, "--samples", "64", "--ode-steps", "4", .. Tiny]);
        Assert.That(demo.ExitCode, Is.EqualTo(0), demo.Error);
        Assert.That(demo.Out, Does.Contain("sliced W2").And.Contain("done in"));
        Assert.That(Directory.GetFiles(run).Select(Path.GetFileName),
            Is.SupersetOf(new[] { "config.json", "model.safetensors", "samples.npy", "metrics.json", "samples.png", "trajectories.png" }));
    }

    [Test]
    public void Unknown_data_set_is_one_line_and_exit_2()
    {
        CliHarness.Run("train", "--data", "hearts", "--out", Path.Combine(_folder, "x"), "--device", "cpu")
            .AssertUserError("unknown data set 'hearts'", "heart");
    }

    [TestCase("x,y\n1,2\nnan,3\n", "line 3, column 1")]
    [TestCase("x\n1\n2\n", "at least 2 coordinates")]
    [TestCase("1,2\n3\n", "line 2 has 1 column(s)")]
    public void Bad_data_files_are_one_line_and_exit_2(string content, string problem)
    {
        string path = Path.Combine(_folder, "bad.csv");
        File.WriteAllText(path, content);
        CliHarness.Run("train", "--data", path, "--out", Path.Combine(_folder, "x"), "--device", "cpu").AssertUserError(path, problem);
    }

    [Test]
    public void Unreadable_npy_is_one_line_and_exit_2()
    {
        string path = Path.Combine(_folder, "bad.npy");
        File.WriteAllText(path, "not numpy");
        CliHarness.Run("train", "--data", path, "--out", Path.Combine(_folder, "x"), "--device", "cpu").AssertUserError(path);
    }

    [Test]
    public void A_checkpoint_of_another_model_is_one_line_and_exit_2()
    {
        string first = Path.Combine(_folder, "a"), second = Path.Combine(_folder, "b");
        Assert.That(CliHarness.Run(["train", "--out", first, .. Tiny]).ExitCode, Is.EqualTo(0));
        Assert.That(CliHarness.Run(["train", "--out", second, .. TinyWithWidth(12)]).ExitCode, Is.EqualTo(0));
        File.Copy(Path.Combine(second, "model.safetensors"), Path.Combine(first, "model.safetensors"), overwrite: true);
        CliHarness.Run("sample", "--run", first, "--samples", "8", "--device", "cpu").AssertUserError("model.safetensors", "config.json");
        // and a file that is no checkpoint at all
        File.WriteAllText(Path.Combine(first, "model.safetensors"), "garbage");
        CliHarness.Run("sample", "--run", first, "--samples", "8", "--device", "cpu").AssertUserError("model.safetensors");
    }

    [Test]
    public void Sample_needs_a_run_folder()
    {
        CliHarness.Run("sample", "--run", Path.Combine(_folder, "none"), "--device", "cpu").AssertUserError("no such folder");
        Directory.CreateDirectory(Path.Combine(_folder, "empty"));
        CliHarness.Run("sample", "--run", Path.Combine(_folder, "empty"), "--device", "cpu").AssertUserError("no config.json");
    }
}
