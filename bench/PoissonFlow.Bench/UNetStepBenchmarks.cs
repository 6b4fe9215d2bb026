using BenchmarkDotNet.Attributes;
using BenchmarkDotNet.Configs;
using ILGPU;
using ILGPU.Runtime;
using PoissonFlow.Kernels;
using PoissonFlow.Network;
using PoissonFlow.Network.UNet;
#if WITH_TORCH
using PoissonFlow.Reference;
using TorchSharp;
using static TorchSharp.torch;
#endif

namespace PoissonFlow.Bench;

/// <summary>
/// The PFGM U-Net on 28 x 28 x 1 images: one training step (forward, loss, backward, gradient clipping, Adam, EMA) and
/// one forward pass, ours (<see cref="UNetNetwork"/> + <see cref="Trainer"/> on the chosen ILGPU device) against the
/// same architecture in TorchSharp (<see cref="TorchUNet"/> + <see cref="TorchPfgmTrainer"/>: torch.optim.Adam,
/// clip_grad_norm_, the EMA in tensor ops; float32 on the CPU), each category with the TorchSharp row as its baseline.
/// Both sides hold the same weights (ours written to a checkpoint, read by the torch side) and the same batch; before
/// timing, their predictions are compared.
/// </summary>
/// <remarks>
/// No warm-up iteration: BenchmarkDotNet's first (jitting) call already compiles every kernel and allocates every
/// buffer, and on the CPU accelerator one more unmeasured call of a batch-64 step costs minutes.
/// </remarks>
[GroupBenchmarksBy(BenchmarkLogicalGroupRule.ByCategory)]
[CategoriesColumn]
[WarmupCount(0)]
public class UNetStepBenchmarks
{
    internal const string StepCategory = "Step", ForwardCategory = "Forward";

    /// <summary>Relative L2 agreement of the two float32 predictions (each sums ~20 layers of up to 1152-term products in its own order).</summary>
    private const double Agreement = 1e-3;

    private UNetNetwork? _network;
    private Trainer? _trainer;
    private MemoryBuffer1D<float, Stride1D.Dense>? _points, _z, _target, _output;
    private double[] _referenceParameters = [], _referencePoints = [], _referenceZ = [];
#if WITH_TORCH
    private TorchUNet? _mirror;
    private TorchPfgmTrainer? _torchTrainer;
    private Tensor? _pointsTensor, _zTensor, _targetTensor;
#endif

    /// <summary>The preset and batch of the current case.</summary>
    [ParamsSource(nameof(Cases))]
    public UNetCase Case { get; set; } = new("tiny", 1);

    /// <summary>
    /// Both presets at the batch 64 and at batch 8. On the CPU accelerator (an emulator) the small preset's
    /// batch-64 step would take several minutes per call, so there it runs at batch 8 only; the tiny preset at both
    /// shows how the two sides scale with the batch. PFGM_BENCH_UNET_CASES (e.g. "tiny/8,small/64") picks cases.
    /// </summary>
    public static IEnumerable<UNetCase> Cases()
    {
        UNetCase[] all = [new("tiny", 8), new("tiny", 64), new("small", 8), new("small", 64)];
        string? chosen = Environment.GetEnvironmentVariable("PFGM_BENCH_UNET_CASES");
        if (!string.IsNullOrWhiteSpace(chosen))
        {
            var names = chosen.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries);
            return all.Where(c => names.Contains(c.ToString()));
        }

