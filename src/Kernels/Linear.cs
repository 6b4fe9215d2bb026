using ILGPU;
using ILGPU.Runtime;
using PoissonFlow.Kernels.Device;

namespace PoissonFlow.Kernels;

/// <summary>Activation fused into a <see cref="Linear"/> layer's epilogue.</summary>
public enum Activation
{
    /// <summary>Identity: the layer is affine.</summary>
    None,

    /// <summary>SiLU (swish), x * sigmoid(x).</summary>
    Silu,
}

/// <summary>Which GEMM kernel <see cref="Linear"/> launches.</summary>
public enum GemmVariant
{
    /// <summary><see cref="Tiled"/> on CUDA, <see cref="Coarse"/> on the CPU accelerator.</summary>
    Auto,

    /// <summary>64x64 output tiles staged through shared memory by 16x16 threads, 4x4 outputs each (the GPU kernel).</summary>
    Tiled,

    /// <summary>Barrier-free: each thread computes whole 8x8 output blocks in local variables (the CPU-emulator kernel).</summary>
    Coarse,
}

/// <summary>
/// Fully connected layer, PyTorch layout: y = x W^T + b with x (rows x in), W (out x in), b (out), y (rows x out),
/// all row-major. The forward pass can fuse SiLU into its epilogue (keeping the pre-activation for the backward
/// pass); the input-gradient GEMM can fuse the previous layer's SiLU derivative, so an MLP never launches a separate
/// activation kernel. Parameter gradients ACCUMULATE (+=, so micro-batches add up); activation gradients are
/// written (=). Every GEMM is one launch: the weight-gradient launch also reduces the bias gradient.
/// </summary>
public sealed class Linear
{
    /// <summary>Output tile edge of the tiled kernel.</summary>
    internal const int Tile = RegisterTile.Tile;

    /// <summary>Depth of the k-slice staged in shared memory per iteration of the tiled kernel.</summary>
    internal const int TileK = RegisterTile.TileK;

    /// <summary>Edge of the square block of C each thread of the coarse kernel computes.</summary>
    internal const int CoarseBlock = 8;

    /// <summary>Row pitch of the shared-memory tiles: one float of padding so column walks hit distinct banks.</summary>
    internal const int TilePitch = RegisterTile.TilePitch;

    private readonly ComputeDevice _device;
    private readonly Action<AcceleratorStream, KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, GemmArgs> _tiled;
    private readonly Action<AcceleratorStream, KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, GemmArgs> _coarse;

    private Linear(ComputeDevice device)
    {
        _device = device;
        _tiled = device.Accelerator.LoadKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, GemmArgs>(TiledKernel);
        _coarse = device.Accelerator.LoadKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, GemmArgs>(CoarseKernel);
    }

    /// <summary>This device's instance (kernels compiled once per device).</summary>
    public static Linear For(ComputeDevice device) => device.Operation(d => new Linear(d));

    /// <summary>The kernel used by the next calls; <see cref="GemmVariant.Auto"/> picks per accelerator.</summary>
    public GemmVariant Variant { get; set; } = GemmVariant.Auto;

    /// <summary>
    /// y = act(x W^T + b). With <see cref="Activation.Silu"/> and a non-empty <paramref name="preActivation"/> view,
    /// x W^T + b is also stored there (the backward pass needs it); an empty view skips that store (inference).
    /// <paramref name="bias"/> may be empty for a bias-free layer.
    /// </summary>
    public void Forward(ArrayView<float> input, ArrayView<float> weight, ArrayView<float> bias, ArrayView<float> output,
        ArrayView<float> preActivation, int rows, int inFeatures, int outFeatures, Activation activation)
    {
        RequireShape(rows, inFeatures, outFeatures);
        Require(input, (long)rows * inFeatures, "input");
        Require(weight, (long)outFeatures * inFeatures, "weight");
        Require(output, (long)rows * outFeatures, "output");
        if (bias.Length > 0) Require(bias, outFeatures, "bias");
        int flags = bias.Length > 0 ? GemmArgs.Bias : 0;
        if (activation == Activation.Silu)
        {
            flags |= GemmArgs.Silu;
            if (preActivation.Length > 0)
            {
                Require(preActivation, (long)rows * outFeatures, "pre-activation");
                flags |= GemmArgs.StorePre;
            }
        }

        // C (rows x out) = A (rows x in) * B (in x out) with A = x, B(k, n) = W[n, k].
        var args = new GemmArgs(rows, outFeatures, inFeatures, inFeatures, 1, 1, inFeatures, flags);
        Launch(input, weight, output, bias, preActivation, args);
    }

