using System.Numerics;
using System.Runtime.InteropServices;
using PoissonFlow.Kernels;

namespace PoissonFlow.Bench;

/// <summary>
/// The baseline a C# programmer would write without a GPU library: float32, Parallel.For over the B query rows,
/// Vector&lt;float&gt; for the distance and the weighted sum, no tiling. Same maths and output layout as
/// <see cref="PoissonField"/>: weights (d_min/d)^(N+1) (PFGM) or ^(N+D) (PFGM++), self-normalised.
/// </summary>
public static class ParallelFieldLoop
{
    /// <summary>Computes B x <see cref="FieldOptions.OutputWidth"/> values into <paramref name="output"/>.</summary>
    public static void Compute(float[] points, float[] extra, float[] data, float[] output, int batch, int count, int dim,
        FieldOptions options)
    {
        int width = options.OutputWidth(dim);
        float halfExponent = (options.Kind == FieldKind.Pfgm ? dim + 1 : dim + options.ExtraDims) / 2f;
        Parallel.For(0, batch, () => (Squared: new float[count], Sum: new float[dim]), (row, _, scratch) =>
        {
            ReadOnlySpan<float> x = points.AsSpan(row * dim, dim);
            float extraSquared = extra[row] * extra[row];
            float nearest = float.PositiveInfinity;
            for (int j = 0; j < count; j++)
            {
                scratch.Squared[j] = SquaredDistance(x, data.AsSpan(j * dim, dim)) + extraSquared;
                nearest = MathF.Min(nearest, scratch.Squared[j]);
            }

            // The official min-ratio trick, in squared distances: w_j = (d_min^2 / d_j^2)^(exponent/2) lies in (0, 1].
            Array.Clear(scratch.Sum);
            float weightSum = 0;
            for (int j = 0; j < count; j++)
            {
                float weight = MathF.Exp(-halfExponent * MathF.Log(scratch.Squared[j] / nearest));
                weightSum += weight;
                AddScaled(scratch.Sum, weight, data.AsSpan(j * dim, dim));
            }

            Span<float> result = output.AsSpan(row * width, width);
            float inverse = 1f / weightSum;
            if (options.Kind == FieldKind.PfgmPlusPlus)
            {
                for (int k = 0; k < dim; k++) result[k] = scratch.Sum[k] * inverse;
                return scratch;
            }

            // E = sum_j w_j (y_j - x) / sum_j w_j: x part mean - x, extra part -z; then sqrt(N) E / (|E| + gamma).
            float normSquared = extraSquared;
            for (int k = 0; k < dim; k++)
            {
                result[k] = scratch.Sum[k] * inverse - x[k];
                normSquared += result[k] * result[k];
            }

            result[dim] = -extra[row];
            float scale = MathF.Sqrt(dim) / (MathF.Sqrt(normSquared) + options.Gamma);
            for (int k = 0; k <= dim; k++) result[k] *= scale;
            return scratch;
        }, _ => { });
    }

    private static float SquaredDistance(ReadOnlySpan<float> a, ReadOnlySpan<float> b)
    {
        ref float pa = ref MemoryMarshal.GetReference(a);
        ref float pb = ref MemoryMarshal.GetReference(b);
        var sum = Vector<float>.Zero;
        int k = 0;
        for (; k <= a.Length - Vector<float>.Count; k += Vector<float>.Count)
        {
            var d = Vector.LoadUnsafe(ref pa, (nuint)k) - Vector.LoadUnsafe(ref pb, (nuint)k);
            sum += d * d;
        }

        float total = Vector.Sum(sum);
        for (; k < a.Length; k++) total += (a[k] - b[k]) * (a[k] - b[k]);
        return total;
    }

    private static void AddScaled(Span<float> target, float scale, ReadOnlySpan<float> source)
    {
        ref float pt = ref MemoryMarshal.GetReference(target);
        ref float ps = ref MemoryMarshal.GetReference(source);
        var factor = new Vector<float>(scale);
        int k = 0;
        for (; k <= source.Length - Vector<float>.Count; k += Vector<float>.Count)
        {
            (Vector.LoadUnsafe(ref pt, (nuint)k) + factor * Vector.LoadUnsafe(ref ps, (nuint)k)).StoreUnsafe(ref pt, (nuint)k);
        }

        for (; k < source.Length; k++) target[k] += scale * source[k];
    }
}
