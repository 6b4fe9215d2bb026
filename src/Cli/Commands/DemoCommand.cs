using System.Diagnostics;
using PoissonFlow.Cli.Pfgm;
using PoissonFlow.Cli.Runs;

namespace PoissonFlow.Cli.Commands;

/// <summary>
/// <c>pfgm demo</c>: the whole 2-D pipeline in one command with defaults that finish in minutes on a CPU: train PFGM
/// on a built-in shape, sample it with the EMA weights, measure the sliced Wasserstein distance against its floor, and
/// draw the samples and the ODE trajectories.
/// </summary>
public sealed class DemoCommand : CliCommand
{
    /// <inheritdoc />
    public override string Name => "demo";

    /// <inheritdoc />
    public override string Summary => "train, sample, evaluate and draw PFGM on a 2-D shape (heart by default), in minutes on a CPU";

    /// <inheritdoc />
    public override string Usage => "pfgm demo [--data heart] [--out DIR] [options]";

    /// <inheritdoc />
    public override IReadOnlyList<CliOption> Options { get; } =
        [.. RunOptions.Training, .. RunOptions.Sampling, new("out", "DIR", "the run folder (default runs/demo-<UTC time>)")];

    /// <inheritdoc />
    public override string Details =>
        "Writes config.json, model.safetensors, samples.npy, metrics.json, samples.png and trajectories.png.\n" +
        "The metric is the sliced Wasserstein-2 distance between the samples and fresh data of the same size, printed\n" +
        "next to its floor: the distance between two independent draws of the data.\n" + RunOptions.HyperParameterHelp;

    /// <inheritdoc />
    public override int Execute(CliContext context, ParsedArgs args)
    {
        var total = Stopwatch.StartNew();
        var config = RunOptions.ApplySampling(RunOptions.ApplyTraining(new RunConfig(), args), args);
        var folder = args.Has("out")
            ? RunFolder.At(args.GetRequiredString("out"))
            : RunFolder.CreateTimestamped("runs", "demo", context.Clock.GetUtcNow().UtcDateTime);
        context.Out.WriteLine($"pfgm demo: run folder {folder.Path}");
        var (trained, data, network, loss, trainSeconds) = RunSteps.Train(context, config, args, folder);
        using (network)
        {
            var (samples, evaluations, sampleSeconds) = RunSteps.Sample(context, trained, network, folder, folder.Samples,
                data.Subsample(2000, trained.Seed));
            var metrics = RunSteps.Evaluate(context, trained, samples, folder, new RunMetrics
            {
                TrainSeconds = trainSeconds,
                SampleSeconds = sampleSeconds,
                FinalLoss = loss,
                FunctionEvaluations = evaluations,
            });
            RunFolder.WriteJson(folder.Metrics, metrics with { TotalSeconds = total.Elapsed.TotalSeconds });
        }

        context.Out.WriteLine($"done in {total.Elapsed.TotalSeconds:F1} s");
        return CliApp.ExitSuccess;
    }
}