    /// <summary>
    /// dX = dY W (written, not accumulated). When the layer's input was silu(p) for a stored pre-activation p of the
    /// previous layer, pass it with <see cref="Activation.Silu"/>: the result is then the gradient with respect to p,
    /// dP = (dY W) * silu'(p), which is what the previous layer's backward pass consumes.
    /// </summary>
    public void BackwardInput(ArrayView<float> dOutput, ArrayView<float> weight, ArrayView<float> dInput,
        ArrayView<float> inputPreActivation, int rows, int inFeatures, int outFeatures, Activation inputActivation)
    {
        RequireShape(rows, inFeatures, outFeatures);
        Require(dOutput, (long)rows * outFeatures, "dOutput");
        Require(weight, (long)outFeatures * inFeatures, "weight");
        Require(dInput, (long)rows * inFeatures, "dInput");
        int flags = 0;
        if (inputActivation == Activation.Silu)
        {
            Require(inputPreActivation, (long)rows * inFeatures, "input pre-activation");
            flags |= GemmArgs.SiluGrad;
        }

        // C (rows x in) = A (rows x out) * B (out x in) with A = dY, B = W.
        var args = new GemmArgs(rows, inFeatures, outFeatures, outFeatures, 1, inFeatures, 1, flags);
        Launch(dOutput, weight, dInput, default, inputPreActivation, args);
    }

    /// <summary>
    /// dW += dY^T x and, when <paramref name="dBias"/> is not empty, db += column sums of dY, in one launch.
    /// <paramref name="dOutput"/> is the gradient with respect to this layer's pre-activation.
    /// </summary>
    public void BackwardWeights(ArrayView<float> input, ArrayView<float> dOutput, ArrayView<float> dWeight, ArrayView<float> dBias,
        int rows, int inFeatures, int outFeatures)
    {
        RequireShape(rows, inFeatures, outFeatures);
        Require(input, (long)rows * inFeatures, "input");
        Require(dOutput, (long)rows * outFeatures, "dOutput");
        Require(dWeight, (long)outFeatures * inFeatures, "dWeight");
        int flags = GemmArgs.Accumulate;
        if (dBias.Length > 0)
        {
            Require(dBias, outFeatures, "dBias");
            flags |= GemmArgs.BiasGrad;
        }

        // C (out x in) = A (out x rows) * B (rows x in) with A(m, k) = dY[k, m], B = x.
        var args = new GemmArgs(outFeatures, inFeatures, rows, 1, outFeatures, inFeatures, 1, flags);
        Launch(dOutput, input, dWeight, dBias, default, args);
    }

    /// <summary>Float64 reference of <see cref="Forward"/>; <paramref name="preActivation"/> receives x W^T + b.</summary>
    public static double[] ForwardReference(ReadOnlySpan<double> input, ReadOnlySpan<double> weight, ReadOnlySpan<double> bias,
        int rows, int inFeatures, int outFeatures, Activation activation, out double[] preActivation)
    {
        var output = new double[rows * outFeatures];
        preActivation = new double[rows * outFeatures];
        for (int r = 0; r < rows; r++)
        {
            for (int o = 0; o < outFeatures; o++)
            {
                double sum = bias.Length > 0 ? bias[o] : 0.0;
                for (int i = 0; i < inFeatures; i++) sum += input[r * inFeatures + i] * weight[o * inFeatures + i];
                preActivation[r * outFeatures + o] = sum;
                output[r * outFeatures + o] = activation == Activation.Silu ? Silu.Reference(sum) : sum;
            }
        }

        return output;
    }

