using ILGPU;
using ILGPU.Runtime;
using PoissonFlow.Kernels.Device;

namespace PoissonFlow.Kernels.Image;

// 2-D convolution, NCHW float32, square kernels 3x3 (padding 1, stride 1 or 2) and 1x1 (stride 1), with bias.
// All three passes are one implicit GEMM each, C(rows x cols) = A(rows x depth) B(depth x cols), whose operands are
// gathered on the fly from the tensors (no im2col buffer):
//   forward          out[n,co,oh,ow] = b[co] + sum_{ci,kh,kw} w[co,ci,kh,kw] x[n,ci,oh*s-p+kh,ow*s-p+kw]
//                    rows = Cout, cols = N*Ho*Wo, depth = Cin*K*K                  (written, =)
//   backward input   dx[n,ci,ih,iw] = sum_{co,kh,kw} w[co,ci,kh,kw] dy[n,co,(ih+p-kh)/s,(iw+p-kw)/s]
//                    (terms whose division is inexact or out of range vanish)
//                    rows = Cin, cols = N*H*W, depth = Cout*K*K                    (written, =)
//   backward weights dw[co,ci,kh,kw] += sum_{n,oh,ow} dy[n,co,oh,ow] x[n,ci,oh*s-p+kh,ow*s-p+kw]
//                    rows = Cout, cols = Cin*K*K, depth = N*Ho*Wo; db[co] += sum_{n,oh,ow} dy  (accumulated, +=)
// FLOPs (multiply + add = 2): forward 2*N*Cout*Ho*Wo*Cin*K*K (+ N*Cout*Ho*Wo bias adds); backward input the same
// (counting only the terms that exist for stride 1, a quarter of the gathered ones are non-zero for stride 2);
// backward weights 2*N*Cout*Ho*Wo*Cin*K*K plus N*Cout*Ho*Wo for the bias. A training step costs 3x the forward.
// Two kernels per pass, chosen per accelerator: a tiled one for CUDA (64x64 output tile per 16x16 group, 16-deep
// k-slices staged in 8.3 KB of shared memory, 4x4 outputs per thread in registers) and a barrier-free coarse one for
// the CPU emulator (each thread computes whole 4x4 output blocks, grid-stride, accumulating in locals).

/// <summary>Which implicit-GEMM kernel <see cref="Conv2d"/> launches.</summary>
public enum Conv2dVariant
{
    /// <summary><see cref="Tiled"/> on CUDA, <see cref="Coarse"/> on the CPU accelerator.</summary>
    Auto,

    /// <summary>Shared-memory tiles and register blocking (the GPU kernel; barriers make it very slow on the CPU emulator).</summary>
    Tiled,

    /// <summary>Barrier-free: each thread computes 4x4 output blocks in registers (the CPU-emulator kernel).</summary>
    Coarse,
}

