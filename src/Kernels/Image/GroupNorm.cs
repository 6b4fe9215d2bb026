using ILGPU;
using ILGPU.Algorithms;
using ILGPU.Runtime;
using PoissonFlow.Kernels.Device;

namespace PoissonFlow.Kernels.Image;

// GroupNorm over an NCHW batch with affine gamma/beta per channel, optionally followed by SiLU in the same kernel
// (every DDPM/NCSN++ block applies GroupNorm then SiLU, so fusing saves a full read and write of the activation).
// The channels of one group of one sample are contiguous in NCHW, so a (sample, group) pair is one contiguous row of
// ChannelsPerGroup * H * W elements; each row is reduced by one thread group (two passes: mean, then the centred sum
// of squares, which is more accurate in float32 than E[x^2] - E[x]^2). The forward pass saves mean and 1/std per row.
// Backward: with xhat = (x - mean) * rstd, y = gamma * xhat + beta and dy = dout (times silu'(y) when fused, y being
// recomputed rather than stored), dx = rstd * (dxhat - mean_row(dxhat) - xhat * mean_row(dxhat * xhat)) with
// dxhat = dy * gamma (written, =); dgamma[c] += sum_{n,hw} dy * xhat and dbeta[c] += sum_{n,hw} dy (accumulated, +=).
// FLOPs: forward ~8 per element (+ ~4 for the SiLU), backward ~20 per element; the layer is memory-bound.

/// <summary>Shape of a GroupNorm: an NCHW batch whose channels split into equal groups.</summary>
public readonly struct GroupNormShape
{
    /// <summary>Creates and validates a shape.</summary>
    /// <exception cref="ArgumentException">A dimension is not positive, or the groups do not divide the channels.</exception>
    public GroupNormShape(int batch, int channels, int spatial, int groups)
    {
        if (batch <= 0 || channels <= 0 || spatial <= 0 || groups <= 0)
        {
            throw new ArgumentException($"group norm: batch ({batch}), channels ({channels}), spatial size ({spatial}) and groups ({groups}) must be positive");
        }

        if (channels % groups != 0) throw new ArgumentException($"group norm: {groups} groups do not divide {channels} channels");
        Batch = batch;
        Channels = channels;
        Spatial = spatial;
        Groups = groups;
    }

    /// <summary>Batch size N.</summary>
    public int Batch { get; }

    /// <summary>Channels C.</summary>
    public int Channels { get; }

    /// <summary>Pixels per channel, H * W.</summary>
    public int Spatial { get; }

    /// <summary>Number of groups G.</summary>
    public int Groups { get; }

    /// <summary>Channels per group.</summary>
    public int ChannelsPerGroup => Channels / Groups;

    /// <summary>Elements of the normalised tensor.</summary>
    public long Length => (long)Batch * Channels * Spatial;

    /// <summary>Rows (sample, group): the length of the saved mean and rstd.</summary>
    public int Rows => Batch * Groups;

    internal int RowLength => ChannelsPerGroup * Spatial;
}

/// <summary>GroupNorm (eps 1e-6, affine), optionally fused with SiLU: forward and backward kernels.</summary>
public sealed class GroupNorm
{
    /// <summary>The epsilon added to the variance (DDPM / NCSN++ value).</summary>
    public const float Epsilon = 1e-6f;

    private readonly ComputeDevice _device;
    private readonly Action<AcceleratorStream, KernelConfig, GroupNormShape, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, int> _forward;
    private readonly Action<AcceleratorStream, KernelConfig, GroupNormShape, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, int> _backwardInput;
    private readonly Action<AcceleratorStream, KernelConfig, GroupNormShape, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, int> _backwardParameters;

    private GroupNorm(ComputeDevice device)
    {
        _device = device;
        var accelerator = device.Accelerator;
        _forward = accelerator.LoadKernel<GroupNormShape, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, int>(ForwardKernel);
        _backwardInput = accelerator.LoadKernel<GroupNormShape, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, int>(BackwardInputKernel);
        _backwardParameters = accelerator.LoadKernel<GroupNormShape, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, int>(BackwardParametersKernel);
    }

