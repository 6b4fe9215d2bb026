// The batched empirical Poisson field (pfgm-spec.md sections 3 and 7), fused and log-domain.
//
// Math, per perturbed point i (x_i in R^N, extra coordinate e_i = z for PFGM or r for PFGM++):
//   q_ij  = |x_i - y_j|^2 + e_i^2,       alpha = (N + D) / 2   (D = 1 for PFGM)
//   w_ij  = q_ij^-alpha / sum_j q_ij^-alpha = (q_min/q_ij)^alpha / sum_j (q_min/q_ij)^alpha
//   PFGM:   E_i = sum_j w_ij (y_j - x_i) (x part), E_z = -z_i;  output sqrt(N) E / (|E| + gamma), N + 1 values
//   PFGM++: output sum_j w_ij y_j (the posterior mean), N values
// The relative weight (q_min/q)^alpha is formed as exp(-alpha * log1p((q - q_min)/q_min)) with the ratio in float64
// and an accurate log1p (Log1pAccurate): alpha reaches (3072 + 2048)/2 = 2560, so an absolute logit error of 1e-3
// (what -alpha*ln(q) in float32 gives at ln q ~ 10) would already be a 1e-3 relative weight error.
// The reference set is streamed: a running minimum q_min per row, with the running sum and the weighted accumulator
// rescaled by (q_min_new/q_min_old)^alpha whenever the minimum drops. No B x M x N temporary exists anywhere.
//
// Two paths, chosen per accelerator:
// * CUDA ("tiled"), per chunk of C reference rows (C = 16384 at B = 256):
//     1. DistanceTileKernel: 64 x 64 tile of (points x chunk rows) per 16 x 16 group, 4 x 4 per thread, k-tiles of 16
//        staged in shared memory (2 x 16 x 65 floats, padded against bank conflicts); the 16-term float partial of
//        each k-tile is promoted into a float64 accumulator. Writes q (float64) to a B x C scratch.
//        FLOPs 3 B C N (sub, mul, add); global reads (B/64 + C/64) x 64 N floats per chunk, mostly L2 hits.
//     2. RowSoftmaxKernel: one group per row: chunk minimum, new running minimum, rescale factor, the float weights
//        W (B x C) and the running sum. O(B C), reads 8 B C bytes and writes 4 B C bytes.
//     3. WeightedSumTileKernel: acc_s = acc_s * scale + W[:, split s] Y[split s, :], a 64 x 64 register-tiled GEMM
//        split over N, B and S slices of the chunk (S = ceil(2 SMs / tiles) so that ~2 groups run per SM even at
//        B = 256, N = 784). FLOPs 2 B C N. Each split keeps its own accumulator (S x B x N floats), so no atomics.
//     4. FinalizeKernel (once): sums the S accumulators, divides by the running sum, normalises (PFGM).
//   At (B, M, N) = (256, 60000, 784): 5 B M N = 6.0e10 FLOP counted; unique HBM traffic ~0.6 GB (Y 188 MB, q 123 MB
//   written and read, W 61 MB written and read), i.e. ~0.13 ms at 4.8 TB/s against 2 ms of FP32 work at 30 TFLOP/s:
//   compute bound by design. The rate on an H200 is NOT measured yet (no GPU in the sessions so far).
// * CPU emulator ("coarse"): barrier-free; each emulated thread owns 4 points and streams all of Y once, 4 rows at a
//   time (a 4 x 4 register block of squared distances), keeping the running minima and sums in registers and the
//   accumulators in its output rows.
//   Few threads (one small group per core), one launch per call.
// Memory: O((B + M) N) plus a B x C scratch on the tiled path.
using System.Runtime.InteropServices;
using ILGPU;
using ILGPU.Algorithms;
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

    /// <summary>The exponent alpha = (N + D) / 2 of the weights q^-alpha (D = 1 for PFGM).</summary>
    public double Alpha(int dim) => 0.5 * ((double)dim + (Kind == FieldKind.Pfgm ? 1 : ExtraDims));
}

/// <summary>Which implementation <see cref="PoissonField"/> runs (tests force one; callers leave <see cref="Auto"/>).</summary>
internal enum FieldPath
{
    /// <summary>Tiled on CUDA, coarse on the CPU accelerator.</summary>
    Auto,

    /// <summary>Shared-memory tiles, chunked over the reference set (the CUDA design).</summary>
    Tiled,

    /// <summary>One emulated thread per 4 points, barrier-free (the CPU design).</summary>
    Coarse,
}

/// <summary>Scalars shared by the field kernels (one struct keeps the kernel signatures short).</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct FieldParams
{
    public int Batch;
    public int Count;
    public int Dim;
    public int OutWidth;
    public int IsPfgm;
    public float Gamma;
    public float SqrtDim;
    public double Alpha;
    public int ChunkStride;
    public int ChunkStart;
    public int ChunkCount;
    public int Splits;
    public int SplitLength;
}

/// <summary>Four by four floats held in registers by one thread of a 64 x 64 tile.</summary>
internal struct Block4x4
{
    public float V00, V01, V02, V03, V10, V11, V12, V13, V20, V21, V22, V23, V30, V31, V32, V33;
}

/// <summary>Four by four float64 accumulators (the promoted squared distances of the distance tile).</summary>
internal struct Block4x4Double
{
    public double V00, V01, V02, V03, V10, V11, V12, V13, V20, V21, V22, V23, V30, V31, V32, V33;
}

/// <summary>
/// The batched empirical Poisson field (the PFGM training target), fused and log-domain: never materialises
/// the B x M x N differences. One instance per device (<see cref="For"/>); its workspaces are sized on first use
/// for a shape and reused, so an instance is not safe to call from several threads at once.
/// </summary>
public sealed class PoissonField : IDisposable
{
    internal const int Tile = 64;
    internal const int TileK = 16;
    internal const int TileThreads = 16;
    private const int TilePitch = Tile + 1;
    private const int CoarsePoints = 4;
    private const int MaxReductionThreads = 256;
    private const int CudaGroupsPerSm = 2;