/// <summary>
/// Shape of a 2-D convolution over an NCHW batch: kernel 3 (padding 1, stride 1 or 2) or kernel 1 (padding 0, stride 1).
/// Weights are laid out [OutChannels, InChannels, KernelSize, KernelSize] (PyTorch), bias [OutChannels].
/// </summary>
public readonly struct Conv2dShape
{
    /// <summary>Creates and validates a shape.</summary>
    /// <exception cref="ArgumentException">A dimension is not positive, or the kernel/stride pair is unsupported.</exception>
    public Conv2dShape(int batch, int inChannels, int height, int width, int outChannels, int kernelSize, int stride)
    {
        if (batch <= 0 || inChannels <= 0 || height <= 0 || width <= 0 || outChannels <= 0)
        {
            throw new ArgumentException(
                $"conv2d: batch ({batch}), in channels ({inChannels}), height ({height}), width ({width}) and out channels ({outChannels}) must be positive");
        }

        if (!(kernelSize == 3 && (stride == 1 || stride == 2)) && !(kernelSize == 1 && stride == 1))
        {
            throw new ArgumentException($"conv2d: kernel {kernelSize} with stride {stride} is not supported (3x3 stride 1 or 2, 1x1 stride 1)");
        }

        Batch = batch;
        InChannels = inChannels;
        Height = height;
        Width = width;
        OutChannels = outChannels;
        KernelSize = kernelSize;
        Stride = stride;
        Padding = kernelSize / 2;
        OutHeight = (height + 2 * Padding - kernelSize) / stride + 1;
        OutWidth = (width + 2 * Padding - kernelSize) / stride + 1;
    }

    /// <summary>Batch size N.</summary>
    public int Batch { get; }

    /// <summary>Input channels.</summary>
    public int InChannels { get; }

    /// <summary>Input height.</summary>
    public int Height { get; }

    /// <summary>Input width.</summary>
    public int Width { get; }

    /// <summary>Output channels.</summary>
    public int OutChannels { get; }

    /// <summary>Kernel edge (1 or 3).</summary>
    public int KernelSize { get; }

    /// <summary>Stride (1 or 2).</summary>
    public int Stride { get; }

    /// <summary>Zero padding on every side: KernelSize / 2.</summary>
    public int Padding { get; }

    /// <summary>Output height: (Height + 2 Padding - KernelSize) / Stride + 1.</summary>
    public int OutHeight { get; }

    /// <summary>Output width.</summary>
    public int OutWidth { get; }

    /// <summary>Elements of the input tensor.</summary>
    public long InputLength => (long)Batch * InChannels * Height * Width;

    /// <summary>Elements of the output tensor.</summary>
    public long OutputLength => (long)Batch * OutChannels * OutHeight * OutWidth;

    /// <summary>Elements of the weight tensor.</summary>
    public long WeightLength => (long)OutChannels * InChannels * KernelSize * KernelSize;

    /// <summary>FLOPs of one forward pass (multiply-adds counted as 2, plus the bias adds).</summary>
    public long ForwardFlops => OutputLength * (2L * InChannels * KernelSize * KernelSize + 1);

    internal int Taps => KernelSize * KernelSize;

    internal int OutSpatial => OutHeight * OutWidth;

    internal int InSpatial => Height * Width;
}

/// <summary>
/// Forward and backward passes of a 2-D convolution with bias (see <see cref="Conv2dShape"/>), each one implicit-GEMM
/// launch. Activation gradients are written (=); weight and bias gradients accumulate (+=) so micro-batches add up.
/// </summary>
public sealed class Conv2d
{
    /// <summary>Output tile edge of the tiled kernel.</summary>
    internal const int Tile = RegisterTile.Tile;

    /// <summary>Depth of the k-slice staged in shared memory per iteration of the tiled kernel.</summary>
    internal const int TileK = RegisterTile.TileK;

    /// <summary>Row pitch of the shared tiles: one float of padding so column walks hit distinct banks.</summary>
    internal const int TilePitch = RegisterTile.TilePitch;

    /// <summary>Threads per group of the coarse kernel on the CPU emulator: few threads doing much work each.</summary>
    internal const int CoarseThreadsPerGroup = 4;

    private readonly ComputeDevice _device;
    private readonly Action<AcceleratorStream, KernelConfig, Conv2dShape, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>> _forwardTiled;
    private readonly Action<AcceleratorStream, KernelConfig, Conv2dShape, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>> _inputTiled;
    private readonly Action<AcceleratorStream, KernelConfig, Conv2dShape, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>> _weightsTiled;
    private readonly Action<AcceleratorStream, KernelConfig, Conv2dShape, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>> _forwardCoarse;
    private readonly Action<AcceleratorStream, KernelConfig, Conv2dShape, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>> _inputCoarse;
    private readonly Action<AcceleratorStream, KernelConfig, Conv2dShape, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>> _weightsCoarse;

