using PoissonFlow.Sampling;

namespace PoissonFlow.Cli.Pfgm;

/// <summary>The options shared by train, sample and demo, and how they fill a <see cref="RunConfig"/>.</summary>
internal static class RunOptions
{
    private static readonly RunConfig Defaults = new();

    /// <summary>Data and training options (train, demo).</summary>
    public static IReadOnlyList<CliOption> Training { get; } =
    [
        new("data", "NAME|FILE", $"a built-in 2-D set ({string.Join(", ", PoissonFlow.Data.ToyDatasets.Names)}) or a .npy/.csv file (default heart)"),
        new("count", "N", $"points generated for a built-in set (default {Defaults.DataCount})"),
        new("seed", "S", $"seed of data, initialisation, batches and prior (default {Defaults.Seed})"),
        new("steps", "N", $"training steps (default {Defaults.Steps})"),
        new("batch", "B", $"perturbed points per step (default {Defaults.Batch})"),
        new("ref-batch", "M", $"clean points per step the field target is computed over (default {Defaults.ReferenceBatch})"),
        new("hidden", "W", $"MLP width (default {Defaults.Hidden})"),
        new("depth", "L", $"MLP hidden layers (default {Defaults.Depth})"),
        new("lr", "X", $"peak learning rate (default {Defaults.LearningRate})"),
        new("m", "M", "the perturbation's largest exponent (default: from the data, see 'pfgm demo --help')"),
        new("z-max", "Z", "the prior plane (default: from the data)"),
        new("upper-norm", "R", "the prior radius clip (default: from the data)"),
    ];

    /// <summary>Sampling options (sample, demo).</summary>
    public static IReadOnlyList<CliOption> Sampling { get; } =
    [
        new("samples", "N", $"samples to draw (default {Defaults.Samples})"),
        new("solver", "euler|heun|rk4|rk45", $"ODE solver (default {Defaults.Solver.ToString().ToLowerInvariant()})"),
        new("ode-steps", "N", $"steps of the fixed-grid solvers (default {Defaults.OdeSteps})"),
        new("z-min", "Z", $"where the backward ODE stops (default {Defaults.ZMin})"),
    ];

    /// <summary>How the data-derived defaults are chosen, for help texts.</summary>
    public const string HyperParameterHelp =
        "M, z_max and upper_norm come from the data unless given: the official recipe (hyper-parameters.py) from the\n" +
        "mean data norm, then, for data of at most 8 dimensions, z_max raised to 40 mean norms (M raised to reach it)\n" +
        "and upper_norm to 20 z_max: in 2-D the recipe puts the prior plane only ~3 data norms up and clips half of\n" +
        "the heavy-tailed prior onto one ring.";

    /// <summary>Applies the training options to <paramref name="config"/>.</summary>
    public static RunConfig ApplyTraining(RunConfig config, ParsedArgs args) => config with
    {
        Data = args.GetString("data", config.Data)!,
        DataCount = args.GetInt("count", config.DataCount, min: 2),
        Seed = args.GetInt("seed", config.Seed, min: 0),
        Steps = args.GetInt("steps", config.Steps, min: 1),
        Batch = args.GetInt("batch", config.Batch, min: 1),
        ReferenceBatch = args.GetInt("ref-batch", Math.Max(config.ReferenceBatch, args.GetInt("batch", config.Batch, min: 1)), min: 1),
        Hidden = args.GetInt("hidden", config.Hidden, min: 1, max: 4096),
        Depth = args.GetInt("depth", config.Depth, min: 1, max: 64),
        LearningRate = args.GetFloat("lr", config.LearningRate, min: 0f, max: 1f),
    };

    /// <summary>The explicitly given hyper-parameters (null where the data decide).</summary>
    public static (int? M, double? ZMax, double? UpperNorm) HyperOverrides(ParsedArgs args) => (
        args.Has("m") ? args.GetRequiredInt("m", min: 1, max: 2000) : null,
        args.Has("z-max") ? args.GetFloat("z-max", 0f, min: 1e-6f) : null,
        args.Has("upper-norm") ? args.GetFloat("upper-norm", 0f, min: 1f) : null);

    /// <summary>Applies the sampling options to <paramref name="config"/>.</summary>
    public static RunConfig ApplySampling(RunConfig config, ParsedArgs args) => config with
    {
        Samples = args.GetInt("samples", config.Samples, min: 2, max: 1_000_000),
        Solver = Solver(args, config.Solver),
        OdeSteps = args.GetInt("ode-steps", config.OdeSteps, min: 1, max: 100_000),
        ZMin = args.GetFloat("z-min", (float)config.ZMin, min: 1e-6f),
    };

    /// <summary>The --solver option, or <paramref name="fallback"/> when it is not given.</summary>
    public static OdeSolver Solver(ParsedArgs args, OdeSolver fallback)
    {
        if (!args.Has("solver")) return fallback;
        string text = args.GetRequiredString("solver");
        return text.ToLowerInvariant() switch
        {
            "euler" => OdeSolver.Euler,
            "heun" => OdeSolver.Heun,
            "rk4" => OdeSolver.Rk4,
            "rk45" => OdeSolver.Rk45,
            _ => throw new UserErrorException($"option --solver expects euler, heun, rk4 or rk45, got '{text}'"),
        };
    }
}
