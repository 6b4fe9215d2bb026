using ILGPU;
using ILGPU.Runtime;
using PoissonFlow.Kernels.Device;

namespace PoissonFlow.Kernels;

/// <summary>
/// First pass of the global gradient norm (for clipping): one launch writes per-group partial sums of squares of a
/// whole buffer. <see cref="Adam"/> finishes the reduction itself (each group sums the few partials), so clipping needs
/// no host round-trip. The reduction order is fixed, so the norm, and hence training, is deterministic.
/// </summary>
public sealed class GlobalNorm
{
    /// <summary>Threads per group on CUDA (a power of two, at most the shared array below).</summary>
    internal const int CudaGroupSize = 256;

    private readonly ComputeDevice _device;
    private readonly Action<AcceleratorStream, KernelConfig, ArrayView<float>, ArrayView<float>> _partials;

    private GlobalNorm(ComputeDevice device)
    {
        _device = device;
        _partials = device.Accelerator.LoadKernel<ArrayView<float>, ArrayView<float>>(SumOfSquaresKernel);
        // Enough groups to stream a large buffer on a GPU; on the CPU emulator one single-thread group per core.
        PartialCount = device.IsCuda ? 2 * device.Accelerator.NumMultiprocessors : device.Accelerator.NumMultiprocessors;
    }

    /// <summary>This device's instance (kernels compiled once per device).</summary>
    public static GlobalNorm For(ComputeDevice device) => device.Operation(d => new GlobalNorm(d));

    /// <summary>How many partial sums <see cref="SumOfSquaresPartials"/> writes (the length the partials view needs).</summary>
    public int PartialCount { get; }

    /// <summary>Writes <see cref="PartialCount"/> partial sums whose total is sum(values^2).</summary>
    public void SumOfSquaresPartials(ArrayView<float> values, ArrayView<float> partials)
    {
        if (partials.Length < PartialCount) throw new ArgumentException($"global norm: partials have {partials.Length} elements, need {PartialCount}");
        int groupSize = _device.IsCuda ? CudaGroupSize : 1;
        _partials(_device.Accelerator.DefaultStream, new KernelConfig(PartialCount, groupSize), values, partials);
    }

    /// <summary>Float64 reference: the L2 norm of the values.</summary>
    public static double Reference(ReadOnlySpan<double> values)
    {
        double sum = 0;
        foreach (double v in values) sum += v * v;
        return Math.Sqrt(sum);
    }

    [GpuKernel]
    internal static void SumOfSquaresKernel(ArrayView<float> values, ArrayView<float> partials)
    {
        var shared = SharedMemory.Allocate<float>(CudaGroupSize);
        float sum = 0;
        int n = (int)values.Length, stride = Grid.DimX * Group.DimX;
        for (int i = Grid.GlobalIndex.X; i < n; i += stride)
        {
            float v = values[i];
            sum += v * v;
        }

        int tid = Group.IdxX;
        shared[tid] = sum;
        Group.Barrier();
        for (int half = Group.DimX / 2; half > 0; half /= 2)
        {
            if (tid < half) shared[tid] += shared[tid + half];
            Group.Barrier();
        }

        if (tid == 0) partials[Grid.IdxX] = shared[0];
    }
}
