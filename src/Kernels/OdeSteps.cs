using ILGPU;
using ILGPU.Algorithms;
using ILGPU.Runtime;
using PoissonFlow.Kernels.Device;

namespace PoissonFlow.Kernels;

/// <summary>
/// How the predicted field becomes the PFGM drift: dx/ds = <see cref="DriftScale"/> * v_x / (v_z + 1e-5), with v_z
/// rebuilt from |v_x| when z &lt; <see cref="ZExp"/> and <see cref="Gamma"/> &gt; 0 (spec section 5, z-substitution).
/// </summary>
/// <param name="ZStage">The z at which the field was evaluated (drives the substitution).</param>
/// <param name="DriftScale">Multiplies dx/dz: z for the ODE in t = ln z, 1 for the ODE in z itself.</param>
/// <param name="Gamma">gamma of the field normalisation; 0 disables the substitution.</param>
/// <param name="ZExp">Below this z the network's v_z is replaced.</param>
public readonly record struct DriftSettings(float ZStage, float DriftScale, float Gamma, float ZExp);

/// <summary>
/// A linear combination of stored RK stages: next = base + sum_j W_j * k[slot_j] + SelfWeight * k_new, plus the z value
/// to write for the next field evaluation. Up to 7 stored stages (Dormand-Prince). Build it with <see cref="Create"/>.
/// </summary>
public struct StageCombination
{
    /// <summary>Weights of the stored stages (only the first <see cref="Count"/> are used).</summary>
    public float W0, W1, W2, W3, W4, W5, W6;

    /// <summary>Physical slot of each stored stage in the stage buffer.</summary>
    public int S0, S1, S2, S3, S4, S5, S6;

    /// <summary>How many stored stages enter the combination (0..7).</summary>
    public int Count;

    /// <summary>Weight of the stage being computed by the same kernel (unused by the plain combine).</summary>
    public float SelfWeight;

    /// <summary>The z of the next field evaluation, written to every row of the z buffer.</summary>
    public float ZNext;

    /// <summary>Non-zero when the kernel writes the combination and z; zero when it only stores the new stage.</summary>
    public int WriteNext;

    /// <summary>A combination of stored stages <paramref name="slots"/> with <paramref name="weights"/>, plus the new stage.</summary>
    /// <exception cref="ArgumentException">More than 7 stages, or weights and slots of different lengths.</exception>
    public static StageCombination Create(ReadOnlySpan<double> weights, ReadOnlySpan<int> slots, double selfWeight, double zNext)
    {
        if (weights.Length != slots.Length || weights.Length > 7)
        {
            throw new ArgumentException($"stage combination: {weights.Length} weights for {slots.Length} slots (at most 7)");
        }

        var c = new StageCombination { Count = weights.Length, SelfWeight = (float)selfWeight, ZNext = (float)zNext, WriteNext = 1 };
        Span<float> w = stackalloc float[7];
        Span<int> s = stackalloc int[7];
        for (int j = 0; j < weights.Length; j++)
        {
            w[j] = (float)weights[j];
            s[j] = slots[j];
        }

        (c.W0, c.W1, c.W2, c.W3, c.W4, c.W5, c.W6) = (w[0], w[1], w[2], w[3], w[4], w[5], w[6]);
        (c.S0, c.S1, c.S2, c.S3, c.S4, c.S5, c.S6) = (s[0], s[1], s[2], s[3], s[4], s[5], s[6]);
        return c;
    }

    /// <summary>Only store the new stage; write neither a combination nor z.</summary>
    public static StageCombination StoreOnly => new() { WriteNext = 0 };

    /// <summary>sum_j W_j k[S_j * stride + index], unrolled by hand (ILGPU 1.5.3 does not unroll).</summary>
    internal readonly float Accumulate(ArrayView<float> k, long slotStride, long index)
    {
        float sum = 0f;
        if (Count > 0) sum += W0 * k[S0 * slotStride + index];
        if (Count > 1) sum += W1 * k[S1 * slotStride + index];
        if (Count > 2) sum += W2 * k[S2 * slotStride + index];
        if (Count > 3) sum += W3 * k[S3 * slotStride + index];
        if (Count > 4) sum += W4 * k[S4 * slotStride + index];
        if (Count > 5) sum += W5 * k[S5 * slotStride + index];
        if (Count > 6) sum += W6 * k[S6 * slotStride + index];
        return sum;
    }

