// Training perturbations on device, drawn from Philox4x32-10 so that one seed gives the same integers on every
// accelerator (pfgm-spec.md section 2 for PFGM, section 7 for PFGM++).
// Counter layout: (purpose, sample index, element block of 4, step); key = seed. Purposes below keep the draws of
// different quantities independent. Floats may differ in the last bits between CPU and CUDA (Box-Muller uses float
// log/sqrt/sin/cos, approximate on CUDA); the integers never do.
// Two kernels per perturbation: one per-sample kernel (scalars, looping over the N or D normals for the norms) and
// one element-wise kernel (x~ = y + factor_i g_i, each thread writing the 4 normals of one Philox block).
using System.Runtime.InteropServices;
using ILGPU;
using ILGPU.Algorithms;
using ILGPU.Runtime;
using PoissonFlow.Kernels.Device;

namespace PoissonFlow.Kernels;

/// <summary>Hyperparameters of the PFGM perturbation (forward_pz); the defaults are the official CIFAR-10 config.</summary>
/// <param name="M">Upper end of the continuous exponent m ~ U[0, M) (291).</param>
/// <param name="Sigma">sigma of the noise norm and of z0 = |N(0, sigma^2)| (0.01).</param>
/// <param name="Tau">k = (1 + tau)^m (0.03).</param>
/// <param name="RestrictM">Redraw m ~ U[0, int(RestrictFactor M)) when z0 &lt; RestrictThreshold (on).</param>
/// <param name="RestrictThreshold">z0 threshold of the restriction (0.005).</param>
/// <param name="RestrictFactor">Fraction of M kept by the restriction (0.7).</param>
public sealed record PfgmPerturbationOptions(
    int M = 291, float Sigma = 0.01f, float Tau = 0.03f, bool RestrictM = true, float RestrictThreshold = 0.005f, float RestrictFactor = 0.7f)
{
    /// <summary>int(RestrictFactor M), the exclusive upper end of restricted draws (203 for M = 291).</summary>
    public int RestrictedM => (int)(RestrictFactor * (double)M);
}

/// <summary>Scalars shared by the perturbation kernels.</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct PerturbParams
{
    public int Batch;
    public int Dim;
    public int ExtraDims;
    public uint Key0;
    public uint Key1;
    public uint Step;
    public float M;
    public float RestrictedM;
    public int Restrict;
    public float Sigma;
    public float LogOnePlusTau;
    public float Threshold;
    public int RadiusIsSigma;
}

/// <summary>
/// PFGM and PFGM++ training perturbations, and plain Gaussian noise, generated on device from Philox.
/// One instance per device (<see cref="For"/>); the per-sample workspace is reused, so calls must not overlap.
/// </summary>
public sealed class Perturbation : IDisposable
{
    /// <summary>Philox purpose word of the per-sample PFGM scalars (m, z0, the restricted m).</summary>
    public const uint PurposeScalars = 1;

    /// <summary>Philox purpose word of the N normals whose norm is the PFGM noise norm |eps| / sigma.</summary>
    public const uint PurposeNoiseNorm = 2;

    /// <summary>Philox purpose word of the N normals giving the direction (PFGM u, PFGM++ g).</summary>
    public const uint PurposeDirection = 3;

    /// <summary>Philox purpose word of the D normals h of PFGM++.</summary>
    public const uint PurposeExtra = 4;

    /// <summary>Values per sample in <see cref="SampleScalars"/>: m, k, |eps|, z0.</summary>
    public const int ScalarsPerSample = 4;

    private readonly ComputeDevice _device;
    private readonly Action<AcceleratorStream, KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, PerturbParams> _pfgmScalars;
    private readonly Action<AcceleratorStream, KernelConfig, ArrayView<float>, ArrayView<float>, PerturbParams> _studentTScalars;
    private readonly Action<AcceleratorStream, KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<float>, PerturbParams> _displace;
    private readonly Action<AcceleratorStream, KernelConfig, ArrayView<float>, PerturbParams, uint> _normal;
    private readonly Action<AcceleratorStream, KernelConfig, ArrayView<uint>, PerturbParams, uint> _raw;
    private MemoryBuffer1D<float, Stride1D.Dense>? _scalars;
    private MemoryBuffer1D<float, Stride1D.Dense>? _factors;

