using System.Diagnostics;
using ILGPU;
using ILGPU.Runtime;
using PoissonFlow.Cli.Plots;
using PoissonFlow.Cli.Runs;
using PoissonFlow.Data;
using PoissonFlow.Evaluation;
using PoissonFlow.IO;
using PoissonFlow.Kernels.Device;
using PoissonFlow.Kernels;
using PoissonFlow.Network;
using PoissonFlow.Network.Training;
using PoissonFlow.Sampling;

namespace PoissonFlow.Cli.Pfgm;

/// <summary>What an evaluation measured (written to metrics.json).</summary>
internal sealed record RunMetrics
{
    public string Data { get; init; } = "";
    public int Samples { get; init; }
    public double SlicedWasserstein { get; init; }
    public double Floor { get; init; }
    public double RatioToFloor { get; init; }
    public int Projections { get; init; }
    public int NonFinite { get; init; }
    public int OutsidePlot { get; init; }
    public double? TrainSeconds { get; init; }
    public double? SampleSeconds { get; init; }
    public double? TotalSeconds { get; init; }
    public float? FinalLoss { get; init; }
    public int? FunctionEvaluations { get; init; }
}

/// <summary>
/// The steps of a PFGM run on a point set, shared by <c>train</c>, <c>sample</c>, <c>eval</c> and <c>demo</c>:
/// resolve the data and hyper-parameters, train with progress lines, sample with the EMA weights, evaluate against
/// fresh truth, draw.
/// </summary>
internal static class PfgmPipeline
{
    /// <summary>Trajectories drawn in trajectories.png, and the z levels recorded along each.</summary>
    public const int TrajectoryCount = 48, TrajectoryLevels = 40;

    /// <summary>Loads the data named by the config (a built-in set or a file), as a user error when it is bad.</summary>
    public static PointSet LoadData(RunConfig config, int? count = null, int? seed = null)
    {
        try
        {
            return PointSetFiles.Resolve(config.Data, count ?? config.DataCount, seed ?? config.Seed);
        }
        catch (DatasetException e)
        {
            throw new UserErrorException(e.Message, e);
        }
    }

    /// <summary>
    /// Fills the data-derived fields (dimension, mean norm, and M, z_max, upper_norm unless given) from the data.
    /// </summary>
    public static RunConfig Derive(RunConfig config, PointSet data, int? m, double? zMax, double? upperNorm)
    {
        var (norm, hyper) = Hyper(config.Data, data, m, zMax, upperNorm);
        return config with
        {
            Dim = data.Dim, MeanNorm = norm, M = hyper.M, ZMax = hyper.ZMax, UpperNorm = hyper.UpperNorm,
            RestrictM = data.Dim > PfgmHyperParameters.LowDimensionLimit,
        };
    }

    /// <summary>
    /// The data's mean norm and the PFGM hyper-parameters from it (<see cref="PfgmHyperParameters.ForData"/>: the
    /// official recipe, with the low-dimensional floors up to 8 dimensions), with any given M, z_max, upper_norm.
    /// </summary>
    public static (double MeanNorm, PfgmHyperParameters Hyper) Hyper(string name, PointSet data, int? m, double? zMax, double? upperNorm)
    {
        double norm = data.MeanNorm();
        if (!(norm > 0)) throw new UserErrorException($"{name}: every point is at the origin; the hyper-parameters need a positive mean norm");
        var hyper = PfgmHyperParameters.ForData(norm, data.Dim);
        if (m is { } givenM) hyper = PfgmHyperParameters.FromM(givenM, data.Dim) with { UpperNorm = hyper.UpperNorm };
        if (zMax is { } z) hyper = hyper with { ZMax = z };
        if (upperNorm is { } u) hyper = hyper with { UpperNorm = u };
        return (norm, hyper);
    }

    /// <summary>Trains a new MLP on <paramref name="data"/>; reports progress; returns it with the last loss.</summary>
    public static (PosteriorMeanNetwork Network, float Loss) Train(CliContext context, RunConfig config, PointSet data)
    {
        var device = context.Device;
        // Predicts the posterior mean; inputs scaled by the mean data norm near the data, to their direction far away.
        var network = new PosteriorMeanNetwork(new Mlp(device, config.Network, (ulong)config.Seed), (float)config.MeanNorm);
        try
        {
            using var trainer = new Trainer(network, new TrainerOptions(config.Adam, LossInterval: 25));
            using var training = new PfgmTraining(trainer, data,
                new PfgmTrainingOptions(config.Hyper, config.Batch, config.ReferenceBatch, RestrictM: config.RestrictM, Seed: (ulong)config.Seed, Target: PfgmTarget.PosteriorMean));
            var progress = context.Progress(config.Steps);
            float loss = float.NaN;
            for (int step = 1; step <= config.Steps; step++)
            {
                loss = training.Step();
                if (trainer.LastLossStep == step) progress.Report(step, loss);
            }

            loss = trainer.ReadLoss();
            progress.Report(config.Steps, loss);
            progress.Finish();
            return (network, loss);
        }
        catch
        {
            network.Dispose();
            throw;
        }
    }