    private readonly Action<AcceleratorStream, KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, FieldParams> _coarse;
    private readonly Action<AcceleratorStream, KernelConfig, ArrayView<float>, ArrayView<double>, ArrayView<double>, FieldParams> _reset;
    private readonly Action<AcceleratorStream, KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<double>, FieldParams> _distance;
    private readonly Action<AcceleratorStream, KernelConfig, ArrayView<double>, ArrayView<float>, ArrayView<double>, ArrayView<double>, ArrayView<float>, FieldParams> _softmax;
    private readonly Action<AcceleratorStream, KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, FieldParams> _weightedSum;
    private readonly Action<AcceleratorStream, KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<double>, ArrayView<float>, FieldParams> _finalize;

    private MemoryBuffer1D<double, Stride1D.Dense>? _distances;
    private MemoryBuffer1D<float, Stride1D.Dense>? _weights;
    private MemoryBuffer1D<float, Stride1D.Dense>? _accumulators;
    private MemoryBuffer1D<double, Stride1D.Dense>? _rowMin;
    private MemoryBuffer1D<double, Stride1D.Dense>? _rowSum;
    private MemoryBuffer1D<float, Stride1D.Dense>? _rowScale;

    private PoissonField(ComputeDevice device)
    {
        Device = device;
        var accelerator = device.Accelerator;
        _coarse = accelerator.LoadKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, FieldParams>(CoarseFieldKernel);
        _reset = accelerator.LoadKernel<ArrayView<float>, ArrayView<double>, ArrayView<double>, FieldParams>(ResetKernel);
        _distance = accelerator.LoadKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<double>, FieldParams>(DistanceTileKernel);
        _softmax = accelerator.LoadKernel<ArrayView<double>, ArrayView<float>, ArrayView<double>, ArrayView<double>, ArrayView<float>, FieldParams>(RowSoftmaxKernel);
        _weightedSum = accelerator.LoadKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, FieldParams>(WeightedSumTileKernel);
        _finalize = accelerator.LoadKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<double>, ArrayView<float>, FieldParams>(FinalizeKernel);
    }

    /// <summary>The device this instance's kernels are loaded on.</summary>
    public ComputeDevice Device { get; }

    /// <summary>Forces an implementation (tests); <see cref="FieldPath.Auto"/> picks tiled on CUDA, coarse elsewhere.</summary>
    internal FieldPath ForcePath { get; set; }

    /// <summary>Reference rows per chunk on the tiled path when positive (tests use tiny chunks to cross chunk borders).</summary>
    internal int ChunkOverride { get; set; }

    /// <summary>Split-K count of the tiled weighted sum when positive.</summary>
    internal int SplitOverride { get; set; }

    /// <summary>The path the last <see cref="Compute(ArrayView{float}, ArrayView{float}, ArrayView{float}, ArrayView{float}, int, int, int, FieldOptions)"/> ran.</summary>
    internal FieldPath LastPath { get; private set; }

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
    /// <exception cref="ArgumentException">A size is not positive, a view is shorter than its shape needs, or D &lt; 1.</exception>
    public void Compute(ArrayView<float> points, ArrayView<float> extra, ArrayView<float> data, ArrayView<float> output,
        int batch, int count, int dim, FieldOptions options)
    {
        Validate(points.Length, extra.Length, data.Length, output.Length, batch, count, dim, options, exact: false);
        var parameters = new FieldParams
        {
            Batch = batch,
            Count = count,
            Dim = dim,
            OutWidth = options.OutputWidth(dim),
            IsPfgm = options.Kind == FieldKind.Pfgm ? 1 : 0,
            Gamma = options.Gamma,
            SqrtDim = MathF.Sqrt(dim),
            Alpha = options.Alpha(dim),
        };
        var path = ForcePath != FieldPath.Auto ? ForcePath : Device.IsCuda ? FieldPath.Tiled : FieldPath.Coarse;
        LastPath = path;
        if (path == FieldPath.Coarse) ComputeCoarse(points, extra, data, output, parameters);
        else ComputeTiled(points, extra, data, output, parameters);
    }

    /// <summary>Host convenience: copies in, computes, copies out. Returns B x OutputWidth values.</summary>
    /// <exception cref="ArgumentException">A size is not positive, an array length does not match its shape, or D &lt; 1.</exception>
    public float[] Compute(float[] points, float[] extra, float[] data, int batch, int count, int dim, FieldOptions options)
    {
        ArgumentNullException.ThrowIfNull(points);
        ArgumentNullException.ThrowIfNull(extra);
        ArgumentNullException.ThrowIfNull(data);
        int width = options.OutputWidth(Math.Max(dim, 0));
        Validate(points.Length, extra.Length, data.Length, (long)batch * width, batch, count, dim, options, exact: true);
        var accelerator = Device.Accelerator;
        using var pointsBuffer = accelerator.Allocate1D(points);
        using var extraBuffer = accelerator.Allocate1D(extra);
        using var dataBuffer = accelerator.Allocate1D(data);
        using var outputBuffer = accelerator.Allocate1D<float>((long)batch * width);
        Compute(pointsBuffer.View, extraBuffer.View, dataBuffer.View, outputBuffer.View, batch, count, dim, options);
        Device.Synchronize();
        return outputBuffer.GetAsArray1D();
    }