    private Perturbation(ComputeDevice device)
    {
        _device = device;
        var accelerator = device.Accelerator;
        _pfgmScalars = accelerator.LoadKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, PerturbParams>(PfgmScalarsKernel);
        _studentTScalars = accelerator.LoadKernel<ArrayView<float>, ArrayView<float>, PerturbParams>(StudentTScalarsKernel);
        _displace = accelerator.LoadKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, PerturbParams>(DisplaceKernel);
        _normal = accelerator.LoadKernel<ArrayView<float>, PerturbParams, uint>(NormalKernel);
        _raw = accelerator.LoadKernel<ArrayView<uint>, PerturbParams, uint>(RawBlocksKernel);
    }

    /// <summary>This device's instance (kernels compiled once per device).</summary>
    public static Perturbation For(ComputeDevice device) => device.Operation(d => new Perturbation(d));

    /// <summary>
    /// Per-sample values of the last <see cref="Pfgm"/> call, B x 4: the exponent m, k = (1+tau)^m, the noise norm
    /// |eps| = sigma |N(0, I_N)| and z0 = |N(0, sigma^2)| (before scaling by k). Empty before the first call.
    /// </summary>
    public ArrayView<float> SampleScalars { get; private set; }

    /// <summary>
    /// PFGM forward_pz (spec section 2) for a batch of clean rows (B x N): m ~ U[0, M), z0 = |N(0, sigma^2)|,
    /// m redrawn from U[0, int(0.7 M)) when restricted and z0 &lt; 0.005, k = (1+tau)^m, |eps| = sigma |g1|,
    /// u = g2 / |g2| (independent Gaussians), x~ = y + k |eps| u, z~ = k z0. Writes x~ (B x N), z~ (B, unclamped: the
    /// field target uses it) and max(z~, 1e-10) (B, the network input). Same seed and step: same numbers.
    /// </summary>
    /// <exception cref="ArgumentException">A size is not positive, a view is too short, or an option is out of range.</exception>
    public void Pfgm(ArrayView<float> clean, ArrayView<float> perturbed, ArrayView<float> z, ArrayView<float> zNetwork,
        int batch, int dim, PfgmPerturbationOptions options, ulong seed, uint step)
    {
        ArgumentNullException.ThrowIfNull(options);
        CheckShape("pfgm perturbation", batch, dim);
        CheckLength("pfgm perturbation", "clean", clean.Length, (long)batch * dim);
        CheckLength("pfgm perturbation", "perturbed", perturbed.Length, (long)batch * dim);
        CheckLength("pfgm perturbation", "z", z.Length, batch);
        CheckLength("pfgm perturbation", "zNetwork", zNetwork.Length, batch);
        if (options.M < 1) throw new ArgumentException($"pfgm perturbation: M must be at least 1, got {options.M}");
        if (!(options.Sigma > 0) || !float.IsFinite(options.Sigma)) throw new ArgumentException($"pfgm perturbation: sigma must be positive, got {options.Sigma}");
        if (!(options.Tau > -1) || !float.IsFinite(options.Tau)) throw new ArgumentException($"pfgm perturbation: tau must be > -1, got {options.Tau}");
        if (options.RestrictM && options.RestrictedM < 1)
        {
            throw new ArgumentException($"pfgm perturbation: int({options.RestrictFactor} x M) = {options.RestrictedM} leaves no restricted range");
        }

        var p = Params(batch, dim, 1, seed, step);
        p.M = options.M;
        p.RestrictedM = options.RestrictedM;
        p.Restrict = options.RestrictM ? 1 : 0;
        p.Sigma = options.Sigma;
        p.LogOnePlusTau = (float)Math.Log(1.0 + options.Tau);
        p.Threshold = options.RestrictThreshold;
        EnsureWorkspace(batch);
        var stream = _device.Accelerator.DefaultStream;
        var scalars = _scalars!.View.SubView(0, (long)batch * ScalarsPerSample);
        var factors = _factors!.View.SubView(0, batch);
        _pfgmScalars(stream, _device.GridStride(batch), scalars, factors, z, zNetwork, p);
        _displace(stream, _device.GridStride((long)batch * Blocks(dim)), clean, perturbed, factors, p);
        SampleScalars = scalars;
    }

