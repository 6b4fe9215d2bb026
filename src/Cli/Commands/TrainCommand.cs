using PoissonFlow.Cli.Pfgm;
using PoissonFlow.Cli.Runs;

namespace PoissonFlow.Cli.Commands;

/// <summary><c>pfgm train</c>: trains a PFGM field MLP on a 2-D (or low-dimensional) point set into a run folder.</summary>
public sealed class TrainCommand : CliCommand
{
    /// <inheritdoc />
    public override string Name => "train";

    /// <inheritdoc />
    public override string Summary => "train a PFGM field network on a built-in 2-D set or a .npy/.csv file";

    /// <inheritdoc />
    public override string Usage => "pfgm train --out DIR [--data heart|FILE] [options]";

    /// <inheritdoc />
    public override IReadOnlyList<CliOption> Options { get; } =
        [.. RunOptions.Training, new("out", "DIR", "the run folder: config.json and model.safetensors are written there")];

    /// <inheritdoc />
    public override string Details => "Then 'pfgm sample --run DIR' and 'pfgm eval --run DIR'.\n" + RunOptions.HyperParameterHelp;

    /// <inheritdoc />
    public override int Execute(CliContext context, ParsedArgs args)
    {
        var config = RunOptions.ApplyTraining(new RunConfig(), args);
        var folder = RunFolder.At(args.GetRequiredString("out"));
        var (_, _, network, _, _) = RunSteps.Train(context, config, args, folder);
        network.Dispose();
        return CliApp.ExitSuccess;
    }
}
