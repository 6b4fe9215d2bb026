using ILGPU;
using ILGPU.Runtime;
using PoissonFlow.Kernels.Device;

namespace PoissonFlow.Kernels;

/// <summary>Which empirical field to compute.</summary>
public enum FieldKind
{
    /// <summary>PFGM: the normalised field sqrt(N) E / (|E| + gamma) in N+1 dimensions; the extra coordinate is z.</summary>
    Pfgm,

    /// <summary>PFGM++: the posterior mean over the reference set with weights (|x - y|^2 + r^2)^(-(N+D)/2); the extra coordinate is r.</summary>
    PfgmPlusPlus,
}

/// <summary>Options of the empirical field.</summary>
/// <param name="Kind">PFGM normalised field or PFGM++ posterior mean.</param>
/// <param name="ExtraDims">D, the number of extra dimensions (1 for PFGM).</param>
/// <param name="Gamma">gamma of the PFGM normalisation (5 in the official code).</param>
public readonly record struct FieldOptions(FieldKind Kind, int ExtraDims = 1, float Gamma = 5f)
{
    /// <summary>The PFGM field with the official gamma = 5.</summary>
    public static FieldOptions Pfgm(float gamma = 5f) => new(FieldKind.Pfgm, 1, gamma);

    /// <summary>The PFGM++ posterior mean with D extra dimensions.</summary>
    public static FieldOptions PfgmPlusPlus(int extraDims) => new(FieldKind.PfgmPlusPlus, extraDims);

    /// <summary>Values per output row: N+1 for PFGM (x components then z), N for PFGM++.</summary>
    public int OutputWidth(int dim) => Kind == FieldKind.Pfgm ? dim + 1 : dim;
}

/// <summary>
/// The batched empirical Poisson field (the PFGM training target), fused and log-domain: never materialises
/// the B x M x N differences. CONTRACT STUB: the implementation replaces the bodies, the signatures stay.
/// </summary>
public sealed class PoissonField : IDisposable
{
    private PoissonField(ComputeDevice device) => Device = device;

    /// <summary>The device this instance's kernels are loaded on.</summary>
    public ComputeDevice Device { get; }

    /// <summary>This device's instance (kernels compiled once per device, workspaces reused across calls).</summary>
    public static PoissonField For(ComputeDevice device) => device.Operation(d => new PoissonField(d));

    /// <summary>FLOPs counted for one evaluation: 3 B M N for the distances plus 2 B M N for the weighted sum.</summary>
    public static double FlopCount(long batch, long count, long dim) => 5.0 * batch * count * dim;

    /// <summary>
    /// Computes the field on device. <paramref name="points"/> is B x N (row-major), <paramref name="extra"/> holds B
    /// values (z for PFGM, r for PFGM++), <paramref name="data"/> is the M x N reference set and
    /// <paramref name="output"/> receives B x <see cref="FieldOptions.OutputWidth"/> values. Queued on the default
    /// stream; does not synchronise.
    /// </summary>
    public void Compute(ArrayView<float> points, ArrayView<float> extra, ArrayView<float> data, ArrayView<float> output,
        int batch, int count, int dim, FieldOptions options) => throw new NotImplementedException();

    /// <summary>Host convenience: copies in, computes, copies out. Returns B x OutputWidth values.</summary>
    public float[] Compute(float[] points, float[] extra, float[] data, int batch, int count, int dim, FieldOptions options) =>
        throw new NotImplementedException();

    /// <inheritdoc />
    public void Dispose()
    {
    }
}
