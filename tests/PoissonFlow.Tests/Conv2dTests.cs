using PoissonFlow.Kernels.Image;

namespace PoissonFlow.Tests;

/// <summary>
/// Conv2d forward and backward, both kernel variants, against the float64 reference; the reference backward against
/// float64 central finite differences of the reference forward. Shapes are tiny and non-square (H != W catches
/// swapped indices; 7 with stride 2 gives the odd-size edge) because the CPU emulator is slow.
/// </summary>
public sealed class Conv2dTests
{
    private static readonly object[] Cases =
    [
        new object[] { 3, 1, Conv2dVariant.Coarse },
        new object[] { 3, 2, Conv2dVariant.Coarse },
        new object[] { 1, 1, Conv2dVariant.Coarse },
        new object[] { 3, 1, Conv2dVariant.Tiled },
        new object[] { 3, 2, Conv2dVariant.Tiled },
        new object[] { 1, 1, Conv2dVariant.Tiled },
    ];

    private static Conv2dShape Shape(int kernel, int stride) =>
        new(batch: 2, inChannels: 4, height: stride == 2 ? 7 : 6, width: 5, outChannels: 6, kernelSize: kernel, stride: stride);

    /// <summary>
    /// Float32 sums of at most depth = max(Cin*K*K, N*Ho*Wo) = 60 products of O(1) values: the rounding error grows at
    /// most like depth * 2^-24 * sum|terms|, so atol 1e-6 per term of depth and rtol 1e-5 bound it with margin.
    /// </summary>
    private static double Atol(Conv2dShape s) => 1e-6 * Math.Max(s.InChannels * s.KernelSize * s.KernelSize, s.Batch * s.OutHeight * s.OutWidth);

    [TestCaseSource(nameof(Cases))]
    public void ForwardMatchesFloat64Reference(int kernel, int stride, Conv2dVariant variant) =>
        CheckForward(Shape(kernel, stride), variant, new Random(10 * kernel + stride));

    [TestCaseSource(nameof(Cases))]
    public void BackwardMatchesFloat64ReferenceAndAccumulatesParameterGradients(int kernel, int stride, Conv2dVariant variant) =>
        CheckBackward(Shape(kernel, stride), variant, new Random(100 + 10 * kernel + stride));

    /// <summary>
    /// A shape spanning several tiles of the tiled kernel: forward and input-gradient columns N*H*W = 144 (three 64-wide
    /// tiles, the last partial), weight-gradient columns Cin*9 = 72 (two tiles: the bias must still be summed once) and
    /// depth N*H*W = 144 (nine 16-deep slices).
    /// </summary>
    [TestCase(Conv2dVariant.Tiled)]
    [TestCase(Conv2dVariant.Coarse)]
    public void SeveralTilesMatchFloat64Reference(Conv2dVariant variant)
    {
        var shape = new Conv2dShape(batch: 2, inChannels: 8, height: 9, width: 8, outChannels: 5, kernelSize: 3, stride: 1);
        CheckForward(shape, variant, new Random(300));
        CheckBackward(shape, variant, new Random(301));
    }

    private static void CheckForward(Conv2dShape shape, Conv2dVariant variant, Random rng)
    {
        int kernel = shape.KernelSize, stride = shape.Stride;
        var x = Numerics.Uniform(rng, (int)shape.InputLength);
        var w = Numerics.Uniform(rng, (int)shape.WeightLength);
        var b = Numerics.Uniform(rng, shape.OutChannels);
        var device = TestDevice.Cpu;
        using var xBuffer = device.Accelerator.Allocate1D(x);
        using var wBuffer = device.Accelerator.Allocate1D(w);
        using var bBuffer = device.Accelerator.Allocate1D(b);
        using var yBuffer = device.Accelerator.Allocate1D(Numerics.Poison((int)shape.OutputLength));
        var conv = Conv2d.For(device);
        conv.Variant = variant;
        conv.Forward(shape, xBuffer.View, wBuffer.View, bBuffer.View, yBuffer.View);
        var expected = Conv2d.ForwardReference(shape, x.Wide(), w.Wide(), b.Wide());
        Numerics.AssertClose(yBuffer.GetAsArray1D(), expected, rtol: 1e-5, atol: Atol(shape), $"conv{kernel}x{kernel}/s{stride} {variant} forward");
    }