    private Conv2d(ComputeDevice device)
    {
        _device = device;
        var accelerator = device.Accelerator;
        _forwardTiled = accelerator.LoadKernel<Conv2dShape, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>>(TiledKernel<ForwardGemm>);
        _inputTiled = accelerator.LoadKernel<Conv2dShape, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>>(TiledKernel<InputGradientGemm>);
        _weightsTiled = accelerator.LoadKernel<Conv2dShape, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>>(TiledKernel<WeightGradientGemm>);
        _forwardCoarse = accelerator.LoadKernel<Conv2dShape, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>>(CoarseKernel<ForwardGemm>);
        _inputCoarse = accelerator.LoadKernel<Conv2dShape, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>>(CoarseKernel<InputGradientGemm>);
        _weightsCoarse = accelerator.LoadKernel<Conv2dShape, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>>(CoarseKernel<WeightGradientGemm>);
    }

    /// <summary>This device's instance (kernels compiled once per device).</summary>
    public static Conv2d For(ComputeDevice device) => device.Operation(d => new Conv2d(d));

    /// <summary>The kernel used by the next calls; <see cref="Conv2dVariant.Auto"/> picks per accelerator.</summary>
    public Conv2dVariant Variant { get; set; } = Conv2dVariant.Auto;

    /// <summary>output = conv(input, weight) + bias. <paramref name="bias"/> may be empty for a bias-free convolution.</summary>
    public void Forward(Conv2dShape shape, ArrayView<float> input, ArrayView<float> weight, ArrayView<float> bias, ArrayView<float> output)
    {
        Require(input, shape.InputLength, "input");
        Require(weight, shape.WeightLength, "weight");
        if (bias.Length > 0) Require(bias, shape.OutChannels, "bias");
        Require(output, shape.OutputLength, "output");
        var gemm = default(ForwardGemm);
        Launch(_forwardTiled, _forwardCoarse, gemm.Rows(shape), gemm.Cols(shape), shape, weight, input, output, bias);
    }

    /// <summary>dInput = the gradient of the loss with respect to the input (written, not accumulated).</summary>
    public void BackwardInput(Conv2dShape shape, ArrayView<float> dOutput, ArrayView<float> weight, ArrayView<float> dInput)
    {
        Require(dOutput, shape.OutputLength, "dOutput");
        Require(weight, shape.WeightLength, "weight");
        Require(dInput, shape.InputLength, "dInput");
        var gemm = default(InputGradientGemm);
        Launch(_inputTiled, _inputCoarse, gemm.Rows(shape), gemm.Cols(shape), shape, weight, dOutput, dInput, default);
    }

    /// <summary>
    /// dWeight += the weight gradient and, when <paramref name="dBias"/> is not empty, dBias += the bias gradient, in one launch.
    /// </summary>
    public void BackwardWeights(Conv2dShape shape, ArrayView<float> input, ArrayView<float> dOutput, ArrayView<float> dWeight, ArrayView<float> dBias)
    {
        Require(input, shape.InputLength, "input");
        Require(dOutput, shape.OutputLength, "dOutput");
        Require(dWeight, shape.WeightLength, "dWeight");
        if (dBias.Length > 0) Require(dBias, shape.OutChannels, "dBias");
        var gemm = default(WeightGradientGemm);
        Launch(_weightsTiled, _weightsCoarse, gemm.Rows(shape), gemm.Cols(shape), shape, dOutput, input, dWeight, dBias);
    }

