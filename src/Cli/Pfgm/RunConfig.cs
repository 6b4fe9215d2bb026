using PoissonFlow.Data;
using PoissonFlow.Kernels;
using PoissonFlow.Network;
using PoissonFlow.Sampling;

namespace PoissonFlow.Cli.Pfgm;

/// <summary>
/// Every setting of a 2-D (or low-dimensional) PFGM run, as stored in <c>config.json</c>: the data, the
/// data-derived PFGM hyper-parameters, the network, the optimiser and the sampler. <c>pfgm sample</c> and
/// <c>pfgm eval</c> read it back, so a run folder is self-describing.
/// </summary>
internal sealed record RunConfig
{
    /// <summary>A built-in data set name or the path of a .npy/.csv file.</summary>
    public string Data { get; init; } = "heart";

    /// <summary>Points generated for a built-in set (files use all their rows).</summary>
    public int DataCount { get; init; } = 20000;

    /// <summary>Seed of everything random: data generation, initialisation, batches, prior.</summary>
    public int Seed { get; init; } = 1;

    /// <summary>N, the data dimension.</summary>
    public int Dim { get; init; } = 2;

    /// <summary>‖y‖_avg, the mean data norm the hyper-parameters derive from.</summary>
    public double MeanNorm { get; init; }

    /// <summary>The perturbation's largest exponent.</summary>
    public int M { get; init; }

    /// <summary>The prior plane.</summary>
    public double ZMax { get; init; }

    /// <summary>The prior radius clip.</summary>
    public double UpperNorm { get; init; }

    /// <summary>σ of the perturbation.</summary>
    public double Sigma { get; init; } = PfgmHyperParameters.DefaultSigma;

    /// <summary>τ of the perturbation.</summary>
    public double Tau { get; init; } = PfgmHyperParameters.DefaultTau;

    /// <summary>
    /// The official restrict_M (m from [0, 0.7 M) when z0 &lt; σ/2). Off for low-dimensional data: it keeps small-z0
    /// samples close to the data, so points far out sideways (|x| ≫ z, a large share of the heavy 2-D prior) would
    /// never be trained on.
    /// </summary>
    public bool RestrictM { get; init; }

    /// <summary>Hidden width of the MLP.</summary>
    public int Hidden { get; init; } = 64;

    /// <summary>Hidden layers of the MLP.</summary>
    public int Depth { get; init; } = 3;

    /// <summary>
    /// Whether the MLP predicts ȳ or the residual F of the skip ȳ = k x + s F (<see cref="PosteriorMeanForm"/>). New runs
    /// use the residual form (<see cref="PfgmPipeline.Derive"/> sets it); the record's default is the direct form
    /// because run folders written before the residual form have no such field and hold direct-form networks.
    /// </summary>
    public PosteriorMeanForm MeanForm { get; init; } = PosteriorMeanForm.Direct;

    /// <summary>Size of the sinusoidal embedding of ln z.</summary>
    public int EmbeddingSize { get; init; } = 16;

    /// <summary>
    /// Training steps. 2,000: on heart the residual form's sliced W2 ratio at 10,000 samples is 1.9 after 1,000 steps
    /// and 1.2 after 2,000 (README, demo section).
    /// </summary>
    public int Steps { get; init; } = 2000;

    /// <summary>B, perturbed points per step.</summary>
    public int Batch { get; init; } = 256;

    /// <summary>M_ref, clean points per step the field target is computed over.</summary>
    public int ReferenceBatch { get; init; } = 512;

    /// <summary>Peak learning rate.</summary>
    public float LearningRate { get; init; } = 2e-3f;

    /// <summary>Linear warmup steps.</summary>
    public int Warmup { get; init; } = 100;

    /// <summary>EMA rate of the weights sampled with.</summary>
    public float EmaRate { get; init; } = 0.999f;

    /// <summary>The ODE solver.</summary>
    public OdeSolver Solver { get; init; } = OdeSolver.Heun;

    /// <summary>Steps of the fixed-grid solvers.</summary>
    public int OdeSteps { get; init; } = 30;

    /// <summary>
    /// Where the backward ODE stops. Points that start near the prior's clip radius come in almost parallel to the
    /// plane and reach the data only as z → 0 (their distance to ȳ shrinks in proportion to z): at 0.02 about 5% of
    /// heart's samples still lay on a ring outside the shape. The residual form is accurate at small z (ȳ within ~0.02
    /// down to z = 0.005, where the direct form was off by ~0.05-0.09 and collapsed samples), so the ODE can go lower;
    /// 0.01 measured best (ratio 1.22 against 1.44 at 0.02 and 1.53 at 0.005, where the network's small-z error shows).
    /// </summary>
    public double ZMin { get; init; } = 0.01;

    /// <summary>Samples drawn: 10,000, the size the metric is specified at (the SWD floor depends on it).</summary>
    public int Samples { get; init; } = 10000;

    /// <summary>The hyper-parameters as the library's record.</summary>
    public PfgmHyperParameters Hyper => new(M, ZMax, UpperNorm, Sigma, Tau);

    /// <summary>The network shape.</summary>
    public MlpConfig Network => new(Dim, EmbeddingSize, Hidden, Depth, EmbeddingInput.LogZ);

    /// <summary>The optimiser.</summary>
    public AdamOptions Adam => new(LearningRate, WarmupSteps: Warmup, EmaRate: EmaRate);

    /// <summary>
    /// The sampler. The z-substitution is off (γ = 0 there): the network's field comes from its posterior mean
    /// (<see cref="PosteriorMeanNetwork"/>), whose v_z is exact given ȳ, so there is nothing to rebuild.
    /// </summary>
    public PfgmOdeOptions Ode => new() { ZMax = ZMax, ZMin = ZMin, ZExp = 0, Gamma = 0, Solver = Solver, Steps = OdeSteps };

    /// <summary>What a sampler needs besides the weights, written into the checkpoint so that it stands alone.</summary>
    public SamplingCard ToSamplingCard() => new()
    {
        DataShape = [Dim],
        Hyper = Hyper,
        PosteriorMeanScale = MeanNorm,
        MeanForm = MeanForm,
        ZMin = ZMin,
        Data = Data,
    };
}
