using ILGPU;
using ILGPU.Algorithms;
using ILGPU.Runtime;
using PoissonFlow.Kernels.Device;

namespace PoissonFlow.Kernels.Image;

// Single-head self-attention over the S = H * W positions of a feature map, the core of DDPM's AttnBlock: from the
// projections qkv [B, 3C, S] (q, k, v stacked along channels, as one 1x1 conv makes them)
//   P[b, i, :] = softmax_j(scale * sum_c q[b, c, i] k[b, c, j]),  scale = 1 / sqrt(C)
//   out[b, c, i] = sum_j P[b, i, j] v[b, c, j].
// P [B, S, S] is kept for the backward pass (S is small where a compact U-Net attends: 49 at 7x7, 256 at 16x16).
// Backward, with dP[i, j] = sum_c dOut[c, i] v[c, j] and dS = scale * P * (dP - sum_j P dP) (the softmax Jacobian):
//   dq[c, i] = sum_j dS[i, j] k[c, j],  dk[c, j] = sum_i dS[i, j] q[c, i],  dv[c, j] = sum_i P[i, j] dOut[c, i].
// Every kernel is a barrier-free grid-stride loop in which one thread owns one output element (or one softmax row),
// so it runs as well on the CPU accelerator as on CUDA. The softmax subtracts the row maximum before exponentiating:
// the largest term is exp(0) = 1, so neither overflow nor a zero denominator can occur for finite logits.

/// <summary>The shape of a <see cref="SelfAttention"/> call.</summary>
/// <param name="Batch">Images.</param>
/// <param name="Channels">C, the channels of q, k, v and of the output.</param>
/// <param name="Spatial">S = H * W, the positions attended over.</param>
public readonly record struct SelfAttentionShape(int Batch, int Channels, int Spatial)
{
    /// <summary>Elements of the stacked projections qkv [B, 3C, S].</summary>
    public long QkvLength => 3L * Batch * Channels * Spatial;

    /// <summary>Elements of the output [B, C, S].</summary>
    public long OutputLength => (long)Batch * Channels * Spatial;

    /// <summary>Elements of the attention probabilities [B, S, S].</summary>
    public long ProbabilitiesLength => (long)Batch * Spatial * Spatial;

    /// <summary>The logit scale 1 / sqrt(C).</summary>
    public float Scale => (float)(1.0 / Math.Sqrt(Channels));
}

/// <summary>Single-head softmax self-attention over spatial positions, forward and backward (see the file comment).</summary>
public sealed class SelfAttention
{
    private readonly ComputeDevice _device;
    private readonly Action<AcceleratorStream, KernelConfig, ArrayView<float>, ArrayView<float>, SelfAttentionShape> _scores;
    private readonly Action<AcceleratorStream, KernelConfig, ArrayView<float>, SelfAttentionShape> _softmax;
    private readonly Action<AcceleratorStream, KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<float>, SelfAttentionShape> _output;
    private readonly Action<AcceleratorStream, KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<float>, SelfAttentionShape> _probabilityGradient;
    private readonly Action<AcceleratorStream, KernelConfig, ArrayView<float>, ArrayView<float>, SelfAttentionShape> _softmaxBackward;
    private readonly Action<AcceleratorStream, KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, SelfAttentionShape> _qkvGradient;

    private SelfAttention(ComputeDevice device)
    {
        _device = device;
        var a = device.Accelerator;
        _scores = a.LoadKernel<ArrayView<float>, ArrayView<float>, SelfAttentionShape>(ScoresKernel);
        _softmax = a.LoadKernel<ArrayView<float>, SelfAttentionShape>(SoftmaxKernel);
        _output = a.LoadKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, SelfAttentionShape>(OutputKernel);
        _probabilityGradient = a.LoadKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, SelfAttentionShape>(ProbabilityGradientKernel);
        _softmaxBackward = a.LoadKernel<ArrayView<float>, ArrayView<float>, SelfAttentionShape>(SoftmaxBackwardKernel);
        _qkvGradient = a.LoadKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, SelfAttentionShape>(QkvGradientKernel);
    }

    /// <summary>This device's instance (kernels compiled once per device).</summary>
    public static SelfAttention For(ComputeDevice device) => device.Operation(d => new SelfAttention(d));