    /// <summary>Draws <paramref name="count"/> samples with the network's EMA weights, in one batch.</summary>
    public static (PointSet Samples, OdeResult Result) Sample(ComputeDevice device, IFieldPredictor network, RunConfig config, int count, ulong seed)
    {
        using var sampler = new PfgmSampler(device, count, config.Dim);
        var (samples, result) = sampler.Sample(network, config.Ode, (float)config.UpperNorm, seed);
        return (new PointSet(samples, count, config.Dim), result);
    }

    /// <summary>
    /// Records <see cref="TrajectoryCount"/> backward-ODE trajectories at <see cref="TrajectoryLevels"/> z levels
    /// (geometric from z_max to z_min), as levels x count x (dim + 1) floats for <see cref="TrajectoryPlot"/>.
    /// </summary>
    public static float[] Trajectories(ComputeDevice device, IFieldPredictor network, RunConfig config, ulong seed)
    {
        int count = TrajectoryCount, dim = config.Dim, width = dim + 1;
        using var ode = new PfgmOde(device, count, dim);
        using var points = device.Accelerator.Allocate1D<float>((long)count * dim);
        Prior.For(device).Pfgm(points.View, count, dim, (float)config.ZMax, (float)config.UpperNorm, seed);
        var states = new float[TrajectoryLevels * count * width];
        int stepsPerLevel = Math.Max(1, config.OdeSteps / (TrajectoryLevels - 1));
        var options = config.Ode with { Steps = stepsPerLevel };
        for (int level = 0; level < TrajectoryLevels; level++)
        {
            double z = Level(config, level);
            if (level > 0) ode.Integrate(network, points.View, Level(config, level - 1), z, options);
            var host = points.GetAsArray1D();
            for (int k = 0; k < count; k++)
            {
                int at = (level * count + k) * width;
                host.AsSpan(k * dim, dim).CopyTo(states.AsSpan(at, dim));
                states[at + dim] = (float)z;
            }
        }

        return states;
    }

    /// <summary>
    /// Evaluates samples against fresh truth of the same size: the sliced W₂ and its floor (two independent truth
    /// draws for a built-in set; for a file, two disjoint random halves of it against each other).
    /// </summary>
    public static (double Swd, double Floor, PointSet Truth) Evaluate(RunConfig config, PointSet samples)
    {
        int n = samples.Count;
        PointSet truthA, truthB;
        if (ToyDatasets.IsKnown(config.Data))
        {
            // seeds apart from the training data's, so the truth is unseen data
            truthA = ToyDatasets.Generate(config.Data, n, config.Seed + 1_000_003);
            truthB = ToyDatasets.Generate(config.Data, n, config.Seed + 2_000_003);
        }
        else
        {
            var all = LoadData(config).Subsample(int.MaxValue, config.Seed + 5);
            int half = Math.Min(n, all.Count / 2);
            truthA = new PointSet(all.Data[..(half * all.Dim)], half, all.Dim);
            truthB = new PointSet(all.Data[(half * all.Dim)..(2 * half * all.Dim)], half, all.Dim);
        }

        double swd = SlicedWasserstein.Distance(samples, truthA);
        double floor = SlicedWasserstein.Floor(truthA, truthB);
        return (swd, floor, truthA);
    }

    /// <summary>Number of non-finite coordinates (a diverged ODE shows up here rather than as a crash).</summary>
    public static int NonFinite(PointSet set) => set.Data.Count(v => !float.IsFinite(v));

    /// <summary>Writes samples.npy.</summary>
    public static void WriteSamples(RunFolder folder, PointSet samples) =>
        Npy.Write(folder.Samples, samples.Data, samples.Count, samples.Dim);

    private static double Level(RunConfig config, int level) =>
        config.ZMax * Math.Pow(config.ZMin / config.ZMax, level / (TrajectoryLevels - 1.0));
}