    /// <summary>
    /// The float64 reference, written straight from the spec: q_ij = |x_i - y_j|^2 + e_i^2, weights
    /// exp(-alpha ln(q_ij / q_min)) normalised (the official min-ratio form; exact hits q = 0 share all the weight),
    /// then the PFGM normalised field or the PFGM++ posterior mean. Returns B x OutputWidth values.
    /// </summary>
    public static double[] Reference(ReadOnlySpan<float> points, ReadOnlySpan<float> extra, ReadOnlySpan<float> data,
        int batch, int count, int dim, FieldOptions options)
    {
        int width = options.OutputWidth(dim);
        double alpha = options.Alpha(dim);
        var result = new double[batch * width];
        var q = new double[count];
        var mean = new double[dim];
        for (int i = 0; i < batch; i++)
        {
            double e = extra[i];
            double qMin = double.PositiveInfinity;
            for (int j = 0; j < count; j++)
            {
                double d2 = 0;
                for (int k = 0; k < dim; k++)
                {
                    double diff = (double)points[i * dim + k] - data[j * dim + k];
                    d2 += diff * diff;
                }

                q[j] = d2 + e * e;
                qMin = Math.Min(qMin, q[j]);
            }

            Array.Clear(mean);
            double sum = 0;
            for (int j = 0; j < count; j++)
            {
                double w = qMin == 0 ? (q[j] == 0 ? 1 : 0) : Math.Exp(-alpha * Math.Log(q[j] / qMin));
                sum += w;
                for (int k = 0; k < dim; k++) mean[k] += w * data[j * dim + k];
            }

            for (int k = 0; k < dim; k++) mean[k] /= sum;
            if (options.Kind == FieldKind.PfgmPlusPlus)
            {
                for (int k = 0; k < dim; k++) result[i * width + k] = mean[k];
                continue;
            }

            double norm2 = e * e;
            for (int k = 0; k < dim; k++)
            {
                double ex = mean[k] - points[i * dim + k];
                norm2 += ex * ex;
            }

            double factor = Math.Sqrt(dim) / (Math.Sqrt(norm2) + options.Gamma);
            for (int k = 0; k < dim; k++) result[i * width + k] = factor * (mean[k] - points[i * dim + k]);
            result[i * width + dim] = -factor * e;
        }

        return result;
    }

    /// <inheritdoc />
    public void Dispose()
    {
        _distances?.Dispose();
        _weights?.Dispose();
        _accumulators?.Dispose();
        _rowMin?.Dispose();
        _rowSum?.Dispose();
        _rowScale?.Dispose();
        _distances = null;
        _weights = null;
        _accumulators = null;
        _rowMin = _rowSum = null;
        _rowScale = null;
    }

    private static void Validate(long pointsLength, long extraLength, long dataLength, long outputLength,
        int batch, int count, int dim, FieldOptions options, bool exact)
    {
        if (batch < 1) throw new ArgumentException($"poisson field: batch B must be at least 1, got {batch}");
        if (count < 1) throw new ArgumentException($"poisson field: reference count M must be at least 1, got {count}");
        if (dim < 1) throw new ArgumentException($"poisson field: dimension N must be at least 1, got {dim}");
        if (options.ExtraDims < 1) throw new ArgumentException($"poisson field: extra dimensions D must be at least 1, got {options.ExtraDims}");
        if (!float.IsFinite(options.Gamma) || options.Gamma < 0)
        {
            throw new ArgumentException($"poisson field: gamma must be finite and non-negative, got {options.Gamma}");
        }

        if ((long)count * dim > int.MaxValue || (long)batch * (dim + 1) > int.MaxValue)
        {
            throw new ArgumentException($"poisson field: B = {batch}, M = {count}, N = {dim} exceed 2^31 elements per matrix");
        }

        int width = options.OutputWidth(dim);
        Check("points", pointsLength, (long)batch * dim, $"B x N = {batch} x {dim}");
        Check("extra", extraLength, batch, $"B = {batch}");
        Check("data", dataLength, (long)count * dim, $"M x N = {count} x {dim}");
        Check("output", outputLength, (long)batch * width, $"B x {(options.Kind == FieldKind.Pfgm ? "(N+1)" : "N")} = {batch} x {width}");

        void Check(string name, long actual, long needed, string shape)
        {
            if (exact ? actual != needed : actual < needed)
            {
                throw new ArgumentException($"poisson field: {name} has {actual} values but {shape} needs {needed}");
            }
        }
    }

    private void ComputeCoarse(ArrayView<float> points, ArrayView<float> extra, ArrayView<float> data, ArrayView<float> output, FieldParams parameters)
    {
        var accelerator = Device.Accelerator;
        int blocks = (parameters.Batch + CoarsePoints - 1) / CoarsePoints;
        KernelConfig config;
        if (Device.IsCuda)
        {
            config = new KernelConfig((blocks + 63) / 64, 64);
        }
        else
        {
            // One small group per core: each emulated thread is an OS thread, so few busy threads beat many.
            int cores = accelerator.NumMultiprocessors;
            int perGroup = Math.Clamp((blocks + cores - 1) / cores, 1, 4);
            config = new KernelConfig(Math.Max(1, Math.Min(cores, (blocks + perGroup - 1) / perGroup)), perGroup);
        }

        _coarse(accelerator.DefaultStream, config, points, extra, data, output, parameters);
    }

    private void ComputeTiled(ArrayView<float> points, ArrayView<float> extra, ArrayView<float> data, ArrayView<float> output, FieldParams parameters)
    {
        var accelerator = Device.Accelerator;
        var stream = accelerator.DefaultStream;
        int batch = parameters.Batch, count = parameters.Count, dim = parameters.Dim;
        int chunk = ChunkOverride > 0 ? ChunkOverride : ChooseChunk(batch, count);
        int tilesB = (batch + Tile - 1) / Tile, tilesN = (dim + Tile - 1) / Tile;
        int splits = SplitOverride > 0
            ? SplitOverride
            : Math.Clamp((CudaGroupsPerSm * accelerator.NumMultiprocessors + tilesB * tilesN - 1) / (tilesB * tilesN), 1, Math.Max(1, chunk / 256));
        int splitLength = RoundUp((chunk + splits - 1) / splits, TileK);
        EnsureWorkspace(batch, dim, chunk, splits);
        parameters.ChunkStride = chunk;
        parameters.Splits = splits;
        parameters.SplitLength = splitLength;

        var accumulators = _accumulators!.View.SubView(0, (long)splits * batch * dim);
        var rowMin = _rowMin!.View.SubView(0, batch);
        var rowSum = _rowSum!.View.SubView(0, batch);
        var rowScale = _rowScale!.View.SubView(0, batch);
        var distances = _distances!.View.SubView(0, (long)batch * chunk);
        var weights = _weights!.View.SubView(0, (long)batch * chunk);

        _reset(stream, Device.GridStride(accumulators.Length), accumulators, rowMin, rowSum, parameters);
        int reductionThreads = Device.IsCuda ? MaxReductionThreads : 32;
        var tileGroup = new Index2D(TileThreads, TileThreads);
        for (int start = 0; start < count; start += chunk)
        {
            parameters.ChunkStart = start;
            parameters.ChunkCount = Math.Min(chunk, count - start);
            int tilesChunk = (parameters.ChunkCount + Tile - 1) / Tile;
            _distance(stream, new KernelConfig(new Index2D(tilesChunk, tilesB), tileGroup), points, extra, data, distances, parameters);
            _softmax(stream, new KernelConfig(batch, reductionThreads), distances, weights, rowMin, rowSum, rowScale, parameters);
            _weightedSum(stream, new KernelConfig(new Index3D(tilesN, tilesB, splits), new Index3D(TileThreads, TileThreads, 1)),
                weights, data, accumulators, rowScale, parameters);
        }

        _finalize(stream, Device.GridStride(batch), points, extra, accumulators, rowSum, output, parameters);
    }