    /// <summary>This device's instance (kernels compiled once per device).</summary>
    public static GroupNorm For(ComputeDevice device) => device.Operation(d => new GroupNorm(d));

    /// <summary>Threads per row of the reductions (a power of two up to 256); set by tests to exercise the shared-memory tree.</summary>
    internal int ThreadsPerRow { get; set; }

    /// <summary>The DDPM++ group count for a channel count: min(C / 4, 32), at least 1.</summary>
    public static int DefaultGroups(int channels) => Math.Clamp(channels / 4, 1, 32);

    /// <summary>
    /// output = GroupNorm(input) * gamma + beta, then SiLU when <paramref name="silu"/>; saves the mean and 1/std of
    /// each (sample, group) row into <paramref name="mean"/> and <paramref name="rstd"/> for the backward pass.
    /// </summary>
    public void Forward(GroupNormShape shape, ArrayView<float> input, ArrayView<float> gamma, ArrayView<float> beta,
        ArrayView<float> output, ArrayView<float> mean, ArrayView<float> rstd, bool silu)
    {
        Require(input, shape.Length, "input");
        Require(gamma, shape.Channels, "gamma");
        Require(beta, shape.Channels, "beta");
        Require(output, shape.Length, "output");
        Require(mean, shape.Rows, "mean");
        Require(rstd, shape.Rows, "rstd");
        _forward(_device.Accelerator.DefaultStream, GroupSum.RowConfig(_device, shape.Rows, ThreadsPerRow), shape, input, gamma, beta, output, mean, rstd, silu ? 1 : 0);
    }

    /// <summary>
    /// dInput = the input gradient (written); dGamma, dBeta += the parameter gradients. <paramref name="dOutput"/> is
    /// the gradient with respect to the layer's output (after the SiLU when fused). dInput may be the same view as
    /// dOutput (the parameter gradients are reduced first).
    /// </summary>
    public void Backward(GroupNormShape shape, ArrayView<float> input, ArrayView<float> gamma, ArrayView<float> beta,
        ArrayView<float> mean, ArrayView<float> rstd, ArrayView<float> dOutput, ArrayView<float> dInput,
        ArrayView<float> dGamma, ArrayView<float> dBeta, bool silu)
    {
        Require(input, shape.Length, "input");
        Require(gamma, shape.Channels, "gamma");
        Require(beta, shape.Channels, "beta");
        Require(mean, shape.Rows, "mean");
        Require(rstd, shape.Rows, "rstd");
        Require(dOutput, shape.Length, "dOutput");
        Require(dInput, shape.Length, "dInput");
        Require(dGamma, shape.Channels, "dGamma");
        Require(dBeta, shape.Channels, "dBeta");
        var stream = _device.Accelerator.DefaultStream;
        int flag = silu ? 1 : 0;
        _backwardParameters(stream, GroupSum.RowConfig(_device, shape.Channels, ThreadsPerRow), shape, input, gamma, beta, mean, rstd, dOutput, dGamma, dBeta, flag);
        _backwardInput(stream, GroupSum.RowConfig(_device, shape.Rows, ThreadsPerRow), shape, input, gamma, beta, mean, rstd, dOutput, dInput, flag);
    }

    /// <summary>Float64 reference of <see cref="Forward"/>: the output and the per-row mean and 1/std.</summary>
    public static (double[] Output, double[] Mean, double[] Rstd) ForwardReference(GroupNormShape s, ReadOnlySpan<double> input,
        ReadOnlySpan<double> gamma, ReadOnlySpan<double> beta, bool silu)
    {
        var output = new double[s.Length];
        var mean = new double[s.Rows];
        var rstd = new double[s.Rows];
        int length = s.RowLength;
        for (int row = 0; row < s.Rows; row++)
        {
            var x = input.Slice(row * length, length);
            double mu = 0;
            foreach (double v in x) mu += v;
            mu /= length;
            double variance = 0;
            foreach (double v in x) variance += (v - mu) * (v - mu);
            variance /= length;
            double r = 1.0 / Math.Sqrt(variance + Epsilon);
            mean[row] = mu;
            rstd[row] = r;
            int firstChannel = row % s.Groups * s.ChannelsPerGroup;
            for (int i = 0; i < length; i++)
            {
                int c = firstChannel + i / s.Spatial;
                double y = (x[i] - mu) * r * gamma[c] + beta[c];
                output[row * length + i] = silu ? Silu.Reference(y) : y;
            }
        }

        return (output, mean, rstd);
    }