    /// <summary>
    /// output [B, C, S] = attention of qkv [B, 3C, S]; the probabilities [B, S, S] are written for <see cref="Backward"/>.
    /// Three launches: logits, row softmax, weighted sum of v.
    /// </summary>
    public void Forward(SelfAttentionShape shape, ArrayView<float> qkv, ArrayView<float> probabilities, ArrayView<float> output)
    {
        Validate(shape);
        Require(qkv, shape.QkvLength, "qkv");
        Require(probabilities, shape.ProbabilitiesLength, "probabilities");
        Require(output, shape.OutputLength, "output");
        var stream = _device.Accelerator.DefaultStream;
        _scores(stream, _device.GridStride(shape.ProbabilitiesLength), qkv, probabilities, shape);
        _softmax(stream, _device.GridStride((long)shape.Batch * shape.Spatial), probabilities, shape);
        _output(stream, _device.GridStride(shape.OutputLength), qkv, probabilities, output, shape);
    }

    /// <summary>
    /// dQkv [B, 3C, S] (written) from dOutput and the forward pass's qkv and probabilities; <paramref name="dScores"/>
    /// [B, S, S] is scratch (it ends holding dLoss/dLogits). Three launches.
    /// </summary>
    public void Backward(SelfAttentionShape shape, ArrayView<float> qkv, ArrayView<float> probabilities, ArrayView<float> dOutput,
        ArrayView<float> dScores, ArrayView<float> dQkv)
    {
        Validate(shape);
        Require(qkv, shape.QkvLength, "qkv");
        Require(probabilities, shape.ProbabilitiesLength, "probabilities");
        Require(dOutput, shape.OutputLength, "dOutput");
        Require(dScores, shape.ProbabilitiesLength, "dScores");
        Require(dQkv, shape.QkvLength, "dQkv");
        var stream = _device.Accelerator.DefaultStream;
        _probabilityGradient(stream, _device.GridStride(shape.ProbabilitiesLength), qkv, dOutput, dScores, shape);
        _softmaxBackward(stream, _device.GridStride((long)shape.Batch * shape.Spatial), probabilities, dScores, shape);
        _qkvGradient(stream, _device.GridStride(shape.QkvLength), qkv, probabilities, dScores, dOutput, dQkv, shape);
    }

    /// <summary>Float64 reference of <see cref="Forward"/>: the output and the probabilities.</summary>
    public static (double[] Output, double[] Probabilities) ForwardReference(SelfAttentionShape s, ReadOnlySpan<double> qkv)
    {
        int c3 = 3 * s.Channels, n = s.Spatial;
        double scale = 1.0 / Math.Sqrt(s.Channels);
        var p = new double[s.ProbabilitiesLength];
        var output = new double[s.OutputLength];
        var logits = new double[n];
        for (int b = 0; b < s.Batch; b++)
        {
            for (int i = 0; i < n; i++)
            {
                double max = double.NegativeInfinity;
                for (int j = 0; j < n; j++)
                {
                    double dot = 0;
                    for (int c = 0; c < s.Channels; c++) dot += qkv[(b * c3 + c) * n + i] * qkv[(b * c3 + s.Channels + c) * n + j];
                    logits[j] = scale * dot;
                    max = Math.Max(max, logits[j]);
                }

                double sum = 0;
                for (int j = 0; j < n; j++) sum += Math.Exp(logits[j] - max);
                for (int j = 0; j < n; j++) p[((long)b * n + i) * n + j] = Math.Exp(logits[j] - max) / sum;
            }

            for (int c = 0; c < s.Channels; c++)
            {
                for (int i = 0; i < n; i++)
                {
                    double sum = 0;
                    for (int j = 0; j < n; j++) sum += p[((long)b * n + i) * n + j] * qkv[(b * c3 + 2 * s.Channels + c) * n + j];
                    output[((long)b * s.Channels + c) * n + i] = sum;
                }
            }
        }

        return (output, p);
    }