    /// <summary>Reference rows per chunk: the B x C scratch (12 bytes per entry) stays near 48 MB.</summary>
    private static int ChooseChunk(int batch, int count) =>
        Math.Min(RoundUp(count, Tile), Math.Max(Tile, (1 << 22) / batch / Tile * Tile));

    private static int RoundUp(int value, int multiple) => (value + multiple - 1) / multiple * multiple;

    private void EnsureWorkspace(int batch, int dim, int chunk, int splits)
    {
        var accelerator = Device.Accelerator;
        Ensure(ref _distances, (long)batch * chunk);
        Ensure(ref _weights, (long)batch * chunk);
        Ensure(ref _accumulators, (long)splits * batch * dim);
        Ensure(ref _rowMin, batch);
        Ensure(ref _rowSum, batch);
        Ensure(ref _rowScale, batch);

        void Ensure<T>(ref MemoryBuffer1D<T, Stride1D.Dense>? buffer, long length) where T : unmanaged
        {
            if (buffer != null && buffer.Length >= length) return;
            buffer?.Dispose();
            buffer = accelerator.Allocate1D<T>(length);
        }
    }

    // ------------------------------------------------------------------------------------------------------------
    // Shared math

    private const double Ln2 = 0.69314718055994530942;
    private const double Sqrt2 = 1.41421356237309504880;

    /// <summary>
    /// ln(1 + delta) for delta &gt;= 0 to ~1e-15 relative, from double add/mul/div only (Math.Log(double) would pull
    /// a large software routine into the PTX, and float32 logs lose relative accuracy near delta = 0).
    /// ln(1+d) = e ln 2 + 2 atanh(s), s = (m-1)/(m+1) with 1+d = m 2^e, m in [sqrt(1/2), sqrt(2)], so |s| &lt;= 0.172
    /// and the series to s^19 is exact to ~1e-16.
    /// </summary>
    internal static double Log1pAccurate(double delta)
    {
        double exponent = 0;
        double s;
        if (delta < Sqrt2 - 1.0)
        {
            s = delta / (2.0 + delta);
        }
        else
        {
            ulong bits = Interop.FloatAsInt(1.0 + delta);
            int e = (int)((bits >> 52) & 0x7FFul) - 1023;
            double mantissa = Interop.IntAsFloat((bits & 0x000F_FFFF_FFFF_FFFFul) | 0x3FF0_0000_0000_0000ul);
            if (mantissa > Sqrt2)
            {
                mantissa *= 0.5;
                e++;
            }

            exponent = e;
            s = (mantissa - 1.0) / (mantissa + 1.0);
        }

        double t = s * s;
        double series = 1.0 + t * (1.0 / 3 + t * (1.0 / 5 + t * (1.0 / 7 + t * (1.0 / 9 + t * (1.0 / 11 + t * (1.0 / 13
            + t * (1.0 / 15 + t * (1.0 / 17 + t * (1.0 / 19)))))))));
        return exponent * Ln2 + 2.0 * s * series;
    }

    /// <summary>
    /// (qMin / q)^alpha, in [0, 1], for q &gt;= qMin. qMin = 0 (a point exactly on a data point with a zero extra
    /// coordinate) gives the exact hits weight 1 and everything else 0. A non-finite ratio gives 0, which is also the
    /// rescale factor when the previous minimum was +infinity (nothing accumulated yet).
    /// </summary>
    internal static float RelativeWeight(double q, double qMin, double alpha)
    {
        if (!(qMin > 0.0)) return q > 0.0 ? 0f : 1f;
        if (q <= qMin) return 1f;
        double delta = (q - qMin) / qMin;
        if (!(delta < 1e300)) return 0f;
        double logit = alpha * Log1pAccurate(delta);
        // e^-87 is the smallest normal float; below it the weight is negligible next to the minimum's 1.
        if (logit > 87.0) return 0f;
        return XMath.Exp((float)-logit);
    }

    // ------------------------------------------------------------------------------------------------------------
    // Coarse path (CPU accelerator): one emulated thread per 4 points, streaming all of Y once, 4 reference rows at a
    // time. On the emulator every view access costs far more than the arithmetic, so the 4 x 4 register block is what
    // matters: 8 loads per 16 squared differences, and one pass over the accumulator rows per 4 reference rows.

