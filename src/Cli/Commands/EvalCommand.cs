using System.Diagnostics;
using System.Globalization;
using PoissonFlow.Cli.Pfgm;
using PoissonFlow.Cli.Runs;
using PoissonFlow.Data;
using PoissonFlow.IO;
using PoissonFlow.Network;
using PoissonFlow.Network.Features;

namespace PoissonFlow.Cli.Commands;

/// <summary>
/// <c>pfgm eval</c>: with <c>--run</c>, the sliced Wasserstein distance of a 2-D run's samples to its data, with the
/// floor, and the scatter plot; without it, image samples judged in the frozen Fashion-MNIST feature space (Frechet
/// distance against the test set and its floor) and by their nearest training images.
/// </summary>
public sealed class EvalCommand : CliCommand
{
    /// <inheritdoc />
    public override string Name => "eval";

    /// <inheritdoc />
    public override string Summary => "measure samples: 2-D runs by sliced Wasserstein-2, images by feature-space Frechet distance";

    /// <inheritdoc />
    public override string Usage => "pfgm eval --run DIR [--samples FILE.npy]\npfgm eval --samples IMAGES.npy [--features FILE] [--nn-count N]";

    /// <inheritdoc />
    public override IReadOnlyList<CliOption> Options { get; } =
    [
        new("run", "DIR", "a run folder: a 2-D run (its config.json names the data) or an image run (its samples.npy is judged like --samples)"),
        new("samples", "FILE.npy", "the samples: default DIR/samples.npy with --run; without --run, Fashion-MNIST-shaped images [n, 784] or [n, 1, 28, 28] in [-1, 1]"),
        new("features", "FILE", $"image evaluation: the features file (default {FeatureModelFile.DefaultRelativePath} next to pfgm, else under the current folder)"),
        new("nn-count", "N", "image evaluation: samples searched for their nearest training image (default 1000, 0 skips)"),
        new("data-dir", "DIR", $"image evaluation: folder of the Fashion-MNIST IDX files (default {IdxFile.FashionMnistFolder})"),
    ];

    /// <inheritdoc />
    public override string Details =>
        "Image evaluation prints the Frechet distance (FD) between the samples' and the test set's classifier features,\n" +
        "the floor (FD of as many random training images against the test set: a perfect generator's score at this\n" +
        "sample size), and the mean distance in pixel space from samples, and from as many unseen test images, to their\n" +
        "nearest training image (samples much closer than test images are memorised). It writes FILE.metrics.json next\n" +
        "to the samples.";

    /// <inheritdoc />
    public override int Execute(CliContext context, ParsedArgs args)
    {
        if (!args.Has("run"))
        {
            if (!args.Has("samples")) throw new UserErrorException("give --run DIR (a 2-D run) or --samples IMAGES.npy (image samples); see 'pfgm eval --help'");
            return EvaluateImages(context, args, args.GetRequiredString("samples"));
        }

        var folder = SampleCommand.ExistingRun(args);
        if (Images.ImageSampling.TryReadConfig(folder) is not null)
        {
            // An image run: its samples are judged in the feature space like any image samples.
            return EvaluateImages(context, args, args.GetString("samples", folder.Samples)!);
        }

        var config = RunSteps.ReadConfig(folder);
        string path = args.GetString("samples", folder.Samples)!;
        PointSet samples;
        try
        {
            samples = PointSetFiles.Load(path);
        }
        catch (DatasetException e)
        {
            throw new UserErrorException(e.Message, e);
        }

        if (samples.Dim != config.Dim) throw new UserErrorException($"{path}: samples have {samples.Dim} coordinates, the run's data {config.Dim}");
        RunSteps.Evaluate(context, config, samples, folder, new RunMetrics());
        return CliApp.ExitSuccess;
    }

    /// <summary>Where the metrics of image samples S.npy go: S.metrics.json beside them.</summary>
    public static string MetricsPath(string samplesPath) => Path.ChangeExtension(samplesPath, null) + ".metrics.json";

