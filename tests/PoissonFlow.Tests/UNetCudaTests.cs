using ILGPU;
using ILGPU.Runtime;
using PoissonFlow.Kernels.Device;
using PoissonFlow.Kernels.Image;
using PoissonFlow.Network;
using PoissonFlow.Network.UNet;

namespace PoissonFlow.Tests;

/// <summary>
/// The CUDA launch shapes of the attention kernels at the small preset's lowest level (7x7, 128 channels, batch 4), and
/// the small-preset network on CUDA (at 12x12 so the float64 reference stays quick) against the float64 composition
/// and finite differences. Ignored without a CUDA device.
/// </summary>
[Category("Cuda")]
public sealed class UNetCudaTests
{
    [Test]
    public void SelfAttentionMatchesFloat64ReferenceAtSmallPresetSize()
    {
        using var device = TestDevice.CudaOrIgnore();
        var shape = new SelfAttentionShape(4, 128, 49);
        var rng = new Random(128);
        // N(0, 0.3) projections over 128 channels: logits of a few units, as GroupNorm-ed features give.
        var qkv = Numerics.Normal(rng, (int)shape.QkvLength, 0.3f);
        var dOutput = Numerics.Uniform(rng, (int)shape.OutputLength);
        using var qkvBuffer = device.Accelerator.Allocate1D(qkv);
        using var pBuffer = device.Accelerator.Allocate1D(Numerics.Poison((int)shape.ProbabilitiesLength));
        using var outBuffer = device.Accelerator.Allocate1D(Numerics.Poison((int)shape.OutputLength));
        using var dOutBuffer = device.Accelerator.Allocate1D(dOutput);
        using var scratch = device.Accelerator.Allocate1D(Numerics.Poison((int)shape.ProbabilitiesLength));
        using var dQkvBuffer = device.Accelerator.Allocate1D(Numerics.Poison((int)shape.QkvLength));
        var attention = SelfAttention.For(device);
        attention.Forward(shape, qkvBuffer.View, pBuffer.View, outBuffer.View);
        attention.Backward(shape, qkvBuffer.View, pBuffer.View, dOutBuffer.View, scratch.View, dQkvBuffer.View);
        var (output, probabilities) = SelfAttention.ForwardReference(shape, qkv.Wide());
        // Dots of 128 (logits) and 49 (outputs, gradients) float32 terms: ~1e-6 relative of sums of |terms| ~ 10.
        Numerics.AssertClose(pBuffer.GetAsArray1D(), probabilities, 1e-4, 1e-6, "probabilities");
        Numerics.AssertClose(outBuffer.GetAsArray1D(), output, 1e-4, 1e-5, "output");
        Numerics.AssertClose(dQkvBuffer.GetAsArray1D(), SelfAttention.BackwardReference(shape, qkv.Wide(), dOutput.Wide()), 1e-4, 1e-5, "dQkv");
    }

    [Test]
    public void SmallPresetNetworkMatchesFloat64ReferenceAndFiniteDifferences()
    {
        using var device = TestDevice.CudaOrIgnore();
        CheckSmallNetwork(device);
    }

    /// <summary>
    /// The small preset (with dropout) at 12x12x1 on <paramref name="device"/>: the training forward pass against the
    /// float64 reference, and the input gradient and one element of a few tensors along the whole chain (embedding,
    /// input conv, middle attention, output conv) against central finite differences of it.
    /// </summary>
    internal static void CheckSmallNetwork(ComputeDevice device)
    {
        const int batch = 2;
        const long step = 2;
        using var net = new UNetNetwork(device, UNetConfig.Small(1, 12), seed: 5) { ComputeInputGradient = true };
        var rng = new Random(12);
        // Weights of ~1/sqrt(fan_in) scale (as initialised, but with the zero-initialised tensors filled too).
        var parameters = new float[net.Parameters.Count];
        foreach (var tensor in net.Parameters.Tensors)
        {
            float bound = tensor.Shape.Length > 1 ? 1.5f / MathF.Sqrt(tensor.Length / tensor.Shape[0]) : 0.3f;
            Numerics.Uniform(rng, (int)tensor.Length, -bound, bound).CopyTo(parameters, tensor.Offset);
        }

        var points = Numerics.Uniform(rng, batch * net.Dim);
        float[] z = [0.3f, 7f];
        var dPrediction = Numerics.Uniform(rng, batch * net.OutputWidth);
        net.Parameters.Upload(ParameterBuffer.Weights, parameters);
        using var pointsBuffer = device.Accelerator.Allocate1D(points);
        using var zBuffer = device.Accelerator.Allocate1D(z);
        using var dPredictionBuffer = device.Accelerator.Allocate1D(dPrediction);
        net.SetTrainingStep(step);
        var output = net.ForwardTraining(pointsBuffer.View, zBuffer.View, batch);
        net.Backward(dPredictionBuffer.View, batch);
        var prediction = new float[output.Length];
        output.CopyToCPU(prediction);
        var inputGradient = new float[batch * net.Dim];
        net.InputGradient.CopyToCPU(inputGradient);
        var gradients = net.Parameters.Download(ParameterBuffer.Gradients);

        var wideParameters = parameters.Wide();
        var widePoints = points.Wide();
        var wideDPrediction = dPrediction.Wide();
        // ~90 float32 kernels in a chain, each ~1e-6 relative: 1e-4 relative on O(1) outputs (2e-4 absolute).
        Numerics.AssertClose(prediction, net.ForwardReference(wideParameters, widePoints, z.Wide(), batch, step), 1e-4, 2e-4, "forward");
        double Loss(double[] p, double[] x) => FiniteDifference.Dot(wideDPrediction, net.ForwardReference(p, x, z.Wide(), batch, step));
        int[] pixels = [0, 77, 144 + 13];
        // As in UNetNetworkTests: 2e-3 relative + absolute against float64 FD.
        Numerics.AssertClose(pixels.Select(i => inputGradient[i]).ToArray(), FiniteDifference.Gradient(x => Loss(wideParameters, x), widePoints, pixels),
            2e-3, 2e-3, "input gradient");
        var indices = new[] { "embed.dense0.weight", "conv_in.weight", "mid.attn.qkv.weight", "up2.attn2.proj_out.weight", "conv_out.bias" }
            .Select(name => net.Parameters.Tensor(name))
            .Select(t => (int)(t.Offset + rng.NextInt64(t.Length)))
            .ToArray();
        Numerics.AssertClose(indices.Select(i => gradients[i]).ToArray(), FiniteDifference.Gradient(p => Loss(p, widePoints), wideParameters, indices),
            2e-3, 2e-3, "parameter gradients");
    }
}