    internal readonly double Weight(int j) => j switch { 0 => W0, 1 => W1, 2 => W2, 3 => W3, 4 => W4, 5 => W5, _ => W6 };

    internal readonly int Slot(int j) => j switch { 0 => S0, 1 => S1, 2 => S2, 3 => S3, 4 => S4, 5 => S5, _ => S6 };
}

/// <summary>
/// Row shape of the per-sample kernels: batch rows of dim values, and the lanes cooperating on one row (1, or a full
/// warp of 32). A kernel parameter, so public: ILGPU's CPU backend cannot load a kernel whose parameter types it cannot see.
/// </summary>
public struct RowShape
{
    /// <summary>Number of rows (samples).</summary>
    public int Batch;

    /// <summary>Values per row.</summary>
    public int Dim;

    /// <summary>Threads per row: 1 or 32.</summary>
    public int LanesPerRow;
}

/// <summary>
/// Fused ODE-step kernels for the PFGM samplers. Each RK stage is ONE launch after the field evaluation: it turns the
/// predicted field into the drift (per-sample |v_x| and the z-substitution), stores the stage, forms the next stage's
/// input and writes its z. The last Dormand-Prince stage instead reduces the scaled error per sample, so the only
/// host round-trip of an adaptive step is reading B partial sums.
/// Rows are handled by one thread each on the CPU emulator (no barriers or shuffles, which it emulates slowly), and
/// by one warp each on CUDA when rows are long (coalesced loads, shuffle reduction).
/// </summary>
public sealed class OdeSteps
{
    /// <summary>Added to v_z before dividing, as in the official code.</summary>
    public const float VzEpsilon = 1e-5f;

    private readonly ComputeDevice _device;
    private readonly Action<AcceleratorStream, KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, RowShape, DriftSettings, int, StageCombination> _driftStage;
    private readonly Action<AcceleratorStream, KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, RowShape, DriftSettings, int, StageCombination, float, float> _driftError;
    private readonly Action<AcceleratorStream, KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, int, int, StageCombination> _combine;
    private readonly Action<AcceleratorStream, KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, RowShape, float, float, float, float> _scaledNorm;

    private OdeSteps(ComputeDevice device)
    {
        _device = device;
        var accelerator = device.Accelerator;
        _driftStage = accelerator.LoadKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, RowShape, DriftSettings, int, StageCombination>(DriftStageKernel);
        _driftError = accelerator.LoadKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, RowShape, DriftSettings, int, StageCombination, float, float>(DriftErrorKernel);
        _combine = accelerator.LoadKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, int, int, StageCombination>(CombineKernel);
        _scaledNorm = accelerator.LoadKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, RowShape, float, float, float, float>(ScaledNormKernel);
    }

    /// <summary>This device's instance (kernels compiled once per device).</summary>
    public static OdeSteps For(ComputeDevice device) => device.Operation(d => new OdeSteps(d));

    /// <summary>
    /// One fused RK stage: k[outSlot] = drift(field); then, when <paramref name="combination"/> writes,
    /// next = base + combination(k) and z[row] = ZNext for every row. <paramref name="field"/> is B x (N+1),
    /// <paramref name="stages"/> holds slots of B x N, <paramref name="next"/> may be <paramref name="baseState"/>
    /// (in-place update) but must not overlap <paramref name="stages"/>.
    /// </summary>
    public void DriftStage(ArrayView<float> field, ArrayView<float> stages, int outSlot, ArrayView<float> baseState,
        ArrayView<float> next, ArrayView<float> z, int batch, int dim, DriftSettings drift, StageCombination combination)
    {
        CheckStageViews(field, stages, outSlot, combination, batch, dim);
        CheckLength(baseState, (long)batch * dim, "base state");
        CheckLength(next, (long)batch * dim, "next state");
        CheckLength(z, batch, "z buffer");
        var (config, shape) = RowLaunch(batch, dim);
        _driftStage(_device.Accelerator.DefaultStream, config, field, stages, baseState, next, z, shape, drift, outSlot, combination);
    }

