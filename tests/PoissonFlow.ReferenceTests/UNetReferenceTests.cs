using ILGPU.Runtime;
using PoissonFlow.Kernels;
using PoissonFlow.Kernels.Device;
using PoissonFlow.Network.UNet;
using PoissonFlow.Reference;

namespace PoissonFlow.ReferenceTests;

/// <summary>
/// Our <see cref="UNetNetwork"/> (float32 kernels on the ILGPU CPU accelerator, hand-written backward passes) against
/// <see cref="TorchUNet"/> under libtorch autograd in float64, built from the same config with the weights read from
/// our checkpoint: the prediction, every parameter gradient, the input gradient, and 10 training steps. Batch 2 of
/// 28 x 28 x 1 images, dropout 0 (the masks are ours alone; dropout has its own finite-difference tests). The tiny
/// preset, and the small preset's layout with attention (see <see cref="Config"/>).
/// </summary>
[TestFixture("tiny")]
[TestFixture("small")]
public sealed class UNetReferenceTests(string preset)
{
    /// <summary>
    /// Prediction and gradients, relative L2 per tensor. A conv output is a float32 sum of 9 Cin <= 1152 products, a
    /// weight gradient a sum over batch x pixels (1568 at 28 x 28) and GroupNorm's backward subtracts group means
    /// of similar size; each is good to ~sqrt(K) 2^-24 ~ 1e-6 relative, and a chain of ~20 layers compounds that
    /// to ~1e-5. 1e-4 (the bound) leaves room for that and none for a wrong term.
    /// </summary>
    private const double GradientTolerance = 1e-4;

    /// <summary>Losses of 10 Adam steps, relative (the bound): the float32 loss and weights drift from the float64 ones by ~1e-7 per step.</summary>
    private const double LossTolerance = 1e-5;

    /// <summary>Weights and EMA after the steps, relative L2 over the whole model, as for the losses.</summary>
    private const double WeightTolerance = 1e-5;

    private const int Batch = 2;

    /// <summary>PFGM's learning rate and clipping (the first step's gradient norm is ~1e2: clipping is active), warmup shortened to 3 steps.</summary>
    private static readonly AdamOptions s_adam = new(LearningRate: 2e-4f, WarmupSteps: 3, GradClip: 1f, EmaRate: 0.999f);

    private ComputeDevice? _device;
    private ComparisonResult _result = new();

    /// <summary>
    /// The preset with dropout off. "small" keeps the small preset's layout (two blocks per level, attention after
    /// every lowest-level block and in the middle) at nf 16 instead of 64: the same code paths at a sixteenth of the
    /// convolution FLOPs, so that the test stays near a minute on two cores.
    /// </summary>
    internal static UNetConfig Config(string preset)
    {
        var config = UNetConfig.Preset(preset, imageChannels: 1, imageSize: 28);
        return new UNetConfig
        {
            ImageChannels = config.ImageChannels,
            ImageSize = config.ImageSize,
            BaseChannels = preset == "small" ? 16 : config.BaseChannels,
            ChannelMultipliers = config.ChannelMultipliers,
            ResBlocksPerLevel = config.ResBlocksPerLevel,
            AttentionLevels = config.AttentionLevels,
            SkipRescale = config.SkipRescale,
            EmbeddingInput = config.EmbeddingInput,
            Dropout = 0f,
        };
    }

    [OneTimeSetUp]
    public void Compare()
    {
        _device = ComputeDevice.Create(DeviceKind.Cpu);
        var config = Config(preset);
        using var network = new UNetNetwork(_device, config, seed: 9) { ComputeInputGradient = true };
        using var mirror = new TorchUNet(config);
        _result = NetworkComparison.Run(network, mirror, Batch, seed: 33, s_adam, steps: 10, inputGradient: () =>
        {
            var gradient = new float[Batch * network.Dim];
            network.InputGradient.SubView(0, gradient.Length).CopyToCPU(gradient);
            return gradient;
        });
        _result.Print($"unet {preset}");
    }

    [OneTimeTearDown]
    public void DisposeDevice() => _device?.Dispose();

    [Test]
    public void PredictionMatchesLibtorch() => Assert.That(_result.PredictionError, Is.LessThanOrEqualTo(GradientTolerance));

    [Test]
    public void EveryParameterGradientMatchesLibtorchAutograd() => MlpReferenceTests.AssertGradients(_result, GradientTolerance);

    [Test]
    public void InputGradientMatchesLibtorchAutograd()
    {
        Assert.That(_result.InputGradientNorm, Is.GreaterThan(0), "zero input gradient: nothing compared");
        Assert.That(_result.InputGradientError, Is.LessThanOrEqualTo(GradientTolerance));
    }

    [Test]
    public void TenAdamStepsGiveTheLossesOfTorchOptimAdam() => MlpReferenceTests.AssertTraining(_result, LossTolerance, WeightTolerance, s_adam);
}
