using PoissonFlow.Cli.Pfgm;
using PoissonFlow.Cli.Runs;

namespace PoissonFlow.Cli.Commands;

/// <summary><c>pfgm sample</c>: draws samples from a trained run with the EMA weights.</summary>
public sealed class SampleCommand : CliCommand
{
    /// <inheritdoc />
    public override string Name => "sample";

    /// <inheritdoc />
    public override string Summary => "draw samples from a trained run (EMA weights) and draw the ODE trajectories";

    /// <inheritdoc />
    public override string Usage => "pfgm sample --run DIR [--samples N] [--solver euler|heun|rk4|rk45] [--out FILE.npy]";

    /// <inheritdoc />
    public override IReadOnlyList<CliOption> Options { get; } =
    [
        new("run", "DIR", "a run folder written by 'pfgm train'"),
        .. RunOptions.Sampling,
        new("seed", "S", "seed of the prior draw (default: the run's seed)"),
        new("out", "FILE.npy", "where the samples go (default DIR/samples.npy)"),
    ];

    /// <inheritdoc />
    public override int Execute(CliContext context, ParsedArgs args)
    {
        var folder = ExistingRun(args);
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
