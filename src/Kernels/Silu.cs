using ILGPU;
using ILGPU.Algorithms;
using ILGPU.Runtime;
using PoissonFlow.Kernels.Device;

namespace PoissonFlow.Kernels;

/// <summary>
/// SiLU (swish) activation, silu(x) = x * sigmoid(x), and its backward pass. The scalar helpers are shared with
/// <see cref="Linear"/>, whose GEMM epilogues apply the activation (forward) and its derivative (backward) in place,
/// so a network normally never launches these kernels; they exist for layers that need the activation on its own.
/// </summary>
public sealed class Silu
{
    private readonly ComputeDevice _device;
    private readonly Action<AcceleratorStream, KernelConfig, ArrayView<float>, ArrayView<float>> _forward;
    private readonly Action<AcceleratorStream, KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<float>> _backward;

    private Silu(ComputeDevice device)
    {
        _device = device;
        _forward = device.Accelerator.LoadKernel<ArrayView<float>, ArrayView<float>>(ForwardKernel);
        _backward = device.Accelerator.LoadKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>>(BackwardKernel);
    }

    /// <summary>This device's instance (kernels compiled once per device).</summary>
    public static Silu For(ComputeDevice device) => device.Operation(d => new Silu(d));

    /// <summary>output = silu(input), element-wise. The views must have equal length; they may be the same view.</summary>
    public void Forward(ArrayView<float> input, ArrayView<float> output)
    {
        RequireSameLength(input.Length, output.Length, "silu forward: input", "output");
        _forward(_device.Accelerator.DefaultStream, _device.GridStride(output.Length), input, output);
    }

    /// <summary>
    /// dInput = dOutput * silu'(input), element-wise (an activation gradient: written, not accumulated).
    /// <paramref name="dInput"/> may be the same view as <paramref name="dOutput"/>.
    /// </summary>
    public void Backward(ArrayView<float> input, ArrayView<float> dOutput, ArrayView<float> dInput)
    {
        RequireSameLength(input.Length, dOutput.Length, "silu backward: input", "dOutput");
        RequireSameLength(input.Length, dInput.Length, "silu backward: input", "dInput");
        _backward(_device.Accelerator.DefaultStream, _device.GridStride(input.Length), input, dOutput, dInput);
    }

    /// <summary>silu(x) in float64.</summary>
    public static double Reference(double x) => x / (1.0 + Math.Exp(-x));

    /// <summary>silu'(x) = s (1 + x (1 - s)) with s = sigmoid(x), in float64.</summary>
    public static double DerivativeReference(double x)
    {
        double s = 1.0 / (1.0 + Math.Exp(-x));
        return s * (1.0 + x * (1.0 - s));
    }

    /// <summary>silu(x) in float32 for kernels. exp(-x) overflowing to +inf for very negative x gives 0, the right limit.</summary>
    internal static float Value(float x) => x / (1f + XMath.Exp(-x));

    /// <summary>silu'(x) in float32 for kernels; finite for every finite x (s = 0 makes the product 0, not NaN).</summary>
    internal static float Derivative(float x)
    {
        float s = 1f / (1f + XMath.Exp(-x));
        return s * (1f + x * (1f - s));
    }

    [GpuKernel]
    internal static void ForwardKernel(ArrayView<float> input, ArrayView<float> output)
    {
        int n = (int)output.Length, stride = Grid.DimX * Group.DimX;
        for (int i = Grid.GlobalIndex.X; i < n; i += stride) output[i] = Value(input[i]);
    }

    [GpuKernel]
    internal static void BackwardKernel(ArrayView<float> input, ArrayView<float> dOutput, ArrayView<float> dInput)
    {
        int n = (int)dInput.Length, stride = Grid.DimX * Group.DimX;
        for (int i = Grid.GlobalIndex.X; i < n; i += stride) dInput[i] = dOutput[i] * Derivative(input[i]);
    }

    private static void RequireSameLength(long a, long b, string nameA, string nameB)
    {
        if (a != b) throw new ArgumentException($"{nameA} has {a} elements but {nameB} has {b}");
    }
}