    /// <summary>Float64 reference of <see cref="Forward"/> (direct seven-loop convolution).</summary>
    public static double[] ForwardReference(Conv2dShape s, ReadOnlySpan<double> input, ReadOnlySpan<double> weight, ReadOnlySpan<double> bias)
    {
        var output = new double[s.OutputLength];
        for (int n = 0; n < s.Batch; n++)
        {
            for (int co = 0; co < s.OutChannels; co++)
            {
                for (int oh = 0; oh < s.OutHeight; oh++)
                {
                    for (int ow = 0; ow < s.OutWidth; ow++)
                    {
                        double sum = bias.Length > 0 ? bias[co] : 0.0;
                        for (int ci = 0; ci < s.InChannels; ci++)
                        {
                            for (int kh = 0; kh < s.KernelSize; kh++)
                            {
                                int ih = oh * s.Stride - s.Padding + kh;
                                if (ih < 0 || ih >= s.Height) continue;
                                for (int kw = 0; kw < s.KernelSize; kw++)
                                {
                                    int iw = ow * s.Stride - s.Padding + kw;
                                    if (iw < 0 || iw >= s.Width) continue;
                                    sum += weight[((co * s.InChannels + ci) * s.KernelSize + kh) * s.KernelSize + kw]
                                        * input[((n * s.InChannels + ci) * s.Height + ih) * s.Width + iw];
                                }
                            }
                        }

                        output[((n * s.OutChannels + co) * s.OutHeight + oh) * s.OutWidth + ow] = sum;
                    }
                }
            }
        }

        return output;
    }

    /// <summary>Float64 reference of the three gradients for <paramref name="dOutput"/> (fresh values, not accumulated).</summary>
    public static (double[] DInput, double[] DWeight, double[] DBias) BackwardReference(Conv2dShape s, ReadOnlySpan<double> input,
        ReadOnlySpan<double> weight, ReadOnlySpan<double> dOutput)
    {
        var dInput = new double[s.InputLength];
        var dWeight = new double[s.WeightLength];
        var dBias = new double[s.OutChannels];
        for (int n = 0; n < s.Batch; n++)
        {
            for (int co = 0; co < s.OutChannels; co++)
            {
                for (int oh = 0; oh < s.OutHeight; oh++)
                {
                    for (int ow = 0; ow < s.OutWidth; ow++)
                    {
                        double g = dOutput[((n * s.OutChannels + co) * s.OutHeight + oh) * s.OutWidth + ow];
                        dBias[co] += g;
                        for (int ci = 0; ci < s.InChannels; ci++)
                        {
                            for (int kh = 0; kh < s.KernelSize; kh++)
                            {
                                int ih = oh * s.Stride - s.Padding + kh;
                                if (ih < 0 || ih >= s.Height) continue;
                                for (int kw = 0; kw < s.KernelSize; kw++)
                                {
                                    int iw = ow * s.Stride - s.Padding + kw;
                                    if (iw < 0 || iw >= s.Width) continue;
                                    int wi = ((co * s.InChannels + ci) * s.KernelSize + kh) * s.KernelSize + kw;
                                    int xi = ((n * s.InChannels + ci) * s.Height + ih) * s.Width + iw;
                                    dInput[xi] += g * weight[wi];
                                    dWeight[wi] += g * input[xi];
                                }
                            }
                        }
                    }
                }
            }
        }

        return (dInput, dWeight, dBias);
    }

    private void Launch(
        Action<AcceleratorStream, KernelConfig, Conv2dShape, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>> tiled,
        Action<AcceleratorStream, KernelConfig, Conv2dShape, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>> coarse,
        int rows, int cols, Conv2dShape shape, ArrayView<float> a, ArrayView<float> b, ArrayView<float> c, ArrayView<float> bias)
    {
        var stream = _device.Accelerator.DefaultStream;
        var variant = Variant == Conv2dVariant.Auto ? (_device.IsCuda ? Conv2dVariant.Tiled : Conv2dVariant.Coarse) : Variant;
        if (variant == Conv2dVariant.Tiled)
        {
            var grid = new Index2D((cols + Tile - 1) / Tile, (rows + Tile - 1) / Tile);
            tiled(stream, new KernelConfig(grid, new Index2D(16, 16)), shape, a, b, c, bias);
            return;
        }

        long items = CoarseItems(rows, cols, bias.Length > 0);
        var config = _device.IsCuda
            ? _device.GridStride(items)
            : new KernelConfig(_device.Accelerator.NumMultiprocessors, CoarseThreadsPerGroup);
        coarse(stream, config, shape, a, b, c, bias);
    }

