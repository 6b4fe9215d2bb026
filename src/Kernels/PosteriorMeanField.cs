using ILGPU;
using ILGPU.Runtime;
using PoissonFlow.Kernels.Device;

namespace PoissonFlow.Kernels;

/// <summary>
/// The "x − y" form of the PFGM field. The empirical field's z component is exactly −z Σ_j w_j and its x part
/// Σ_j w_j (y_j − x), so with Σ w = 1 the direction of E is (ȳ − x, −z), where ȳ = Σ_j w_j y_j is the posterior mean
/// (the PFGM++ field with D = 1, r = z, computed by <see cref="PoissonField"/>). A network that predicts ȳ regresses a
/// bounded quantity inside the data's hull, whereas the normalised field's v_z is tiny wherever |x| ≫ z and the ODE
/// divides by it. Two kernels: the training target (ȳ, 0) padded to N + 1 values, and the normalised field
/// √N (ȳ − x, −z) / √(|ȳ − x|² + z²) from a predicted ȳ, which is what the samplers integrate.
/// </summary>
public sealed class PosteriorMeanField
{
    private readonly ComputeDevice _device;
    private readonly Action<AcceleratorStream, KernelConfig, ArrayView<float>, ArrayView<float>, int, int> _target;
    private readonly Action<AcceleratorStream, KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, int, int> _field;

    private PosteriorMeanField(ComputeDevice device)
    {
        _device = device;
        _target = device.Accelerator.LoadKernel<ArrayView<float>, ArrayView<float>, int, int>(TargetKernel);
        _field = device.Accelerator.LoadKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, int, int>(FieldKernel);
    }

    /// <summary>This device's instance (kernels compiled once per device).</summary>
    public static PosteriorMeanField For(ComputeDevice device) => device.Operation(d => new PosteriorMeanField(d));

    /// <summary>Writes the rows (ȳ_i, 0) (batch x (dim + 1)) from the posterior means (batch x dim).</summary>
    public void Target(ArrayView<float> mean, ArrayView<float> target, int batch, int dim)
    {
        Check(batch, dim);
        if (mean.Length < (long)batch * dim || target.Length < (long)batch * (dim + 1))
        {
            throw new ArgumentException($"posterior-mean target: views too short for {batch} x {dim} (mean {mean.Length}, target {target.Length})");
        }

        _target(_device.Accelerator.DefaultStream, _device.GridStride(batch), mean, target, batch, dim);
    }

    /// <summary>
    /// Writes the normalised field √N (ȳ − x, −z) / √(|ȳ − x|² + z²) (batch x (dim + 1)) from predictions whose rows
    /// start with ȳ (batch x (dim + 1), the last value ignored), the points x (batch x dim) and z (batch, &gt; 0).
    /// </summary>
    public void Field(ArrayView<float> prediction, ArrayView<float> points, ArrayView<float> z, ArrayView<float> output, int batch, int dim)
    {
        Check(batch, dim);
        long width = (long)batch * (dim + 1);
        if (prediction.Length < width || output.Length < width || points.Length < (long)batch * dim || z.Length < batch)
        {
            throw new ArgumentException($"posterior-mean field: views too short for {batch} x {dim}");
        }

        _field(_device.Accelerator.DefaultStream, _device.GridStride(batch), prediction, points, z, output, batch, dim);
    }

    /// <summary>Float64 reference of <see cref="Field"/>.</summary>
    public static double[] FieldReference(ReadOnlySpan<float> prediction, ReadOnlySpan<float> points, ReadOnlySpan<float> z, int batch, int dim)
    {
        var output = new double[batch * (dim + 1)];
        for (int i = 0; i < batch; i++)
        {
            double squared = (double)z[i] * z[i];
            for (int d = 0; d < dim; d++)
            {
                double diff = (double)prediction[i * (dim + 1) + d] - points[i * dim + d];
                squared += diff * diff;
            }

            double scale = Math.Sqrt(dim) / Math.Sqrt(squared);
            for (int d = 0; d < dim; d++) output[i * (dim + 1) + d] = scale * ((double)prediction[i * (dim + 1) + d] - points[i * dim + d]);
            output[i * (dim + 1) + dim] = -scale * z[i];
        }

        return output;
    }

    private static void Check(int batch, int dim)
    {
        if (batch <= 0 || dim <= 0) throw new ArgumentException($"posterior-mean field: batch and dim must be positive, got {batch} x {dim}");
    }

    [GpuKernel]
    internal static void TargetKernel(ArrayView<float> mean, ArrayView<float> target, int batch, int dim)
    {
        for (int i = Grid.GlobalIndex.X; i < batch; i += Grid.DimX * Group.DimX)
        {
            for (int d = 0; d < dim; d++) target[i * (dim + 1) + d] = mean[i * dim + d];
            target[i * (dim + 1) + dim] = 0f;
        }
    }

    [GpuKernel]
    internal static void FieldKernel(ArrayView<float> prediction, ArrayView<float> points, ArrayView<float> z, ArrayView<float> output, int batch, int dim)
    {
        float sqrtDim = MathF.Sqrt(dim);
        for (int i = Grid.GlobalIndex.X; i < batch; i += Grid.DimX * Group.DimX)
        {
            int row = i * (dim + 1);
            float squared = z[i] * z[i];
            for (int d = 0; d < dim; d++)
            {
                float diff = prediction[row + d] - points[i * dim + d];
                squared += diff * diff;
            }

            float scale = sqrtDim / MathF.Sqrt(squared);
            for (int d = 0; d < dim; d++) output[row + d] = scale * (prediction[row + d] - points[i * dim + d]);
            output[row + dim] = -scale * z[i];
        }
    }
}
