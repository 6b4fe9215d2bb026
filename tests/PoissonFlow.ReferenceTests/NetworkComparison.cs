using ILGPU;
using ILGPU.Runtime;
using PoissonFlow.Kernels;
using PoissonFlow.Network;
using PoissonFlow.Reference;
using TorchSharp;
using static TorchSharp.torch;

namespace PoissonFlow.ReferenceTests;

/// <summary>What <see cref="NetworkComparison.Run"/> measured; every error is a relative L2 error ||ours - torch|| / ||torch||.</summary>
internal sealed class ComparisonResult
{
    public double PredictionError { get; set; }

    public Dictionary<string, double> GradientErrors { get; } = [];

    /// <summary>Gradient norm per tensor on the torch side (a zero one would make its comparison vacuous).</summary>
    public Dictionary<string, double> GradientNorms { get; } = [];

    /// <summary>Global gradient norm on the torch side for the random weights.</summary>
    public double GlobalGradientNorm => Math.Sqrt(GradientNorms.Values.Sum(n => n * n));

    /// <summary>Global gradient norm of the first training step on the torch side (what clipping compares with its limit).</summary>
    public double FirstStepGradientNorm { get; set; }

    public double? InputGradientError { get; set; }

    public double InputGradientNorm { get; set; }

    public double[] OurLosses { get; set; } = [];

    public double[] TorchLosses { get; set; } = [];

    public double WeightsError { get; set; }

    /// <summary>Wall time of the forward + backward comparison and of the training steps (both sides).</summary>
    public double GradientSeconds { get; set; }

    public double StepsSeconds { get; set; }

    public double EmaError { get; set; }

    /// <summary>||w_10 - w_0|| / ||w_0|| on the torch side: how far the steps moved the weights.</summary>
    public double WeightsMoved { get; set; }

    public void Print(string title)
    {
        TestContext.Progress.WriteLine($"{title}: prediction {PredictionError:E2}, worst gradient {GradientErrors.Values.Max():E2} "
            + $"({GradientErrors.MaxBy(e => e.Value).Key}), input gradient {InputGradientError?.ToString("E2") ?? "n/a"}, global gradient norm {GlobalGradientNorm:G4}");
        for (int k = 0; k < OurLosses.Length; k++)
        {
            TestContext.Progress.WriteLine($"  step {k}: loss ours {OurLosses[k]:R}, torch {TorchLosses[k]:R}, relative {RelativeDifference(OurLosses[k], TorchLosses[k]):E2}");
        }

        TestContext.Progress.WriteLine($"  after the steps: weights {WeightsError:E2}, EMA {EmaError:E2} (weights moved {WeightsMoved:E2}); "
            + $"first step's gradient norm {FirstStepGradientNorm:G4}; our forward + backward {GradientSeconds:F1} s, the steps (both sides) {StepsSeconds:F1} s");
    }

    public static double RelativeDifference(double ours, double reference) => Math.Abs(ours - reference) / Math.Abs(reference);
}

