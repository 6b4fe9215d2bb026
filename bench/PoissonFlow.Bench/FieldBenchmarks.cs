using BenchmarkDotNet.Attributes;
using BenchmarkDotNet.Running;
using ILGPU;
using ILGPU.Runtime;
using PoissonFlow.Kernels;
using PoissonFlow.Kernels.Device;
#if WITH_TORCH
using PoissonFlow.Reference;
using TorchSharp;
using static TorchSharp.torch;
#endif

namespace PoissonFlow.Bench;

/// <summary>
/// The PFGM training target (normalised empirical field, gamma = 5) four ways, in one run so the ratios compare
/// like with like: our fused ILGPU kernel on the chosen device, TorchSharp (CPU) running the official broadcast
/// formula of Poisson_flow/losses.py, TorchSharp running a tuned formulation (cdist + log_softmax + mm; the
/// baseline), and a plain multithreaded C# loop. Every output is checked against the baseline before timing.
/// </summary>
public class FieldBenchmarks
{
#if WITH_TORCH
    private const bool LoopIsBaseline = false;
#else
    private const bool LoopIsBaseline = true;   // no TorchSharp in this build (the GPU machine's pack)
#endif

    /// <summary>Row-wise relative L2 error allowed between two float32 implementations: each computes log-weights
    /// of magnitude (N+1)/2 ln d^2 ~ 2500 in its own order, so weights may differ by a few 1e-4.</summary>
    private const double Float32Agreement = 1e-3;

    /// <summary>Method names that exist only in the TorchSharp build, for the filter and the columns.</summary>
    internal const string TorchOfficialName = "TorchOfficial", TorchTunedName = "TorchTuned";

    private static readonly Lazy<ComputeDevice> s_device = new(() =>
        ComputeDevice.Create(ComputeDevice.ParseKind(Environment.GetEnvironmentVariable("PFGM_BENCH_DEVICE") ?? "auto")));

    private static readonly Dictionary<FieldShape, (float[] Points, float[] Extra, float[] Data)> s_inputs = new();
    private static readonly Dictionary<(FieldShape, string), string> s_validation = new();
    private static readonly FieldOptions s_options = FieldOptions.Pfgm();

    private float[] _points = [], _extra = [], _data = [], _output = [];
    private PoissonField? _field;
    private MemoryBuffer1D<float, Stride1D.Dense>? _pointsBuffer, _extraBuffer, _dataBuffer, _outputBuffer;
#if WITH_TORCH
    private Tensor? _pointsTensor, _extraTensor, _dataTensor;
#endif

    /// <summary>The problem size of the current case.</summary>
    [ParamsSource(nameof(Shapes))]
    public FieldShape Shape { get; set; } = new(1, 1, 1);

    /// <summary>The device our kernel runs on: PFGM_BENCH_DEVICE=auto|cpu|cuda, auto by default.</summary>
    public static ComputeDevice Device => s_device.Value;

    /// <summary>MNIST- and CIFAR-sized training steps; the full 60000-image MNIST reference set only on CUDA
    /// (on the CPU each evaluation of it would take minutes).</summary>
    public static IEnumerable<FieldShape> Shapes()
    {
        yield return new FieldShape(128, 1024, 784);
        yield return new FieldShape(128, 4096, 3072);
        if (Device.IsCuda) yield return new FieldShape(256, 60000, 784);
    }

