using ILGPU;
using ILGPU.Runtime;
using PoissonFlow.Kernels.Device;

namespace PoissonFlow.Kernels;

/// <summary>
/// Radial input scaling for field networks on augmented points (x, z): x' = x / √(|x|² + z² + c²). Near the data
/// (|(x, z)| ≪ c) it divides by the data scale c; far away it keeps only the direction, so a network sees bounded
/// inputs although PFGM's perturbations and prior reach hundreds of data scales (the far field is radial, a function
/// of direction alone). For a fixed z the map is one-to-one. One grid-stride launch over the rows.
/// <para>
/// The same length s = √(|x|² + z² + c²) also scales a network's output back up: <see cref="Skip"/> forms
/// ȳ = k x + s F, k = c²/(c² + z²), from a bounded residual F, the skip connection of the residual posterior-mean form (see
/// PosteriorMeanNetwork), and <see cref="Residual"/> computes its training target F = (ȳ − k x) / s.
/// </para>
/// </summary>
public sealed class RadialScale
{
    private readonly ComputeDevice _device;
    private readonly Action<AcceleratorStream, KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<float>, int, int, float> _kernel;

    private readonly Action<AcceleratorStream, KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, int, int, float> _skip;
    private readonly Action<AcceleratorStream, KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, int, int, float> _residual;

