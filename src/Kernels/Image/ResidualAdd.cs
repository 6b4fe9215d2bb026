using ILGPU;
using ILGPU.Runtime;
using PoissonFlow.Kernels.Device;

namespace PoissonFlow.Kernels.Image;

// Residual connection out = (shortcut + branch) * scale, with scale 1 or the NCSN++ skip_rescale 1/sqrt(2)
// (which keeps the activation variance from doubling at every block). Backward: both inputs receive scale * dout
// (written, =), in one launch. The views may alias (element-wise: each element is read then written by one thread).

/// <summary>Scaled residual addition, forward and backward.</summary>
public sealed class ResidualAdd
{
    /// <summary>The NCSN++ skip_rescale factor, 1/sqrt(2).</summary>
    public const float SkipRescale = 0.70710678118654752f;

    private readonly ComputeDevice _device;
    private readonly Action<AcceleratorStream, KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<float>, float> _forward;
    private readonly Action<AcceleratorStream, KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<float>, float> _backward;

    private ResidualAdd(ComputeDevice device)
    {
        _device = device;
        _forward = device.Accelerator.LoadKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, float>(ForwardKernel);
        _backward = device.Accelerator.LoadKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, float>(BackwardKernel);
    }

    /// <summary>This device's instance (kernels compiled once per device).</summary>
    public static ResidualAdd For(ComputeDevice device) => device.Operation(d => new ResidualAdd(d));

    /// <summary>output = (shortcut + branch) * scale, element-wise over equal-length views (output may alias either input).</summary>
    public void Forward(ArrayView<float> shortcut, ArrayView<float> branch, ArrayView<float> output, float scale)
    {
        RequireEqual(shortcut, branch, output);
        _forward(_device.Accelerator.DefaultStream, _device.GridStride(output.Length), shortcut, branch, output, scale);
    }

    /// <summary>dShortcut = dBranch = scale * dOutput (written; either may alias dOutput).</summary>
    public void Backward(ArrayView<float> dOutput, ArrayView<float> dShortcut, ArrayView<float> dBranch, float scale)
    {
        RequireEqual(dShortcut, dBranch, dOutput);
        _backward(_device.Accelerator.DefaultStream, _device.GridStride(dOutput.Length), dOutput, dShortcut, dBranch, scale);
    }

    /// <summary>Float64 reference of <see cref="Forward"/>.</summary>
    public static double[] ForwardReference(ReadOnlySpan<double> shortcut, ReadOnlySpan<double> branch, double scale)
    {
        var output = new double[shortcut.Length];
        for (int i = 0; i < output.Length; i++) output[i] = (shortcut[i] + branch[i]) * scale;
        return output;
    }

    /// <summary>Float64 reference of <see cref="Backward"/>: the gradient both inputs receive, scale * dOutput.</summary>
    public static double[] BackwardReference(ReadOnlySpan<double> dOutput, double scale)
    {
        var gradient = new double[dOutput.Length];
        for (int i = 0; i < gradient.Length; i++) gradient[i] = dOutput[i] * scale;
        return gradient;
    }

    private static void RequireEqual(ArrayView<float> a, ArrayView<float> b, ArrayView<float> output)
    {
        if (a.Length != output.Length || b.Length != output.Length)
        {
            throw new ArgumentException($"residual add: lengths differ ({a.Length}, {b.Length}, output {output.Length})");
        }
    }

    [GpuKernel]
    internal static void ForwardKernel(ArrayView<float> shortcut, ArrayView<float> branch, ArrayView<float> output, float scale)
    {
        for (long i = Grid.GlobalIndex.X; i < output.Length; i += Grid.DimX * Group.DimX) output[i] = (shortcut[i] + branch[i]) * scale;
    }

    [GpuKernel]
    internal static void BackwardKernel(ArrayView<float> dOutput, ArrayView<float> dShortcut, ArrayView<float> dBranch, float scale)
    {
        for (long i = Grid.GlobalIndex.X; i < dOutput.Length; i += Grid.DimX * Group.DimX)
        {
            float g = dOutput[i] * scale;
            dShortcut[i] = g;
            dBranch[i] = g;
        }
    }
}
