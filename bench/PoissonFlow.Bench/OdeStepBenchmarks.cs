using BenchmarkDotNet.Attributes;
using BenchmarkDotNet.Configs;
using ILGPU;
using ILGPU.Runtime;
using PoissonFlow.Kernels;
using PoissonFlow.Sampling;
#if WITH_TORCH
using TorchSharp;
using static TorchSharp.torch;
#endif

namespace PoissonFlow.Bench;

/// <summary>One ODE step problem size: B samples of N values.</summary>
public sealed record OdeStepShape(int Batch, int Dim)
{
    /// <summary>BenchmarkDotNet shows parameters through ToString: BxN.</summary>
    public override string ToString() => $"{Batch}x{Dim}";
}

/// <summary>
/// One Euler step and one Dormand-Prince (RK45) attempt of the PFGM backward ODE in t = ln z, with the network time
/// excluded: the field predictions are precomputed random buffers (B x (N+1), v_z negative), so only the step's own
/// arithmetic is timed. Our fused kernels (<see cref="OdeSteps"/>, composed as <see cref="PfgmOde"/> does) against
/// the same arithmetic written with TorchSharp tensor ops on the CPU (the baseline of each category).
/// </summary>
[GroupBenchmarksBy(BenchmarkLogicalGroupRule.ByCategory)]
[CategoriesColumn]
public class OdeStepBenchmarks
{
    private const string EulerCategory = "Euler", Rk45Category = "RK45";

    /// <summary>Relative L2 agreement required between our step and the TorchSharp step (float32 both sides; a
    /// step adds a small drift to x of magnitude 1, so rounding differences stay near 1e-7).</summary>
    private const double Agreement = 1e-4;

    /// <summary>Steps per timed call: one step takes milliseconds, too short for the shared job's single-call
    /// iterations (<see cref="BenchConfig.FieldJob"/>), so each call repeats it and reports the time per step.</summary>
    private const int Repeats = 25;

    /// <summary>
    /// libtorch threads for the step: one. A step's tensors hold only 8k-50k values, and on the shared 2-core machine
    /// libtorch's 2-thread pool, not the arithmetic, set the time of its ~140 small ops (up to ~200x slower than with
    /// one thread, see bench/README.md).
    /// </summary>
    private const int TorchThreads = 1;

    private const int Slots = 7;

    /// <summary>The Euler step stores its drift here, past the 7 RK45 slots, so it never overwrites the FSAL stage.</summary>
    private const int EulerSlot = Slots;
    private const float Gamma = 5f, ZExp = 5f, RelativeTolerance = 1e-4f, AbsoluteTolerance = 1e-4f;

    // Euler at z = 4 (below z_exp: the substitution path); the RK45 attempt from z = 6 with h = -0.3 in ln z, so its
    // stages run at z = 6 down to 4.4 and cross z_exp: both drift paths are timed.
    private const double EulerZ = 4, EulerStep = -0.05, Rk45Z = 6, Rk45Step = -0.3;

    private float[] _x = [];
    private float[][] _fields = [];
    private OdeSteps? _steps;
    private MemoryBuffer1D<float, Stride1D.Dense>[] _fieldBuffers = [];
    private MemoryBuffer1D<float, Stride1D.Dense>? _xBuffer, _xOut, _stage, _stages, _zBuffer, _rowSums;
    private float[] _hostRows = [];
    private readonly double[] _zs = new double[Slots];
#if WITH_TORCH
    private Tensor? _xTensor, _k0Tensor;
    private Tensor[] _fieldTensors = [];
#endif

    /// <summary>The problem size of the current case.</summary>
    [ParamsSource(nameof(Shapes))]
    public OdeStepShape Shape { get; set; } = new(1, 1);

    /// <summary>A batch of 4096 2-D points (the 2-D demo) and of 64 MNIST-sized images (28 x 28).</summary>
    public static IEnumerable<OdeStepShape> Shapes() => [new(4096, 2), new(64, 784)];