        return FieldBenchmarks.Device.IsCuda ? all : all.Where(c => c.ToString() != "small/64");
    }

    /// <summary>The single-threaded float64 reference runs at batch 8 only: at 64 it would add minutes per case and say nothing new.</summary>
    public static bool ShouldRunReference(UNetCase unetCase) => unetCase.Batch <= 8;

    /// <summary>Networks, trainers, a random batch, and the agreement check.</summary>
    [GlobalSetup]
    public void Setup()
    {
        var device = FieldBenchmarks.Device;
        var config = Case.Config;
        int batch = Case.Batch;
        Console.WriteLine($"// U-Net {Case}: {config.ParameterCount():N0} parameters, {Case.ForwardFlopsPerImage / 1e6:F1} MFLOP forward and "
            + $"{Case.StepFlopsPerImage / 1e6:F1} MFLOP per training step per image, on {device.Description}");
        _network = new UNetNetwork(device, config, seed: 1) { InferenceWeights = InferenceWeights.Live };
#if WITH_TORCH
        // Random weights everywhere (DDPM zero-initialises the output conv, which would make the agreement check vacuous).
        TorchMirror.RandomizeWeights(_network.Parameters, new Random(7));
#endif
        var rng = new Random(64);
        float[] Uniform(int count, float low, float high) => Enumerable.Range(0, count).Select(_ => low + (high - low) * rng.NextSingle()).ToArray();
        float[] points = Uniform(batch * _network.Dim, -1, 1), z = Uniform(batch, 0.05f, 20f), target = Uniform(batch * _network.OutputWidth, -1, 1);
        var accelerator = device.Accelerator;
        _points = accelerator.Allocate1D(points);
        _z = accelerator.Allocate1D(z);
        _target = accelerator.Allocate1D(target);
        _output = accelerator.Allocate1D<float>(batch * _network.OutputWidth);
        _referenceParameters = Array.ConvertAll(_network.Parameters.Download(ParameterBuffer.Weights), v => (double)v);
        _referencePoints = Array.ConvertAll(points, v => (double)v);
        _referenceZ = Array.ConvertAll(z, v => (double)v);
        // PFGM's optimiser settings, warmup shortened so that timed steps update the weights; the loss is read once
        // at the first step only (as training reads it every LossInterval steps, not every step).
        var adam = new AdamOptions(WarmupSteps: 10);
        _trainer = new Trainer(_network, new TrainerOptions(adam, LossInterval: int.MaxValue));

#if WITH_TORCH
        torch.set_num_threads(Environment.ProcessorCount);
        _mirror = new TorchUNet(config);
        TorchMirror.LoadWeights(_network, _mirror, ScalarType.Float32);
        _pointsTensor = tensor(points, [batch, _network.Dim]);
        _zTensor = tensor(z, [batch]);
        _targetTensor = tensor(target, [batch, _network.OutputWidth]);
        _torchTrainer = new TorchPfgmTrainer(_mirror, adam);
        CheckAgreement(points.Length / _network.Dim);
#endif
    }

    /// <summary>Frees the networks, buffers and tensors.</summary>
    [GlobalCleanup]
    public void Cleanup()
    {
        _trainer?.Dispose();
        _network?.Dispose();
        _points?.Dispose();
        _z?.Dispose();
        _target?.Dispose();
        _output?.Dispose();
#if WITH_TORCH
        _torchTrainer?.Dispose();
        _mirror?.Dispose();
        _pointsTensor?.Dispose();
        _zTensor?.Dispose();
        _targetTensor?.Dispose();
#endif
    }

    /// <summary>Our training step: forward, fused loss gradient, backward, norm partials, the fused clip + Adam + EMA launch; waited for.</summary>
    [Benchmark, BenchmarkCategory(StepCategory)]
    public void OurStep()
    {
        _trainer!.Step(_points!.View, _z!.View, _target!.View, Case.Batch);
        FieldBenchmarks.Device.Synchronize();
    }

    /// <summary>Our forward pass (inference: no activations kept for backward, no dropout); waited for.</summary>
    [Benchmark, BenchmarkCategory(ForwardCategory)]
    public void OurForward()
    {
        _network!.Predict(_points!.View, _z!.View, _output!.View, Case.Batch);
        FieldBenchmarks.Device.Synchronize();
    }

    /// <summary>
    /// The plain-C# baseline: the network's float64 reference forward pass (the kernels' references composed, one
    /// thread, as the tests use it; training-mode dropout, which costs one multiply per element).
    /// </summary>
    [Benchmark, BenchmarkCategory(ForwardCategory)]
    public double ReferenceForward() => _network!.ForwardReference(_referenceParameters, _referencePoints, _referenceZ, Case.Batch, step: 1)[0];

#if WITH_TORCH
    /// <summary>The TorchSharp training step (train mode: dropout on); its loss is read back, which also waits: the step baseline.</summary>
    [Benchmark(Baseline = true), BenchmarkCategory(StepCategory)]
    public double TorchStep()
    {
        _mirror!.train();
        return _torchTrainer!.Step(_pointsTensor!, _zTensor!, _targetTensor!);
    }

    /// <summary>The TorchSharp forward pass under no_grad in eval mode (no dropout): the forward baseline.</summary>
    [Benchmark(Baseline = true), BenchmarkCategory(ForwardCategory)]
    public void TorchForward()
    {
        _mirror!.eval();
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        _mirror.call(_pointsTensor!, _zTensor!);
    }

    /// <summary>Both forward passes on the same weights and inputs must agree before anything is timed.</summary>
    private void CheckAgreement(int batch)
    {
        OurForward();
        var ours = new float[batch * _network!.OutputWidth];
        _output!.View.SubView(0, ours.Length).CopyToCPU(ours);
        _mirror!.eval();
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        float[] theirs = _mirror.call(_pointsTensor!, _zTensor!).data<float>().ToArray();
        double difference = 0, norm = 0;
        for (int i = 0; i < ours.Length; i++)
        {
            difference += (ours[i] - theirs[i]) * (double)(ours[i] - theirs[i]);
            norm += theirs[i] * (double)theirs[i];
        }

        double error = Math.Sqrt(difference / norm);
        Console.WriteLine($"// U-Net {Case}: prediction agreement with TorchSharp, relative L2 {error:E2} (limit {Agreement:E0})");
        if (!(error <= Agreement)) throw new InvalidOperationException($"U-Net {Case}: our prediction differs from TorchSharp's by {error:E2} (relative L2)");
    }
#endif
}
