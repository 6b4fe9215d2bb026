using PoissonFlow.Kernels;
using PoissonFlow.Kernels.Device;
using PoissonFlow.Network;
using PoissonFlow.Reference;

namespace PoissonFlow.ReferenceTests;

/// <summary>
/// Our <see cref="Mlp"/> (float32 kernels, ILGPU CPU accelerator, hand-written backward) against <see cref="TorchMlp"/>
/// under libtorch autograd in float64, same weights read from our checkpoint. The Mlp has no input-gradient API (PFGM
/// never differentiates the field with respect to x), so only the prediction and the parameter gradients are compared.
/// </summary>
public sealed class MlpReferenceTests
{
    /// <summary>
    /// Prediction and gradients, relative L2 per tensor. Each value is a float32 dot product or batch sum of at most
    /// a few hundred terms (K = 130 inputs, 128 hidden, batch 64), accurate to ~sqrt(K) 2^-24 ~ 1e-6 relative, plus the
    /// float32 sin/cos of z up to 20 rad (~1e-6); 1e-4 leaves two orders for cancellation in small gradients and
    /// nothing for a wrong term (a dropped or misplaced term is an O(1) relative error).
    /// </summary>
    private const double GradientTolerance = 1e-4;

    /// <summary>
    /// Losses of 10 Adam steps, relative: the float32 loss sums 64 x 3 squares (~1e-7), and the weights it is
    /// computed from drift from the float64 ones by ~1e-7 relative per step (the update lr m / sqrt(v) is
    /// insensitive to the gradients' rounding except where a gradient is near eps); 1e-5 is the bound.
    /// </summary>
    private const double LossTolerance = 1e-5;

    /// <summary>Weights and EMA after the steps, relative L2 over the whole model: same reasoning as the losses.</summary>
    private const double WeightTolerance = 1e-5;

    // Clip below the first step's gradient norm (~0.13) so that clipping is part of what is compared.
    private static readonly AdamOptions s_adam = new(LearningRate: 1e-3f, WarmupSteps: 3, GradClip: 0.05f, EmaRate: 0.999f);

    private ComputeDevice? _device;
    private ComparisonResult _result = new();

    [OneTimeSetUp]
    public void Compare()
    {
        _device = ComputeDevice.Create(DeviceKind.Cpu);
        // The 2-D demo's network (default width and depth), batch 64.
        var config = new MlpConfig(Dim: 2);
        using var mlp = new Mlp(_device, config, seed: 5);
        using var mirror = new TorchMlp(config);
        _result = NetworkComparison.Run(mlp, mirror, batch: 64, seed: 21, s_adam, steps: 10);
        _result.Print("mlp");
    }

    [OneTimeTearDown]
    public void DisposeDevice() => _device?.Dispose();

    [Test]
    public void PredictionMatchesLibtorch() => Assert.That(_result.PredictionError, Is.LessThanOrEqualTo(GradientTolerance));

    [Test]
    public void EveryParameterGradientMatchesLibtorchAutograd() => AssertGradients(_result, GradientTolerance);

    [Test]
    public void TenAdamStepsGiveTheLossesOfTorchOptimAdam() => AssertTraining(_result, LossTolerance, WeightTolerance, s_adam);

    internal static void AssertGradients(ComparisonResult result, double tolerance)
    {
        Assert.That(result.GradientErrors, Is.Not.Empty);
        using (Assert.EnterMultipleScope())
        {
            foreach (var (name, error) in result.GradientErrors)
            {
                Assert.That(result.GradientNorms[name], Is.GreaterThan(0), $"'{name}': zero gradient, nothing compared");
                Assert.That(error, Is.LessThanOrEqualTo(tolerance), $"gradient of '{name}'");
            }
        }
    }

    internal static void AssertTraining(ComparisonResult result, double lossTolerance, double weightTolerance, AdamOptions adam)
    {
        using (Assert.EnterMultipleScope())
        {
            // Clipping must be active on the first step, or the comparison would not cover it.
            Assert.That(result.FirstStepGradientNorm, Is.GreaterThan(adam.GradClip), "first gradient norm vs the clipping limit");
            for (int k = 0; k < result.TorchLosses.Length; k++)
            {
                Assert.That(ComparisonResult.RelativeDifference(result.OurLosses[k], result.TorchLosses[k]), Is.LessThanOrEqualTo(lossTolerance), $"loss of step {k}");
            }

            // The steps must have moved the model by far more than the tolerance, or agreeing would prove nothing.
            Assert.That(ComparisonResult.RelativeDifference(result.TorchLosses[^1], result.TorchLosses[0]), Is.GreaterThan(100 * lossTolerance), "loss change over the steps");
            Assert.That(result.WeightsMoved, Is.GreaterThan(100 * weightTolerance), "weight change over the steps");
            Assert.That(result.WeightsError, Is.LessThanOrEqualTo(weightTolerance), "weights after the steps");
            Assert.That(result.EmaError, Is.LessThanOrEqualTo(weightTolerance), "EMA weights after the steps");
        }
    }
}