    /// <summary>
    /// Float64 reference of the three backward products for a gradient <paramref name="dOutput"/> with respect to the
    /// layer's pre-activation: dX = dY W (times silu'(p) when <paramref name="inputPreActivation"/> is given),
    /// dW = dY^T x, db = column sums of dY (fresh values, not accumulated).
    /// </summary>
    public static (double[] DInput, double[] DWeight, double[] DBias) BackwardReference(ReadOnlySpan<double> input,
        ReadOnlySpan<double> weight, ReadOnlySpan<double> dOutput, ReadOnlySpan<double> inputPreActivation,
        int rows, int inFeatures, int outFeatures)
    {
        var dInput = new double[rows * inFeatures];
        var dWeight = new double[outFeatures * inFeatures];
        var dBias = new double[outFeatures];
        for (int r = 0; r < rows; r++)
        {
            for (int o = 0; o < outFeatures; o++)
            {
                double g = dOutput[r * outFeatures + o];
                dBias[o] += g;
                for (int i = 0; i < inFeatures; i++)
                {
                    dInput[r * inFeatures + i] += g * weight[o * inFeatures + i];
                    dWeight[o * inFeatures + i] += g * input[r * inFeatures + i];
                }
            }
        }

        if (inputPreActivation.Length > 0)
        {
            for (int j = 0; j < dInput.Length; j++) dInput[j] *= Silu.DerivativeReference(inputPreActivation[j]);
        }

        return (dInput, dWeight, dBias);
    }

    private void Launch(ArrayView<float> a, ArrayView<float> b, ArrayView<float> c, ArrayView<float> bias, ArrayView<float> aux, GemmArgs args)
    {
        var stream = _device.Accelerator.DefaultStream;
        var variant = Variant == GemmVariant.Auto ? (_device.IsCuda ? GemmVariant.Tiled : GemmVariant.Coarse) : Variant;
        if (variant == GemmVariant.Tiled)
        {
            var grid = new Index2D((args.N + Tile - 1) / Tile, (args.M + Tile - 1) / Tile);
            _tiled(stream, new KernelConfig(grid, new Index2D(16, 16)), a, b, c, bias, aux, args);
            return;
        }

        _coarse(stream, _device.GridStride(args.CoarseItems), a, b, c, bias, aux, args);
    }

    private static void RequireShape(int rows, int inFeatures, int outFeatures)
    {
        if (rows <= 0 || inFeatures <= 0 || outFeatures <= 0)
        {
            throw new ArgumentException($"linear: rows ({rows}), in features ({inFeatures}) and out features ({outFeatures}) must be positive");
        }
    }

    private static void Require(ArrayView<float> view, long needed, string what)
    {
        if (view.Length < needed) throw new ArgumentException($"linear: {what} has {view.Length} elements, needs {needed}");
    }