    /// <summary>Work items of the coarse kernel: the 4x4 blocks of C, plus one per 4 rows when reducing a bias gradient.</summary>
    private static int CoarseItems(int rows, int cols, bool biasGradient) =>
        ((rows + 3) / 4) * ((cols + 3) / 4) + (biasGradient ? (rows + 3) / 4 : 0);

    private static void Require(ArrayView<float> view, long needed, string what)
    {
        if (view.Length < needed) throw new ArgumentException($"conv2d: {what} has {view.Length} elements, needs {needed}");
    }

    /// <summary>
    /// Coarse (CPU) implicit GEMM: each thread computes whole 4x4 blocks of C in registers (grid-stride over blocks).
    /// Edge blocks clamp their row and column indices so the inner loop has no branches; the duplicates are not stored.
    /// For the weight gradient with a bias, extra work items after the blocks sum rows of A (dy) into the bias gradient.
    /// </summary>
    [GpuKernel(typeof(ForwardGemm))]
    [GpuKernel(typeof(InputGradientGemm))]
    [GpuKernel(typeof(WeightGradientGemm))]
    internal static void CoarseKernel<TGemm>(Conv2dShape s, ArrayView<float> a, ArrayView<float> b, ArrayView<float> c, ArrayView<float> bias)
        where TGemm : struct, IConvGemm
    {
        var gemm = default(TGemm);
        int rows = gemm.Rows(s), cols = gemm.Cols(s), depth = gemm.Depth(s);
        int blocksN = (cols + 3) / 4;
        int blocks = ((rows + 3) / 4) * blocksN;
        bool biasGradient = gemm.SumsBias && bias.Length > 0;
        int items = blocks + (biasGradient ? (rows + 3) / 4 : 0);
        int lastM = rows - 1, lastN = cols - 1;
        for (int t = Grid.GlobalIndex.X; t < items; t += Grid.DimX * Group.DimX)
        {
            if (t >= blocks)
            {
                int r0 = (t - blocks) * 4;
                int r1 = Math.Min(r0 + 1, lastM), r2 = Math.Min(r0 + 2, lastM), r3 = Math.Min(r0 + 3, lastM);
                float g0 = 0, g1 = 0, g2 = 0, g3 = 0;
                for (int k = 0; k < depth; k++)
                {
                    g0 += gemm.LoadA(s, a, r0, k);
                    g1 += gemm.LoadA(s, a, r1, k);
                    g2 += gemm.LoadA(s, a, r2, k);
                    g3 += gemm.LoadA(s, a, r3, k);
                }

                AddBias(bias, rows, r0, g0);
                AddBias(bias, rows, r0 + 1, g1);
                AddBias(bias, rows, r0 + 2, g2);
                AddBias(bias, rows, r0 + 3, g3);
                continue;
            }

            int m0 = t / blocksN * 4, n0 = t % blocksN * 4;
            int m1 = Math.Min(m0 + 1, lastM), m2 = Math.Min(m0 + 2, lastM), m3 = Math.Min(m0 + 3, lastM);
            int n1 = Math.Min(n0 + 1, lastN), n2 = Math.Min(n0 + 2, lastN), n3 = Math.Min(n0 + 3, lastN);
            var acc = default(RegisterTile);
            for (int k = 0; k < depth; k++)
            {
                float x0 = gemm.LoadA(s, a, m0, k), x1 = gemm.LoadA(s, a, m1, k), x2 = gemm.LoadA(s, a, m2, k), x3 = gemm.LoadA(s, a, m3, k);
                float y0 = gemm.LoadB(s, b, k, n0), y1 = gemm.LoadB(s, b, k, n1), y2 = gemm.LoadB(s, b, k, n2), y3 = gemm.LoadB(s, b, k, n3);
                RegisterTile.AddOuter(ref acc, x0, x1, x2, x3, y0, y1, y2, y3);
            }

            StoreRow(gemm, s, c, bias, rows, cols, m0, n0, 1, acc.S00, acc.S01, acc.S02, acc.S03);
            StoreRow(gemm, s, c, bias, rows, cols, m0 + 1, n0, 1, acc.S10, acc.S11, acc.S12, acc.S13);
            StoreRow(gemm, s, c, bias, rows, cols, m0 + 2, n0, 1, acc.S20, acc.S21, acc.S22, acc.S23);
            StoreRow(gemm, s, c, bias, rows, cols, m0 + 3, n0, 1, acc.S30, acc.S31, acc.S32, acc.S33);
        }
    }