    [GpuKernel]
    internal static void CoarseFieldKernel(ArrayView<float> points, ArrayView<float> extra, ArrayView<float> data,
        ArrayView<float> output, FieldParams p)
    {
        int blocks = (p.Batch + CoarsePoints - 1) / CoarsePoints;
        int dim = p.Dim;
        bool pfgm = p.IsPfgm != 0;
        for (int block = Grid.GlobalIndex.X; block < blocks; block += Grid.DimX * Group.DimX)
        {
            int i0 = block * CoarsePoints;
            int valid = Math.Min(p.Batch - i0, CoarsePoints);
            // Slots past the batch end alias point i0 for reading and never write.
            int i1 = valid > 1 ? i0 + 1 : i0, i2 = valid > 2 ? i0 + 2 : i0, i3 = valid > 3 ? i0 + 3 : i0;
            int x0 = i0 * dim, x1 = i1 * dim, x2 = i2 * dim, x3 = i3 * dim;
            int o0 = i0 * p.OutWidth, o1 = i1 * p.OutWidth, o2 = i2 * p.OutWidth, o3 = i3 * p.OutWidth;
            double e0 = extra[i0], e1 = extra[i1], e2 = extra[i2], e3 = extra[i3];
            e0 *= e0; e1 *= e1; e2 *= e2; e3 *= e3;
            for (int k = 0; k < dim; k++)
            {
                output[o0 + k] = 0f;
                if (valid > 1) output[o1 + k] = 0f;
                if (valid > 2) output[o2 + k] = 0f;
                if (valid > 3) output[o3 + k] = 0f;
            }

            double min0 = double.PositiveInfinity, min1 = min0, min2 = min0, min3 = min0;
            double sum0 = 0, sum1 = 0, sum2 = 0, sum3 = 0;
            for (int j = 0; j < p.Count; j += 4)
            {
                // Reference rows past M alias row j and get q = +infinity (weight 0).
                int rows = Math.Min(p.Count - j, 4);
                int y0 = j * dim, y1 = rows > 1 ? y0 + dim : y0, y2 = rows > 2 ? y0 + 2 * dim : y0, y3 = rows > 3 ? y0 + 3 * dim : y0;
                var d = default(Block4x4Double);
                // Plain float64 differences: the weight exponent (N+D)/2 amplifies the float32 rounding of a single
                // difference (2^-24 relative) into ~1e-4 weight errors when N is tiny and D large; doubles cost the
                // same as floats in the emulator's scalar code.
                for (int k = 0; k < dim; k++)
                {
                    double c0 = data[y0 + k], c1 = data[y1 + k], c2 = data[y2 + k], c3 = data[y3 + k];
                    double a = points[x0 + k], t;
                    t = a - c0; d.V00 += t * t; t = a - c1; d.V01 += t * t; t = a - c2; d.V02 += t * t; t = a - c3; d.V03 += t * t;
                    a = points[x1 + k];
                    t = a - c0; d.V10 += t * t; t = a - c1; d.V11 += t * t; t = a - c2; d.V12 += t * t; t = a - c3; d.V13 += t * t;
                    a = points[x2 + k];
                    t = a - c0; d.V20 += t * t; t = a - c1; d.V21 += t * t; t = a - c2; d.V22 += t * t; t = a - c3; d.V23 += t * t;
                    a = points[x3 + k];
                    t = a - c0; d.V30 += t * t; t = a - c1; d.V31 += t * t; t = a - c2; d.V32 += t * t; t = a - c3; d.V33 += t * t;
                }

                double inf = double.PositiveInfinity;
                var q = new Block4x4Double
                {
                    V00 = d.V00 + e0, V01 = rows > 1 ? d.V01 + e0 : inf, V02 = rows > 2 ? d.V02 + e0 : inf, V03 = rows > 3 ? d.V03 + e0 : inf,
                    V10 = d.V10 + e1, V11 = rows > 1 ? d.V11 + e1 : inf, V12 = rows > 2 ? d.V12 + e1 : inf, V13 = rows > 3 ? d.V13 + e1 : inf,
                    V20 = d.V20 + e2, V21 = rows > 1 ? d.V21 + e2 : inf, V22 = rows > 2 ? d.V22 + e2 : inf, V23 = rows > 3 ? d.V23 + e2 : inf,
                    V30 = d.V30 + e3, V31 = rows > 1 ? d.V31 + e3 : inf, V32 = rows > 2 ? d.V32 + e3 : inf, V33 = rows > 3 ? d.V33 + e3 : inf,
                };
                CoarseUpdate(output, data, points, o0, x0, y0, y1, y2, y3, dim, pfgm, q.V00, q.V01, q.V02, q.V03, p.Alpha, ref min0, ref sum0);
                if (valid > 1) CoarseUpdate(output, data, points, o1, x1, y0, y1, y2, y3, dim, pfgm, q.V10, q.V11, q.V12, q.V13, p.Alpha, ref min1, ref sum1);
                if (valid > 2) CoarseUpdate(output, data, points, o2, x2, y0, y1, y2, y3, dim, pfgm, q.V20, q.V21, q.V22, q.V23, p.Alpha, ref min2, ref sum2);
                if (valid > 3) CoarseUpdate(output, data, points, o3, x3, y0, y1, y2, y3, dim, pfgm, q.V30, q.V31, q.V32, q.V33, p.Alpha, ref min3, ref sum3);
            }

            FinalizeRow(output, o0, output, o0, extra[i0], sum0, p);
            if (valid > 1) FinalizeRow(output, o1, output, o1, extra[i1], sum1, p);
            if (valid > 2) FinalizeRow(output, o2, output, o2, extra[i2], sum2, p);
            if (valid > 3) FinalizeRow(output, o3, output, o3, extra[i3], sum3, p);
        }
    }