    /// <summary>Float64 reference of <see cref="Backward"/>: dQkv [B, 3C, S] for dOutput (from the formulas in the file comment).</summary>
    public static double[] BackwardReference(SelfAttentionShape s, ReadOnlySpan<double> qkv, ReadOnlySpan<double> dOutput)
    {
        var (_, p) = ForwardReference(s, qkv);
        int ch = s.Channels, c3 = 3 * ch, n = s.Spatial;
        double scale = 1.0 / Math.Sqrt(ch);
        var dQkv = new double[s.QkvLength];
        var dS = new double[n * n];
        for (int b = 0; b < s.Batch; b++)
        {
            long pBase = (long)b * n * n;
            for (int i = 0; i < n; i++)
            {
                double weighted = 0;
                for (int j = 0; j < n; j++)
                {
                    double dP = 0;
                    for (int c = 0; c < ch; c++) dP += dOutput[(b * ch + c) * n + i] * qkv[(b * c3 + 2 * ch + c) * n + j];
                    dS[i * n + j] = dP;
                    weighted += p[pBase + i * n + j] * dP;
                }

                for (int j = 0; j < n; j++) dS[i * n + j] = scale * p[pBase + i * n + j] * (dS[i * n + j] - weighted);
            }

            for (int c = 0; c < ch; c++)
            {
                for (int t = 0; t < n; t++)
                {
                    double dq = 0, dk = 0, dv = 0;
                    for (int u = 0; u < n; u++)
                    {
                        dq += dS[t * n + u] * qkv[(b * c3 + ch + c) * n + u];
                        dk += dS[u * n + t] * qkv[(b * c3 + c) * n + u];
                        dv += p[pBase + u * n + t] * dOutput[(b * ch + c) * n + u];
                    }

                    dQkv[(b * c3 + c) * n + t] = dq;
                    dQkv[(b * c3 + ch + c) * n + t] = dk;
                    dQkv[(b * c3 + 2 * ch + c) * n + t] = dv;
                }
            }
        }

        return dQkv;
    }

    private static void Validate(SelfAttentionShape s)
    {
        if (s.Batch <= 0 || s.Channels <= 0 || s.Spatial <= 0)
        {
            throw new ArgumentException($"self-attention: batch ({s.Batch}), channels ({s.Channels}) and positions ({s.Spatial}) must be positive");
        }

        if (s.QkvLength > int.MaxValue || s.ProbabilitiesLength > int.MaxValue)
        {
            throw new ArgumentException($"self-attention: {s.Batch} x {s.Spatial}^2 probabilities or {s.QkvLength} projections exceed 2^31 elements");
        }
    }

    private static void Require(ArrayView<float> view, long needed, string what)
    {
        if (view.Length < needed) throw new ArgumentException($"self-attention: {what} has {view.Length} elements, needs {needed}");
    }

    /// <summary>sum_t a[aBase + t aStride] * b[bBase + t bStride] for t &lt; count, unrolled by four by hand (ILGPU 1.5 does not unroll).</summary>
    private static float StridedDot(ArrayView<float> a, int aBase, int aStride, ArrayView<float> b, int bBase, int bStride, int count)
    {
        float s0 = 0f, s1 = 0f, s2 = 0f, s3 = 0f;
        int t = 0;
        for (; t + 4 <= count; t += 4)
        {
            s0 += a[aBase + t * aStride] * b[bBase + t * bStride];
            s1 += a[aBase + (t + 1) * aStride] * b[bBase + (t + 1) * bStride];
            s2 += a[aBase + (t + 2) * aStride] * b[bBase + (t + 2) * bStride];
            s3 += a[aBase + (t + 3) * aStride] * b[bBase + (t + 3) * bStride];
        }

        for (; t < count; t++) s0 += a[aBase + t * aStride] * b[bBase + t * bStride];
        return (s0 + s1) + (s2 + s3);
    }

    /// <summary>One thread per logit (b, i, j): scale * q[b, :, i] . k[b, :, j], written into the probability buffer.</summary>
    [GpuKernel]
    internal static void ScoresKernel(ArrayView<float> qkv, ArrayView<float> probabilities, SelfAttentionShape s)
    {
        int n = s.Spatial, total = s.Batch * n * n, stride = Grid.DimX * Group.DimX;
        float scale = 1f / XMath.Sqrt(s.Channels);
        for (int index = Grid.GlobalIndex.X; index < total; index += stride)
        {
            int b = index / (n * n), i = index / n % n, j = index % n;
            int qBase = 3 * b * s.Channels * n;
            probabilities[index] = scale * StridedDot(qkv, qBase + i, n, qkv, qBase + s.Channels * n + j, n, s.Channels);
        }
    }