    /// <summary>
    /// Tiled (GPU) implicit GEMM: each 16x16 group owns a 64x64 block of C; per k-slice of 16 it gathers A and B tiles
    /// from the tensors into shared memory (padded pitch), and each thread accumulates rows ty + 16 i and columns
    /// tx + 16 j. The gather maps consecutive threads to the operand's contiguous index (k or the output column) so
    /// global loads coalesce. For the weight gradient the first column of groups also sums the staged dy rows (bias).
    /// </summary>
    [GpuKernel(typeof(ForwardGemm))]
    [GpuKernel(typeof(InputGradientGemm))]
    [GpuKernel(typeof(WeightGradientGemm))]
    internal static void TiledKernel<TGemm>(Conv2dShape s, ArrayView<float> a, ArrayView<float> b, ArrayView<float> c, ArrayView<float> bias)
        where TGemm : struct, IConvGemm
    {
        var gemm = default(TGemm);
        var aTile = SharedMemory.Allocate<float>(TileK * TilePitch);
        var bTile = SharedMemory.Allocate<float>(TileK * TilePitch);
        int rows = gemm.Rows(s), cols = gemm.Cols(s), depth = gemm.Depth(s);
        int tx = Group.IdxX, ty = Group.IdxY;
        int tid = ty * 16 + tx;
        int blockM = Grid.IdxY * Tile, blockN = Grid.IdxX * Tile;
        bool sumsBias = gemm.SumsBias && bias.Length > 0 && Grid.IdxX == 0 && tx == 0;
        bool aAlongK = gemm.AContiguousInK, bAlongK = gemm.BContiguousInK;
        var acc = default(RegisterTile);
        for (int k0 = 0; k0 < depth; k0 += TileK)
        {
            for (int e = tid; e < TileK * Tile; e += 256)
            {
                int mm, kk;
                if (aAlongK) { kk = e % TileK; mm = e / TileK; }
                else { mm = e % Tile; kk = e / Tile; }
                int m = blockM + mm, k = k0 + kk;
                aTile[kk * TilePitch + mm] = m < rows && k < depth ? gemm.LoadA(s, a, m, k) : 0f;
                int nn;
                if (bAlongK) { kk = e % TileK; nn = e / TileK; }
                else { nn = e % Tile; kk = e / Tile; }
                int n = blockN + nn;
                k = k0 + kk;
                bTile[kk * TilePitch + nn] = n < cols && k < depth ? gemm.LoadB(s, b, k, n) : 0f;
            }

            Group.Barrier();
            RegisterTile.AddSlice(ref acc, aTile, bTile, tx, ty, sumsBias);

            Group.Barrier();
        }

        StoreRow(gemm, s, c, bias, rows, cols, blockM + ty, blockN + tx, 16, acc.S00, acc.S01, acc.S02, acc.S03);
        StoreRow(gemm, s, c, bias, rows, cols, blockM + ty + 16, blockN + tx, 16, acc.S10, acc.S11, acc.S12, acc.S13);
        StoreRow(gemm, s, c, bias, rows, cols, blockM + ty + 32, blockN + tx, 16, acc.S20, acc.S21, acc.S22, acc.S23);
        StoreRow(gemm, s, c, bias, rows, cols, blockM + ty + 48, blockN + tx, 16, acc.S30, acc.S31, acc.S32, acc.S33);
        if (sumsBias)
        {
            AddBias(bias, rows, blockM + ty, acc.G0);
            AddBias(bias, rows, blockM + ty + 16, acc.G1);
            AddBias(bias, rows, blockM + ty + 32, acc.G2);
            AddBias(bias, rows, blockM + ty + 48, acc.G3);
        }
    }

