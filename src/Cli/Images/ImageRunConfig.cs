using System.Text.Json.Serialization;
using PoissonFlow.Data;
using PoissonFlow.Kernels;
using PoissonFlow.Network;
using PoissonFlow.Sampling;

namespace PoissonFlow.Cli.Images;

/// <summary>
/// Every setting of an image PFGM run, as stored in the run folder's <c>config.json</c> (with <see cref="Kind"/> =
/// <c>images</c>, which tells <c>pfgm sample</c> and <c>pfgm train --resume</c> apart from a 2-D run). The defaults
/// follow the spec's PFGM recipe (sections 2-5) except where a short run needs otherwise (warmup and EMA, below).
/// </summary>
internal sealed record ImageRunConfig
{
    /// <summary>The value of <see cref="Kind"/> for image runs.</summary>
    public const string ImagesKind = "images";

    /// <summary>The models <c>--model</c> accepts: the U-Net presets, and an MLP on the flattened pixels (quick checks).</summary>
    public static readonly string[] Models = [.. PoissonFlow.Network.UNet.UNetConfig.PresetNames, "mlp"];

    /// <summary>Marks the folder as an image run.</summary>
    public string Kind { get; init; } = ImagesKind;

    /// <summary><c>fashion-mnist</c>, an IDX file or a folder of images.</summary>
    public string Data { get; init; } = ImageData.FashionMnist;

    /// <summary>Images read (all of them for IDX; the readable ones for a folder).</summary>
    public int DataCount { get; init; }

    /// <summary>C.</summary>
    public int Channels { get; init; } = 1;

    /// <summary>H.</summary>
    public int Height { get; init; } = 28;

    /// <summary>W.</summary>
    public int Width { get; init; } = 28;

    /// <summary>The requested size of folder images (null: the data's own size).</summary>
    public int? ImageSize { get; init; }

    /// <summary>Seed of the initialisation, the batches and perturbations, the previews.</summary>
    public int Seed { get; init; } = 1;

    /// <summary>The network: tiny, small or mlp.</summary>
    public string Model { get; init; } = "tiny";

    /// <summary>Hidden width when <see cref="Model"/> is mlp.</summary>
    public int MlpHidden { get; init; } = 256;

    /// <summary>Hidden layers when <see cref="Model"/> is mlp.</summary>
    public int MlpDepth { get; init; } = 2;

    /// <summary>‖y‖_avg of the data in [-1, 1].</summary>
    public double MeanNorm { get; init; }

    /// <summary>
    /// M, z_max, upper_norm, σ and τ: the recipe at N = C·H·W from <see cref="MeanNorm"/> unless given (stored as
    /// one nested object, the library's record).
    /// </summary>
    public PfgmHyperParameters Hyper { get; init; } = PfgmHyperParameters.FromM(291, 784);

    /// <summary>The official restrict_M (on for images, as in every official config).</summary>
    public bool RestrictM { get; init; } = true;

    /// <summary>γ of the normalised field target and of the sampler's z-substitution.</summary>
    public float Gamma { get; init; } = 5f;

    /// <summary>Training steps in all (a resumed run continues up to this).</summary>
    public int Steps { get; init; } = 2000;

    /// <summary>B, perturbed images per step (the official 128).</summary>
    public int Batch { get; init; } = 128;

    /// <summary>M_ref, clean images the field target is computed over (CelebA's 512 ... CIFAR's 4096).</summary>
    public int ReferenceBatch { get; init; } = 2048;

    /// <summary>Peak learning rate (the official 2e-4).</summary>
    public float LearningRate { get; init; } = 2e-4f;

    /// <summary>Linear warmup steps: the official 5000 is for 1.3M-step runs; a run of a few thousand steps uses 500.</summary>
    public int Warmup { get; init; } = 500;

    /// <summary>EMA rate: the official 0.9999 averages over 10k steps, longer than a short run, so 0.999.</summary>
    public float EmaRate { get; init; } = 0.999f;

    /// <summary>Global gradient-norm clip (the official 1).</summary>
    public float GradClip { get; init; } = 1f;

    /// <summary>A checkpoint (and a row of the preview) every this many steps, and at the end.</summary>
    public int CheckpointEvery { get; init; } = 500;

    /// <summary>Images per row of samples-over-training.png.</summary>
    public int PreviewCount { get; init; } = 8;

    /// <summary>Euler steps of the preview samples (cheap, fixed cost per checkpoint).</summary>
    public int PreviewSteps { get; init; } = 20;

    /// <summary>The sampler's solver.</summary>
    public OdeSolver Solver { get; init; } = OdeSolver.Rk45;

    /// <summary>Steps of the fixed-grid solvers (the official sampling.N = 100).</summary>
    public int OdeSteps { get; init; } = 100;

    /// <summary>Where the backward ODE stops (the official 1e-3).</summary>
    public double ZMin { get; init; } = 1e-3;

    /// <summary>Below this z the sampler rebuilds v_z from |v_x| (CIFAR's 5: similar z_max and N).</summary>
    public double ZExp { get; init; } = 5;

    /// <summary>Images drawn by <c>pfgm sample</c> (the first 64 go into the grid).</summary>
    public int Samples { get; init; } = 64;

    /// <summary>N = C·H·W.</summary>
    [JsonIgnore]
    public int Dim => Channels * Height * Width;

    /// <summary>The optimiser.</summary>
    [JsonIgnore]
    public AdamOptions Adam => new(LearningRate, WarmupSteps: Warmup, GradClip: GradClip, EmaRate: EmaRate);

    /// <summary>The sampler's ODE settings for <paramref name="solver"/> and <paramref name="steps"/>.</summary>
    public PfgmOdeOptions Ode(OdeSolver solver, int steps) => new()
    {
        ZMax = Hyper.ZMax, ZMin = ZMin, ZExp = ZExp, Gamma = Gamma, Solver = solver, Steps = steps,
    };

    /// <summary>What a sampler needs besides the weights, written into every checkpoint so that it stands alone.</summary>
    public SamplingCard ToSamplingCard() => new()
    {
        DataShape = [Channels, Height, Width],
        Hyper = Hyper,
        ZMin = ZMin,
        Gamma = Gamma,
        ZExp = ZExp,
        PixelRange = [-1, 1],
        Data = Data,
    };
}