    /// <summary>
    /// Online update of one row with 4 reference rows: rescales the row when their smallest q is a new minimum, then
    /// adds sum_r w_r y_r (PFGM++) or sum_r w_r (y_r - x) (PFGM: accumulating the difference avoids the cancellation of
    /// mean(y) - x near the data). Rows with weight 0 (far, or past M) cost nothing when only one row counts.
    /// </summary>
    private static void CoarseUpdate(ArrayView<float> output, ArrayView<float> data, ArrayView<float> points,
        int row, int x, int y0, int y1, int y2, int y3, int dim, bool pfgm, double q0, double q1, double q2, double q3,
        double alpha, ref double qMin, ref double sum)
    {
        double blockMin = Math.Min(Math.Min(q0, q1), Math.Min(q2, q3));
        if (blockMin < qMin)
        {
            float scale = RelativeWeight(qMin, blockMin, alpha);
            if (sum > 0)
            {
                sum *= scale;
                for (int k = 0; k < dim; k++) output[row + k] *= scale;
            }

            qMin = blockMin;
        }

        float w0 = RelativeWeight(q0, qMin, alpha), w1 = RelativeWeight(q1, qMin, alpha);
        float w2 = RelativeWeight(q2, qMin, alpha), w3 = RelativeWeight(q3, qMin, alpha);
        int active = (w0 > 0f ? 1 : 0) + (w1 > 0f ? 1 : 0) + (w2 > 0f ? 1 : 0) + (w3 > 0f ? 1 : 0);
        if (active == 0) return;
        sum += (double)w0 + w1 + w2 + w3;
        if (active == 1)
        {
            float w = w0 > 0f ? w0 : w1 > 0f ? w1 : w2 > 0f ? w2 : w3;
            int y = w0 > 0f ? y0 : w1 > 0f ? y1 : w2 > 0f ? y2 : y3;
            if (pfgm)
            {
                for (int k = 0; k < dim; k++) output[row + k] += w * (data[y + k] - points[x + k]);
            }
            else
            {
                for (int k = 0; k < dim; k++) output[row + k] += w * data[y + k];
            }

            return;
        }

        if (pfgm)
        {
            for (int k = 0; k < dim; k++)
            {
                float xv = points[x + k];
                output[row + k] += w0 * (data[y0 + k] - xv) + w1 * (data[y1 + k] - xv) + w2 * (data[y2 + k] - xv) + w3 * (data[y3 + k] - xv);
            }
        }
        else
        {
            for (int k = 0; k < dim; k++)
            {
                output[row + k] += w0 * data[y0 + k] + w1 * data[y1 + k] + w2 * data[y2 + k] + w3 * data[y3 + k];
            }
        }
    }

    /// <summary>
    /// Turns one row's accumulator (sum_j w y for PFGM++, sum_j w (y - x) for PFGM, in <paramref name="acc"/>) into the
    /// output: the posterior mean, or sqrt(N) E / (|E| + gamma) with E = (acc / sum, -z).
    /// </summary>
    private static void FinalizeRow(ArrayView<float> acc, int accRow, ArrayView<float> output, int row, float e, double sum,
        FieldParams p)
    {
        float inverse = (float)(1.0 / sum);
        if (p.IsPfgm == 0)
        {
            for (int k = 0; k < p.Dim; k++) output[row + k] = acc[accRow + k] * inverse;
            return;
        }

        double norm2 = (double)e * e;
        for (int k = 0; k < p.Dim; k++)
        {
            float field = acc[accRow + k] * inverse;
            norm2 += field * field;
        }

        float factor = p.SqrtDim / (XMath.Sqrt((float)norm2) + p.Gamma);
        for (int k = 0; k < p.Dim; k++) output[row + k] = acc[accRow + k] * inverse * factor;
        output[row + p.Dim] = -e * factor;
    }

    // ------------------------------------------------------------------------------------------------------------
    // Tiled path (CUDA): distance tile -> row softmax -> weighted-sum tile per chunk, then finalize.

    [GpuKernel]
    internal static void ResetKernel(ArrayView<float> accumulators, ArrayView<double> rowMin, ArrayView<double> rowSum, FieldParams p)
    {
        int stride = Grid.DimX * Group.DimX;
        for (int i = Grid.GlobalIndex.X; i < accumulators.Length; i += stride) accumulators[i] = 0f;
        for (int i = Grid.GlobalIndex.X; i < p.Batch; i += stride)
        {
            rowMin[i] = double.PositiveInfinity;
            rowSum[i] = 0.0;
        }
    }

    /// <summary>
    /// q[i, j] = |x_i - y_(start+j)|^2 + e_i^2 for a 64 x 64 tile. Thread (tx, ty) owns rows ty + 16a and columns
    /// tx + 16b (a, b in 0..3), so shared reads are broadcast (rows) or consecutive (columns): no bank conflicts.
    /// </summary>
    [GpuKernel]
    internal static void DistanceTileKernel(ArrayView<float> points, ArrayView<float> extra, ArrayView<float> data,
        ArrayView<double> distances, FieldParams p)
    {
        var xs = SharedMemory.Allocate<float>(TileK * TilePitch);
        var ys = SharedMemory.Allocate<float>(TileK * TilePitch);
        int tx = Group.IdxX, ty = Group.IdxY, thread = ty * TileThreads + tx;
        int i0 = Grid.IdxY * Tile, j0 = Grid.IdxX * Tile;
        int dim = p.Dim;
        var total = default(Block4x4Double);
        for (int k0 = 0; k0 < dim; k0 += TileK)
        {
            // 64 rows x 16 columns per operand, 4 per thread; rows past the end and columns past N load 0,
            // which adds (0 - 0)^2 = 0.
            LoadRowsTile(points, xs, i0, p.Batch, 0, k0, dim, thread);
            LoadRowsTile(data, ys, j0, p.ChunkCount, p.ChunkStart, k0, dim, thread);
            Group.Barrier();
            var partial = default(Block4x4);
            DistanceStep(xs, ys, 0, tx, ty, ref partial);
            DistanceStep(xs, ys, 1, tx, ty, ref partial);
            DistanceStep(xs, ys, 2, tx, ty, ref partial);
            DistanceStep(xs, ys, 3, tx, ty, ref partial);
            DistanceStep(xs, ys, 4, tx, ty, ref partial);
            DistanceStep(xs, ys, 5, tx, ty, ref partial);
            DistanceStep(xs, ys, 6, tx, ty, ref partial);
            DistanceStep(xs, ys, 7, tx, ty, ref partial);
            DistanceStep(xs, ys, 8, tx, ty, ref partial);
            DistanceStep(xs, ys, 9, tx, ty, ref partial);
            DistanceStep(xs, ys, 10, tx, ty, ref partial);
            DistanceStep(xs, ys, 11, tx, ty, ref partial);
            DistanceStep(xs, ys, 12, tx, ty, ref partial);
            DistanceStep(xs, ys, 13, tx, ty, ref partial);
            DistanceStep(xs, ys, 14, tx, ty, ref partial);
            DistanceStep(xs, ys, 15, tx, ty, ref partial);
            Promote(ref total, partial);
            Group.Barrier();
        }

        StoreDistanceRow(distances, extra, p, i0 + ty, j0 + tx, total.V00, total.V01, total.V02, total.V03);
        StoreDistanceRow(distances, extra, p, i0 + ty + 16, j0 + tx, total.V10, total.V11, total.V12, total.V13);
        StoreDistanceRow(distances, extra, p, i0 + ty + 32, j0 + tx, total.V20, total.V21, total.V22, total.V23);
        StoreDistanceRow(distances, extra, p, i0 + ty + 48, j0 + tx, total.V30, total.V31, total.V32, total.V33);
    }