    /// <summary>
    /// PFGM++ perturbation (spec section 7): x~ = y + r g / |h| with g ~ N(0, I_N) and h ~ N(0, I_D), any D &gt;= 1,
    /// i.e. |x~ - y| / r ~ sqrt(BetaPrime(N/2, D/2)) in a uniform direction. <paramref name="radius"/> holds r per
    /// sample, or sigma per sample when <paramref name="radiusIsSigma"/> (then r = sigma sqrt(D), the EDM alignment,
    /// which makes the noise a multivariate Student-t with D degrees of freedom and scale sigma).
    /// </summary>
    /// <exception cref="ArgumentException">A size is not positive, a view is too short, or D &lt; 1.</exception>
    public void PfgmPlusPlus(ArrayView<float> clean, ArrayView<float> perturbed, ArrayView<float> radius,
        int batch, int dim, int extraDims, ulong seed, uint step, bool radiusIsSigma = false)
    {
        CheckShape("pfgm++ perturbation", batch, dim);
        if (extraDims < 1) throw new ArgumentException($"pfgm++ perturbation: extra dimensions D must be at least 1, got {extraDims}");
        CheckLength("pfgm++ perturbation", "clean", clean.Length, (long)batch * dim);
        CheckLength("pfgm++ perturbation", "perturbed", perturbed.Length, (long)batch * dim);
        CheckLength("pfgm++ perturbation", "radius", radius.Length, batch);
        var p = Params(batch, dim, extraDims, seed, step);
        p.RadiusIsSigma = radiusIsSigma ? 1 : 0;
        EnsureWorkspace(batch);
        var stream = _device.Accelerator.DefaultStream;
        var factors = _factors!.View.SubView(0, batch);
        _studentTScalars(stream, _device.GridStride(batch), radius, factors, p);
        _displace(stream, _device.GridStride((long)batch * Blocks(dim)), clean, perturbed, factors, p);
    }

    /// <summary>
    /// Fills <paramref name="target"/> with standard normals: element e is normal e mod 4 of the Philox block
    /// (purpose, 0, e / 4, step). For priors and noise injection.
    /// </summary>
    public void Normal(ArrayView<float> target, ulong seed, uint purpose, uint step)
    {
        var p = Params(1, (int)Math.Min(target.Length, int.MaxValue), 1, seed, step);
        _normal(_device.Accelerator.DefaultStream, _device.GridStride(Blocks(p.Dim)), target, p, purpose);
    }

    /// <summary>Raw Philox blocks (purpose, i, 0, step) for i = 0 .. length/4 - 1, four words each (tests compare them with the host).</summary>
    internal void RawBlocks(ArrayView<uint> target, ulong seed, uint purpose, uint step)
    {
        var p = Params(1, (int)(target.Length / 4), 1, seed, step);
        _raw(_device.Accelerator.DefaultStream, _device.GridStride(p.Dim), target, p, purpose);
    }

    /// <summary>
    /// Float64 reference of <see cref="Pfgm"/> from the same Philox integers: returns x~ (B x N), z~ (B) and the
    /// per-sample m, k, |eps|, z0 (B x 4).
    /// </summary>
    public static (double[] Perturbed, double[] Z, double[] Scalars) PfgmReference(ReadOnlySpan<float> clean, int batch, int dim,
        PfgmPerturbationOptions options, ulong seed, uint step)
    {
        ArgumentNullException.ThrowIfNull(options);
        var perturbed = new double[batch * dim];
        var z = new double[batch];
        var scalars = new double[batch * ScalarsPerSample];
        for (int i = 0; i < batch; i++)
        {
            var block = Philox.Generate(seed, PurposeScalars, (uint)i, 0, step);
            double m = Philox.UniformClosedZeroReference(block.X0) * options.M;
            Philox.NormalPairReference(block.X1, block.X2, out double ez, out _);
            double z0 = Math.Abs(options.Sigma * ez);
            if (options.RestrictM && z0 < options.RestrictThreshold) m = Philox.UniformClosedZeroReference(block.X3) * options.RestrictedM;
            double k = Math.Pow(1.0 + options.Tau, m);
            double noise = options.Sigma * Math.Sqrt(SumOfSquaresReference(seed, PurposeNoiseNorm, i, dim, step));
            double direction = Math.Sqrt(SumOfSquaresReference(seed, PurposeDirection, i, dim, step));
            for (int e = 0; e < dim; e++)
            {
                double g = Philox.NormalReference(seed, PurposeDirection, i, e, step);
                perturbed[i * dim + e] = clean[i * dim + e] + k * noise * g / direction;
            }

            z[i] = k * z0;
            scalars[i * 4] = m;
            scalars[i * 4 + 1] = k;
            scalars[i * 4 + 2] = noise;
            scalars[i * 4 + 3] = z0;
        }

        return (perturbed, z, scalars);
    }

