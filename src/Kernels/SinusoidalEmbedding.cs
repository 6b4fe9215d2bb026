using ILGPU;
using ILGPU.Algorithms;
using ILGPU.Runtime;
using PoissonFlow.Kernels.Device;

namespace PoissonFlow.Kernels;

/// <summary>What the sinusoidal embedding is applied to.</summary>
public enum EmbeddingInput
{
    /// <summary>The raw conditioning value z, as PFGM's DDPM++ configs do (spec section 4).</summary>
    Z,

    /// <summary>ln z (clamped below at 1e-10), which spreads z's several decades evenly over the frequencies.</summary>
    LogZ,
}

/// <summary>
/// Sinusoidal (positional) embedding of a conditioning scalar, PFGM's <c>get_positional_embedding</c>:
/// with half = E/2 and w_k = exp(-k ln(10000) / (half - 1)), k = 0..half-1, emb(z) = [sin(z w), cos(z w)].
/// The concatenating form writes a network's whole input row [x, emb(z)] in the same launch, so an MLP's input
/// costs one kernel. The embedding has no parameters and z is not differentiated, so there is no backward pass.
/// </summary>
public sealed class SinusoidalEmbedding
{
    private readonly ComputeDevice _device;
    private readonly Action<AcceleratorStream, KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<float>, EmbeddingArgs> _forward;

    private SinusoidalEmbedding(ComputeDevice device)
    {
        _device = device;
        _forward = device.Accelerator.LoadKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, EmbeddingArgs>(ConcatKernel);
    }

    /// <summary>This device's instance (kernels compiled once per device).</summary>
    public static SinusoidalEmbedding For(ComputeDevice device) => device.Operation(d => new SinusoidalEmbedding(d));

    /// <summary>Writes emb(z) for <paramref name="batch"/> values into <paramref name="output"/> (batch x size).</summary>
    public void Forward(ArrayView<float> z, ArrayView<float> output, int batch, int size, EmbeddingInput input = EmbeddingInput.Z) =>
        Concat(default, z, output, batch, 0, size, input);

    /// <summary>
    /// Writes the rows [x, emb(z)] (batch x (dim + size)): <paramref name="points"/> is batch x dim, copied in front of
    /// the embedding of the matching z.
    /// </summary>
    public void Concat(ArrayView<float> points, ArrayView<float> z, ArrayView<float> output, int batch, int dim, int size,
        EmbeddingInput input = EmbeddingInput.Z)
    {
        ValidateSize(size);
        if (batch <= 0 || dim < 0) throw new ArgumentException($"embedding: batch ({batch}) must be positive and dim ({dim}) non-negative");
        if (points.Length < (long)batch * dim) throw new ArgumentException($"embedding: points have {points.Length} elements, need {batch} x {dim}");
        if (z.Length < batch) throw new ArgumentException($"embedding: z has {z.Length} elements, need {batch}");
        long total = (long)batch * (dim + size);
        if (output.Length < total) throw new ArgumentException($"embedding: output has {output.Length} elements, needs {batch} x {dim + size}");
        var args = new EmbeddingArgs(batch, dim, size / 2, (float)(Math.Log(10000.0) / (size / 2 - 1)), input == EmbeddingInput.LogZ ? 1 : 0);
        _forward(_device.Accelerator.DefaultStream, _device.GridStride(total), points, z, output, args);
    }

    /// <summary>Float64 reference of <see cref="Concat"/> (dim 0 gives the plain embedding).</summary>
    public static double[] Reference(ReadOnlySpan<double> points, ReadOnlySpan<double> z, int batch, int dim, int size,
        EmbeddingInput input = EmbeddingInput.Z)
    {
        ValidateSize(size);
        int half = size / 2, width = dim + size;
        var output = new double[batch * width];
        for (int b = 0; b < batch; b++)
        {
            for (int c = 0; c < dim; c++) output[b * width + c] = points[b * dim + c];
            double value = input == EmbeddingInput.LogZ ? Math.Log(Math.Max(z[b], 1e-10)) : z[b];
            for (int k = 0; k < half; k++)
            {
                double angle = value * Math.Exp(-k * Math.Log(10000.0) / (half - 1));
                output[b * width + dim + k] = Math.Sin(angle);
                output[b * width + dim + half + k] = Math.Cos(angle);
            }
        }

        return output;
    }

    private static void ValidateSize(int size)
    {
        // half - 1 divides the exponent, so half must be at least 2.
        if (size < 4 || size % 2 != 0) throw new ArgumentException($"embedding size must be even and at least 4, got {size}");
    }

    [GpuKernel]
    internal static void ConcatKernel(ArrayView<float> points, ArrayView<float> z, ArrayView<float> output, EmbeddingArgs args)
    {
        int width = args.Dim + 2 * args.Half;
        int total = args.Batch * width;
        int stride = Grid.DimX * Group.DimX;
        for (int i = Grid.GlobalIndex.X; i < total; i += stride)
        {
            int b = i / width, c = i % width;
            if (c < args.Dim)
            {
                output[i] = points[b * args.Dim + c];
                continue;
            }

            int j = c - args.Dim;
            int k = j < args.Half ? j : j - args.Half;
            float value = args.LogInput != 0 ? XMath.Log(XMath.Max(z[b], 1e-10f)) : z[b];
            float angle = value * XMath.Exp(-k * args.LogScale);
            output[i] = j < args.Half ? XMath.Sin(angle) : XMath.Cos(angle);
        }
    }
}

/// <summary>Shape of an embedding launch: rows, copied prefix width, half the embedding size, ln(10000)/(half-1).</summary>
internal readonly record struct EmbeddingArgs(int Batch, int Dim, int Half, float LogScale, int LogInput);