    /// <summary>Float64 reference of <see cref="Backward"/> (fresh gradients, not accumulated).</summary>
    public static (double[] DInput, double[] DGamma, double[] DBeta) BackwardReference(GroupNormShape s, ReadOnlySpan<double> input,
        ReadOnlySpan<double> gamma, ReadOnlySpan<double> beta, ReadOnlySpan<double> dOutput, bool silu)
    {
        var (_, mean, rstd) = ForwardReference(s, input, gamma, beta, silu: false);
        var dInput = new double[s.Length];
        var dGamma = new double[s.Channels];
        var dBeta = new double[s.Channels];
        int length = s.RowLength;
        var xhat = new double[length];
        var dxhat = new double[length];
        for (int row = 0; row < s.Rows; row++)
        {
            int firstChannel = row % s.Groups * s.ChannelsPerGroup;
            double meanDxhat = 0, meanDxhatXhat = 0;
            for (int i = 0; i < length; i++)
            {
                int c = firstChannel + i / s.Spatial;
                int index = row * length + i;
                xhat[i] = (input[index] - mean[row]) * rstd[row];
                double y = xhat[i] * gamma[c] + beta[c];
                double dy = silu ? dOutput[index] * Silu.DerivativeReference(y) : dOutput[index];
                dGamma[c] += dy * xhat[i];
                dBeta[c] += dy;
                dxhat[i] = dy * gamma[c];
                meanDxhat += dxhat[i];
                meanDxhatXhat += dxhat[i] * xhat[i];
            }

            meanDxhat /= length;
            meanDxhatXhat /= length;
            for (int i = 0; i < length; i++) dInput[row * length + i] = rstd[row] * (dxhat[i] - meanDxhat - xhat[i] * meanDxhatXhat);
        }

        return (dInput, dGamma, dBeta);
    }

    private static void Require(ArrayView<float> view, long needed, string what)
    {
        if (view.Length < needed) throw new ArgumentException($"group norm: {what} has {view.Length} elements, needs {needed}");
    }

    /// <summary>
    /// The gradient with respect to the affine output y = xhat * gamma + beta: dOutput itself, or dOutput * silu'(y) when
    /// SiLU is fused (y is recomputed, not stored).
    /// </summary>
    private static float NormalizedGradient(float dOutput, float xhat, float gamma, float beta, int silu)
    {
        return silu == 0 ? dOutput : dOutput * Silu.Derivative(xhat * gamma + beta);
    }

    /// <summary>One group per (sample, group) row: mean, centred variance, then the normalised (and SiLU'd) output.</summary>
    [GpuKernel]
    internal static void ForwardKernel(GroupNormShape s, ArrayView<float> input, ArrayView<float> gamma, ArrayView<float> beta,
        ArrayView<float> output, ArrayView<float> mean, ArrayView<float> rstd, int silu)
    {
        var scratch = SharedMemory.Allocate<float>(GroupSum.MaxGroupSize);
        int length = s.RowLength;
        for (int row = Grid.IdxX; row < s.Rows; row += Grid.DimX)
        {
            int start = row * length;
            float sum = 0;
            for (int i = Group.IdxX; i < length; i += Group.DimX) sum += input[start + i];
            float mu = GroupSum.Sum(scratch, sum) / length;
            float squares = 0;
            for (int i = Group.IdxX; i < length; i += Group.DimX)
            {
                float d = input[start + i] - mu;
                squares += d * d;
            }

            float r = 1f / XMath.Sqrt(GroupSum.Sum(scratch, squares) / length + Epsilon);
            if (Group.IdxX == 0)
            {
                mean[row] = mu;
                rstd[row] = r;
            }

            int firstChannel = row % s.Groups * s.ChannelsPerGroup;
            for (int i = Group.IdxX; i < length; i += Group.DimX)
            {
                int c = firstChannel + i / s.Spatial;
                float y = (input[start + i] - mu) * r * gamma[c] + beta[c];
                output[start + i] = silu != 0 ? Silu.Value(y) : y;
            }
        }
    }