    /// <summary>Float64 reference of <see cref="PfgmPlusPlus"/> from the same Philox integers.</summary>
    public static double[] PfgmPlusPlusReference(ReadOnlySpan<float> clean, ReadOnlySpan<float> radius, int batch, int dim,
        int extraDims, ulong seed, uint step, bool radiusIsSigma = false)
    {
        var perturbed = new double[batch * dim];
        for (int i = 0; i < batch; i++)
        {
            double r = radius[i] * (radiusIsSigma ? Math.Sqrt(extraDims) : 1.0);
            double h = Math.Sqrt(SumOfSquaresReference(seed, PurposeExtra, i, extraDims, step));
            for (int e = 0; e < dim; e++)
            {
                perturbed[i * dim + e] = clean[i * dim + e] + r * Philox.NormalReference(seed, PurposeDirection, i, e, step) / h;
            }
        }

        return perturbed;
    }

    /// <inheritdoc />
    public void Dispose()
    {
        _scalars?.Dispose();
        _factors?.Dispose();
        _scalars = _factors = null;
        SampleScalars = default;
    }

    private static int Blocks(int count) => (count + 3) / 4;

    private static PerturbParams Params(int batch, int dim, int extraDims, ulong seed, uint step) => new()
    {
        Batch = batch,
        Dim = dim,
        ExtraDims = extraDims,
        Key0 = (uint)seed,
        Key1 = (uint)(seed >> 32),
        Step = step,
    };

    private static void CheckShape(string what, int batch, int dim)
    {
        if (batch < 1) throw new ArgumentException($"{what}: batch B must be at least 1, got {batch}");
        if (dim < 1) throw new ArgumentException($"{what}: dimension N must be at least 1, got {dim}");
        if ((long)batch * dim > int.MaxValue) throw new ArgumentException($"{what}: B x N = {batch} x {dim} exceeds 2^31 elements");
    }

    private static void CheckLength(string what, string name, long actual, long needed)
    {
        if (actual < needed) throw new ArgumentException($"{what}: {name} has {actual} values but needs {needed}");
    }

    private void EnsureWorkspace(int batch)
    {
        if (_factors != null && _factors.Length >= batch) return;
        _scalars?.Dispose();
        _factors?.Dispose();
        _scalars = _device.Accelerator.Allocate1D<float>((long)batch * ScalarsPerSample);
        _factors = _device.Accelerator.Allocate1D<float>(batch);
    }

    private static double SumOfSquaresReference(ulong seed, uint purpose, int sample, int count, uint step)
    {
        double sum = 0;
        for (int e = 0; e < count; e++)
        {
            double g = Philox.NormalReference(seed, purpose, sample, e, step);
            sum += g * g;
        }

        return sum;
    }

    /// <summary>Sum of squares of the first <paramref name="count"/> normals of stream (purpose, sample), float64 accumulator.</summary>
    private static float SumOfSquares(PerturbParams p, uint purpose, int sample, int count)
    {
        double sum = 0;
        int blocks = Blocks(count);
        for (int b = 0; b < blocks; b++)
        {
            var block = Philox.Generate(new PhiloxBlock(purpose, (uint)sample, (uint)b, p.Step), p.Key0, p.Key1);
            Philox.Normals(block, out float n0, out float n1, out float n2, out float n3);
            int e = 4 * b;
            float s = n0 * n0;
            if (e + 1 < count) s += n1 * n1;
            if (e + 2 < count) s += n2 * n2;
            if (e + 3 < count) s += n3 * n3;
            sum += s;
        }

        return (float)sum;
    }

