using System.Diagnostics;
using System.Text.Json;
using PoissonFlow.IO;
using PoissonFlow.Network;

namespace PoissonFlow.Tests.Images;

/// <summary>
/// Image runs end to end through the CLI at toy sizes (8 x 8 grey images, a few steps): the run folder's files, the
/// checkpoint's sampling card, bit-identical resume (also after a SIGKILL of a child process), the sample grid and
/// .npy, and the one-line errors for bad input.
/// </summary>
[NonParallelizable]
public sealed class ImagePipelineTests
{
    private string _folder = "";
    private string _idx = "";

    [SetUp]
    public void CreateFolder()
    {
        _folder = Directory.CreateTempSubdirectory("pfgm-image-run-").FullName;
        _idx = TestImages.WriteIdx(Path.Combine(_folder, "blobs-idx3-ubyte.gz"), 64, 8, seed: 4);
    }

    [TearDown]
    public void DeleteFolder() => Directory.Delete(_folder, recursive: true);

    /// <summary>A tiny image run: an MLP on the 64 pixels, batch 4 over a reference batch of 8.</summary>
    private string[] Train(string run, int steps, int every, params string[] extra) =>
    [
        "train", "--data", _idx, "--model", "mlp", "--hidden", "16", "--depth", "1", "--batch", "4", "--ref-batch", "8",
        "--steps", $"{steps}", "--checkpoint-every", $"{every}", "--warmup", "2", "--lr", "1e-3", "--out", run, "--device", "cpu", .. extra,
    ];

    [Test]
    public void Training_writes_config_checkpoints_plots_and_a_standalone_checkpoint()
    {
        string run = Path.Combine(_folder, "run");
        var result = CliHarness.Run(Train(run, 6, 3));
        Assert.That(result.ExitCode, Is.EqualTo(0), result.Error);
        Assert.That(result.Out, Does.Contain("N = 64").And.Contain("PFGM: M ").And.Contain("restrict_M on").And.Contain("images/s"));

        var info = Checkpoint.ReadInfo(Path.Combine(run, "model.safetensors"));
        Assert.That(info.Step, Is.EqualTo(6));
        Assert.That(info.HasOptimizerState, Is.True, "a checkpoint that can resume");
        Assert.That(info.Sampling!.DataShape, Is.EqualTo(new[] { 1, 8, 8 }));
        Assert.That(info.Sampling.PixelRange, Is.EqualTo(new[] { -1.0, 1.0 }));
        Assert.That(info.Sampling.PosteriorMeanScale, Is.Null, "image networks predict the field itself");
        Assert.That((info.Sampling.SamplerGamma, info.Sampling.SamplerZExp), Is.EqualTo((5.0, 5.0)), "the z-substitution of spec section 5");

        using var config = JsonDocument.Parse(File.ReadAllText(Path.Combine(run, "config.json")));
        Assert.That(config.RootElement.GetProperty("kind").GetString(), Is.EqualTo("images"));
        Assert.That(config.RootElement.GetProperty("hyper").GetProperty("m").GetInt32(), Is.EqualTo(info.Sampling.Hyper.M));

        using var log = JsonDocument.Parse(File.ReadAllText(Path.Combine(run, "training-log.json")));
        Assert.That(log.RootElement.GetProperty("previewSteps").EnumerateArray().Select(e => e.GetInt64()), Is.EqualTo(new long[] { 3, 6 }));
        var previews = Npy.Read(Path.Combine(run, "previews.npy"));
        Assert.That(previews.Shape, Is.EqualTo(new[] { 2 * 8, 64 }), "two rows of eight previews");
        foreach (string png in new[] { "loss.png", "samples-over-training.png" })
        {
            Assert.That(new FileInfo(Path.Combine(run, png)).Length, Is.GreaterThan(100), png);
        }

        Assert.That(Directory.GetFiles(run, "*.tmp"), Is.Empty, "nothing half-written left behind");
    }

    [Test]
    public void Half_then_resume_gives_bit_identical_weights_to_one_uninterrupted_run()
    {
        string straight = Path.Combine(_folder, "straight"), resumed = Path.Combine(_folder, "resumed");
        Assert.That(CliHarness.Run(Train(straight, 8, 4)).ExitCode, Is.EqualTo(0));
        var half = CliHarness.Run(Train(resumed, 4, 4));
        Assert.That(half.ExitCode, Is.EqualTo(0), half.Error);
        var rest = CliHarness.Run("train", "--out", resumed, "--resume", "--steps", "8", "--device", "cpu");
        Assert.That(rest.ExitCode, Is.EqualTo(0), rest.Error);
        Assert.That(rest.Out, Does.Contain("resuming").And.Contain("at step 4 of 8"));
        AssertSameTensors(Path.Combine(straight, "model.safetensors"), Path.Combine(resumed, "model.safetensors"));
    }