    private static int EvaluateImages(CliContext context, ParsedArgs args, string samplesPath)
    {
        if (!File.Exists(samplesPath)) throw new UserErrorException($"--samples {samplesPath}: no such file; draw samples first with 'pfgm sample'");
        var array = NpyInput.Read(samplesPath, "samples");
        const int side = 28, pixels = side * side;
        bool flat = array.Rank == 2 && array.Shape[1] == pixels;
        bool square = array.Rank == 3 && array.Shape[1] == side && array.Shape[2] == side;
        bool channel = array.Rank == 4 && array.Shape[1] == 1 && array.Shape[2] == side && array.Shape[3] == side;
        if (!flat && !square && !channel)
        {
            throw new UserErrorException($"--samples {samplesPath}: shape {array.ShapeText} is not Fashion-MNIST images: expected (n, 784), (n, 28, 28) or (n, 1, 28, 28)");
        }

        int count = array.Shape[0];
        if (count < 2) throw new UserErrorException($"--samples {samplesPath}: {count} image(s); the Frechet distance needs at least 2 (thousands for a stable value)");
        int nnCount = args.GetInt("nn-count", 1000, min: 0);
        string featuresPath = FindFeatures(args);
        string dataDir = args.GetString("data-dir", IdxFile.FashionMnistFolder)!;
        var (train, _) = IdxFile.ReadFashionMnist("train", dataDir);
        var (test, _) = IdxFile.ReadFashionMnist("test", dataDir);
        var output = context.Out;
        FeatureClassifier model;
        FeatureModelInfo info;
        try
        {
            (model, info) = FeatureModelFile.Load(context.Device, featuresPath);
        }
        catch (CheckpointException e)
        {
            throw new UserErrorException($"--features {e.Message}", e);
        }

        using (model)
        {
            var c = CultureInfo.InvariantCulture;
            output.WriteLine(string.Create(c, $"features: {featuresPath} ({info.Architecture}, test accuracy {100 * info.TestAccuracy:F2}%)"));
            output.WriteLine($"device: {context.Device.Description}");
            var timer = Stopwatch.StartNew();
            var report = ImageQuality.Evaluate(model, array.Data, count, train, test, new ImageQualityOptions(nnCount), output.WriteLine);
            output.WriteLine(string.Create(c, $"Frechet distance {report.FrechetDistance:F3} vs floor {report.Floor:F3} (train vs test, {Math.Min(count, train.Count)} vs {report.TestCount} images)"));
            if (report.NearestNeighbourCount > 0)
            {
                output.WriteLine(string.Create(c,
                    $"nearest training image: samples mean {report.SampleToTrainMean:F3} (min {report.SampleToTrainMin:F3}), test images mean {report.TestToTrainMean:F3} (min {report.TestToTrainMin:F3}); pixel L2 in [-1, 1], {report.NearestNeighbourCount} each"));
            }

            if (report.ClampedValues > 0) output.WriteLine($"note: {report.ClampedValues} sample values outside [-1, 1] were clamped");
            if (count < 1000) output.WriteLine($"note: {count} samples: the Frechet distance is biased upwards at small sizes; compare it with the floor, or use 10,000");
            string metricsPath = MetricsPath(samplesPath);
            RunFolder.WriteJson(metricsPath, new ImageMetrics(samplesPath, featuresPath, info.Architecture, info.TestAccuracy, report, timer.Elapsed.TotalSeconds));
            output.WriteLine(string.Create(c, $"evaluated in {timer.Elapsed.TotalSeconds:F1} s; metrics {metricsPath}"));
        }

        return CliApp.ExitSuccess;
    }

    /// <summary>--features, else the committed file next to the pfgm binary, else under the current folder.</summary>
    private static string FindFeatures(ParsedArgs args)
    {
        if (args.Has("features"))
        {
            string given = args.GetRequiredString("features");
            if (!File.Exists(given)) throw new UserErrorException($"--features {given}: no such file (make one with 'pfgm train-features --out {given}')");
            return given;
        }

        string beside = Path.Combine(AppContext.BaseDirectory, FeatureModelFile.DefaultRelativePath);
        if (File.Exists(beside)) return beside;
        if (File.Exists(FeatureModelFile.DefaultRelativePath)) return FeatureModelFile.DefaultRelativePath;
        throw new UserErrorException(
            $"no features file: neither {beside} nor {Path.GetFullPath(FeatureModelFile.DefaultRelativePath)} exists; run 'pfgm train-features' (a few minutes) or pass --features FILE");
    }

    /// <summary>The metrics JSON of an image evaluation.</summary>
    private sealed record ImageMetrics(string Samples, string Features, string Architecture, double ClassifierTestAccuracy,
        ImageQualityReport Report, double Seconds);
}