    [GpuKernel]
    internal static void PfgmScalarsKernel(ArrayView<float> scalars, ArrayView<float> factors, ArrayView<float> z,
        ArrayView<float> zNetwork, PerturbParams p)
    {
        for (int i = Grid.GlobalIndex.X; i < p.Batch; i += Grid.DimX * Group.DimX)
        {
            var block = Philox.Generate(new PhiloxBlock(PurposeScalars, (uint)i, 0, p.Step), p.Key0, p.Key1);
            // Continuous m, as in the official torch.rand * M; floor-free so m < M holds exactly for u < 1.
            float m = Philox.UniformClosedZero(block.X0) * p.M;
            Philox.NormalPair(block.X1, block.X2, out float ez, out _);
            float z0 = XMath.Abs(p.Sigma * ez);
            // restrict_M tests z0 before it is scaled by k.
            if (p.Restrict != 0 && z0 < p.Threshold) m = Philox.UniformClosedZero(block.X3) * p.RestrictedM;
            float k = XMath.Exp(m * p.LogOnePlusTau);
            float noise = p.Sigma * XMath.Sqrt(SumOfSquares(p, PurposeNoiseNorm, i, p.Dim));
            float direction = XMath.Sqrt(SumOfSquares(p, PurposeDirection, i, p.Dim));
            factors[i] = k * noise / direction;
            float zPerturbed = k * z0;
            z[i] = zPerturbed;
            zNetwork[i] = XMath.Max(zPerturbed, 1e-10f);
            scalars[i * 4] = m;
            scalars[i * 4 + 1] = k;
            scalars[i * 4 + 2] = noise;
            scalars[i * 4 + 3] = z0;
        }
    }

    [GpuKernel]
    internal static void StudentTScalarsKernel(ArrayView<float> radius, ArrayView<float> factors, PerturbParams p)
    {
        for (int i = Grid.GlobalIndex.X; i < p.Batch; i += Grid.DimX * Group.DimX)
        {
            float r = radius[i];
            if (p.RadiusIsSigma != 0) r *= XMath.Sqrt((float)p.ExtraDims);
            factors[i] = r / XMath.Sqrt(SumOfSquares(p, PurposeExtra, i, p.ExtraDims));
        }
    }

    /// <summary>x~[i, e] = y[i, e] + factor_i g[i, e], g the direction normals; one Philox block (4 elements) per step.</summary>
    [GpuKernel]
    internal static void DisplaceKernel(ArrayView<float> clean, ArrayView<float> perturbed, ArrayView<float> factors, PerturbParams p)
    {
        int blocks = Blocks(p.Dim);
        int total = p.Batch * blocks;
        for (int index = Grid.GlobalIndex.X; index < total; index += Grid.DimX * Group.DimX)
        {
            int i = index / blocks, b = index - i * blocks;
            var block = Philox.Generate(new PhiloxBlock(PurposeDirection, (uint)i, (uint)b, p.Step), p.Key0, p.Key1);
            Philox.Normals(block, out float n0, out float n1, out float n2, out float n3);
            float factor = factors[i];
            int e = 4 * b, row = i * p.Dim;
            perturbed[row + e] = clean[row + e] + factor * n0;
            if (e + 1 < p.Dim) perturbed[row + e + 1] = clean[row + e + 1] + factor * n1;
            if (e + 2 < p.Dim) perturbed[row + e + 2] = clean[row + e + 2] + factor * n2;
            if (e + 3 < p.Dim) perturbed[row + e + 3] = clean[row + e + 3] + factor * n3;
        }
    }

    [GpuKernel]
    internal static void NormalKernel(ArrayView<float> target, PerturbParams p, uint purpose)
    {
        int blocks = Blocks(p.Dim);
        for (int b = Grid.GlobalIndex.X; b < blocks; b += Grid.DimX * Group.DimX)
        {
            var block = Philox.Generate(new PhiloxBlock(purpose, 0, (uint)b, p.Step), p.Key0, p.Key1);
            Philox.Normals(block, out float n0, out float n1, out float n2, out float n3);
            int e = 4 * b;
            target[e] = n0;
            if (e + 1 < p.Dim) target[e + 1] = n1;
            if (e + 2 < p.Dim) target[e + 2] = n2;
            if (e + 3 < p.Dim) target[e + 3] = n3;
        }
    }

    [GpuKernel]
    internal static void RawBlocksKernel(ArrayView<uint> target, PerturbParams p, uint purpose)
    {
        for (int i = Grid.GlobalIndex.X; i < p.Dim; i += Grid.DimX * Group.DimX)
        {
            var block = Philox.Generate(new PhiloxBlock(purpose, (uint)i, 0, p.Step), p.Key0, p.Key1);
            target[4 * i] = block.X0;
            target[4 * i + 1] = block.X1;
            target[4 * i + 2] = block.X2;
            target[4 * i + 3] = block.X3;
        }
    }
}