    /// <summary>Random state and fields, device buffers, the first (FSAL) stage, and the agreement check.</summary>
    [GlobalSetup]
    public void Setup()
    {
        int batch = Shape.Batch, dim = Shape.Dim;
        var rng = new Random(2026);
        float Uniform(float lo, float hi) => lo + (hi - lo) * rng.NextSingle();
        _x = new float[batch * dim];
        for (int i = 0; i < _x.Length; i++) _x[i] = Uniform(-1, 1);

        // Normalised-field magnitudes: |v_x| / sqrt(N) ~ 0.3 (below 1, as the z-substitution requires), v_z negative.
        float sqrtDim = MathF.Sqrt(dim);
        _fields = new float[Slots][];
        for (int s = 0; s < Slots; s++)
        {
            var field = _fields[s] = new float[batch * (dim + 1)];
            for (int b = 0; b < batch; b++)
            {
                for (int i = 0; i < dim; i++) field[b * (dim + 1) + i] = Uniform(-0.5f, 0.5f);
                field[b * (dim + 1) + dim] = Uniform(-0.9f, -0.1f) * sqrtDim;
            }
        }

        for (int j = 0; j < Slots; j++) _zs[j] = Math.Exp(Math.Log(Rk45Z) + DormandPrince.C[j] * Rk45Step);

        var device = FieldBenchmarks.Device;
        var accelerator = device.Accelerator;
        _steps = OdeSteps.For(device);
        _fieldBuffers = [.. _fields.Select(f => accelerator.Allocate1D(f))];
        _xBuffer = accelerator.Allocate1D(_x);
        _xOut = accelerator.Allocate1D<float>(_x.Length);
        _stage = accelerator.Allocate1D<float>(_x.Length);
        _stages = accelerator.Allocate1D<float>((long)(Slots + 1) * _x.Length);
        _zBuffer = accelerator.Allocate1D<float>(batch);
        _rowSums = accelerator.Allocate1D<float>(batch);
        _hostRows = new float[batch];
        // The first RK45 stage is the previous step's last one (FSAL): stored once, as the solver has it on entry.
        _steps.DriftStage(_fieldBuffers[0].View, _stages.View, 0, _xBuffer.View, _xBuffer.View, _zBuffer.View, batch, dim,
            Drift(_zs[0]), StageCombination.StoreOnly);
        device.Synchronize();

#if WITH_TORCH
        torch.set_num_threads(TorchThreads);
        _xTensor = tensor(_x, [batch, dim]);
        _fieldTensors = [.. _fields.Select(f => tensor(f, [batch, dim + 1]))];
        _k0Tensor = TorchDrift(_fieldTensors[0], _zs[0]);
        Check(EulerCategory, ReadBack(RunFusedEuler), TorchEulerStep());
        Check(Rk45Category, ReadBack(() => RunFusedRk45()), TorchRk45Step().YNew);
#endif
    }

    /// <summary>Frees the device buffers and tensors.</summary>
    [GlobalCleanup]
    public void Cleanup()
    {
        foreach (var buffer in _fieldBuffers) buffer.Dispose();
        _xBuffer?.Dispose();
        _xOut?.Dispose();
        _stage?.Dispose();
        _stages?.Dispose();
        _zBuffer?.Dispose();
        _rowSums?.Dispose();
#if WITH_TORCH
        _xTensor?.Dispose();
        _k0Tensor?.Dispose();
        foreach (var t in _fieldTensors) t.Dispose();
#endif
    }

    /// <summary>Our Euler step: one fused launch (drift, z-substitution, x + h k, z), waited for.</summary>
    [Benchmark(OperationsPerInvoke = Repeats), BenchmarkCategory(EulerCategory)]
    public void FusedEuler()
    {
        for (int r = 0; r < Repeats; r++)
        {
            RunFusedEuler();
            FieldBenchmarks.Device.Synchronize();
        }
    }

    /// <summary>One Dormand-Prince attempt with our kernels (combine, 5 fused stages, fused error) and its one host
    /// read of the B per-sample error sums, which also waits for the device.</summary>
    [Benchmark(OperationsPerInvoke = Repeats), BenchmarkCategory(Rk45Category)]
    public double FusedRk45()
    {
        double norm = 0;
        for (int r = 0; r < Repeats; r++) norm += RunFusedRk45();
        return norm;
    }

#if WITH_TORCH
    /// <summary>The Euler step with TorchSharp ops on the CPU: the Euler baseline.</summary>
    [Benchmark(Baseline = true, OperationsPerInvoke = Repeats), BenchmarkCategory(EulerCategory)]
    public void TorchEuler()
    {
        for (int r = 0; r < Repeats; r++)
        {
            using var scope = NewDisposeScope();
            TorchEulerStep();
        }
    }

    /// <summary>The Dormand-Prince attempt with TorchSharp ops on the CPU, error norm read to the host: the RK45 baseline.</summary>
    [Benchmark(Baseline = true, OperationsPerInvoke = Repeats), BenchmarkCategory(Rk45Category)]
    public double TorchRk45()
    {
        double norm = 0;
        for (int r = 0; r < Repeats; r++)
        {
            using var scope = NewDisposeScope();
            norm += TorchRk45Step().ErrorNorm;
        }

        return norm;
    }
#endif

    private void RunFusedEuler() =>
        _steps!.DriftStage(_fieldBuffers[0].View, _stages!.View, EulerSlot, _xBuffer!.View, _xOut!.View, _zBuffer!.View,
            Shape.Batch, Shape.Dim, Drift(EulerZ, EulerZ), StageCombination.Create([], [], EulerStep, EulerZ * Math.Exp(EulerStep)));

