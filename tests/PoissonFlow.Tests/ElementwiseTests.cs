using PoissonFlow.Kernels;

namespace PoissonFlow.Tests;

public sealed class ElementwiseTests
{
    [TestCase(1)]
    [TestCase(37)]
    [TestCase(5000)]
    public void AxpyMatchesFloat64Reference(int length)
    {
        var rng = new Random(length);
        var x = Numerics.Uniform(rng, length);
        var y = Numerics.Uniform(rng, length);
        var device = TestDevice.Cpu;
        using var xBuffer = device.Accelerator.Allocate1D(x);
        using var yBuffer = device.Accelerator.Allocate1D(y);
        Elementwise.For(device).Axpy(xBuffer.View, yBuffer.View, 0.75f);
        var actual = yBuffer.GetAsArray1D();
        var expected = y.Select(v => (double)v).ToArray();
        Elementwise.AxpyReference(x.Select(v => (double)v).ToArray(), expected, 0.75);
        // One float32 multiply-add per element: a few ulps of |y| + |0.75 x| <= 1.75.
        Numerics.AssertClose(actual, expected, rtol: 1e-6, atol: 1e-6, "axpy");
    }

    [Test]
    public void FillWritesEveryElement()
    {
        var device = TestDevice.Cpu;
        using var buffer = device.Accelerator.Allocate1D(Numerics.Poison(1000));
        Elementwise.For(device).Fill(buffer.View, 2.5f);
        Assert.That(buffer.GetAsArray1D(), Is.All.EqualTo(2.5f));
    }
}
