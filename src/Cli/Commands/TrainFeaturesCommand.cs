using System.Diagnostics;
using System.Globalization;
using PoissonFlow.Data;
using PoissonFlow.Network.Features;

namespace PoissonFlow.Cli.Commands;

/// <summary>
/// <c>pfgm train-features</c>: trains the Fashion-MNIST classifier whose penultimate activations are the feature space
/// of <c>pfgm eval --samples</c>, reports its test accuracy and writes the versioned features file. Deterministic: the
/// same options on the same device give the same file, byte for byte.
/// </summary>
public sealed class TrainFeaturesCommand : CliCommand
{
    /// <inheritdoc />
    public override string Name => "train-features";

    /// <inheritdoc />
    public override string Summary => "train the Fashion-MNIST feature classifier that image evaluation uses (deterministic)";

    /// <inheritdoc />
    public override string Usage => "pfgm train-features [--out FILE.safetensors] [--epochs N] [--hidden W1,W2] [--train-count N]";

    /// <inheritdoc />
    public override IReadOnlyList<CliOption> Options { get; } =
    [
        new("out", "FILE", $"where the features file goes (default {FeatureModelFile.DefaultRelativePath})"),
        new("epochs", "N", "passes over the training images (default 6)"),
        new("batch", "N", "images per step (default 64)"),
        new("lr", "X", "Adam peak learning rate (default 1e-3: 100 warmup steps, then linear decay to 0; EMA 0.999)"),
        new("seed", "S", "seed of the initialisation and the shuffles (default 1)"),
        new("hidden", "W1,W2,...", "hidden layer widths; the last is the feature size (default 256,128)"),
        new("train-count", "N", "train on the first N training images only (quick runs; default all 60,000)"),
        new("data-dir", "DIR", $"folder of the Fashion-MNIST IDX files (default {IdxFile.FashionMnistFolder})"),
    ];

    /// <inheritdoc />
    public override string Details =>
        "The classifier is an MLP 784 -> hidden... -> 10 with SiLU, trained with Adam on the 60,000 training images and\n" +
        "tested on the 10,000 test images; its EMA weights are saved with the architecture, the data hashes and the\n" +
        "test accuracy in the file's metadata. Then: pfgm eval --samples S.npy [--features FILE].";

    /// <inheritdoc />
    public override int Execute(CliContext context, ParsedArgs args)
    {
        string output = args.Has("out") ? args.GetOutputPath("out") : DefaultOutput();
        var options = new FeatureTrainingOptions(
            Epochs: args.GetInt("epochs", 6, min: 1, max: 1000),
            Batch: args.GetInt("batch", 64, min: 1, max: 65536),
            LearningRate: args.GetFloat("lr", 1e-3f, min: 1e-7f, max: 1f),
            Seed: (ulong)args.GetInt("seed", 1, min: 0));
        var hidden = ParseHidden(args.GetString("hidden", "256,128")!);
        string dataDir = args.GetString("data-dir", IdxFile.FashionMnistFolder)!;
        var (train, trainLabels) = IdxFile.ReadFashionMnist("train", dataDir);
        var (test, testLabels) = IdxFile.ReadFashionMnist("test", dataDir);
        int trainCount = args.GetInt("train-count", train.Count, min: 1, max: train.Count);
        if (trainCount < train.Count)
        {
            train = train with { Pixels = train.Pixels[..(trainCount * train.PixelsPerImage)], Count = trainCount };
            trainLabels = trainLabels[..trainCount];
        }

        var config = new ClassifierConfig(train.PixelsPerImage, hidden, 10);
        var console = context.Out;
        console.WriteLine($"data: Fashion-MNIST, {train.Count} training and {test.Count} test images of {train.Height}x{train.Width}");
        console.WriteLine($"classifier: {config} ({config.FeatureSize} features), {options.Epochs} epochs, batch {options.Batch}, " +
                          $"lr {options.LearningRate.ToString("G3", CultureInfo.InvariantCulture)}, seed {options.Seed}");
        console.WriteLine($"device: {context.Device.Description}");
        var timer = Stopwatch.StartNew();
        ProgressReporter? progress = null;
        using var model = FeatureTraining.Train(context.Device, config, train, trainLabels, options, p =>
        {
            progress ??= context.Progress(p.TotalSteps);
            progress.Report(p.Step, p.Loss);
        });
        progress?.Finish();
        double trainSeconds = timer.Elapsed.TotalSeconds;
        double accuracy = model.Accuracy(test.Pixels, testLabels);
        var info = new FeatureModelInfo(FeatureModelFile.Version, config.ToString(), "fashion-mnist", train.Count,
            FeatureModelFile.DataHash(train, trainLabels), test.Count, FeatureModelFile.DataHash(test, testLabels), accuracy,
            string.Create(CultureInfo.InvariantCulture,
                $"epochs {options.Epochs}, batch {options.Batch}, adam lr {options.LearningRate:G3} warmup {options.WarmupSteps} then linear decay to 0, ema {options.EmaRate:G4}, seed {options.Seed}, steps {model.StepCount}"));
        FeatureModelFile.Save(output, model, info);
        console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"trained in {trainSeconds:F1} s ({train.Count * (double)options.Epochs / trainSeconds:F0} images/s); test accuracy {100 * accuracy:F2}% on {test.Count} images"));
        console.WriteLine($"features file: {output}");
        if (accuracy < 0.88) console.WriteLine("warning: test accuracy below 88%: the feature space is weak; train longer (--epochs) or on all images");
        return CliApp.ExitSuccess;
    }

    /// <summary>The default output: models/ under the current folder, created if needed.</summary>
    private static string DefaultOutput()
    {
        string path = FeatureModelFile.DefaultRelativePath;
        Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(path))!);
        return path;
    }

    private static int[] ParseHidden(string text)
    {
        var parts = text.Split(',', StringSplitOptions.TrimEntries);
        var widths = new int[parts.Length];
        for (int i = 0; i < parts.Length; i++)
        {
            if (!int.TryParse(parts[i], NumberStyles.None, CultureInfo.InvariantCulture, out widths[i]) || widths[i] is < 1 or > 8192)
            {
                throw new UserErrorException($"option --hidden expects comma-separated widths from 1 to 8192, got '{text}'");
            }
        }

        return widths;
    }
}
