using PoissonFlow.Kernels.Image;

namespace PoissonFlow.Tests;

/// <summary>
/// The CUDA launch shapes at the tiny U-Net's real sizes (28x28, 32 -> 64 channels, stride 2; batch 4): the tiled conv
/// with many 64x64 tiles and partial edge tiles, and the 256-thread GroupNorm rows. Ignored without a CUDA device.
/// </summary>
[Category("Cuda")]
public sealed class ImageKernelsCudaTests
{
    [TestCase(3, 1)]
    [TestCase(3, 2)]
    [TestCase(1, 1)]
    public void TiledConvMatchesFloat64ReferenceAtUNetSize(int kernel, int stride)
    {
        using var device = TestDevice.CudaOrIgnore();
        var shape = new Conv2dShape(batch: 4, inChannels: 32, height: 28, width: 28, outChannels: 64, kernelSize: kernel, stride: stride);
        var rng = new Random(kernel * 10 + stride);
        var x = Numerics.Uniform(rng, (int)shape.InputLength);
        var w = Numerics.Uniform(rng, (int)shape.WeightLength, -0.1f, 0.1f);
        var b = Numerics.Uniform(rng, shape.OutChannels);
        var dy = Numerics.Uniform(rng, (int)shape.OutputLength);
        using var xBuffer = device.Accelerator.Allocate1D(x);
        using var wBuffer = device.Accelerator.Allocate1D(w);
        using var bBuffer = device.Accelerator.Allocate1D(b);
        using var yBuffer = device.Accelerator.Allocate1D(Numerics.Poison((int)shape.OutputLength));
        using var dyBuffer = device.Accelerator.Allocate1D(dy);
        using var dxBuffer = device.Accelerator.Allocate1D(Numerics.Poison((int)shape.InputLength));
        using var dwBuffer = device.Accelerator.Allocate1D(new float[shape.WeightLength]);
        using var dbBuffer = device.Accelerator.Allocate1D(new float[shape.OutChannels]);
        var conv = Conv2d.For(device);
        conv.Forward(shape, xBuffer.View, wBuffer.View, bBuffer.View, yBuffer.View);
        conv.BackwardInput(shape, dyBuffer.View, wBuffer.View, dxBuffer.View);
        conv.BackwardWeights(shape, xBuffer.View, dyBuffer.View, dwBuffer.View, dbBuffer.View);
        var y = Conv2d.ForwardReference(shape, x.Wide(), w.Wide(), b.Wide());
        var (dx, dw, db) = Conv2d.BackwardReference(shape, x.Wide(), w.Wide(), dy.Wide());
        // Depth up to 288 (forward) and 4*196..4*784 (weight gradient) float32 products: relative errors ~1e-6 of the
        // sums of |terms|, which reach ~30 (forward) and ~600 (weight gradient).
        Numerics.AssertClose(yBuffer.GetAsArray1D(), y, 1e-4, 1e-4, "forward");
        Numerics.AssertClose(dxBuffer.GetAsArray1D(), dx, 1e-4, 1e-4, "dInput");
        Numerics.AssertClose(dwBuffer.GetAsArray1D(), dw, 1e-4, 2e-3, "dWeight");
        Numerics.AssertClose(dbBuffer.GetAsArray1D(), db, 1e-4, 2e-3, "dBias");
    }

    [Test]
    public void GroupNormWithSiluMatchesFloat64ReferenceAtUNetSize()
    {
        using var device = TestDevice.CudaOrIgnore();
        var shape = new GroupNormShape(batch: 4, channels: 64, spatial: 14 * 14, groups: GroupNorm.DefaultGroups(64));
        var rng = new Random(64);
        var x = Numerics.Uniform(rng, (int)shape.Length, -0.5f, 1.5f);
        var gamma = Numerics.Uniform(rng, 64, 0.5f, 1.5f);
        var beta = Numerics.Uniform(rng, 64, -0.5f, 0.5f);
        var dy = Numerics.Uniform(rng, (int)shape.Length);
        using var xBuffer = device.Accelerator.Allocate1D(x);
        using var gammaBuffer = device.Accelerator.Allocate1D(gamma);
        using var betaBuffer = device.Accelerator.Allocate1D(beta);
        using var yBuffer = device.Accelerator.Allocate1D(Numerics.Poison((int)shape.Length));
        using var meanBuffer = device.Accelerator.Allocate1D<float>(shape.Rows);
        using var rstdBuffer = device.Accelerator.Allocate1D<float>(shape.Rows);
        using var dyBuffer = device.Accelerator.Allocate1D(dy);
        using var dxBuffer = device.Accelerator.Allocate1D(Numerics.Poison((int)shape.Length));
        using var dGammaBuffer = device.Accelerator.Allocate1D(new float[64]);
        using var dBetaBuffer = device.Accelerator.Allocate1D(new float[64]);
        var norm = GroupNorm.For(device);
        norm.Forward(shape, xBuffer.View, gammaBuffer.View, betaBuffer.View, yBuffer.View, meanBuffer.View, rstdBuffer.View, silu: true);
        norm.Backward(shape, xBuffer.View, gammaBuffer.View, betaBuffer.View, meanBuffer.View, rstdBuffer.View, dyBuffer.View,
            dxBuffer.View, dGammaBuffer.View, dBetaBuffer.View, silu: true);
        var (y, _, _) = GroupNorm.ForwardReference(shape, x.Wide(), gamma.Wide(), beta.Wide(), silu: true);
        var (dx, dGamma, dBeta) = GroupNorm.BackwardReference(shape, x.Wide(), gamma.Wide(), beta.Wide(), dy.Wide(), silu: true);
        // CUDA's exp is approximate (a few ulps) and the rows hold 784 elements; gradients sum 784 terms per channel.
        Numerics.AssertClose(yBuffer.GetAsArray1D(), y, 1e-4, 1e-5, "output");
        Numerics.AssertClose(dxBuffer.GetAsArray1D(), dx, 1e-3, 1e-4, "dInput");
        Numerics.AssertClose(dGammaBuffer.GetAsArray1D(), dGamma, 1e-4, 1e-3, "dGamma");
        Numerics.AssertClose(dBetaBuffer.GetAsArray1D(), dBeta, 1e-4, 1e-3, "dBeta");
    }
}