    /// <summary>
    /// The last Dormand-Prince stage: k[outSlot] = drift(field), err = combination(k) (SelfWeight on the new stage),
    /// and rowError[b] = sum_i (err_i / (atol + rtol max(|yOld_i|, |yNew_i|)))^2 for each sample b.
    /// </summary>
    public void DriftError(ArrayView<float> field, ArrayView<float> stages, int outSlot, ArrayView<float> yOld,
        ArrayView<float> yNew, ArrayView<float> rowError, int batch, int dim, DriftSettings drift,
        StageCombination errorWeights, float rtol, float atol)
    {
        CheckStageViews(field, stages, outSlot, errorWeights, batch, dim);
        CheckLength(yOld, (long)batch * dim, "old state");
        CheckLength(yNew, (long)batch * dim, "new state");
        CheckLength(rowError, batch, "row error");
        var (config, shape) = RowLaunch(batch, dim);
        _driftError(_device.Accelerator.DefaultStream, config, field, stages, yOld, yNew, rowError, shape, drift, outSlot, errorWeights, rtol, atol);
    }

    /// <summary>next = base + combination(k) element-wise and z[row] = ZNext (the first stage input of an RK step).</summary>
    public void Combine(ArrayView<float> stages, ArrayView<float> baseState, ArrayView<float> next, ArrayView<float> z,
        int batch, int dim, StageCombination combination)
    {
        CheckSlots(stages, combination, batch, dim);
        CheckLength(baseState, (long)batch * dim, "base state");
        CheckLength(next, (long)batch * dim, "next state");
        CheckLength(z, batch, "z buffer");
        _combine(_device.Accelerator.DefaultStream, _device.GridStride((long)batch * dim), stages, baseState, next, z, batch, dim, combination);
    }

    /// <summary>rowSum[b] = sum_i ((cu u_i + cw w_i) / (atol + rtol |y_i|))^2 (scipy's initial step selection).</summary>
    public void ScaledNorm(ArrayView<float> y, ArrayView<float> u, ArrayView<float> w, ArrayView<float> rowSum,
        int batch, int dim, float cu, float cw, float rtol, float atol)
    {
        long n = (long)batch * dim;
        CheckLength(y, n, "y");
        CheckLength(u, n, "u");
        CheckLength(w, n, "w");
        CheckLength(rowSum, batch, "row sum");
        var (config, shape) = RowLaunch(batch, dim);
        _scaledNorm(_device.Accelerator.DefaultStream, config, y, u, w, rowSum, shape, cu, cw, rtol, atol);
    }

    /// <summary>Float64 reference of the drift of one batch: B x (N+1) field to B x N drift.</summary>
    public static double[] DriftReference(ReadOnlySpan<double> field, int batch, int dim, DriftSettings drift)
    {
        var result = new double[batch * dim];
        double sqrtDim = Math.Sqrt(dim);
        for (int b = 0; b < batch; b++)
        {
            var row = field.Slice(b * (dim + 1), dim + 1);
            double vz = row[dim];
            if (drift.Gamma > 0 && drift.ZStage < drift.ZExp)
            {
                double sum = 0;
                for (int i = 0; i < dim; i++) sum += row[i] * row[i];
                double n1 = Math.Sqrt(sum) / sqrtDim;
                double a = drift.Gamma * n1 / (1 - n1);
                double norm = Math.Sqrt(a * a + (double)drift.ZStage * drift.ZStage);
                vz = -sqrtDim * drift.ZStage / (norm + drift.Gamma);
            }

            double factor = drift.DriftScale / (vz + VzEpsilon);
            for (int i = 0; i < dim; i++) result[b * dim + i] = row[i] * factor;
        }

        return result;
    }

    /// <summary>Float64 reference of <see cref="DriftStage"/>'s combination: base + combination(k) + SelfWeight * drift.</summary>
    public static double[] CombineReference(ReadOnlySpan<double> stages, ReadOnlySpan<double> baseState,
        ReadOnlySpan<double> newStage, StageCombination combination)
    {
        int n = baseState.Length;
        var result = new double[n];
        for (int i = 0; i < n; i++)
        {
            double sum = baseState[i] + combination.SelfWeight * (newStage.IsEmpty ? 0 : newStage[i]);
            for (int j = 0; j < combination.Count; j++) sum += combination.Weight(j) * stages[combination.Slot(j) * n + i];
            result[i] = sum;
        }

        return result;
    }

