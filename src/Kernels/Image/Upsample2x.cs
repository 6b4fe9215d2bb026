using ILGPU;
using ILGPU.Runtime;
using PoissonFlow.Kernels.Device;

namespace PoissonFlow.Kernels.Image;

// Nearest-neighbour 2x upsampling of NCHW planes (the decoder's resize before its 3x3 conv):
// out[plane, y, x] = in[plane, y / 2, x / 2]; backward din[plane, y, x] = sum of the 2x2 block of dout it fed (=).
// Both are grid-stride loops over the tensor they write (no atomics). FLOPs: 0 forward, 3 adds per input backward.

/// <summary>Nearest-neighbour 2x upsampling, forward and backward.</summary>
public sealed class Upsample2x
{
    private readonly ComputeDevice _device;
    private readonly Action<AcceleratorStream, KernelConfig, ArrayView<float>, ArrayView<float>, int, int, int> _forward;
    private readonly Action<AcceleratorStream, KernelConfig, ArrayView<float>, ArrayView<float>, int, int, int> _backward;

    private Upsample2x(ComputeDevice device)
    {
        _device = device;
        _forward = device.Accelerator.LoadKernel<ArrayView<float>, ArrayView<float>, int, int, int>(ForwardKernel);
        _backward = device.Accelerator.LoadKernel<ArrayView<float>, ArrayView<float>, int, int, int>(BackwardKernel);
    }

    /// <summary>This device's instance (kernels compiled once per device).</summary>
    public static Upsample2x For(ComputeDevice device) => device.Operation(d => new Upsample2x(d));

    /// <summary>output (planes x 2H x 2W) = nearest upsampling of input (planes x H x W); planes = batch * channels.</summary>
    public void Forward(ArrayView<float> input, ArrayView<float> output, int planes, int height, int width)
    {
        long inputLength = Check(planes, height, width);
        Require(input, inputLength, "input");
        Require(output, 4 * inputLength, "output");
        _forward(_device.Accelerator.DefaultStream, _device.GridStride(4 * inputLength), input, output, planes, height, width);
    }

    /// <summary>dInput (planes x H x W) = the 2x2 block sums of dOutput (planes x 2H x 2W); written, not accumulated.</summary>
    public void Backward(ArrayView<float> dOutput, ArrayView<float> dInput, int planes, int height, int width)
    {
        long inputLength = Check(planes, height, width);
        Require(dOutput, 4 * inputLength, "dOutput");
        Require(dInput, inputLength, "dInput");
        _backward(_device.Accelerator.DefaultStream, _device.GridStride(inputLength), dOutput, dInput, planes, height, width);
    }

    /// <summary>Float64 reference of <see cref="Forward"/>.</summary>
    public static double[] ForwardReference(ReadOnlySpan<double> input, int planes, int height, int width)
    {
        var output = new double[4L * planes * height * width];
        for (int plane = 0; plane < planes; plane++)
        {
            for (int y = 0; y < 2 * height; y++)
            {
                for (int x = 0; x < 2 * width; x++)
                {
                    output[(plane * 2L * height + y) * 2 * width + x] = input[(plane * height + y / 2) * width + x / 2];
                }
            }
        }

        return output;
    }

    /// <summary>Float64 reference of <see cref="Backward"/> (the transpose of the forward copy).</summary>
    public static double[] BackwardReference(ReadOnlySpan<double> dOutput, int planes, int height, int width)
    {
        var dInput = new double[(long)planes * height * width];
        for (int plane = 0; plane < planes; plane++)
        {
            for (int y = 0; y < 2 * height; y++)
            {
                for (int x = 0; x < 2 * width; x++)
                {
                    dInput[(plane * height + y / 2) * width + x / 2] += dOutput[(plane * 2 * height + y) * 2 * width + x];
                }
            }
        }

        return dInput;
    }

    private static long Check(int planes, int height, int width)
    {
        if (planes <= 0 || height <= 0 || width <= 0)
        {
            throw new ArgumentException($"upsample: planes ({planes}), height ({height}) and width ({width}) must be positive");
        }

        return (long)planes * height * width;
    }

    private static void Require(ArrayView<float> view, long needed, string what)
    {
        if (view.Length < needed) throw new ArgumentException($"upsample: {what} has {view.Length} elements, needs {needed}");
    }

    [GpuKernel]
    internal static void ForwardKernel(ArrayView<float> input, ArrayView<float> output, int planes, int height, int width)
    {
        int outWidth = 2 * width, outPlane = 4 * height * width;
        int total = planes * outPlane;
        for (int i = Grid.GlobalIndex.X; i < total; i += Grid.DimX * Group.DimX)
        {
            int plane = i / outPlane, p = i - plane * outPlane;
            int y = p / outWidth, x = p - y * outWidth;
            output[i] = input[(plane * height + (y >> 1)) * width + (x >> 1)];
        }
    }

    [GpuKernel]
    internal static void BackwardKernel(ArrayView<float> dOutput, ArrayView<float> dInput, int planes, int height, int width)
    {
        int outWidth = 2 * width, spatial = height * width;
        int total = planes * spatial;
        for (int i = Grid.GlobalIndex.X; i < total; i += Grid.DimX * Group.DimX)
        {
            int plane = i / spatial, p = i - plane * spatial;
            int y = p / width, x = p - y * width;
            int top = (plane * 2 * height + 2 * y) * outWidth + 2 * x;
            dInput[i] = dOutput[top] + dOutput[top + 1] + dOutput[top + outWidth] + dOutput[top + outWidth + 1];
        }
    }
}