    /// <summary>Stages rows [first, first+64) x columns [k0, k0+16) of a row-major matrix as tile[k * 65 + row].</summary>
    private static void LoadRowsTile(ArrayView<float> matrix, ArrayView<float> tile, int first, int rows, int rowOffset,
        int k0, int dim, int thread)
    {
        for (int l = 0; l < 4; l++)
        {
            int element = thread + l * TileThreads * TileThreads;
            int row = element >> 4, kk = element & (TileK - 1);
            int r = first + row, k = k0 + kk;
            tile[kk * TilePitch + row] = r < rows && k < dim ? matrix[(rowOffset + r) * dim + k] : 0f;
        }
    }

    private static void DistanceStep(ArrayView<float> xs, ArrayView<float> ys, int kk, int tx, int ty, ref Block4x4 b)
    {
        int offset = kk * TilePitch;
        float a0 = xs[offset + ty], a1 = xs[offset + ty + 16], a2 = xs[offset + ty + 32], a3 = xs[offset + ty + 48];
        float c0 = ys[offset + tx], c1 = ys[offset + tx + 16], c2 = ys[offset + tx + 32], c3 = ys[offset + tx + 48];
        float d;
        d = a0 - c0; b.V00 += d * d; d = a0 - c1; b.V01 += d * d; d = a0 - c2; b.V02 += d * d; d = a0 - c3; b.V03 += d * d;
        d = a1 - c0; b.V10 += d * d; d = a1 - c1; b.V11 += d * d; d = a1 - c2; b.V12 += d * d; d = a1 - c3; b.V13 += d * d;
        d = a2 - c0; b.V20 += d * d; d = a2 - c1; b.V21 += d * d; d = a2 - c2; b.V22 += d * d; d = a2 - c3; b.V23 += d * d;
        d = a3 - c0; b.V30 += d * d; d = a3 - c1; b.V31 += d * d; d = a3 - c2; b.V32 += d * d; d = a3 - c3; b.V33 += d * d;
    }

    private static void Promote(ref Block4x4Double t, Block4x4 b)
    {
        t.V00 += b.V00; t.V01 += b.V01; t.V02 += b.V02; t.V03 += b.V03;
        t.V10 += b.V10; t.V11 += b.V11; t.V12 += b.V12; t.V13 += b.V13;
        t.V20 += b.V20; t.V21 += b.V21; t.V22 += b.V22; t.V23 += b.V23;
        t.V30 += b.V30; t.V31 += b.V31; t.V32 += b.V32; t.V33 += b.V33;
    }

    private static void StoreDistanceRow(ArrayView<double> distances, ArrayView<float> extra, FieldParams p, int i, int j,
        double v0, double v1, double v2, double v3)
    {
        if (i >= p.Batch) return;
        double e = extra[i];
        e *= e;
        int row = i * p.ChunkStride;
        if (j < p.ChunkCount) distances[row + j] = v0 + e;
        if (j + 16 < p.ChunkCount) distances[row + j + 16] = v1 + e;
        if (j + 32 < p.ChunkCount) distances[row + j + 32] = v2 + e;
        if (j + 48 < p.ChunkCount) distances[row + j + 48] = v3 + e;
    }

    /// <summary>
    /// One group per row i: the chunk's minimum q, the new running minimum, the rescale factor of what was accumulated
    /// so far, the weights (q_min/q)^alpha of the chunk and the updated running sum. Group size: a power of two &lt;= 256.
    /// </summary>
    [GpuKernel]
    internal static void RowSoftmaxKernel(ArrayView<double> distances, ArrayView<float> weights, ArrayView<double> rowMin,
        ArrayView<double> rowSum, ArrayView<float> rowScale, FieldParams p)
    {
        var shared = SharedMemory.Allocate<double>(MaxReductionThreads);
        int i = Grid.IdxX, t = Group.IdxX, threads = Group.DimX;
        int row = i * p.ChunkStride;
        double local = double.PositiveInfinity;
        for (int j = t; j < p.ChunkCount; j += threads) local = Math.Min(local, distances[row + j]);
        shared[t] = local;
        Group.Barrier();
        for (int half = threads / 2; half > 0; half /= 2)
        {
            if (t < half) shared[t] = Math.Min(shared[t], shared[t + half]);
            Group.Barrier();
        }

        double previous = rowMin[i];
        double minimum = Math.Min(previous, shared[0]);
        Group.Barrier();
        double sum = 0;
        for (int j = t; j < p.ChunkCount; j += threads)
        {
            float w = RelativeWeight(distances[row + j], minimum, p.Alpha);
            weights[row + j] = w;
            sum += w;
        }

        shared[t] = sum;
        Group.Barrier();
        for (int half = threads / 2; half > 0; half /= 2)
        {
            if (t < half) shared[t] += shared[t + half];
            Group.Barrier();
        }

        if (t == 0)
        {
            float scale = RelativeWeight(previous, minimum, p.Alpha);
            rowScale[i] = scale;
            rowSum[i] = rowSum[i] * scale + shared[0];
            rowMin[i] = minimum;
        }
    }