    /// <summary>Float64 reference of <see cref="DriftError"/>'s per-sample sums given the new stage.</summary>
    public static double[] ErrorReference(ReadOnlySpan<double> stages, ReadOnlySpan<double> newStage, ReadOnlySpan<double> yOld,
        ReadOnlySpan<double> yNew, int batch, int dim, StageCombination errorWeights, double rtol, double atol)
    {
        var zero = new double[yOld.Length];
        var err = CombineReference(stages, zero, newStage, errorWeights);
        var rows = new double[batch];
        for (int b = 0; b < batch; b++)
        {
            for (int i = b * dim; i < (b + 1) * dim; i++)
            {
                double r = err[i] / (atol + rtol * Math.Max(Math.Abs(yOld[i]), Math.Abs(yNew[i])));
                rows[b] += r * r;
            }
        }

        return rows;
    }

    /// <summary>Forces 1 or 32 lanes per row (tests run the CUDA warp-per-row path on the CPU emulator with it).</summary>
    internal int? LanesPerRowOverride { get; set; }

    /// <summary>
    /// Launch shape for per-row kernels: one thread per row on the CPU emulator and for short rows; a warp (32 lanes)
    /// per row on CUDA when rows are long enough to feed it.
    /// </summary>
    internal (KernelConfig Config, RowShape Shape) RowLaunch(int batch, int dim)
    {
        int lanes = LanesPerRowOverride ?? (_device.IsCuda && dim >= 64 ? 32 : 1);
        // A warp per row needs whole warps per group; the CPU's grid-stride shape has single-thread groups.
        var config = lanes > 1 && !_device.IsCuda ? new KernelConfig(_device.Accelerator.NumMultiprocessors, lanes) : _device.GridStride((long)batch * lanes);
        return (config, new RowShape { Batch = batch, Dim = dim, LanesPerRow = lanes });
    }

    private static void CheckStageViews(ArrayView<float> field, ArrayView<float> stages, int outSlot, StageCombination c, int batch, int dim)
    {
        CheckLength(field, (long)batch * (dim + 1), "field");
        CheckSlots(stages, c, batch, dim);
        long slots = stages.Length / ((long)batch * dim);
        if (outSlot < 0 || outSlot >= slots) throw new ArgumentException($"stage slot {outSlot} outside the {slots} slots of the stage buffer");
    }

    private static void CheckSlots(ArrayView<float> stages, StageCombination c, int batch, int dim)
    {
        if (batch <= 0 || dim <= 0) throw new ArgumentException($"batch {batch} and dim {dim} must be positive");
        long slotSize = (long)batch * dim;
        if (stages.Length % slotSize != 0) throw new ArgumentException($"stage buffer of {stages.Length} values is not a whole number of {batch}x{dim} slots");
        long slots = stages.Length / slotSize;
        for (int j = 0; j < c.Count; j++)
        {
            if (c.Slot(j) < 0 || c.Slot(j) >= slots) throw new ArgumentException($"combination slot {c.Slot(j)} outside the {slots} slots of the stage buffer");
        }
    }

    private static void CheckLength(ArrayView<float> view, long expected, string what)
    {
        if (view.Length != expected) throw new ArgumentException($"{what}: {view.Length} values, expected {expected}");
    }

    /// <summary>Sum over the lanes of one row (all lanes get it). Lanes are 1 or a full warp, so shuffles are warp-uniform.</summary>
    internal static float RowSum(float partial, int lanes)
    {
        if (lanes == 1) return partial;
        for (int offset = lanes / 2; offset > 0; offset /= 2) partial += Warp.ShuffleXor(partial, offset);
        return partial;
    }

    /// <summary>The factor f with drift = f * v_x for one row: DriftScale / (v_z + eps), v_z substituted below ZExp.</summary>
    private static float DriftFactor(ArrayView<float> field, long rowBase, int lane, RowShape shape, DriftSettings drift)
    {
        float vz = field[rowBase + shape.Dim];
        // Uniform over the whole launch, so the reduction below is entered by all lanes or none.
        if (drift.Gamma > 0f && drift.ZStage < drift.ZExp)
        {
            float sum = 0f;
            for (long i = lane; i < shape.Dim; i += shape.LanesPerRow)
            {
                float v = field[rowBase + i];
                sum += v * v;
            }

            sum = RowSum(sum, shape.LanesPerRow);
            float sqrtDim = XMath.Sqrt((float)shape.Dim);
            float n1 = XMath.Sqrt(sum) / sqrtDim;
            float a = drift.Gamma * n1 / (1f - n1);
            float norm = XMath.Sqrt(a * a + drift.ZStage * drift.ZStage);
            vz = -sqrtDim * drift.ZStage / (norm + drift.Gamma);
        }

        return drift.DriftScale / (vz + VzEpsilon);
    }