    private static void AddBias(ArrayView<float> bias, int rows, int m, float value)
    {
        if (m < rows) bias[m] += value;
    }

    /// <summary>Stores columns n0, n0 + step, n0 + 2 step, n0 + 3 step of row m (skipping those outside C).</summary>
    private static void StoreRow<TGemm>(TGemm gemm, Conv2dShape s, ArrayView<float> c, ArrayView<float> bias, int rows, int cols,
        int m, int n0, int step, float v0, float v1, float v2, float v3)
        where TGemm : struct, IConvGemm
    {
        if (m >= rows) return;
        if (n0 < cols) gemm.Store(s, c, bias, m, n0, v0);
        if (n0 + step < cols) gemm.Store(s, c, bias, m, n0 + step, v1);
        if (n0 + 2 * step < cols) gemm.Store(s, c, bias, m, n0 + 2 * step, v2);
        if (n0 + 3 * step < cols) gemm.Store(s, c, bias, m, n0 + 3 * step, v3);
    }
}

/// <summary>One pass of a convolution seen as an implicit GEMM: its extents, operand gathers and output scatter.</summary>
internal interface IConvGemm
{
    /// <summary>True when consecutive k read consecutive addresses of A (the tiled gather then walks k fastest).</summary>
    bool AContiguousInK { get; }

    /// <summary>True when consecutive k read consecutive addresses of B.</summary>
    bool BContiguousInK { get; }

    /// <summary>True for the weight gradient: the rows of A (dy) also sum into the bias gradient.</summary>
    bool SumsBias { get; }

    int Rows(Conv2dShape s);

    int Cols(Conv2dShape s);

    int Depth(Conv2dShape s);

    float LoadA(Conv2dShape s, ArrayView<float> a, int row, int k);

    float LoadB(Conv2dShape s, ArrayView<float> b, int k, int col);

    void Store(Conv2dShape s, ArrayView<float> c, ArrayView<float> bias, int row, int col, float value);
}

/// <summary>Forward: A = weights (Cout x Cin*K*K), B = input patches (Cin*K*K x N*Ho*Wo), C = output (+ bias).</summary>
internal struct ForwardGemm : IConvGemm
{
    public readonly bool AContiguousInK => true;

    public readonly bool BContiguousInK => false;

    public readonly bool SumsBias => false;

    public readonly int Rows(Conv2dShape s) => s.OutChannels;

    public readonly int Cols(Conv2dShape s) => s.Batch * s.OutSpatial;

    public readonly int Depth(Conv2dShape s) => s.InChannels * s.Taps;

    public readonly float LoadA(Conv2dShape s, ArrayView<float> a, int row, int k) => a[row * Depth(s) + k];

    public readonly float LoadB(Conv2dShape s, ArrayView<float> b, int k, int col) => InputPatch(s, b, k, col);

    public readonly void Store(Conv2dShape s, ArrayView<float> c, ArrayView<float> bias, int row, int col, float value)
    {
        int n = col / s.OutSpatial, p = col - n * s.OutSpatial;
        c[(n * s.OutChannels + row) * s.OutSpatial + p] = bias.Length > 0 ? value + bias[row] : value;
    }

