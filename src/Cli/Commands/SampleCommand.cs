using PoissonFlow.Cli.Images;
using PoissonFlow.Cli.Pfgm;
using PoissonFlow.Cli.Runs;

namespace PoissonFlow.Cli.Commands;

/// <summary>
/// <c>pfgm sample</c>: draws samples from a trained run with the EMA weights: points (and trajectories) for a 2-D
/// run, an .npy and an 8 x 8 PNG grid for an image run.
/// </summary>
public sealed class SampleCommand : CliCommand
{
    /// <inheritdoc />
    public override string Name => "sample";

    /// <inheritdoc />
    public override string Summary => "draw samples from a trained run (EMA weights) and draw the ODE trajectories";

    /// <inheritdoc />
    public override string Usage => "pfgm sample --run DIR [--samples N | --count N] [--solver euler|heun|rk4|rk45] [--steps N] [--out FILE.npy]";

    /// <inheritdoc />
    public override IReadOnlyList<CliOption> Options { get; } =
    [
        new("run", "DIR", "a run folder written by 'pfgm train'"),
        .. RunOptions.Sampling,
        new("count", "N", "image runs: images to draw (default 64; the first 64 make the grid)"),
        new("steps", "N", "image runs: steps of the fixed-grid solvers (default 100), as --ode-steps"),
        new("seed", "S", "seed of the prior draw (default: the run's seed)"),
        new("out", "FILE.npy", "where the samples go (default DIR/samples.npy; an image run's grid goes next to it as .png)"),
    ];

    /// <inheritdoc />
    public override int Execute(CliContext context, ParsedArgs args)
    {
        var folder = ExistingRun(args);
        if (ImageSampling.TryReadConfig(folder) is { } imageConfig)
        {
            ImageSampling.Run(context, args, folder, imageConfig);
            return CliApp.ExitSuccess;
        }

        var config = RunOptions.ApplySampling(RunSteps.ReadConfig(folder), args);
        config = config with { Seed = args.GetInt("seed", config.Seed, min: 0) };
        string output = args.Has("out") ? args.GetOutputPath("out") : folder.Samples;
        using var network = RunSteps.LoadNetwork(context, config, folder.Checkpoint);
        var truth = PfgmPipeline.LoadData(config).Subsample(2000, config.Seed);
        RunSteps.Sample(context, config, network, folder, output, truth);
        return CliApp.ExitSuccess;
    }

    /// <summary>The --run folder, which must exist.</summary>
    internal static RunFolder ExistingRun(ParsedArgs args)
    {
        string path = args.GetRequiredString("run");
        if (!Directory.Exists(path)) throw new UserErrorException($"--run {path}: no such folder");
        return RunFolder.At(path);
    }
}
