using PoissonFlow.Cli.Pfgm;
using PoissonFlow.Data;

namespace PoissonFlow.Cli.Commands;

/// <summary><c>pfgm eval</c>: the sliced Wasserstein distance of a run's samples to its data, with the floor, and the scatter plot.</summary>
public sealed class EvalCommand : CliCommand
{
    /// <inheritdoc />
    public override string Name => "eval";

    /// <inheritdoc />
    public override string Summary => "measure samples against the data (sliced Wasserstein-2 and its floor) and draw them";

    /// <inheritdoc />
    public override string Usage => "pfgm eval --run DIR [--samples FILE.npy]";

    /// <inheritdoc />
    public override IReadOnlyList<CliOption> Options { get; } =
    [
        new("run", "DIR", "a run folder (its config.json names the data)"),
        new("samples", "FILE.npy", "the samples to evaluate (default DIR/samples.npy)"),
    ];

    /// <inheritdoc />
    public override int Execute(CliContext context, ParsedArgs args)
    {
        var folder = SampleCommand.ExistingRun(args);
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
}
