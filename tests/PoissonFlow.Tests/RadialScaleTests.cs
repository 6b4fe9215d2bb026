using PoissonFlow.Kernels;

namespace PoissonFlow.Tests;

public sealed class RadialScaleTests
{
    [TestCase(1, 2)]
    [TestCase(37, 2)]
    [TestCase(19, 5)]
    public void Matches_the_float64_reference(int batch, int dim)
    {
        var device = TestDevice.Cpu;
        var rng = new Random(batch * 31 + dim);
        // points from near the data to hundreds of scales away, as PFGM's perturbations and prior produce
        var points = Numerics.Normal(rng, batch * dim).Select((v, i) => v * MathF.Pow(10, i % 4 - 1)).ToArray();
        var z = Numerics.Uniform(rng, batch, 1e-3f, 30f);
        using var pointsBuffer = device.Accelerator.Allocate1D(points);
        using var zBuffer = device.Accelerator.Allocate1D(z);
        using var output = device.Accelerator.Allocate1D(Numerics.Poison(batch * dim));
        RadialScale.For(device).Apply(pointsBuffer.View, zBuffer.View, output.View, batch, dim, 0.65f);
        var expected = RadialScale.Reference(points, z, batch, dim, 0.65);
        // float32 sum of a few squares, one sqrt and one product: a few ulps, 1e-6 relative with margin
        Numerics.AssertClose(output.GetAsArray1D(), expected, rtol: 1e-6, atol: 1e-7, "radial scale");
    }

    [Test]
    public void Output_is_bounded_by_one_and_keeps_the_direction()
    {
        var points = new[] { 300f, -400f, 0.01f, 0.02f };
        var z = new[] { 5f, 0.001f };
        var expected = RadialScale.Reference(points, z, 2, 2, 1.0);
        // far: |x'| just below 1, same direction; near: about x / c
        Assert.That(Math.Sqrt(expected[0] * expected[0] + expected[1] * expected[1]), Is.InRange(0.999, 1.0));
        Assert.That(expected[0] / expected[1], Is.EqualTo(-0.75).Within(1e-12));
        Assert.That(expected[2], Is.EqualTo(0.01).Within(1e-5));
    }

    [Test]
    public void Bad_shapes_and_scales_are_rejected()
    {
        var device = TestDevice.Cpu;
        using var buffer = device.Accelerator.Allocate1D<float>(4);
        var op = RadialScale.For(device);
        Assert.That(() => op.Apply(buffer.View, buffer.View, buffer.View, 2, 2, 0f), Throws.ArgumentException.With.Message.Contains("scale"));
        Assert.That(() => op.Apply(buffer.View, buffer.View, buffer.View, 3, 2, 1f), Throws.ArgumentException.With.Message.Contains("too short"));
    }
}
