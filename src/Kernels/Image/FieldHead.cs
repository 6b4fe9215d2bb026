using ILGPU;
using ILGPU.Runtime;
using PoissonFlow.Kernels.Device;

namespace PoissonFlow.Kernels.Image;

// The PFGM output head (pfgm-spec.md section 4, "Output"): the last conv emits C + 1 channels; channels 0..C-1 are the
// x-field (flattened, N = C*H*W values) and the spatial mean of channel C is the z-field, so each sample's prediction
// is the (N + 1)-vector [h[0..C-1] flattened ; mean(h[C])]. Forward writes that vector (a gather plus the mean, one
// launch: one thread per output element, the z element's thread looping over its H*W pixels). Backward scatters the
// prediction gradient back to dh (written, =): dh[c < C] = dpred[x part], dh[C, p] = dpred[z] / (H*W).

/// <summary>PFGM output head: x-field copy plus the spatial mean of the last channel (the z-field), forward and backward.</summary>
public sealed class FieldHead
{
    private readonly ComputeDevice _device;
    private readonly Action<AcceleratorStream, KernelConfig, ArrayView<float>, ArrayView<float>, int, int, int> _forward;
    private readonly Action<AcceleratorStream, KernelConfig, ArrayView<float>, ArrayView<float>, int, int, int> _backward;

    private FieldHead(ComputeDevice device)
    {
        _device = device;
        _forward = device.Accelerator.LoadKernel<ArrayView<float>, ArrayView<float>, int, int, int>(ForwardKernel);
        _backward = device.Accelerator.LoadKernel<ArrayView<float>, ArrayView<float>, int, int, int>(BackwardKernel);
    }

    /// <summary>This device's instance (kernels compiled once per device).</summary>
    public static FieldHead For(ComputeDevice device) => device.Operation(d => new FieldHead(d));

    /// <summary>
    /// prediction (batch x (C*spatial + 1)) from the network output (batch x (C + 1) x spatial), where
    /// <paramref name="channels"/> = C + 1 counts the z channel.
    /// </summary>
    public void Forward(ArrayView<float> networkOutput, ArrayView<float> prediction, int batch, int channels, int spatial)
    {
        long predictionLength = Check(networkOutput, prediction, batch, channels, spatial);
        _forward(_device.Accelerator.DefaultStream, _device.GridStride(predictionLength), networkOutput, prediction, batch, channels, spatial);
    }

    /// <summary>dNetworkOutput (batch x (C + 1) x spatial) from dPrediction (batch x (C*spatial + 1)); written.</summary>
    public void Backward(ArrayView<float> dPrediction, ArrayView<float> dNetworkOutput, int batch, int channels, int spatial)
    {
        Check(dNetworkOutput, dPrediction, batch, channels, spatial);
        _backward(_device.Accelerator.DefaultStream, _device.GridStride((long)batch * channels * spatial), dPrediction, dNetworkOutput, batch, channels, spatial);
    }

    /// <summary>Float64 reference of <see cref="Forward"/>.</summary>
    public static double[] ForwardReference(ReadOnlySpan<double> networkOutput, int batch, int channels, int spatial)
    {
        int fieldLength = (channels - 1) * spatial;
        var prediction = new double[batch * (fieldLength + 1)];
        for (int n = 0; n < batch; n++)
        {
            var sample = networkOutput.Slice(n * channels * spatial, channels * spatial);
            sample[..fieldLength].CopyTo(prediction.AsSpan(n * (fieldLength + 1)));
            double sum = 0;
            foreach (double v in sample[fieldLength..]) sum += v;
            prediction[n * (fieldLength + 1) + fieldLength] = sum / spatial;
        }

        return prediction;
    }

    /// <summary>Float64 reference of <see cref="Backward"/>.</summary>
    public static double[] BackwardReference(ReadOnlySpan<double> dPrediction, int batch, int channels, int spatial)
    {
        int fieldLength = (channels - 1) * spatial;
        var dOutput = new double[batch * channels * spatial];
        for (int n = 0; n < batch; n++)
        {
            var row = dPrediction.Slice(n * (fieldLength + 1), fieldLength + 1);
            row[..fieldLength].CopyTo(dOutput.AsSpan(n * channels * spatial));
            for (int p = 0; p < spatial; p++) dOutput[n * channels * spatial + fieldLength + p] = row[fieldLength] / spatial;
        }

        return dOutput;
    }

    private static long Check(ArrayView<float> networkOutput, ArrayView<float> prediction, int batch, int channels, int spatial)
    {
        if (batch <= 0 || channels < 2 || spatial <= 0)
        {
            throw new ArgumentException($"field head: batch ({batch}) and spatial size ({spatial}) must be positive and channels ({channels}) at least 2 (x channels + z)");
        }

        long outputLength = (long)batch * channels * spatial, predictionLength = (long)batch * ((channels - 1) * spatial + 1);
        if (networkOutput.Length < outputLength) throw new ArgumentException($"field head: network output has {networkOutput.Length} elements, needs {outputLength}");
        if (prediction.Length < predictionLength) throw new ArgumentException($"field head: prediction has {prediction.Length} elements, needs {predictionLength}");
        return predictionLength;
    }

    [GpuKernel]
    internal static void ForwardKernel(ArrayView<float> networkOutput, ArrayView<float> prediction, int batch, int channels, int spatial)
    {
        int fieldLength = (channels - 1) * spatial, row = fieldLength + 1;
        int total = batch * row;
        for (int i = Grid.GlobalIndex.X; i < total; i += Grid.DimX * Group.DimX)
        {
            int n = i / row, j = i - n * row;
            int sample = n * channels * spatial;
            if (j < fieldLength)
            {
                prediction[i] = networkOutput[sample + j];
                continue;
            }

            float sum = 0;
            for (int p = 0; p < spatial; p++) sum += networkOutput[sample + fieldLength + p];
            prediction[i] = sum / spatial;
        }
    }

    [GpuKernel]
    internal static void BackwardKernel(ArrayView<float> dPrediction, ArrayView<float> dNetworkOutput, int batch, int channels, int spatial)
    {
        int fieldLength = (channels - 1) * spatial, row = fieldLength + 1, sampleLength = channels * spatial;
        int total = batch * sampleLength;
        float inverseSpatial = 1f / spatial;
        for (int i = Grid.GlobalIndex.X; i < total; i += Grid.DimX * Group.DimX)
        {
            int n = i / sampleLength, j = i - n * sampleLength;
            dNetworkOutput[i] = j < fieldLength ? dPrediction[n * row + j] : dPrediction[n * row + fieldLength] * inverseSpatial;
        }
    }
}
