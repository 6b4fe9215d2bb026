using ILGPU;
using ILGPU.Runtime;
using PoissonFlow.Kernels.Device;

namespace PoissonFlow.Kernels.Image;

// Channel concatenation of two NCHW tensors with the same N, H, W (the decoder's skip connections):
// out[n] = [a[n] ; b[n]] along channels; backward splits dout back into da and db (both written, =).
// Why a copy rather than convolutions that read two inputs: the decoder reads each concatenation twice (its first
// 3x3 conv and its 1x1 shortcut), a copy costs one memory-bound pass (~1% of the block's conv time), and it keeps a
// single, well-tested conv kernel. One grid-stride launch per direction, each thread owning output elements.

/// <summary>Concatenation along channels of two NCHW tensors, forward and backward.</summary>
public sealed class ChannelConcat
{
    private readonly ComputeDevice _device;
    private readonly Action<AcceleratorStream, KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<float>, int, int, int> _forward;
    private readonly Action<AcceleratorStream, KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<float>, int, int, int> _backward;

    private ChannelConcat(ComputeDevice device)
    {
        _device = device;
        _forward = device.Accelerator.LoadKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, int, int, int>(ForwardKernel);
        _backward = device.Accelerator.LoadKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, int, int, int>(BackwardKernel);
    }

    /// <summary>This device's instance (kernels compiled once per device).</summary>
    public static ChannelConcat For(ComputeDevice device) => device.Operation(d => new ChannelConcat(d));

    /// <summary>output (N x (Ca + Cb) x spatial) = [first (N x Ca x spatial) ; second (N x Cb x spatial)] per sample.</summary>
    public void Forward(ArrayView<float> first, ArrayView<float> second, ArrayView<float> output, int batch, int firstChannels, int secondChannels, int spatial)
    {
        long total = Check(first, second, output, batch, firstChannels, secondChannels, spatial);
        _forward(_device.Accelerator.DefaultStream, _device.GridStride(total), first, second, output, firstChannels * spatial, secondChannels * spatial, batch);
    }

    /// <summary>Splits dOutput into dFirst and dSecond (written, not accumulated).</summary>
    public void Backward(ArrayView<float> dOutput, ArrayView<float> dFirst, ArrayView<float> dSecond, int batch, int firstChannels, int secondChannels, int spatial)
    {
        long total = Check(dFirst, dSecond, dOutput, batch, firstChannels, secondChannels, spatial);
        _backward(_device.Accelerator.DefaultStream, _device.GridStride(total), dOutput, dFirst, dSecond, firstChannels * spatial, secondChannels * spatial, batch);
    }

    /// <summary>Float64 reference of <see cref="Forward"/>.</summary>
    public static double[] ForwardReference(ReadOnlySpan<double> first, ReadOnlySpan<double> second, int batch, int firstChannels, int secondChannels, int spatial)
    {
        int firstRow = firstChannels * spatial, secondRow = secondChannels * spatial;
        var output = new double[(long)batch * (firstRow + secondRow)];
        for (int n = 0; n < batch; n++)
        {
            first.Slice(n * firstRow, firstRow).CopyTo(output.AsSpan(n * (firstRow + secondRow)));
            second.Slice(n * secondRow, secondRow).CopyTo(output.AsSpan(n * (firstRow + secondRow) + firstRow));
        }

        return output;
    }

    /// <summary>Float64 reference of <see cref="Backward"/>: the two channel slices of dOutput.</summary>
    public static (double[] DFirst, double[] DSecond) BackwardReference(ReadOnlySpan<double> dOutput, int batch, int firstChannels, int secondChannels, int spatial)
    {
        int firstRow = firstChannels * spatial, secondRow = secondChannels * spatial;
        var dFirst = new double[(long)batch * firstRow];
        var dSecond = new double[(long)batch * secondRow];
        for (int n = 0; n < batch; n++)
        {
            dOutput.Slice(n * (firstRow + secondRow), firstRow).CopyTo(dFirst.AsSpan(n * firstRow));
            dOutput.Slice(n * (firstRow + secondRow) + firstRow, secondRow).CopyTo(dSecond.AsSpan(n * secondRow));
        }

        return (dFirst, dSecond);
    }

    private static long Check(ArrayView<float> first, ArrayView<float> second, ArrayView<float> output, int batch, int firstChannels, int secondChannels, int spatial)
    {
        if (batch <= 0 || firstChannels <= 0 || secondChannels <= 0 || spatial <= 0)
        {
            throw new ArgumentException(
                $"concat: batch ({batch}), channels ({firstChannels}, {secondChannels}) and spatial size ({spatial}) must be positive");
        }

        long firstLength = (long)batch * firstChannels * spatial, secondLength = (long)batch * secondChannels * spatial;
        Require(first, firstLength, "first");
        Require(second, secondLength, "second");
        Require(output, firstLength + secondLength, "output");
        return firstLength + secondLength;
    }

    private static void Require(ArrayView<float> view, long needed, string what)
    {
        if (view.Length < needed) throw new ArgumentException($"concat: {what} has {view.Length} elements, needs {needed}");
    }

    [GpuKernel]
    internal static void ForwardKernel(ArrayView<float> first, ArrayView<float> second, ArrayView<float> output, int firstRow, int secondRow, int batch)
    {
        int row = firstRow + secondRow, total = batch * row;
        for (int i = Grid.GlobalIndex.X; i < total; i += Grid.DimX * Group.DimX)
        {
            int n = i / row, r = i - n * row;
            output[i] = r < firstRow ? first[n * firstRow + r] : second[n * secondRow + r - firstRow];
        }
    }

    [GpuKernel]
    internal static void BackwardKernel(ArrayView<float> dOutput, ArrayView<float> dFirst, ArrayView<float> dSecond, int firstRow, int secondRow, int batch)
    {
        int row = firstRow + secondRow, total = batch * row;
        for (int i = Grid.GlobalIndex.X; i < total; i += Grid.DimX * Group.DimX)
        {
            int n = i / row, r = i - n * row;
            if (r < firstRow) dFirst[n * firstRow + r] = dOutput[i];
            else dSecond[n * secondRow + r - firstRow] = dOutput[i];
        }
    }
}