    /// <summary>x[n, ci, oh*s-p+kh, ow*s-p+kw] (0 in the padding) for tap k = (ci, kh, kw) and output pixel col = (n, oh, ow).</summary>
    internal static float InputPatch(Conv2dShape s, ArrayView<float> x, int k, int col)
    {
        int ci = k / s.Taps, tap = k - ci * s.Taps;
        int kh = tap / s.KernelSize, kw = tap - kh * s.KernelSize;
        int n = col / s.OutSpatial, p = col - n * s.OutSpatial;
        int oh = p / s.OutWidth, ow = p - oh * s.OutWidth;
        int ih = oh * s.Stride - s.Padding + kh, iw = ow * s.Stride - s.Padding + kw;
        if (ih < 0 || ih >= s.Height || iw < 0 || iw >= s.Width) return 0f;
        return x[((n * s.InChannels + ci) * s.Height + ih) * s.Width + iw];
    }
}

/// <summary>Input gradient: A = weights seen as (Cin x Cout*K*K), B = dy gathered per input pixel, C = dx.</summary>
internal struct InputGradientGemm : IConvGemm
{
    public readonly bool AContiguousInK => true;

    public readonly bool BContiguousInK => false;

    public readonly bool SumsBias => false;

    public readonly int Rows(Conv2dShape s) => s.InChannels;

    public readonly int Cols(Conv2dShape s) => s.Batch * s.InSpatial;

    public readonly int Depth(Conv2dShape s) => s.OutChannels * s.Taps;

    public readonly float LoadA(Conv2dShape s, ArrayView<float> a, int row, int k)
    {
        int co = k / s.Taps, tap = k - co * s.Taps;
        return a[(co * s.InChannels + row) * s.Taps + tap];
    }

    /// <summary>dy[n, co, (ih+p-kh)/s, (iw+p-kw)/s] for tap k = (co, kh, kw) and input pixel col = (n, ih, iw); 0 when no output reads it.</summary>
    public readonly float LoadB(Conv2dShape s, ArrayView<float> b, int k, int col)
    {
        int co = k / s.Taps, tap = k - co * s.Taps;
        int kh = tap / s.KernelSize, kw = tap - kh * s.KernelSize;
        int n = col / s.InSpatial, p = col - n * s.InSpatial;
        int ih = p / s.Width, iw = p - ih * s.Width;
        int th = ih + s.Padding - kh, tw = iw + s.Padding - kw;
        if (th < 0 || tw < 0) return 0f;
        int oh = th / s.Stride, ow = tw / s.Stride;
        if (oh * s.Stride != th || ow * s.Stride != tw || oh >= s.OutHeight || ow >= s.OutWidth) return 0f;
        return b[((n * s.OutChannels + co) * s.OutHeight + oh) * s.OutWidth + ow];
    }

    public readonly void Store(Conv2dShape s, ArrayView<float> c, ArrayView<float> bias, int row, int col, float value)
    {
        int n = col / s.InSpatial, p = col - n * s.InSpatial;
        c[(n * s.InChannels + row) * s.InSpatial + p] = value;
    }
}

/// <summary>Weight gradient: A = dy seen as (Cout x N*Ho*Wo), B = input patches transposed (N*Ho*Wo x Cin*K*K), C += dw.</summary>
internal struct WeightGradientGemm : IConvGemm
{
    public readonly bool AContiguousInK => true;

    public readonly bool BContiguousInK => true;

    public readonly bool SumsBias => true;

    public readonly int Rows(Conv2dShape s) => s.OutChannels;

    public readonly int Cols(Conv2dShape s) => s.InChannels * s.Taps;

    public readonly int Depth(Conv2dShape s) => s.Batch * s.OutSpatial;

    public readonly float LoadA(Conv2dShape s, ArrayView<float> a, int row, int k)
    {
        int n = k / s.OutSpatial, p = k - n * s.OutSpatial;
        return a[(n * s.OutChannels + row) * s.OutSpatial + p];
    }

    public readonly float LoadB(Conv2dShape s, ArrayView<float> b, int k, int col) => ForwardGemm.InputPatch(s, b, col, k);

    public readonly void Store(Conv2dShape s, ArrayView<float> c, ArrayView<float> bias, int row, int col, float value) =>
        c[row * Cols(s) + col] += value;
}
