using PoissonFlow.Cli.Images;
using PoissonFlow.Cli.Pfgm;
using PoissonFlow.Cli.Runs;

namespace PoissonFlow.Cli.Commands;

/// <summary>
/// <c>pfgm train</c>: trains a PFGM field network into a run folder: an MLP on a 2-D (or low-dimensional) point set,
/// or, for image data (Fashion-MNIST, an IDX file, a folder of PNG/JPEG), a U-Net with checkpoints and resume.
/// </summary>
public sealed class TrainCommand : CliCommand
{
    /// <summary>Options that only image runs take.</summary>
    private static readonly string[] ImageOnly = ["model", "image-size", "channels", "warmup", "ema", "checkpoint-every", "preview-steps", "resume"];

    /// <inheritdoc />
    public override string Name => "train";

    /// <inheritdoc />
    public override string Summary => "train a PFGM field network on a 2-D set, a point file, or images (Fashion-MNIST, IDX, a folder)";

    /// <inheritdoc />
    public override string Usage => "pfgm train --out DIR [--data heart|FILE|fashion-mnist|IDX|FOLDER] [--model tiny|small|mlp] [--resume] [options]";

    /// <inheritdoc />
    public override IReadOnlyList<CliOption> Options { get; } =
    [
        new("data", "NAME|FILE|FOLDER", $"a built-in 2-D set ({string.Join(", ", PoissonFlow.Data.ToyDatasets.Names)}), a .npy/.csv point file, " +
                                        $"'{ImageData.FashionMnist}', an IDX image file, or a folder of PNG/JPEG images (default heart)"),
        .. RunOptions.Training.Where(o => o.Name != "data"),
        new("out", "DIR", "the run folder: config.json and model.safetensors are written there"),
        new("model", "tiny|small|mlp", "image runs: the U-Net preset, or an MLP on the pixels (default tiny)"),
        new("image-size", "S", "image folders: resize and centre-crop to S x S (default 32)"),
        new("channels", "1|3", "image folders: grey or RGB (default 3)"),
        new("warmup", "N", "image runs: linear learning-rate warmup steps (default 500)"),
        new("ema", "X", "image runs: EMA rate of the sampled weights (default 0.999)"),
        new("checkpoint-every", "K", "image runs: checkpoint (and a preview row) every K steps and at the end (default 500)"),
        new("preview-steps", "N", "image runs: Euler steps of the 8 preview samples drawn at each checkpoint (default 20)"),
        new("resume", null, "image runs: continue the run in --out from its last checkpoint (--steps may raise the total)"),
    ];

    /// <inheritdoc />
    public override string Details =>
        "Then 'pfgm sample --run DIR' (and for 2-D runs 'pfgm eval --run DIR').\n" + RunOptions.HyperParameterHelp + "\n" +
        "Image runs use the recipe at N = C*H*W (M, z_max, upper_norm unless given), restrict_M, batch 128 with a\n" +
        "reference batch of 2048, Adam 2e-4 with warmup, clipping 1 and EMA; they write loss.png and\n" +
        "samples-over-training.png, and a killed run continues with --resume from its last checkpoint.";

    /// <inheritdoc />
    public override int Execute(CliContext context, ParsedArgs args)
    {
        string output = args.GetRequiredString("out");
        if (args.GetFlag("resume"))
        {
            if (!Directory.Exists(output)) throw new UserErrorException($"--resume: {output}: no such run folder");
            var existing = RunFolder.At(output);
            var config = ImageSampling.TryReadConfig(existing)
                ?? throw new UserErrorException($"--resume: {output} holds no image run (no config.json of kind 'images'); 2-D runs train in one go");
            ImageTrainingRun.Resume(context, args, existing, config);
            return CliApp.ExitSuccess;
        }

        string data = args.GetString("data", new RunConfig().Data)!;
        if (args.Has("model") || ImageData.IsImageSource(data))
        {
            if (args.Has("model")) ImageModels.CheckName(args.GetRequiredString("model"));
            ImageTrainingRun.Start(context, args, RunFolder.At(output));
            return CliApp.ExitSuccess;
        }

        var imageOptions = ImageOnly.Where(args.Has).Select(o => "--" + o).ToList();
        if (imageOptions.Count > 0)
        {
            throw new UserErrorException($"{string.Join(", ", imageOptions)}: only for image data ('{ImageData.FashionMnist}', an IDX file or an image folder), not '{data}'");
        }

        var pointConfig = RunOptions.ApplyTraining(new RunConfig(), args);
        var folder = RunFolder.At(output);
        var (_, _, network, _, _) = RunSteps.Train(context, pointConfig, args, folder);
        network.Dispose();
        return CliApp.ExitSuccess;
    }
}
