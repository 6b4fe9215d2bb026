using ILGPU;
using ILGPU.Algorithms;
using ILGPU.Runtime;
using PoissonFlow.Kernels.Device;

namespace PoissonFlow.Kernels;

/// <summary>
/// Softmax cross-entropy for classification, fused: for logits x (rows x classes, row-major) and integer labels y,
/// loss_r = logsumexp(x_r) - x_r[y_r], computed stably by subtracting the row maximum before exponentiating, and its
/// gradient dL/dx_r = scale * (softmax(x_r) - onehot(y_r)). One thread owns one row (grid-stride over rows): three
/// passes over a row of a few classes, no barriers, no atomics, so the result is bit-for-bit reproducible. A label
/// outside [0, classes) makes that row's loss and gradient NaN, which the trainer's divergence check then reports.
/// </summary>
public sealed class SoftmaxCrossEntropy
{
    private readonly ComputeDevice _device;
    private readonly Action<AcceleratorStream, KernelConfig, ArrayView<float>, ArrayView<int>, ArrayView<float>, ArrayView<float>, int, int, float, int> _kernel;

    private SoftmaxCrossEntropy(ComputeDevice device)
    {
        _device = device;
        _kernel = device.Accelerator.LoadKernel<ArrayView<float>, ArrayView<int>, ArrayView<float>, ArrayView<float>, int, int, float, int>(Kernel);
    }

    /// <summary>This device's instance (kernels compiled once per device).</summary>
    public static SoftmaxCrossEntropy For(ComputeDevice device) => device.Operation(d => new SoftmaxCrossEntropy(d));

    /// <summary>
    /// Per-row losses ADDED to <paramref name="rowLoss"/> (so a trainer can sum an interval's losses on the device
    /// and read them once), each multiplied by <paramref name="scale"/>; and dLogits = scale * (softmax - onehot),
    /// written. With scale = 1 / batch, the gradient is that of the batch-mean loss.
    /// </summary>
    public void ForwardBackward(ArrayView<float> logits, ArrayView<int> labels, ArrayView<float> rowLoss, ArrayView<float> dLogits,
        int rows, int classes, float scale)
    {
        Validate(logits, labels, rowLoss, rows, classes);
        if (dLogits.Length < (long)rows * classes) throw new ArgumentException($"softmax cross-entropy: dLogits has {dLogits.Length} elements, needs {rows} x {classes}");
        _kernel(_device.Accelerator.DefaultStream, _device.GridStride(rows), logits, labels, rowLoss, dLogits, rows, classes, scale, 1);
    }

    /// <summary>Per-row losses only, WRITTEN to <paramref name="rowLoss"/> (unscaled); for evaluation.</summary>
    public void Forward(ArrayView<float> logits, ArrayView<int> labels, ArrayView<float> rowLoss, int rows, int classes)
    {
        Validate(logits, labels, rowLoss, rows, classes);
        _kernel(_device.Accelerator.DefaultStream, _device.GridStride(rows), logits, labels, rowLoss, default, rows, classes, 1f, 0);
    }

    /// <summary>
    /// Float64 reference: the per-row losses (unscaled) and the gradient scale * (softmax - onehot). A label out of
    /// range gives NaN, as in the kernel.
    /// </summary>
    public static (double[] RowLoss, double[] DLogits) Reference(ReadOnlySpan<double> logits, ReadOnlySpan<int> labels, int rows, int classes, double scale)
    {
        var loss = new double[rows];
        var gradient = new double[rows * classes];
        for (int r = 0; r < rows; r++)
        {
            var row = logits.Slice(r * classes, classes);
            int label = labels[r];
            double max = double.NegativeInfinity;
            foreach (double v in row) max = Math.Max(max, v);
            double sum = 0;
            foreach (double v in row) sum += Math.Exp(v - max);
            double logSum = max + Math.Log(sum);
            bool valid = label >= 0 && label < classes;
            loss[r] = valid ? logSum - row[label] : double.NaN;
            for (int c = 0; c < classes; c++)
            {
                double p = Math.Exp(row[c] - logSum);
                gradient[r * classes + c] = valid ? scale * (p - (c == label ? 1.0 : 0.0)) : double.NaN;
            }
        }

        return (loss, gradient);
    }

    private static void Validate(ArrayView<float> logits, ArrayView<int> labels, ArrayView<float> rowLoss, int rows, int classes)
    {
        if (rows <= 0 || classes < 2) throw new ArgumentException($"softmax cross-entropy: needs rows > 0 and at least 2 classes, got {rows} x {classes}");
        if (logits.Length < (long)rows * classes) throw new ArgumentException($"softmax cross-entropy: logits have {logits.Length} elements, need {rows} x {classes}");
        if (labels.Length < rows) throw new ArgumentException($"softmax cross-entropy: labels have {labels.Length} elements, need {rows}");
        if (rowLoss.Length < rows) throw new ArgumentException($"softmax cross-entropy: row loss has {rowLoss.Length} elements, needs {rows}");
    }

    /// <summary>
    /// One row per iteration: max, then sum of exp(x - max) (at most 1 per term, so no overflow; the max term is
    /// exactly 1, so no underflow to log 0), then loss and gradient. <paramref name="backward"/> = 0 writes the loss
    /// only; 1 accumulates scaled losses and writes the gradient.
    /// </summary>
    [GpuKernel]
    internal static void Kernel(ArrayView<float> logits, ArrayView<int> labels, ArrayView<float> rowLoss, ArrayView<float> dLogits,
        int rows, int classes, float scale, int backward)
    {
        int stride = Grid.DimX * Group.DimX;
        for (int r = Grid.GlobalIndex.X; r < rows; r += stride)
        {
            int start = r * classes, label = labels[r];
            float max = logits[start];
            for (int c = 1; c < classes; c++) max = XMath.Max(max, logits[start + c]);
            float sum = 0f;
            for (int c = 0; c < classes; c++) sum += XMath.Exp(logits[start + c] - max);
            float logSum = max + XMath.Log(sum);
            bool valid = label >= 0 && label < classes;
            float loss = valid ? logSum - logits[start + label] : float.NaN;
            if (backward == 0)
            {
                rowLoss[r] = loss;
                continue;
            }

            rowLoss[r] += scale * loss;
            float inverseSum = 1f / sum;
            for (int c = 0; c < classes; c++)
            {
                float p = XMath.Exp(logits[start + c] - max) * inverseSum;
                dLogits[start + c] = valid ? scale * (c == label ? p - 1f : p) : float.NaN;
            }
        }
    }
}