    /// <summary>
    /// acc_s[i, n] = acc_s[i, n] * scale_i + sum over this split's columns j of W[i, j] y_(start+j)[n], for a 64 x 64
    /// tile of (rows i, columns n); grid z = split index s.
    /// </summary>
    [GpuKernel]
    internal static void WeightedSumTileKernel(ArrayView<float> weights, ArrayView<float> data, ArrayView<float> accumulators,
        ArrayView<float> rowScale, FieldParams p)
    {
        var ws = SharedMemory.Allocate<float>(TileK * TilePitch);
        var ys = SharedMemory.Allocate<float>(TileK * Tile);
        int tx = Group.IdxX, ty = Group.IdxY, thread = ty * TileThreads + tx;
        int n0 = Grid.IdxX * Tile, i0 = Grid.IdxY * Tile, split = Grid.IdxZ;
        int dim = p.Dim;
        int kStart = split * p.SplitLength;
        int kEnd = Math.Min(p.ChunkCount, kStart + p.SplitLength);
        var acc = default(Block4x4);
        for (int k0 = kStart; k0 < kEnd; k0 += TileK)
        {
            for (int l = 0; l < 4; l++)
            {
                int element = thread + l * TileThreads * TileThreads;
                // W tile: 64 rows x 16 columns, stored transposed (column-major) for the row-broadcast reads.
                int row = element >> 4, kk = element & (TileK - 1);
                int i = i0 + row, k = k0 + kk;
                ws[kk * TilePitch + row] = i < p.Batch && k < kEnd ? weights[i * p.ChunkStride + k] : 0f;
                // Y tile: 16 rows x 64 columns, loaded along N (coalesced).
                int yRow = element >> 6, col = element & (Tile - 1);
                int n = n0 + col, kY = k0 + yRow;
                ys[yRow * Tile + col] = n < dim && kY < kEnd ? data[(p.ChunkStart + kY) * dim + n] : 0f;
            }

            Group.Barrier();
            ProductStep(ws, ys, 0, tx, ty, ref acc);
            ProductStep(ws, ys, 1, tx, ty, ref acc);
            ProductStep(ws, ys, 2, tx, ty, ref acc);
            ProductStep(ws, ys, 3, tx, ty, ref acc);
            ProductStep(ws, ys, 4, tx, ty, ref acc);
            ProductStep(ws, ys, 5, tx, ty, ref acc);
            ProductStep(ws, ys, 6, tx, ty, ref acc);
            ProductStep(ws, ys, 7, tx, ty, ref acc);
            ProductStep(ws, ys, 8, tx, ty, ref acc);
            ProductStep(ws, ys, 9, tx, ty, ref acc);
            ProductStep(ws, ys, 10, tx, ty, ref acc);
            ProductStep(ws, ys, 11, tx, ty, ref acc);
            ProductStep(ws, ys, 12, tx, ty, ref acc);
            ProductStep(ws, ys, 13, tx, ty, ref acc);
            ProductStep(ws, ys, 14, tx, ty, ref acc);
            ProductStep(ws, ys, 15, tx, ty, ref acc);
            Group.Barrier();
        }

        int plane = split * p.Batch * dim;
        StoreAccumulatorRow(accumulators, rowScale, p, plane, i0 + ty, n0 + tx, acc.V00, acc.V01, acc.V02, acc.V03);
        StoreAccumulatorRow(accumulators, rowScale, p, plane, i0 + ty + 16, n0 + tx, acc.V10, acc.V11, acc.V12, acc.V13);
        StoreAccumulatorRow(accumulators, rowScale, p, plane, i0 + ty + 32, n0 + tx, acc.V20, acc.V21, acc.V22, acc.V23);
        StoreAccumulatorRow(accumulators, rowScale, p, plane, i0 + ty + 48, n0 + tx, acc.V30, acc.V31, acc.V32, acc.V33);
    }

    private static void ProductStep(ArrayView<float> ws, ArrayView<float> ys, int kk, int tx, int ty, ref Block4x4 b)
    {
        int wOffset = kk * TilePitch, yOffset = kk * Tile;
        float a0 = ws[wOffset + ty], a1 = ws[wOffset + ty + 16], a2 = ws[wOffset + ty + 32], a3 = ws[wOffset + ty + 48];
        float c0 = ys[yOffset + tx], c1 = ys[yOffset + tx + 16], c2 = ys[yOffset + tx + 32], c3 = ys[yOffset + tx + 48];
        b.V00 += a0 * c0; b.V01 += a0 * c1; b.V02 += a0 * c2; b.V03 += a0 * c3;
        b.V10 += a1 * c0; b.V11 += a1 * c1; b.V12 += a1 * c2; b.V13 += a1 * c3;
        b.V20 += a2 * c0; b.V21 += a2 * c1; b.V22 += a2 * c2; b.V23 += a2 * c3;
        b.V30 += a3 * c0; b.V31 += a3 * c1; b.V32 += a3 * c2; b.V33 += a3 * c3;
    }

    private static void StoreAccumulatorRow(ArrayView<float> accumulators, ArrayView<float> rowScale, FieldParams p, int plane,
        int i, int n, float v0, float v1, float v2, float v3)
    {
        if (i >= p.Batch) return;
        float scale = rowScale[i];
        int row = plane + i * p.Dim;
        if (n < p.Dim) accumulators[row + n] = accumulators[row + n] * scale + v0;
        if (n + 16 < p.Dim) accumulators[row + n + 16] = accumulators[row + n + 16] * scale + v1;
        if (n + 32 < p.Dim) accumulators[row + n + 32] = accumulators[row + n + 32] * scale + v2;
        if (n + 48 < p.Dim) accumulators[row + n + 48] = accumulators[row + n + 48] * scale + v3;
    }

    /// <summary>
    /// Per row: sums the split accumulators into plane 0, turns sum_j w y into the PFGM difference form (sum_j w y -
    /// sum w x) when needed, then writes the output with <see cref="FinalizeRow"/>.
    /// </summary>
    [GpuKernel]
    internal static void FinalizeKernel(ArrayView<float> points, ArrayView<float> extra, ArrayView<float> accumulators,
        ArrayView<double> rowSum, ArrayView<float> output, FieldParams p)
    {
        int planeSize = p.Batch * p.Dim;
        for (int i = Grid.GlobalIndex.X; i < p.Batch; i += Grid.DimX * Group.DimX)
        {
            int row = i * p.Dim;
            double sum = rowSum[i];
            for (int k = 0; k < p.Dim; k++)
            {
                float total = accumulators[row + k];
                for (int s = 1; s < p.Splits; s++) total += accumulators[s * planeSize + row + k];
                if (p.IsPfgm != 0) total -= (float)sum * points[row + k];
                accumulators[row + k] = total;
            }

            FinalizeRow(accumulators, row, output, i * p.OutWidth, extra[i], sum, p);
        }
    }
}
