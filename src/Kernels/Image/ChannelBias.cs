using ILGPU;
using ILGPU.Runtime;
using PoissonFlow.Kernels.Device;

namespace PoissonFlow.Kernels.Image;

// Per-(sample, channel) bias broadcast over the pixels: how a resblock adds Dense(silu(emb)) (one value per sample and
// channel) after its first conv. Forward out[n, c, p] = in[n, c, p] + bias[n, c] (grid-stride; may run in place).
// Backward: dIn = dOut (identity, so no kernel: the caller keeps using the same gradient buffer) and
// dBias[n, c] = sum_p dOut[n, c, p] (written, =: it is an activation gradient, fed to the Dense layer's backward).
// The backward reduction runs one thread group per (n, c) row (256 threads on CUDA, one on the CPU emulator).

/// <summary>Per-(sample, channel) bias addition (the embedding projection of a resblock), forward and backward.</summary>
public sealed class ChannelBias
{
    private readonly ComputeDevice _device;
    private readonly Action<AcceleratorStream, KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<float>, int> _forward;
    private readonly Action<AcceleratorStream, KernelConfig, ArrayView<float>, ArrayView<float>, int, int> _backward;

    private ChannelBias(ComputeDevice device)
    {
        _device = device;
        _forward = device.Accelerator.LoadKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, int>(ForwardKernel);
        _backward = device.Accelerator.LoadKernel<ArrayView<float>, ArrayView<float>, int, int>(BackwardKernel);
    }

    /// <summary>This device's instance (kernels compiled once per device).</summary>
    public static ChannelBias For(ComputeDevice device) => device.Operation(d => new ChannelBias(d));

    /// <summary>Threads per row of the backward reduction (a power of two up to 256); set by tests to exercise the tree.</summary>
    internal int ThreadsPerRow { get; set; }

    /// <summary>output[r, p] = input[r, p] + bias[r] for rows r = (sample, channel) of <paramref name="spatial"/> pixels.</summary>
    public void Forward(ArrayView<float> input, ArrayView<float> bias, ArrayView<float> output, int rows, int spatial)
    {
        Check(rows, spatial);
        Require(input, (long)rows * spatial, "input");
        Require(output, (long)rows * spatial, "output");
        Require(bias, rows, "bias");
        _forward(_device.Accelerator.DefaultStream, _device.GridStride((long)rows * spatial), input, bias, output, spatial);
    }

    /// <summary>dBias[r] = sum over the row's pixels of dOutput (written). The input gradient is dOutput itself.</summary>
    public void Backward(ArrayView<float> dOutput, ArrayView<float> dBias, int rows, int spatial)
    {
        Check(rows, spatial);
        Require(dOutput, (long)rows * spatial, "dOutput");
        Require(dBias, rows, "dBias");
        _backward(_device.Accelerator.DefaultStream, GroupSum.RowConfig(_device, rows, ThreadsPerRow), dOutput, dBias, rows, spatial);
    }

    /// <summary>Float64 reference of <see cref="Forward"/>.</summary>
    public static double[] ForwardReference(ReadOnlySpan<double> input, ReadOnlySpan<double> bias, int rows, int spatial)
    {
        var output = new double[(long)rows * spatial];
        for (int i = 0; i < output.Length; i++) output[i] = input[i] + bias[i / spatial];
        return output;
    }

    /// <summary>Float64 reference of the bias gradient: the row sums of dOutput.</summary>
    public static double[] BackwardReference(ReadOnlySpan<double> dOutput, int rows, int spatial)
    {
        var dBias = new double[rows];
        for (int i = 0; i < rows * spatial; i++) dBias[i / spatial] += dOutput[i];
        return dBias;
    }

    private static void Check(int rows, int spatial)
    {
        if (rows <= 0 || spatial <= 0) throw new ArgumentException($"channel bias: rows ({rows}) and spatial size ({spatial}) must be positive");
    }

    private static void Require(ArrayView<float> view, long needed, string what)
    {
        if (view.Length < needed) throw new ArgumentException($"channel bias: {what} has {view.Length} elements, needs {needed}");
    }

    [GpuKernel]
    internal static void ForwardKernel(ArrayView<float> input, ArrayView<float> bias, ArrayView<float> output, int spatial)
    {
        for (long i = Grid.GlobalIndex.X; i < output.Length; i += Grid.DimX * Group.DimX) output[i] = input[i] + bias[i / spatial];
    }

    [GpuKernel]
    internal static void BackwardKernel(ArrayView<float> dOutput, ArrayView<float> dBias, int rows, int spatial)
    {
        var scratch = SharedMemory.Allocate<float>(GroupSum.MaxGroupSize);
        for (int row = Grid.IdxX; row < rows; row += Grid.DimX)
        {
            float sum = 0;
            for (int p = Group.IdxX; p < spatial; p += Group.DimX) sum += dOutput[row * spatial + p];
            float total = GroupSum.Sum(scratch, sum);
            if (Group.IdxX == 0) dBias[row] = total;
        }
    }
}