    [Test]
    public void A_run_killed_with_sigkill_resumes_to_the_uninterrupted_result()
    {
        string straight = Path.Combine(_folder, "straight"), killed = Path.Combine(_folder, "killed");
        const int steps = 40, every = 4;
        // The child is the real pfgm process (the assembly the tests reference), killed as soon as its first
        // checkpoint exists, i.e. somewhere in the middle of a later step, preview or checkpoint write.
        string pfgm = typeof(PoissonFlow.Cli.CliApp).Assembly.Location;
        var start = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (string arg in new[] { pfgm }.Concat(Train(killed, steps, every))) start.ArgumentList.Add(arg);
        using (var child = Process.Start(start)!)
        {
            child.OutputDataReceived += (_, _) => { };
            child.ErrorDataReceived += (_, _) => { };
            child.BeginOutputReadLine();
            child.BeginErrorReadLine();
            var timer = Stopwatch.StartNew();
            while (!File.Exists(Path.Combine(killed, "model.safetensors")) && !child.HasExited && timer.Elapsed < TimeSpan.FromMinutes(3)) Thread.Sleep(10);
            Thread.Sleep(new Random().Next(0, 150));
            Assert.That(child.HasExited, Is.False, "the child must still be training when it is killed");
            child.Kill(); // SIGKILL on Linux
            child.WaitForExit();
        }

        var info = Checkpoint.ReadInfo(Path.Combine(killed, "model.safetensors"));
        Assert.That(info.Step % every, Is.EqualTo(0), "the surviving checkpoint is a whole one");
        Assert.That(info.Step, Is.LessThan(steps));
        var resume = CliHarness.Run("train", "--out", killed, "--resume", "--device", "cpu");
        Assert.That(resume.ExitCode, Is.EqualTo(0), resume.Error);
        Assert.That(Directory.GetFiles(killed, "*.tmp"), Is.Empty, "stale temporary files are cleared on resume");
        Assert.That(CliHarness.Run(Train(straight, steps, every)).ExitCode, Is.EqualTo(0));
        AssertSameTensors(Path.Combine(straight, "model.safetensors"), Path.Combine(killed, "model.safetensors"));
    }

    [Test]
    public void The_tiny_unet_trains_resumes_bit_identically_and_samples_on_small_images()
    {
        // The real image network at 8 x 8 (three levels: 8, 4, 2 pixels), batch 2; one-step previews keep it cheap.
        string[] Unet(string run, int steps) =>
        [
            "train", "--data", _idx, "--model", "tiny", "--batch", "2", "--ref-batch", "4", "--steps", $"{steps}", "--checkpoint-every", "1",
            "--preview-steps", "1", "--out", run, "--device", "cpu",
        ];
        string straight = Path.Combine(_folder, "straight"), resumed = Path.Combine(_folder, "resumed");
        var first = CliHarness.Run(Unet(straight, 2));
        Assert.That(first.ExitCode, Is.EqualTo(0), first.Error);
        Assert.That(first.Out, Does.Contain("network: tiny"));
        Assert.That(Checkpoint.ReadInfo(Path.Combine(straight, "model.safetensors")).ModelType, Is.EqualTo("unet"));
        Assert.That(CliHarness.Run(Unet(resumed, 1)).ExitCode, Is.EqualTo(0));
        var rest = CliHarness.Run("train", "--out", resumed, "--resume", "--steps", "2", "--device", "cpu");
        Assert.That(rest.ExitCode, Is.EqualTo(0), rest.Error);
        // Dropout masks are keyed by the step too, so the resumed U-Net repeats the uninterrupted one exactly.
        AssertSameTensors(Path.Combine(straight, "model.safetensors"), Path.Combine(resumed, "model.safetensors"));

        var sample = CliHarness.Run("sample", "--run", straight, "--count", "2", "--solver", "euler", "--steps", "1", "--device", "cpu");
        Assert.That(sample.ExitCode, Is.EqualTo(0), sample.Error);
        Assert.That(Npy.Read(Path.Combine(straight, "samples.npy")).Shape, Is.EqualTo(new[] { 2, 64 }));
    }