    /// <summary>
    /// The coarse (CPU) GEMM: C(m, n) = sum_k A(m, k) B(k, n) with A and B read through arbitrary strides, each thread
    /// computing whole 8x8 blocks of C in local variables (grid-stride over blocks). On the CPU emulator every view
    /// access is expensive, so the block is as large as possible: 16 loads feed 64 multiply-adds (measured 1.6x faster
    /// than 4x4 blocks). Edge blocks clamp their row and column indices so the inner loop needs no branches; the
    /// clamped duplicates are simply not stored. With a bias gradient, extra work items after the blocks sum rows of
    /// A (the bias gradient's reduction over the batch).
    /// </summary>
    [GpuKernel]
    internal static void CoarseKernel(ArrayView<float> a, ArrayView<float> b, ArrayView<float> c, ArrayView<float> bias,
        ArrayView<float> aux, GemmArgs g)
    {
        int tilesN = (g.N + CoarseBlock - 1) / CoarseBlock;
        int tiles = ((g.M + CoarseBlock - 1) / CoarseBlock) * tilesN;
        int items = g.CoarseItems, stride = Grid.DimX * Group.DimX;
        for (int t = Grid.GlobalIndex.X; t < items; t += stride)
        {
            if (t >= tiles)
            {
                BiasGradientRows(a, bias, g, (t - tiles) * CoarseBlock);
                continue;
            }

            int m0 = t / tilesN * CoarseBlock, n0 = t % tilesN * CoarseBlock;
            int lastM = g.M - 1, lastN = g.N - 1;
            int a0 = m0 * g.AStrideM, a1 = RowOffset(m0 + 1, lastM, g.AStrideM), a2 = RowOffset(m0 + 2, lastM, g.AStrideM), a3 = RowOffset(m0 + 3, lastM, g.AStrideM);
            int a4 = RowOffset(m0 + 4, lastM, g.AStrideM), a5 = RowOffset(m0 + 5, lastM, g.AStrideM), a6 = RowOffset(m0 + 6, lastM, g.AStrideM), a7 = RowOffset(m0 + 7, lastM, g.AStrideM);
            int b0 = n0 * g.BStrideN, b1 = RowOffset(n0 + 1, lastN, g.BStrideN), b2 = RowOffset(n0 + 2, lastN, g.BStrideN), b3 = RowOffset(n0 + 3, lastN, g.BStrideN);
            int b4 = RowOffset(n0 + 4, lastN, g.BStrideN), b5 = RowOffset(n0 + 5, lastN, g.BStrideN), b6 = RowOffset(n0 + 6, lastN, g.BStrideN), b7 = RowOffset(n0 + 7, lastN, g.BStrideN);
            float s00 = 0, s01 = 0, s02 = 0, s03 = 0, s04 = 0, s05 = 0, s06 = 0, s07 = 0;
            float s10 = 0, s11 = 0, s12 = 0, s13 = 0, s14 = 0, s15 = 0, s16 = 0, s17 = 0;
            float s20 = 0, s21 = 0, s22 = 0, s23 = 0, s24 = 0, s25 = 0, s26 = 0, s27 = 0;
            float s30 = 0, s31 = 0, s32 = 0, s33 = 0, s34 = 0, s35 = 0, s36 = 0, s37 = 0;
            float s40 = 0, s41 = 0, s42 = 0, s43 = 0, s44 = 0, s45 = 0, s46 = 0, s47 = 0;
            float s50 = 0, s51 = 0, s52 = 0, s53 = 0, s54 = 0, s55 = 0, s56 = 0, s57 = 0;
            float s60 = 0, s61 = 0, s62 = 0, s63 = 0, s64 = 0, s65 = 0, s66 = 0, s67 = 0;
            float s70 = 0, s71 = 0, s72 = 0, s73 = 0, s74 = 0, s75 = 0, s76 = 0, s77 = 0;
            int ka = 0, kb = 0, depth = g.K, strideA = g.AStrideK, strideB = g.BStrideK;
            for (int k = 0; k < depth; k++)
            {
                float x0 = a[a0 + ka], x1 = a[a1 + ka], x2 = a[a2 + ka], x3 = a[a3 + ka], x4 = a[a4 + ka], x5 = a[a5 + ka], x6 = a[a6 + ka], x7 = a[a7 + ka];
                float y0 = b[b0 + kb], y1 = b[b1 + kb], y2 = b[b2 + kb], y3 = b[b3 + kb], y4 = b[b4 + kb], y5 = b[b5 + kb], y6 = b[b6 + kb], y7 = b[b7 + kb];
                s00 += x0 * y0; s01 += x0 * y1; s02 += x0 * y2; s03 += x0 * y3; s04 += x0 * y4; s05 += x0 * y5; s06 += x0 * y6; s07 += x0 * y7;
                s10 += x1 * y0; s11 += x1 * y1; s12 += x1 * y2; s13 += x1 * y3; s14 += x1 * y4; s15 += x1 * y5; s16 += x1 * y6; s17 += x1 * y7;
                s20 += x2 * y0; s21 += x2 * y1; s22 += x2 * y2; s23 += x2 * y3; s24 += x2 * y4; s25 += x2 * y5; s26 += x2 * y6; s27 += x2 * y7;
                s30 += x3 * y0; s31 += x3 * y1; s32 += x3 * y2; s33 += x3 * y3; s34 += x3 * y4; s35 += x3 * y5; s36 += x3 * y6; s37 += x3 * y7;
                s40 += x4 * y0; s41 += x4 * y1; s42 += x4 * y2; s43 += x4 * y3; s44 += x4 * y4; s45 += x4 * y5; s46 += x4 * y6; s47 += x4 * y7;
                s50 += x5 * y0; s51 += x5 * y1; s52 += x5 * y2; s53 += x5 * y3; s54 += x5 * y4; s55 += x5 * y5; s56 += x5 * y6; s57 += x5 * y7;
                s60 += x6 * y0; s61 += x6 * y1; s62 += x6 * y2; s63 += x6 * y3; s64 += x6 * y4; s65 += x6 * y5; s66 += x6 * y6; s67 += x6 * y7;
                s70 += x7 * y0; s71 += x7 * y1; s72 += x7 * y2; s73 += x7 * y3; s74 += x7 * y4; s75 += x7 * y5; s76 += x7 * y6; s77 += x7 * y7;
                ka += strideA;
                kb += strideB;
            }

            StoreRow(c, bias, aux, g, m0 + 0, n0, s00, s01, s02, s03, s04, s05, s06, s07);
            StoreRow(c, bias, aux, g, m0 + 1, n0, s10, s11, s12, s13, s14, s15, s16, s17);
            StoreRow(c, bias, aux, g, m0 + 2, n0, s20, s21, s22, s23, s24, s25, s26, s27);
            StoreRow(c, bias, aux, g, m0 + 3, n0, s30, s31, s32, s33, s34, s35, s36, s37);
            StoreRow(c, bias, aux, g, m0 + 4, n0, s40, s41, s42, s43, s44, s45, s46, s47);
            StoreRow(c, bias, aux, g, m0 + 5, n0, s50, s51, s52, s53, s54, s55, s56, s57);
            StoreRow(c, bias, aux, g, m0 + 6, n0, s60, s61, s62, s63, s64, s65, s66, s67);
            StoreRow(c, bias, aux, g, m0 + 7, n0, s70, s71, s72, s73, s74, s75, s76, s77);
        }
    }

