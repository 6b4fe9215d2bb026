using ILGPU;
using ILGPU.Runtime;
using PoissonFlow.Kernels.Device;

namespace PoissonFlow.Kernels;

/// <summary>
/// Radial input scaling for field networks on augmented points (x, z): x' = x / √(|x|² + z² + c²). Near the data
/// (|(x, z)| ≪ c) it divides by the data scale c; far away it keeps only the direction, so a network sees bounded
/// inputs although PFGM's perturbations and prior reach hundreds of data scales (the far field is radial, a function
/// of direction alone). For a fixed z the map is one-to-one. One grid-stride launch over the rows.
/// </summary>
public sealed class RadialScale
{
    private readonly ComputeDevice _device;
    private readonly Action<AcceleratorStream, KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<float>, int, int, float> _kernel;

    private RadialScale(ComputeDevice device)
    {
        _device = device;
        _kernel = device.Accelerator.LoadKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, int, int, float>(RadialScaleKernel);
    }

    /// <summary>This device's instance (kernel compiled once per device).</summary>
    public static RadialScale For(ComputeDevice device) => device.Operation(d => new RadialScale(d));

    /// <summary>
    /// Writes x' for <paramref name="batch"/> rows: <paramref name="points"/> and <paramref name="output"/> are
    /// batch x dim, <paramref name="z"/> holds batch values, <paramref name="scale"/> is c &gt; 0.
    /// </summary>
    public void Apply(ArrayView<float> points, ArrayView<float> z, ArrayView<float> output, int batch, int dim, float scale)
    {
        if (batch <= 0 || dim <= 0) throw new ArgumentException($"radial scale: batch and dim must be positive, got {batch} x {dim}");
        if (!(scale > 0) || !float.IsFinite(scale)) throw new ArgumentException($"radial scale: the scale must be positive and finite, got {scale}");
        if (points.Length < (long)batch * dim || output.Length < (long)batch * dim || z.Length < batch)
        {
            throw new ArgumentException($"radial scale: views too short for {batch} x {dim} (points {points.Length}, z {z.Length}, output {output.Length})");
        }

        _kernel(_device.Accelerator.DefaultStream, _device.GridStride(batch), points, z, output, batch, dim, scale);
    }

    /// <summary>Float64 reference of <see cref="Apply"/>.</summary>
    public static double[] Reference(ReadOnlySpan<float> points, ReadOnlySpan<float> z, int batch, int dim, double scale)
    {
        var output = new double[batch * dim];
        for (int i = 0; i < batch; i++)
        {
            double squared = (double)z[i] * z[i] + scale * scale;
            for (int d = 0; d < dim; d++) squared += (double)points[i * dim + d] * points[i * dim + d];
            double inverse = 1 / Math.Sqrt(squared);
            for (int d = 0; d < dim; d++) output[i * dim + d] = points[i * dim + d] * inverse;
        }

        return output;
    }

    [GpuKernel]
    internal static void RadialScaleKernel(ArrayView<float> points, ArrayView<float> z, ArrayView<float> output, int batch, int dim, float scale)
    {
        for (int i = Grid.GlobalIndex.X; i < batch; i += Grid.DimX * Group.DimX)
        {
            int row = i * dim;
            float squared = z[i] * z[i] + scale * scale;
            for (int d = 0; d < dim; d++) squared += points[row + d] * points[row + d];
            float inverse = 1f / MathF.Sqrt(squared);
            for (int d = 0; d < dim; d++) output[row + d] = points[row + d] * inverse;
        }
    }
}