    /// <summary>
    /// Filter: the official broadcast formula keeps two B x M x (N+1) float32 temporaries alive; where those exceed a
    /// quarter of this machine's memory (128 x 4096 x 3073: 2 x 6.4 GB) the case is skipped, with a note.
    /// </summary>
    public static bool ShouldRun(BenchmarkCase benchmarkCase)
    {
        if (benchmarkCase.Descriptor.WorkloadMethod.Name == nameof(UNetStepBenchmarks.ReferenceForward))
            return UNetStepBenchmarks.ShouldRunReference((UNetCase)benchmarkCase.Parameters["Case"]);
        if (benchmarkCase.Descriptor.WorkloadMethod.Name != TorchOfficialName) return true;
        var shape = (FieldShape)benchmarkCase.Parameters["Shape"];
        long limit = GC.GetGCMemoryInfo().TotalAvailableMemoryBytes / 4;
        if (2 * shape.BroadcastTemporaryBytes <= limit) return true;
        Console.WriteLine($"// Note: TorchOfficial at {shape} skipped: its two live B x M x (N+1) temporaries need " +
                          $"{2 * shape.BroadcastTemporaryBytes / 1e9:F1} GB, over a quarter of this machine's {4 * limit / 1e9:F0} GB.");
        return false;
    }

    /// <summary>Inputs shared by all methods (cached per shape) and a one-off agreement check of every method.</summary>
    [GlobalSetup]
    public void Setup()
    {
        if (!s_inputs.TryGetValue(Shape, out var inputs))
        {
            var rng = new Random(2026);
            float[] Uniform(long n, float lo, float hi)
            {
                var values = new float[n];
                for (long i = 0; i < n; i++) values[i] = lo + (hi - lo) * rng.NextSingle();
                return values;
            }

            // Images scaled to [-1, 1]; z over the range the PFGM perturbation produces.
            inputs = (Uniform((long)Shape.Batch * Shape.Dim, -1, 1), Uniform(Shape.Batch, 0.05f, 40f), Uniform((long)Shape.Count * Shape.Dim, -1, 1));
            s_inputs[Shape] = inputs;
            Validate(Shape, inputs.Points, inputs.Extra, inputs.Data);
        }

        (_points, _extra, _data) = inputs;
        _output = new float[Shape.Batch * s_options.OutputWidth(Shape.Dim)];
    }

    /// <summary>Device buffers, uploaded once; only the kernel's cases pay for them.</summary>
    [GlobalSetup(Target = nameof(FusedKernel))]
    public void SetupKernel()
    {
        Setup();
        RequireValid(nameof(FusedKernel));
        _field = PoissonField.For(Device);
        _pointsBuffer = Device.Accelerator.Allocate1D(_points);
        _extraBuffer = Device.Accelerator.Allocate1D(_extra);
        _dataBuffer = Device.Accelerator.Allocate1D(_data);
        _outputBuffer = Device.Accelerator.Allocate1D<float>(_output.Length);
    }

    /// <summary>Frees the device buffers.</summary>
    [GlobalCleanup(Target = nameof(FusedKernel))]
    public void CleanupKernel()
    {
        _pointsBuffer?.Dispose();
        _extraBuffer?.Dispose();
        _dataBuffer?.Dispose();
        _outputBuffer?.Dispose();
    }

    /// <summary>Our fused kernel on <see cref="Device"/>: one evaluation, waited for.</summary>
    [Benchmark]
    public void FusedKernel()
    {
        _field!.Compute(_pointsBuffer!.View, _extraBuffer!.View, _dataBuffer!.View, _outputBuffer!.View,
            Shape.Batch, Shape.Count, Shape.Dim, s_options);
        Device.Synchronize();
    }

#if WITH_TORCH
    /// <summary>Tensors for the TorchSharp cases; libtorch uses every core, as our other opponents do.</summary>
    [GlobalSetup(Targets = [nameof(TorchOfficial), nameof(TorchTuned)])]
    public void SetupTorch()
    {
        Setup();
        torch.set_num_threads(Environment.ProcessorCount);
        _pointsTensor = tensor(_points, [Shape.Batch, Shape.Dim]);
        _extraTensor = tensor(_extra, [Shape.Batch]);
        _dataTensor = tensor(_data, [Shape.Count, Shape.Dim]);
    }

    /// <summary>Frees the TorchSharp tensors.</summary>
    [GlobalCleanup(Targets = [nameof(TorchOfficial), nameof(TorchTuned)])]
    public void CleanupTorch()
    {
        _pointsTensor?.Dispose();
        _extraTensor?.Dispose();
        _dataTensor?.Dispose();
    }

