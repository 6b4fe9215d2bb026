using System.Diagnostics;
using System.Globalization;
using PoissonFlow.Cli.Plots;
using PoissonFlow.Cli.Runs;
using PoissonFlow.Data;
using PoissonFlow.Network;

namespace PoissonFlow.Cli.Pfgm;

/// <summary>The command-level steps (with their console lines and files) that train, sample, eval and demo chain.</summary>
internal static class RunSteps
{
    /// <summary>Loads the data, derives the hyper-parameters, trains, writes config.json and the checkpoint.</summary>
    public static (RunConfig Config, PointSet Data, PosteriorMeanNetwork Network, float Loss, double Seconds) Train(
        CliContext context, RunConfig config, ParsedArgs args, RunFolder folder)
    {
        var data = PfgmPipeline.LoadData(config);
        var (m, zMax, upperNorm) = RunOptions.HyperOverrides(args);
        config = PfgmPipeline.Derive(config, data, m, zMax, upperNorm);
        var output = context.Out;
        output.WriteLine($"data: {config.Data}, {data.Count} points in {data.Dim}-D, mean norm {F(config.MeanNorm)}");
        output.WriteLine($"PFGM: M {config.M}, z_max {F(config.ZMax)}, upper_norm {F(config.UpperNorm)}, restrict_M {(config.RestrictM ? "on" : "off")}");
        output.WriteLine($"network: MLP {config.Depth} x {config.Hidden} (SiLU, ln z embedding {config.EmbeddingSize}) predicting the posterior mean; " +
                         $"training {config.Steps} steps, batch {config.Batch}, reference batch {config.ReferenceBatch}, lr {F(config.LearningRate)}");
        output.WriteLine($"device: {context.Device.Description}");
        RunFolder.WriteJson(folder.Config, config);
        var timer = Stopwatch.StartNew();
        var (network, loss) = PfgmPipeline.Train(context, config, data);
        double seconds = timer.Elapsed.TotalSeconds;
        Checkpoint.Save(folder.Checkpoint, network, config.Steps, config.ToSamplingCard());
        output.WriteLine($"trained in {seconds:F1} s (final loss {F(loss)}); checkpoint {folder.Checkpoint}");
        return (config, data, network, loss, seconds);
    }

    /// <summary>Samples with the EMA weights, writes samples.npy and trajectories.png.</summary>
    public static (PointSet Samples, int Evaluations, double Seconds) Sample(CliContext context, RunConfig config, IFieldPredictor network,
        RunFolder folder, string samplesPath, PointSet truthForPlot)
    {
        var timer = Stopwatch.StartNew();
        var (samples, result) = PfgmPipeline.Sample(context.Device, network, config, config.Samples, (ulong)config.Seed + 17);
        double seconds = timer.Elapsed.TotalSeconds;
        PoissonFlow.IO.Npy.Write(samplesPath, samples.Data, samples.Count, samples.Dim);
        context.Out.WriteLine($"sampled {samples.Count} points in {seconds:F1} s ({config.Solver.ToString().ToLowerInvariant()}, " +
                              $"{result.FunctionEvaluations} field evaluations); {samplesPath}");
        var states = PfgmPipeline.Trajectories(context.Device, network, config, (ulong)config.Seed + 23);
        TrajectoryPlot.Draw(folder.TrajectoriesPlot, truthForPlot, states, PfgmPipeline.TrajectoryLevels, PfgmPipeline.TrajectoryCount,
            config.Dim, config.ZMax);
        return (samples, result.FunctionEvaluations, seconds);
    }

    /// <summary>Evaluates and draws: metrics.json and samples.png; prints the distance next to its floor.</summary>
    public static RunMetrics Evaluate(CliContext context, RunConfig config, PointSet samples, RunFolder folder, RunMetrics timings)
    {
        int nonFinite = PfgmPipeline.NonFinite(samples);
        var finite = nonFinite == 0 ? samples : KeepFinite(samples);
        var (swd, floor, truth) = PfgmPipeline.Evaluate(config, finite);
        int outside = ScatterPlot.Draw(folder.SamplesPlot, truth, finite);
        var metrics = timings with
        {
            Data = config.Data,
            Samples = samples.Count,
            SlicedWasserstein = swd,
            Floor = floor,
            RatioToFloor = swd / floor,
            Projections = PoissonFlow.Evaluation.SlicedWasserstein.DefaultProjections,
            NonFinite = nonFinite,
            OutsidePlot = outside,
        };
        RunFolder.WriteJson(folder.Metrics, metrics);
        var output = context.Out;
        output.WriteLine($"sliced W2 {F(swd)} vs floor {F(floor)} (truth vs truth, same size): ratio {swd / floor:F2}");
        if (nonFinite > 0) output.WriteLine($"warning: {nonFinite} sample coordinates are not finite (left out of the metric)");
        if (outside > 0) output.WriteLine($"note: {outside} of {samples.Count} samples fall outside the plot (the data's box padded by 25%)");
        output.WriteLine($"plots: {folder.SamplesPlot}, {folder.TrajectoriesPlot}; metrics {folder.Metrics}");
        return metrics;
    }

    /// <summary>Reads a run folder's config.json as a user error when missing or invalid.</summary>
    public static RunConfig ReadConfig(RunFolder folder)
    {
        if (!File.Exists(folder.Config)) throw new UserErrorException($"{folder.Path}: not a run folder (no config.json); create one with 'pfgm train'");
        try
        {
            return RunFolder.ReadJson<RunConfig>(folder.Config);
        }
        catch (InvalidDataException e)
        {
            throw new UserErrorException(e.Message, e);
        }
    }

    /// <summary>
    /// Loads the run's network from its checkpoint through <see cref="ModelRegistry"/>, as a user error when the file
    /// is wrong, and wraps it for sampling as its sampling card says (a checkpoint from before the card: as config.json says).
    /// </summary>
    public static ITrainableNetwork LoadNetwork(CliContext context, RunConfig config, string checkpoint)
    {
        if (!File.Exists(checkpoint)) throw new UserErrorException($"{checkpoint}: no checkpoint; train first with 'pfgm train'");
        ITrainableNetwork network;
        CheckpointInfo info;
        try
        {
            network = ModelRegistry.Load(context.Device, checkpoint, out info);
        }
        catch (CheckpointException e)
        {
            throw new UserErrorException(e.Message, e);
        }

        if (network is not Mlp mlp || mlp.Config != config.Network)
        {
            network.Dispose();
            throw new UserErrorException($"{checkpoint}: holds a '{info.ModelType}' model {info.ConfigJson}, but the run's config.json describes an '{Mlp.TypeTag}' model {config.Network.ToJson()}");
        }

        try
        {
            return ModelRegistry.ForSampling(network, info.Sampling ?? config.ToSamplingCard());
        }
        catch (CheckpointException e)
        {
            network.Dispose();
            throw new UserErrorException($"{checkpoint}: {e.Message}", e);
        }
    }

    private static PointSet KeepFinite(PointSet set)
    {
        var rows = Enumerable.Range(0, set.Count).Where(i => set[i].ToArray().All(float.IsFinite)).ToList();
        if (rows.Count == 0) throw new UserErrorException("every sample is non-finite: the sampler diverged");
        var data = new float[rows.Count * set.Dim];
        for (int r = 0; r < rows.Count; r++) set[rows[r]].CopyTo(data.AsSpan(r * set.Dim, set.Dim));
        return new PointSet(data, rows.Count, set.Dim);
    }

    private static string F(double value) => value.ToString("G4", CultureInfo.InvariantCulture);
}