    /// <summary>
    /// The tiled (GPU) GEMM: each 16x16 group owns a 64x64 block of C; per k-slice of 16 it stages A and B tiles in
    /// shared memory (padded pitch), and each thread accumulates rows ty + 16 i and columns tx + 16 j (consecutive
    /// threads touch consecutive shared addresses and store consecutive C elements). Loads pick the thread-to-element
    /// mapping whose global addresses are contiguous for the operand's stride. For a bias gradient the first column
    /// of groups also sums the staged A rows.
    /// </summary>
    [GpuKernel]
    internal static void TiledKernel(ArrayView<float> a, ArrayView<float> b, ArrayView<float> c, ArrayView<float> bias,
        ArrayView<float> aux, GemmArgs g)
    {
        var aTile = SharedMemory.Allocate<float>(TileK * TilePitch);
        var bTile = SharedMemory.Allocate<float>(TileK * TilePitch);
        int tx = Group.IdxX, ty = Group.IdxY;
        int tid = ty * 16 + tx;
        int blockM = Grid.IdxY * Tile, blockN = Grid.IdxX * Tile;
        bool sumsBias = (g.Flags & GemmArgs.BiasGrad) != 0 && Grid.IdxX == 0 && tx == 0;
        var acc = default(RegisterTile);
        for (int k0 = 0; k0 < g.K; k0 += TileK)
        {
            for (int e = tid; e < TileK * Tile; e += 256)
            {
                int mm, kk;
                if (g.AStrideK == 1) { kk = e % TileK; mm = e / TileK; }
                else { mm = e % Tile; kk = e / Tile; }
                int m = blockM + mm, k = k0 + kk;
                aTile[kk * TilePitch + mm] = m < g.M && k < g.K ? a[m * g.AStrideM + k * g.AStrideK] : 0f;
                int nn;
                if (g.BStrideK == 1) { kk = e % TileK; nn = e / TileK; }
                else { nn = e % Tile; kk = e / Tile; }
                int n = blockN + nn;
                k = k0 + kk;
                bTile[kk * TilePitch + nn] = n < g.N && k < g.K ? b[k * g.BStrideK + n * g.BStrideN] : 0f;
            }

            Group.Barrier();
            RegisterTile.AddSlice(ref acc, aTile, bTile, tx, ty, sumsBias);

            Group.Barrier();
        }

        Store(c, bias, aux, g, blockM + ty, blockN + tx, 16, acc.S00, acc.S01, acc.S02, acc.S03);
        Store(c, bias, aux, g, blockM + ty + 16, blockN + tx, 16, acc.S10, acc.S11, acc.S12, acc.S13);
        Store(c, bias, aux, g, blockM + ty + 32, blockN + tx, 16, acc.S20, acc.S21, acc.S22, acc.S23);
        Store(c, bias, aux, g, blockM + ty + 48, blockN + tx, 16, acc.S30, acc.S31, acc.S32, acc.S33);
        if (sumsBias)
        {
            AddBias(bias, g, blockM + ty, acc.G0);
            AddBias(bias, g, blockM + ty + 16, acc.G1);
            AddBias(bias, g, blockM + ty + 32, acc.G2);
            AddBias(bias, g, blockM + ty + 48, acc.G3);
        }
    }