    private static void CheckBackward(Conv2dShape shape, Conv2dVariant variant, Random rng)
    {
        int kernel = shape.KernelSize, stride = shape.Stride;
        var x = Numerics.Uniform(rng, (int)shape.InputLength);
        var w = Numerics.Uniform(rng, (int)shape.WeightLength);
        var dy = Numerics.Uniform(rng, (int)shape.OutputLength);
        var dwBefore = Numerics.Uniform(rng, (int)shape.WeightLength);
        var dbBefore = Numerics.Uniform(rng, shape.OutChannels);
        var device = TestDevice.Cpu;
        using var xBuffer = device.Accelerator.Allocate1D(x);
        using var wBuffer = device.Accelerator.Allocate1D(w);
        using var dyBuffer = device.Accelerator.Allocate1D(dy);
        using var dxBuffer = device.Accelerator.Allocate1D(Numerics.Poison((int)shape.InputLength));
        using var dwBuffer = device.Accelerator.Allocate1D(dwBefore);
        using var dbBuffer = device.Accelerator.Allocate1D(dbBefore);
        var conv = Conv2d.For(device);
        conv.Variant = variant;
        conv.BackwardInput(shape, dyBuffer.View, wBuffer.View, dxBuffer.View);
        conv.BackwardWeights(shape, xBuffer.View, dyBuffer.View, dwBuffer.View, dbBuffer.View);

        var (dx, dw, db) = Conv2d.BackwardReference(shape, x.Wide(), w.Wide(), dy.Wide());
        string what = $"conv{kernel}x{kernel}/s{stride} {variant}";
        Numerics.AssertClose(dxBuffer.GetAsArray1D(), dx, rtol: 1e-5, atol: Atol(shape), $"{what} dInput");
        // Accumulation: the kernels add to gradients that already hold values (micro-batches).
        Numerics.AssertClose(dwBuffer.GetAsArray1D(), dw.Zip(dwBefore, (g, before) => g + before).ToArray(), rtol: 1e-5, atol: Atol(shape), $"{what} dWeight");
        Numerics.AssertClose(dbBuffer.GetAsArray1D(), db.Zip(dbBefore, (g, before) => g + before).ToArray(), rtol: 1e-5, atol: Atol(shape), $"{what} dBias");
    }

    [TestCase(3, 1)]
    [TestCase(3, 2)]
    [TestCase(1, 1)]
    public void ReferenceBackwardMatchesFiniteDifferences(int kernel, int stride)
    {
        var shape = Shape(kernel, stride);
        var rng = new Random(200 + 10 * kernel + stride);
        var x = Numerics.Uniform(rng, (int)shape.InputLength).Wide();
        var w = Numerics.Uniform(rng, (int)shape.WeightLength).Wide();
        var b = Numerics.Uniform(rng, shape.OutChannels).Wide();
        var dy = Numerics.Uniform(rng, (int)shape.OutputLength).Wide();
        var (dx, dw, db) = Conv2d.BackwardReference(shape, x, w, dy);
        // The convolution is linear in each argument, so central differences are exact up to float64 rounding
        // (~1e-16 * |loss| / h with |loss| < 100): 1e-7 absolute is ample and still catches any wrong index.
        Numerics.AssertClose(dx.Select(v => (float)v).ToArray(),
            FiniteDifference.Gradient(p => FiniteDifference.Dot(dy, Conv2d.ForwardReference(shape, p, w, b)), x), 1e-6, 1e-6, "dInput vs FD");
        Numerics.AssertClose(dw.Select(v => (float)v).ToArray(),
            FiniteDifference.Gradient(p => FiniteDifference.Dot(dy, Conv2d.ForwardReference(shape, x, p, b)), w), 1e-6, 1e-6, "dWeight vs FD");
        Numerics.AssertClose(db.Select(v => (float)v).ToArray(),
            FiniteDifference.Gradient(p => FiniteDifference.Dot(dy, Conv2d.ForwardReference(shape, x, w, p)), b), 1e-6, 1e-6, "dBias vs FD");
    }

    [Test]
    public void RejectsUnsupportedKernelAndTooSmallBuffers()
    {
        Assert.That(() => new Conv2dShape(1, 1, 4, 4, 1, kernelSize: 1, stride: 2), Throws.ArgumentException.With.Message.Contains("stride 2"));
        Assert.That(() => new Conv2dShape(1, 1, 4, 4, 1, kernelSize: 5, stride: 1), Throws.ArgumentException.With.Message.Contains("kernel 5"));
        var shape = new Conv2dShape(1, 2, 4, 4, 3, 3, 1);
        var device = TestDevice.Cpu;
        using var small = device.Accelerator.Allocate1D<float>(4);
        using var weight = device.Accelerator.Allocate1D<float>(shape.WeightLength);
        Assert.That(() => Conv2d.For(device).Forward(shape, small.View, weight.View, default, small.View),
            Throws.ArgumentException.With.Message.Contains("input has 4 elements, needs 32"));
    }
}