    [GpuKernel]
    internal static void DriftStageKernel(ArrayView<float> field, ArrayView<float> stages, ArrayView<float> baseState,
        ArrayView<float> next, ArrayView<float> z, RowShape shape, DriftSettings drift, int outSlot, StageCombination c)
    {
        long thread = Grid.GlobalIndex.X;
        long rowStride = (long)Grid.DimX * Group.DimX / shape.LanesPerRow;
        int lane = (int)(thread % shape.LanesPerRow);
        long slotStride = (long)shape.Batch * shape.Dim;
        long outBase = outSlot * slotStride;
        for (long row = thread / shape.LanesPerRow; row < shape.Batch; row += rowStride)
        {
            long fieldBase = row * (shape.Dim + 1);
            float factor = DriftFactor(field, fieldBase, lane, shape, drift);
            long stateBase = row * shape.Dim;
            for (long i = lane; i < shape.Dim; i += shape.LanesPerRow)
            {
                float k = field[fieldBase + i] * factor;
                stages[outBase + stateBase + i] = k;
                if (c.WriteNext != 0)
                {
                    next[stateBase + i] = baseState[stateBase + i] + c.Accumulate(stages, slotStride, stateBase + i) + c.SelfWeight * k;
                }
            }

            if (c.WriteNext != 0 && lane == 0) z[row] = c.ZNext;
        }
    }

    [GpuKernel]
    internal static void DriftErrorKernel(ArrayView<float> field, ArrayView<float> stages, ArrayView<float> yOld,
        ArrayView<float> yNew, ArrayView<float> rowError, RowShape shape, DriftSettings drift, int outSlot,
        StageCombination e, float rtol, float atol)
    {
        long thread = Grid.GlobalIndex.X;
        long rowStride = (long)Grid.DimX * Group.DimX / shape.LanesPerRow;
        int lane = (int)(thread % shape.LanesPerRow);
        long slotStride = (long)shape.Batch * shape.Dim;
        long outBase = outSlot * slotStride;
        for (long row = thread / shape.LanesPerRow; row < shape.Batch; row += rowStride)
        {
            long fieldBase = row * (shape.Dim + 1);
            float factor = DriftFactor(field, fieldBase, lane, shape, drift);
            long stateBase = row * shape.Dim;
            float sum = 0f;
            for (long i = lane; i < shape.Dim; i += shape.LanesPerRow)
            {
                long index = stateBase + i;
                float k = field[fieldBase + i] * factor;
                stages[outBase + index] = k;
                float err = e.Accumulate(stages, slotStride, index) + e.SelfWeight * k;
                float scale = atol + rtol * XMath.Max(XMath.Abs(yOld[index]), XMath.Abs(yNew[index]));
                float r = err / scale;
                sum += r * r;
            }

            sum = RowSum(sum, shape.LanesPerRow);
            if (lane == 0) rowError[row] = sum;
        }
    }

    [GpuKernel]
    internal static void CombineKernel(ArrayView<float> stages, ArrayView<float> baseState, ArrayView<float> next,
        ArrayView<float> z, int batch, int dim, StageCombination c)
    {
        long n = (long)batch * dim;
        long stride = (long)Grid.DimX * Group.DimX;
        for (long i = Grid.GlobalIndex.X; i < n; i += stride)
        {
            next[i] = baseState[i] + c.Accumulate(stages, n, i);
            if (i < batch) z[i] = c.ZNext;
        }
    }

    [GpuKernel]
    internal static void ScaledNormKernel(ArrayView<float> y, ArrayView<float> u, ArrayView<float> w, ArrayView<float> rowSum,
        RowShape shape, float cu, float cw, float rtol, float atol)
    {
        long thread = Grid.GlobalIndex.X;
        long rowStride = (long)Grid.DimX * Group.DimX / shape.LanesPerRow;
        int lane = (int)(thread % shape.LanesPerRow);
        for (long row = thread / shape.LanesPerRow; row < shape.Batch; row += rowStride)
        {
            float sum = 0f;
            for (long i = row * shape.Dim + lane; i < (row + 1) * shape.Dim; i += shape.LanesPerRow)
            {
                float r = (cu * u[i] + cw * w[i]) / (atol + rtol * XMath.Abs(y[i]));
                sum += r * r;
            }

            sum = RowSum(sum, shape.LanesPerRow);
            if (lane == 0) rowSum[row] = sum;
        }
    }
}