    /// <summary>The official broadcast formula (Poisson_flow/losses.py), float32 on the CPU.</summary>
    [Benchmark]
    public void TorchOfficial()
    {
        RequireValid(nameof(TorchOfficial));
        using var result = TorchField.OfficialPfgm(_pointsTensor!, _extraTensor!, _dataTensor!, s_options.Gamma);
    }

    /// <summary>cdist + log_softmax + mm, float32 on the CPU: the baseline.</summary>
    [Benchmark(Baseline = true)]
    public void TorchTuned()
    {
        using var result = TorchField.Tuned(_pointsTensor!, _extraTensor!, _dataTensor!, s_options);
    }
#endif

    /// <summary>The plain C# baseline (Parallel.For + Vector&lt;float&gt;).</summary>
    [Benchmark(Baseline = LoopIsBaseline)]
    public void CSharpLoop() =>
        ParallelFieldLoop.Compute(_points, _extra, _data, _output, Shape.Batch, Shape.Count, Shape.Dim, s_options);

    /// <summary>
    /// Runs every method once on this shape and compares it with the baseline (TorchTuned, or the C# loop where
    /// TorchSharp is absent); a method that disagrees fails its own cases. A kernel that is not implemented yet is
    /// reported as pending.
    /// </summary>
    private static void Validate(FieldShape shape, float[] points, float[] extra, float[] data)
    {
        int width = s_options.OutputWidth(shape.Dim);
        var loop = new float[shape.Batch * width];
        ParallelFieldLoop.Compute(points, extra, data, loop, shape.Batch, shape.Count, shape.Dim, s_options);
        float[] reference = loop;
#if WITH_TORCH
        using (NewDisposeScope())
        {
            Tensor x = tensor(points, [shape.Batch, shape.Dim]), z = tensor(extra, [shape.Batch]), y = tensor(data, [shape.Count, shape.Dim]);
            reference = TorchField.Tuned(x, z, y, s_options).data<float>().ToArray();
            Record(shape, nameof(CSharpLoop), loop, reference, width);
            if (2 * shape.BroadcastTemporaryBytes <= GC.GetGCMemoryInfo().TotalAvailableMemoryBytes / 4)
            {
                Record(shape, nameof(TorchOfficial), TorchField.OfficialPfgm(x, z, y, s_options.Gamma).data<float>().ToArray(), reference, width);
            }
        }
#endif
        try
        {
            Record(shape, nameof(FusedKernel),
                PoissonField.For(Device).Compute(points, extra, data, shape.Batch, shape.Count, shape.Dim, s_options), reference, width);
        }
        catch (NotImplementedException)
        {
            s_validation[(shape, nameof(FusedKernel))] = "pending: PoissonField is not implemented in this build";
            Console.WriteLine($"// {nameof(FusedKernel)} at {shape}: {s_validation[(shape, nameof(FusedKernel))]}");
        }
    }

    private static void Record(FieldShape shape, string method, float[] actual, float[] expected, int width)
    {
        double error = 0;
        for (int row = 0; row < shape.Batch; row++)
        {
            double diff = 0, norm = 0;
            for (int k = row * width; k < (row + 1) * width; k++)
            {
                diff += (double)(actual[k] - expected[k]) * (actual[k] - expected[k]);
                norm += (double)expected[k] * expected[k];
            }

            double rowError = Math.Sqrt(diff / norm);
            error = double.IsNaN(rowError) ? double.PositiveInfinity : Math.Max(error, rowError);
        }

        Console.WriteLine($"// {method} at {shape}: max row relative error vs baseline {error:E2}");
        s_validation[(shape, method)] = error <= Float32Agreement ? "" : $"disagrees with the baseline: row relative error {error:E2} > {Float32Agreement:E0}";
    }

    private void RequireValid(string method)
    {
        if (s_validation.TryGetValue((Shape, method), out var problem) && problem.Length > 0)
        {
            throw new InvalidOperationException($"{method} at {Shape}: {problem}");
        }
    }
}