    /// <summary>Sums rows m0..m0+7 of A over k into the bias gradient (coarse kernel's extra work items).</summary>
    private static void BiasGradientRows(ArrayView<float> a, ArrayView<float> bias, GemmArgs g, int m0)
    {
        int lastM = g.M - 1;
        int a0 = m0 * g.AStrideM, a1 = RowOffset(m0 + 1, lastM, g.AStrideM), a2 = RowOffset(m0 + 2, lastM, g.AStrideM), a3 = RowOffset(m0 + 3, lastM, g.AStrideM);
        int a4 = RowOffset(m0 + 4, lastM, g.AStrideM), a5 = RowOffset(m0 + 5, lastM, g.AStrideM), a6 = RowOffset(m0 + 6, lastM, g.AStrideM), a7 = RowOffset(m0 + 7, lastM, g.AStrideM);
        float s0 = 0, s1 = 0, s2 = 0, s3 = 0, s4 = 0, s5 = 0, s6 = 0, s7 = 0;
        int ka = 0, depth = g.K, strideA = g.AStrideK;
        for (int k = 0; k < depth; k++)
        {
            s0 += a[a0 + ka]; s1 += a[a1 + ka]; s2 += a[a2 + ka]; s3 += a[a3 + ka]; s4 += a[a4 + ka]; s5 += a[a5 + ka]; s6 += a[a6 + ka]; s7 += a[a7 + ka];
            ka += strideA;
        }

        AddBias(bias, g, m0 + 0, s0);
        AddBias(bias, g, m0 + 1, s1);
        AddBias(bias, g, m0 + 2, s2);
        AddBias(bias, g, m0 + 3, s3);
        AddBias(bias, g, m0 + 4, s4);
        AddBias(bias, g, m0 + 5, s5);
        AddBias(bias, g, m0 + 6, s6);
        AddBias(bias, g, m0 + 7, s7);
    }