    private RadialScale(ComputeDevice device)
    {
        _device = device;
        _kernel = device.Accelerator.LoadKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, int, int, float>(RadialScaleKernel);
        _skip = device.Accelerator.LoadKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, int, int, float>(SkipKernel);
        _residual = device.Accelerator.LoadKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, int, int, float>(ResidualKernel);
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

    /// <summary>
    /// The skip connection ȳ = k x + s F (k = <see cref="SkipWeight"/>): <paramref name="residual"/> and <paramref name="output"/> are batch x (dim + 1)
    /// (a network's rows; the last value of each row passes through unchanged), <paramref name="points"/> batch x dim.
    /// <paramref name="output"/> may be <paramref name="residual"/> itself (each row is read before it is written).
    /// </summary>
    public void Skip(ArrayView<float> points, ArrayView<float> z, ArrayView<float> residual, ArrayView<float> output, int batch, int dim, float scale)
    {
        CheckSkip(points, z, residual, output, batch, dim, scale);
        _skip(_device.Accelerator.DefaultStream, _device.GridStride(batch), points, z, residual, output, batch, dim, scale);
    }

    /// <summary>
    /// The inverse of <see cref="Skip"/>, the training target of the residual: F = (ȳ − k x) / s from the posterior means
    /// <paramref name="mean"/> (batch x dim), written as rows (F, 0) of batch x (dim + 1) into <paramref name="target"/>.
    /// </summary>
    public void Residual(ArrayView<float> points, ArrayView<float> z, ArrayView<float> mean, ArrayView<float> target, int batch, int dim, float scale)
    {
        CheckSkip(points, z, target, target, batch, dim, scale);
        if (mean.Length < (long)batch * dim) throw new ArgumentException($"radial residual: the means hold {mean.Length} values, need {batch} x {dim}");
        _residual(_device.Accelerator.DefaultStream, _device.GridStride(batch), points, z, mean, target, batch, dim, scale);
    }

    /// <summary>Float64 reference of <see cref="Skip"/>.</summary>
    public static double[] SkipReference(ReadOnlySpan<float> points, ReadOnlySpan<float> z, ReadOnlySpan<float> residual, int batch, int dim, double scale)
    {
        var output = new double[batch * (dim + 1)];
        for (int i = 0; i < batch; i++)
        {
            double length = Length(points, z, i, dim, scale), keep = SkipWeight(z[i], scale);
            for (int d = 0; d < dim; d++) output[i * (dim + 1) + d] = keep * points[i * dim + d] + length * residual[i * (dim + 1) + d];
            output[i * (dim + 1) + dim] = residual[i * (dim + 1) + dim];
        }

        return output;
    }

    /// <summary>Float64 reference of <see cref="Residual"/>.</summary>
    public static double[] ResidualReference(ReadOnlySpan<float> points, ReadOnlySpan<float> z, ReadOnlySpan<float> mean, int batch, int dim, double scale)
    {
        var target = new double[batch * (dim + 1)];
        for (int i = 0; i < batch; i++)
        {
            double length = Length(points, z, i, dim, scale), keep = SkipWeight(z[i], scale);
            for (int d = 0; d < dim; d++) target[i * (dim + 1) + d] = (mean[i * dim + d] - keep * points[i * dim + d]) / length;
        }

        return target;
    }

    /// <summary>Float64 reference of <see cref="Apply"/>.</summary>
    public static double[] Reference(ReadOnlySpan<float> points, ReadOnlySpan<float> z, int batch, int dim, double scale)
    {
        var output = new double[batch * dim];
        for (int i = 0; i < batch; i++)
        {
            double inverse = 1 / Length(points, z, i, dim, scale);
            for (int d = 0; d < dim; d++) output[i * dim + d] = points[i * dim + d] * inverse;
        }

        return output;
    }

    /// <summary>The skip weight c² / (c² + z²): 1 near the plane, 0 far above it (EDM's c_skip with σ = z, σ_data = c).</summary>
    public static double SkipWeight(double z, double scale) => scale * scale / (scale * scale + z * z);

    private static double Length(ReadOnlySpan<float> points, ReadOnlySpan<float> z, int row, int dim, double scale)
    {
        double squared = (double)z[row] * z[row] + scale * scale;
        for (int d = 0; d < dim; d++) squared += (double)points[row * dim + d] * points[row * dim + d];
        return Math.Sqrt(squared);
    }

    private static void CheckSkip(ArrayView<float> points, ArrayView<float> z, ArrayView<float> input, ArrayView<float> output, int batch, int dim, float scale)
    {
        if (batch <= 0 || dim <= 0) throw new ArgumentException($"radial skip: batch and dim must be positive, got {batch} x {dim}");
        if (!(scale > 0) || !float.IsFinite(scale)) throw new ArgumentException($"radial skip: the scale must be positive and finite, got {scale}");
        long width = (long)batch * (dim + 1);
        if (points.Length < (long)batch * dim || z.Length < batch || input.Length < width || output.Length < width)
        {
            throw new ArgumentException($"radial skip: views too short for {batch} x {dim} (points {points.Length}, z {z.Length}, rows {input.Length} and {output.Length})");
        }
    }

    /// <summary>s = √(|x|² + z² + c²) of one row, in float32 as every kernel here computes it.</summary>
    private static float RowLength(ArrayView<float> points, ArrayView<float> z, int row, int dim, float scale)
    {
        float squared = z[row] * z[row] + scale * scale;
        for (int d = 0; d < dim; d++) squared += points[row * dim + d] * points[row * dim + d];
        return MathF.Sqrt(squared);
    }

    [GpuKernel]
    internal static void RadialScaleKernel(ArrayView<float> points, ArrayView<float> z, ArrayView<float> output, int batch, int dim, float scale)
    {
        for (int i = Grid.GlobalIndex.X; i < batch; i += Grid.DimX * Group.DimX)
        {
            int row = i * dim;
            float inverse = 1f / RowLength(points, z, i, dim, scale);
            for (int d = 0; d < dim; d++) output[row + d] = points[row + d] * inverse;
        }
    }

    [GpuKernel]
    internal static void SkipKernel(ArrayView<float> points, ArrayView<float> z, ArrayView<float> residual, ArrayView<float> output, int batch, int dim, float scale)
    {
        for (int i = Grid.GlobalIndex.X; i < batch; i += Grid.DimX * Group.DimX)
        {
            float length = RowLength(points, z, i, dim, scale), keep = scale * scale / (scale * scale + z[i] * z[i]);
            int row = i * (dim + 1);
            for (int d = 0; d < dim; d++) output[row + d] = keep * points[i * dim + d] + length * residual[row + d];
            output[row + dim] = residual[row + dim];
        }
    }

    [GpuKernel]
    internal static void ResidualKernel(ArrayView<float> points, ArrayView<float> z, ArrayView<float> mean, ArrayView<float> target, int batch, int dim, float scale)
    {
        for (int i = Grid.GlobalIndex.X; i < batch; i += Grid.DimX * Group.DimX)
        {
            float inverse = 1f / RowLength(points, z, i, dim, scale), keep = scale * scale / (scale * scale + z[i] * z[i]);
            int row = i * (dim + 1);
            for (int d = 0; d < dim; d++) target[row + d] = (mean[i * dim + d] - keep * points[i * dim + d]) * inverse;
            target[row + dim] = 0f;
        }
    }
}