    /// <summary>One thread per row (b, i): the logits become softmax probabilities in place, max-subtracted.</summary>
    [GpuKernel]
    internal static void SoftmaxKernel(ArrayView<float> probabilities, SelfAttentionShape s)
    {
        int n = s.Spatial, rows = s.Batch * n, stride = Grid.DimX * Group.DimX;
        for (int row = Grid.GlobalIndex.X; row < rows; row += stride)
        {
            int first = row * n;
            float max = probabilities[first];
            for (int j = 1; j < n; j++) max = XMath.Max(max, probabilities[first + j]);
            float sum = 0f;
            for (int j = 0; j < n; j++)
            {
                float e = XMath.Exp(probabilities[first + j] - max);
                probabilities[first + j] = e;
                sum += e;
            }

            // sum >= 1 (the maximum contributes exp(0)).
            float inverse = 1f / sum;
            for (int j = 0; j < n; j++) probabilities[first + j] *= inverse;
        }
    }

    /// <summary>One thread per output (b, c, i): sum_j P[b, i, j] v[b, c, j].</summary>
    [GpuKernel]
    internal static void OutputKernel(ArrayView<float> qkv, ArrayView<float> probabilities, ArrayView<float> output, SelfAttentionShape s)
    {
        int n = s.Spatial, ch = s.Channels, total = s.Batch * ch * n, stride = Grid.DimX * Group.DimX;
        for (int index = Grid.GlobalIndex.X; index < total; index += stride)
        {
            int b = index / (ch * n), c = index / n % ch, i = index % n;
            output[index] = StridedDot(probabilities, (b * n + i) * n, 1, qkv, ((3 * b + 2) * ch + c) * n, 1, n);
        }
    }

    /// <summary>One thread per (b, i, j): dP = sum_c dOut[b, c, i] v[b, c, j], into the score-gradient buffer.</summary>
    [GpuKernel]
    internal static void ProbabilityGradientKernel(ArrayView<float> qkv, ArrayView<float> dOutput, ArrayView<float> dScores, SelfAttentionShape s)
    {
        int n = s.Spatial, ch = s.Channels, total = s.Batch * n * n, stride = Grid.DimX * Group.DimX;
        for (int index = Grid.GlobalIndex.X; index < total; index += stride)
        {
            int b = index / (n * n), i = index / n % n, j = index % n;
            dScores[index] = StridedDot(dOutput, b * ch * n + i, n, qkv, (3 * b + 2) * ch * n + j, n, ch);
        }
    }

    /// <summary>One thread per row (b, i): dS = scale * P * (dP - sum_j P dP), in place over dP.</summary>
    [GpuKernel]
    internal static void SoftmaxBackwardKernel(ArrayView<float> probabilities, ArrayView<float> dScores, SelfAttentionShape s)
    {
        int n = s.Spatial, rows = s.Batch * n, stride = Grid.DimX * Group.DimX;
        float scale = 1f / XMath.Sqrt(s.Channels);
        for (int row = Grid.GlobalIndex.X; row < rows; row += stride)
        {
            int first = row * n;
            float weighted = StridedDot(probabilities, first, 1, dScores, first, 1, n);
            for (int j = 0; j < n; j++) dScores[first + j] = scale * probabilities[first + j] * (dScores[first + j] - weighted);
        }
    }

    /// <summary>
    /// One thread per element of dQkv (b, c3, t): channels below C get dq[c, t] = sum_j dS[t, j] k[c, j], the next C
    /// get dk[c, t] = sum_i dS[i, t] q[c, i], the last C get dv[c, t] = sum_i P[i, t] dOut[c, i].
    /// </summary>
    [GpuKernel]
    internal static void QkvGradientKernel(ArrayView<float> qkv, ArrayView<float> probabilities, ArrayView<float> dScores, ArrayView<float> dOutput,
        ArrayView<float> dQkv, SelfAttentionShape s)
    {
        int n = s.Spatial, ch = s.Channels, total = 3 * s.Batch * ch * n, stride = Grid.DimX * Group.DimX;
        for (int index = Grid.GlobalIndex.X; index < total; index += stride)
        {
            int b = index / (3 * ch * n), c3 = index / n % (3 * ch), t = index % n;
            int scores = b * n * n, qBase = 3 * b * ch * n;
            float value;
            if (c3 < ch)
            {
                value = StridedDot(dScores, scores + t * n, 1, qkv, qBase + (ch + c3) * n, 1, n);
            }
            else if (c3 < 2 * ch)
            {
                value = StridedDot(dScores, scores + t, n, qkv, qBase + (c3 - ch) * n, 1, n);
            }
            else
            {
                value = StridedDot(probabilities, scores + t, n, dOutput, (b * ch + c3 - 2 * ch) * n, 1, n);
            }

            dQkv[index] = value;
        }
    }
}