    /// <summary>One group per (sample, group) row: the two row means of the backward formula, then dx.</summary>
    [GpuKernel]
    internal static void BackwardInputKernel(GroupNormShape s, ArrayView<float> input, ArrayView<float> gamma, ArrayView<float> beta,
        ArrayView<float> mean, ArrayView<float> rstd, ArrayView<float> dOutput, ArrayView<float> dInput, int silu)
    {
        var scratch = SharedMemory.Allocate<float>(GroupSum.MaxGroupSize);
        int length = s.RowLength;
        for (int row = Grid.IdxX; row < s.Rows; row += Grid.DimX)
        {
            int start = row * length;
            float mu = mean[row], r = rstd[row];
            int firstChannel = row % s.Groups * s.ChannelsPerGroup;
            float sumDxhat = 0, sumDxhatXhat = 0;
            for (int i = Group.IdxX; i < length; i += Group.DimX)
            {
                int c = firstChannel + i / s.Spatial;
                float xhat = (input[start + i] - mu) * r;
                float dy = NormalizedGradient(dOutput[start + i], xhat, gamma[c], beta[c], silu);
                float dxhat = dy * gamma[c];
                sumDxhat += dxhat;
                sumDxhatXhat += dxhat * xhat;
            }

            float meanDxhat = GroupSum.Sum(scratch, sumDxhat) / length;
            float meanDxhatXhat = GroupSum.Sum(scratch, sumDxhatXhat) / length;
            for (int i = Group.IdxX; i < length; i += Group.DimX)
            {
                int c = firstChannel + i / s.Spatial;
                float xhat = (input[start + i] - mu) * r;
                float dy = NormalizedGradient(dOutput[start + i], xhat, gamma[c], beta[c], silu);
                dInput[start + i] = r * (dy * gamma[c] - meanDxhat - xhat * meanDxhatXhat);
            }
        }
    }

    /// <summary>One group per channel: dgamma[c] += sum dy * xhat and dbeta[c] += sum dy over samples and pixels.</summary>
    [GpuKernel]
    internal static void BackwardParametersKernel(GroupNormShape s, ArrayView<float> input, ArrayView<float> gamma, ArrayView<float> beta,
        ArrayView<float> mean, ArrayView<float> rstd, ArrayView<float> dOutput, ArrayView<float> dGamma, ArrayView<float> dBeta, int silu)
    {
        var scratch = SharedMemory.Allocate<float>(GroupSum.MaxGroupSize);
        int count = s.Batch * s.Spatial;
        for (int c = Grid.IdxX; c < s.Channels; c += Grid.DimX)
        {
            int group = c / s.ChannelsPerGroup;
            float g = gamma[c], b = beta[c];
            float sumDyXhat = 0, sumDy = 0;
            for (int i = Group.IdxX; i < count; i += Group.DimX)
            {
                int n = i / s.Spatial;
                int index = (n * s.Channels + c) * s.Spatial + i - n * s.Spatial;
                int row = n * s.Groups + group;
                float xhat = (input[index] - mean[row]) * rstd[row];
                float dy = NormalizedGradient(dOutput[index], xhat, g, b, silu);
                sumDyXhat += dy * xhat;
                sumDy += dy;
            }

            float totalDyXhat = GroupSum.Sum(scratch, sumDyXhat);
            float totalDy = GroupSum.Sum(scratch, sumDy);
            if (Group.IdxX == 0)
            {
                dGamma[c] += totalDyXhat;
                dBeta[c] += totalDy;
            }
        }
    }
}
