using ILGPU;
using ILGPU.Runtime;
using PoissonFlow.Kernels.Device;

namespace PoissonFlow.Kernels;

/// <summary>
/// PFGM's field regression loss (spec section 4) and its gradient in one launch. Per sample, over the W = N+1
/// components: 0.5 * sum (pred - target)^2 (<c>reduce_mean=False</c>, CIFAR/CelebA) or the plain mean of the squares
/// (<c>reduce_mean=True</c>, LSUN); then averaged over the batch. The kernel ADDS each row's share of the batch loss
/// to a per-row accumulator (so a trainer sums B values only when it wants the number, and gets the total over all
/// steps since it last cleared them) and writes dLoss/dPred (=, an activation gradient).
/// </summary>
public sealed class FieldLoss
{
    private readonly ComputeDevice _device;
    private readonly Action<AcceleratorStream, KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, LossArgs> _kernel;

    private FieldLoss(ComputeDevice device)
    {
        _device = device;
        _kernel = device.Accelerator.LoadKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, LossArgs>(ForwardBackwardKernel);
    }

    /// <summary>This device's instance (kernels compiled once per device).</summary>
    public static FieldLoss For(ComputeDevice device) => device.Operation(d => new FieldLoss(d));

    /// <summary>
    /// Computes the loss of <paramref name="batch"/> rows of <paramref name="width"/> values: each row's contribution
    /// to the batch mean is added to <paramref name="rowLoss"/> (the sum of the additions is the loss) and
    /// <paramref name="dPrediction"/> receives the gradient of that loss. <paramref name="weight"/> scales both (e.g. micro-batch size / total batch size, so
    /// that accumulated micro-batch gradients equal the full batch's).
    /// </summary>
    public void ForwardBackward(ArrayView<float> prediction, ArrayView<float> target, ArrayView<float> dPrediction,
        ArrayView<float> rowLoss, int batch, int width, bool reduceMean, float weight = 1f)
    {
        if (batch <= 0 || width <= 0) throw new ArgumentException($"field loss: batch ({batch}) and width ({width}) must be positive");
        long total = (long)batch * width;
        if (prediction.Length < total) throw new ArgumentException($"field loss: prediction has {prediction.Length} elements, needs {batch} x {width}");
        if (target.Length < total) throw new ArgumentException($"field loss: target has {target.Length} elements, needs {batch} x {width}");
        if (dPrediction.Length < total) throw new ArgumentException($"field loss: dPrediction has {dPrediction.Length} elements, needs {batch} x {width}");
        if (rowLoss.Length < batch) throw new ArgumentException($"field loss: row loss has {rowLoss.Length} elements, needs {batch}");
        float lossScale = (float)(weight * (reduceMean ? 1.0 / width : 0.5) / batch);
        _kernel(_device.Accelerator.DefaultStream, _device.GridStride(total), prediction, target, dPrediction, rowLoss,
            new LossArgs(batch, width, lossScale, 2f * lossScale));
    }

    /// <summary>Float64 reference of the batch loss.</summary>
    public static double Reference(ReadOnlySpan<double> prediction, ReadOnlySpan<double> target, int batch, int width, bool reduceMean)
    {
        double total = 0;
        for (int b = 0; b < batch; b++)
        {
            double sum = 0;
            for (int c = 0; c < width; c++)
            {
                double d = prediction[b * width + c] - target[b * width + c];
                sum += d * d;
            }

            total += reduceMean ? sum / width : 0.5 * sum;
        }

        return total / batch;
    }

    /// <summary>Float64 reference of dLoss/dPred.</summary>
    public static double[] GradientReference(ReadOnlySpan<double> prediction, ReadOnlySpan<double> target, int batch, int width, bool reduceMean)
    {
        double scale = (reduceMean ? 2.0 / width : 1.0) / batch;
        var gradient = new double[batch * width];
        for (int i = 0; i < gradient.Length; i++) gradient[i] = scale * (prediction[i] - target[i]);
        return gradient;
    }

    /// <summary>
    /// Two grid-stride loops over independent work in one launch: every element's gradient (all threads busy even
    /// when rows are wide), then each row's loss (one thread per row, summing in a fixed order: deterministic).
    /// </summary>
    [GpuKernel]
    internal static void ForwardBackwardKernel(ArrayView<float> prediction, ArrayView<float> target, ArrayView<float> dPrediction,
        ArrayView<float> rowLoss, LossArgs args)
    {
        int stride = Grid.DimX * Group.DimX;
        int total = args.Batch * args.Width;
        for (int i = Grid.GlobalIndex.X; i < total; i += stride) dPrediction[i] = args.GradScale * (prediction[i] - target[i]);
        for (int b = Grid.GlobalIndex.X; b < args.Batch; b += stride)
        {
            float sum = 0;
            int row = b * args.Width;
            for (int c = 0; c < args.Width; c++)
            {
                float d = prediction[row + c] - target[row + c];
                sum += d * d;
            }

            rowLoss[b] += args.LossScale * sum;
        }
    }
}

/// <summary>Rows, row width, the factor from a row's squared error to its share of the loss, and twice that.</summary>
internal readonly record struct LossArgs(int Batch, int Width, float LossScale, float GradScale);