/// <summary>
/// Runs one of our networks and its TorchSharp mirror side by side: fresh random weights in every tensor (so no
/// zero-initialised layer blocks the gradient flow), written by <see cref="Checkpoint.Save(string, ITrainableNetwork, long)"/>
/// and read back by the torch side with its own safetensors reader; one batch of random inputs; the prediction, every
/// parameter gradient and (when the network offers it) the input gradient against libtorch autograd in float64; then,
/// from the network's own initialisation, <c>steps</c> training steps of our <see cref="Trainer"/> against
/// <see cref="TorchPfgmTrainer"/> on that batch.
/// libtorch runs in float64, so its numbers are the reference and the errors are ours (float32 kernels).
/// </summary>
internal static class NetworkComparison
{
    public static ComparisonResult Run(ITrainableNetwork network, nn.Module<Tensor, Tensor, Tensor> mirror, int batch, int seed,
        AdamOptions adam, int steps, Func<float[]>? inputGradient = null)
    {
        var device = network.Device;
        var accelerator = device.Accelerator;
        var store = network.Parameters;
        var rng = new Random(seed);
        int dim = network.Dim, width = network.OutputWidth;
        TorchMirror.RandomizeWeights(store, rng);
        var result = new ComparisonResult();
        using var scope = NewDisposeScope();
        TorchMirror.LoadWeights(network, mirror, ScalarType.Float64);

        // Inputs in the ranges training sees: data in [-1, 1], z over two decades, targets of unit size.
        float[] points = Uniform(rng, batch * dim, -1, 1), z = Uniform(rng, batch, 0.05f, 20f), target = Uniform(rng, batch * width, -1, 1);
        using var pointsBuffer = accelerator.Allocate1D(points);
        using var zBuffer = accelerator.Allocate1D(z);
        using var targetBuffer = accelerator.Allocate1D(target);
        var pointsTensor = ToTensor(points, batch, dim);
        var zTensor = ToTensor(z, batch);
        var targetTensor = ToTensor(target, batch, width);

        // Forward and gradients as the trainer takes them (forward, fused loss gradient, backward); gradients start
        // at zero (RandomizeWeights cleared them), so afterwards they are exactly this batch's.
        var clock = System.Diagnostics.Stopwatch.StartNew();
        var prediction = new float[batch * width];
        using (var dPrediction = accelerator.Allocate1D<float>(batch * width))
        using (var rowLoss = accelerator.Allocate1D<float>(batch))
        {
            rowLoss.MemSetToZero();
            var output = network.ForwardTraining(pointsBuffer.View, zBuffer.View, batch).SubView(0, prediction.Length);
            output.CopyToCPU(prediction);
            FieldLoss.For(device).ForwardBackward(output, targetBuffer.View, dPrediction.View, rowLoss.View, batch, width, reduceMean: false);
            network.Backward(dPrediction.View, batch);
            device.Synchronize();
        }

        result.GradientSeconds = clock.Elapsed.TotalSeconds;
        float[] gradients = store.Download(ParameterBuffer.Gradients);
        float[]? ourInputGradient = inputGradient?.Invoke();

        var input = pointsTensor.clone().requires_grad_();
        var torchPrediction = mirror.call(input, zTensor);
        TorchLayers.FieldLoss(torchPrediction, targetTensor, reduceMean: false).backward();
        result.PredictionError = RelativeL2(prediction, torchPrediction.detach());
        foreach (var (name, parameter) in mirror.named_parameters())
        {
            var grad = parameter.grad ?? throw new InvalidOperationException($"libtorch left '{name}' without a gradient");
            result.GradientErrors[name] = RelativeL2(store.Slice(gradients, store.Tensor(name)), grad);
            result.GradientNorms[name] = grad.norm().item<double>();
        }

        if (ourInputGradient is not null)
        {
            result.InputGradientError = RelativeL2(ourInputGradient, input.grad!);
            result.InputGradientNorm = input.grad!.norm().item<double>();
        }

        // Training steps from the network's own initialisation, as training starts (the random weights above make
        // a chaotic network: its first gradient norm is ~1e3 for the U-Net, and the 1e-6 float32 / float64 weight
        // differences after a few steps show up 50x larger in its loss). Both sides reload; moments start at zero.
        store.Initialize((ulong)seed);
        TorchMirror.LoadWeights(network, mirror, ScalarType.Float64);
        foreach (var parameter in mirror.parameters()) parameter.grad = null;
        var initial = mirror.parameters().Select(p => p.detach().clone()).ToArray();
        result.OurLosses = new double[steps];
        result.TorchLosses = new double[steps];
        clock.Restart();
        using (var trainer = new Trainer(network, new TrainerOptions(adam, LossInterval: 1)))
        using (var torchTrainer = new TorchPfgmTrainer(mirror, adam))
        {
            for (int k = 0; k < steps; k++)
            {
                result.OurLosses[k] = trainer.Step(pointsBuffer.View, zBuffer.View, targetBuffer.View, batch);
                result.TorchLosses[k] = torchTrainer.Step(pointsTensor, zTensor, targetTensor);
                if (k == 0) result.FirstStepGradientNorm = torchTrainer.LastGradientNorm;
            }

            result.StepsSeconds = clock.Elapsed.TotalSeconds;

            var parameters = mirror.named_parameters().ToArray();
            result.WeightsError = RelativeL2(Gather(store, store.Download(ParameterBuffer.Weights), parameters.Select(p => p.name)),
                cat(parameters.Select(p => p.parameter.detach().flatten()).ToArray()));
            result.EmaError = RelativeL2(Gather(store, store.Download(ParameterBuffer.Ema), parameters.Select(p => p.name)),
                cat(torchTrainer.Ema.Select(t => t.flatten()).ToArray()));
            var before = cat(initial.Select(t => t.flatten()).ToArray());
            var after = cat(parameters.Select(p => p.parameter.detach().flatten()).ToArray());
            result.WeightsMoved = (after - before).norm().item<double>() / before.norm().item<double>();
        }

        return result;
    }

    private static float[] Gather(ParameterStore store, float[] buffer, IEnumerable<string> names) =>
        names.SelectMany(n => store.Slice(buffer, store.Tensor(n))).ToArray();

    private static float[] Uniform(Random rng, int count, float low, float high) =>
        Enumerable.Range(0, count).Select(_ => low + (high - low) * rng.NextSingle()).ToArray();

    private static Tensor ToTensor(float[] values, params long[] shape) => tensor(values.Select(v => (double)v).ToArray(), shape, ScalarType.Float64);

    private static double RelativeL2(float[] ours, Tensor reference)
    {
        double[] expected = reference.to_type(ScalarType.Float64).contiguous().data<double>().ToArray();
        if (expected.Length != ours.Length) throw new ArgumentException($"comparing {ours.Length} values with {expected.Length}");
        double difference = 0, norm = 0;
        for (int i = 0; i < expected.Length; i++)
        {
            difference += (ours[i] - expected[i]) * (ours[i] - expected[i]);
            norm += expected[i] * expected[i];
        }

        return norm == 0 ? (difference == 0 ? 0 : double.PositiveInfinity) : Math.Sqrt(difference / norm);
    }
}