    /// <summary>As PfgmOde.Attempt, with stage s's field read from its precomputed buffer instead of the network.</summary>
    private double RunFusedRk45()
    {
        int batch = Shape.Batch, dim = Shape.Dim;
        var a = DormandPrince.A;
        var e = DormandPrince.E;
        double h = Rk45Step;
        Span<double> weights = stackalloc double[Slots];
        Span<int> slots = [0, 1, 2, 3, 4, 5, 6];
        var steps = _steps!;
        weights[0] = h * a[1][0];
        steps.Combine(_stages!.View, _xBuffer!.View, _stage!.View, _zBuffer!.View, batch, dim,
            StageCombination.Create(weights[..1], slots[..1], 0, _zs[1]));
        for (int s = 1; s <= 5; s++)
        {
            for (int j = 0; j < s; j++) weights[j] = h * a[s + 1][j];
            var next = s < 5 ? _stage.View : _xOut!.View;
            steps.DriftStage(_fieldBuffers[s].View, _stages.View, s, _xBuffer.View, next, _zBuffer.View, batch, dim,
                Drift(_zs[s]), StageCombination.Create(weights[..s], slots[..s], h * a[s + 1][s], _zs[s + 1]));
        }

        for (int j = 0; j < 6; j++) weights[j] = h * e[j];
        steps.DriftError(_fieldBuffers[6].View, _stages.View, 6, _xBuffer.View, _xOut!.View, _rowSums!.View, batch, dim,
            Drift(_zs[6]), StageCombination.Create(weights[..6], slots[..6], h * e[6], 0), RelativeTolerance, AbsoluteTolerance);
        _rowSums.View.CopyToCPU(_hostRows);
        double sum = 0;
        foreach (float v in _hostRows) sum += v;
        return Math.Sqrt(sum / ((double)batch * dim));
    }

    private float[] ReadBack(Action step)
    {
        step();
        FieldBenchmarks.Device.Synchronize();
        var result = new float[_x.Length];
        _xOut!.View.CopyToCPU(result);
        return result;
    }

    private static DriftSettings Drift(double z) => Drift(z, z);

    private static DriftSettings Drift(double z, double scale) => new((float)z, (float)scale, Gamma, ZExp);

#if WITH_TORCH
    /// <summary>scale * v_x / (v_z + 1e-5), v_z rebuilt from |v_x| below z_exp (spec section 5), in t = ln z (scale = z).</summary>
    private static Tensor TorchDrift(Tensor field, double z)
    {
        long dim = field.shape[1] - 1;
        var vx = field.narrow(1, 0, dim);
        var vz = field.select(1, dim);
        if (Gamma > 0 && z < ZExp)
        {
            double sqrtDim = Math.Sqrt(dim);
            var n1 = vx.square().sum(1).sqrt() / sqrtDim;
            var a = Gamma * n1 / (1 - n1);
            vz = -sqrtDim * z / ((a * a + z * z).sqrt() + Gamma);
        }

        return vx * (z / (vz + OdeSteps.VzEpsilon)).unsqueeze(1);
    }

    private Tensor TorchEulerStep() => _xTensor! + EulerStep * TorchDrift(_fieldTensors[0], EulerZ);

    /// <summary>Stages y_s = x + h sum_j a_sj k_j and k_s = drift(field_s); y_new = y_6; scipy's RMS error norm.</summary>
    private (Tensor YNew, double ErrorNorm) TorchRk45Step()
    {
        var a = DormandPrince.A;
        var e = DormandPrince.E;
        double h = Rk45Step;
        var k = new Tensor[Slots];
        k[0] = _k0Tensor!;
        Tensor y = _xTensor!;
        for (int s = 1; s < Slots; s++)
        {
            y = _xTensor!;
            for (int j = 0; j < s; j++) y = y + h * a[s][j] * k[j];
            k[s] = TorchDrift(_fieldTensors[s], _zs[s]);
        }

        var yNew = y;   // the last stage's input is y_new (A's last row equals the 5th-order weights)
        var error = h * e[0] * k[0];
        for (int j = 1; j < Slots; j++) error = error + h * e[j] * k[j];
        var scale = AbsoluteTolerance + RelativeTolerance * torch.maximum(_xTensor!.abs(), yNew.abs());
        double norm = (error / scale).square().mean().sqrt().item<float>();
        return (yNew, norm);
    }

    private void Check(string category, float[] ours, Tensor torchResult)
    {
        float[] theirs = torchResult.data<float>().ToArray();
        double diff = 0, norm = 0;
        for (int i = 0; i < ours.Length; i++)
        {
            diff += (double)(ours[i] - theirs[i]) * (ours[i] - theirs[i]);
            norm += (double)theirs[i] * theirs[i];
        }

        double error = Math.Sqrt(diff / norm);
        Console.WriteLine($"// {category} at {Shape}: relative L2 error of our step vs TorchSharp {error:E2}");
        if (!(error <= Agreement))
        {
            throw new InvalidOperationException($"{category} at {Shape}: our step disagrees with TorchSharp's, relative error {error:E2} > {Agreement:E0}");
        }
    }
#endif
}