    /// <summary>Offset of row <paramref name="row"/> clamped to the last row (edge blocks recompute it instead of branching).</summary>
    private static int RowOffset(int row, int last, int stride) => Math.Min(row, last) * stride;

    private static void AddBias(ArrayView<float> bias, GemmArgs g, int m, float value)
    {
        if (m < g.M) bias[m] += value;
    }

    /// <summary>Stores eight consecutive values of row m from column n0 (one row of a coarse block).</summary>
    private static void StoreRow(ArrayView<float> c, ArrayView<float> bias, ArrayView<float> aux, GemmArgs g, int m, int n0,
        float v0, float v1, float v2, float v3, float v4, float v5, float v6, float v7)
    {
        Store(c, bias, aux, g, m, n0, 1, v0, v1, v2, v3);
        Store(c, bias, aux, g, m, n0 + 4, 1, v4, v5, v6, v7);
    }

    /// <summary>Stores four values of row m at columns n0, n0 + step, n0 + 2 step, n0 + 3 step.</summary>
    private static void Store(ArrayView<float> c, ArrayView<float> bias, ArrayView<float> aux, GemmArgs g, int m, int n0, int step,
        float v0, float v1, float v2, float v3)
    {
        if (m >= g.M) return;
        Epilogue(c, bias, aux, g, m, n0, v0);
        Epilogue(c, bias, aux, g, m, n0 + step, v1);
        Epilogue(c, bias, aux, g, m, n0 + 2 * step, v2);
        Epilogue(c, bias, aux, g, m, n0 + 3 * step, v3);
    }

    /// <summary>The fused epilogue for one element of C: accumulate, or bias + SiLU (storing the pre-activation), or SiLU'.</summary>
    private static void Epilogue(ArrayView<float> c, ArrayView<float> bias, ArrayView<float> aux, GemmArgs g, int m, int n, float value)
    {
        if (n >= g.N) return;
        int index = m * g.N + n;
        int flags = g.Flags;
        if ((flags & GemmArgs.Accumulate) != 0)
        {
            c[index] += value;
            return;
        }

        if ((flags & GemmArgs.Bias) != 0) value += bias[n];
        if ((flags & GemmArgs.SiluGrad) != 0) value *= Silu.Derivative(aux[index]);
        if ((flags & GemmArgs.Silu) != 0)
        {
            if ((flags & GemmArgs.StorePre) != 0) aux[index] = value;
            value = Silu.Value(value);
        }

        c[index] = value;
    }
}

/// <summary>
/// Shape, operand strides and epilogue of one GEMM C(M x N, row-major) = A(M x K) B(K x N), where
/// A(m, k) = a[m * AStrideM + k * AStrideK] and B(k, n) = b[k * BStrideK + n * BStrideN]: the strides express every
/// transpose a linear layer's forward and backward passes need without copying.
/// </summary>
internal readonly record struct GemmArgs(int M, int N, int K, int AStrideM, int AStrideK, int BStrideK, int BStrideN, int Flags)
{
    /// <summary>Add bias[n] to every element.</summary>
    public const int Bias = 1;

    /// <summary>Apply SiLU after the bias.</summary>
    public const int Silu = 2;

    /// <summary>With <see cref="Silu"/>: store the pre-activation in the auxiliary view.</summary>
    public const int StorePre = 4;

    /// <summary>Multiply by silu'(aux[m, n]).</summary>
    public const int SiluGrad = 8;

    /// <summary>C += result (parameter gradients).</summary>
    public const int Accumulate = 16;

    /// <summary>Also accumulate the row sums of A into the bias view (bias gradient).</summary>
    public const int BiasGrad = 32;

    /// <summary>Work items of the coarse kernel: the 8x8 blocks of C, plus one per 8 bias rows when reducing the bias gradient.</summary>
    public int CoarseItems => ((M + 7) / 8) * ((N + 7) / 8) + ((Flags & BiasGrad) != 0 ? (M + 7) / 8 : 0);
}