    [Test]
    public void Sample_writes_an_image_grid_and_the_samples_as_npy()
    {
        string run = Path.Combine(_folder, "run");
        Assert.That(CliHarness.Run(Train(run, 2, 2)).ExitCode, Is.EqualTo(0));
        var result = CliHarness.Run("sample", "--run", run, "--count", "10", "--solver", "heun", "--steps", "3", "--device", "cpu");
        Assert.That(result.ExitCode, Is.EqualTo(0), result.Error);
        Assert.That(result.Out, Does.Contain("sampled 10 images 1x8x8").And.Contain("ms/image"));
        var samples = Npy.Read(Path.Combine(run, "samples.npy"));
        Assert.That(samples.Shape, Is.EqualTo(new[] { 10, 64 }));
        Assert.That(samples.Data.All(float.IsFinite), Is.True);
        Assert.That(new FileInfo(Path.Combine(run, "samples.png")).Length, Is.GreaterThan(100));

        string other = Path.Combine(_folder, "other.npy");
        var euler = CliHarness.Run("sample", "--run", run, "--count", "3", "--solver", "euler", "--steps", "2", "--out", other, "--device", "cpu");
        Assert.That(euler.ExitCode, Is.EqualTo(0), euler.Error);
        Assert.That(Npy.Read(other).Shape, Is.EqualTo(new[] { 3, 64 }));
        Assert.That(File.Exists(Path.ChangeExtension(other, ".png")), Is.True);

        // eval on an image run judges its samples as image samples: 8x8 ones are refused as not Fashion-MNIST-shaped.
        CliHarness.Run("eval", "--run", run).AssertUserError("samples.npy", "not Fashion-MNIST images");
        File.Delete(Path.Combine(run, "samples.npy"));
        CliHarness.Run("eval", "--run", run).AssertUserError("no such file", "pfgm sample");
    }

    [Test]
    public void Bad_input_is_one_line_and_exit_code_two()
    {
        string run = Path.Combine(_folder, "run");
        CliHarness.Run("train", "--data", Path.Combine(_folder, "nosuch"), "--model", "tiny", "--out", run).AssertUserError("nosuch", "no such file or folder");
        CliHarness.Run("train", "--data", "fashion-mnsit", "--out", run).AssertUserError("fashion-mnsit");
        CliHarness.Run("train", "--data", _idx, "--model", "huge", "--out", run).AssertUserError("--model huge", "tiny, small, mlp");

        string garbage = Path.Combine(_folder, "garbage");
        Directory.CreateDirectory(garbage);
        File.WriteAllText(Path.Combine(garbage, "a.png"), "not a png");
        CliHarness.Run("train", "--data", garbage, "--out", run).AssertUserError("none of its 1", "a.png");
        string empty = Path.Combine(_folder, "empty");
        Directory.CreateDirectory(empty);
        CliHarness.Run("train", "--data", empty, "--out", run).AssertUserError("no .png/.jpg/.jpeg files");

        CliHarness.Run("train", "--data", "heart", "--checkpoint-every", "5", "--out", run).AssertUserError("--checkpoint-every", "only for image data");
        CliHarness.Run("train", "--data", _idx, "--channels", "2", "--out", run).AssertUserError("--channels");
        CliHarness.Run("train", "--out", Path.Combine(_folder, "absent"), "--resume").AssertUserError("no such run folder");

        Assert.That(CliHarness.Run(Train(run, 1, 1)).ExitCode, Is.EqualTo(0));
        CliHarness.Run(Train(run, 1, 1)).AssertUserError("already holds a run", "--resume");
        CliHarness.Run("train", "--out", run, "--resume", "--batch", "8").AssertUserError("--batch");
        CliHarness.Run("sample", "--run", run, "--solver", "leapfrog").AssertUserError("--solver");
    }

    /// <summary>Every tensor of the two checkpoints (weights, EMA, Adam moments) is bit-identical, and the steps agree.</summary>
    private static void AssertSameTensors(string expectedPath, string actualPath)
    {
        var expected = SafeTensorsFile.Read(expectedPath);
        var actual = SafeTensorsFile.Read(actualPath);
        Assert.That(actual.Metadata["step"], Is.EqualTo(expected.Metadata["step"]));
        Assert.That(actual.Names.Order(), Is.EqualTo(expected.Names.Order()));
        foreach (string name in expected.Names)
        {
            var shape = expected.Shape(name);
            var a = expected.Get(name, shape);
            var b = actual.Get(name, shape);
            for (int i = 0; i < a.Length; i++)
            {
                if (BitConverter.SingleToInt32Bits(a[i]) != BitConverter.SingleToInt32Bits(b[i]))
                {
                    Assert.Fail($"{name}[{i}]: {a[i]:R} uninterrupted vs {b[i]:R} resumed");
                }
            }
        }
    }
}
