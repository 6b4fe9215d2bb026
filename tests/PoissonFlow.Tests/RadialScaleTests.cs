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

    [TestCase(1, 2)]
    [TestCase(37, 2)]
    [TestCase(19, 5)]
    public void Skip_matches_the_float64_reference(int batch, int dim)
    {
        var device = TestDevice.Cpu;
        var rng = new Random(batch * 17 + dim);
        var (points, z) = SkipInputs(rng, batch, dim);
        var residual = Numerics.Normal(rng, batch * (dim + 1));
        using var pointsBuffer = device.Accelerator.Allocate1D(points);
        using var zBuffer = device.Accelerator.Allocate1D(z);
        using var residualBuffer = device.Accelerator.Allocate1D(residual);
        using var output = device.Accelerator.Allocate1D(Numerics.Poison(batch * (dim + 1)));
        RadialScale.For(device).Skip(pointsBuffer.View, zBuffer.View, residualBuffer.View, output.View, batch, dim, 0.65f);
        var expected = RadialScale.SkipReference(points, z, residual, batch, dim, 0.65);
        // float32 s (a sum of squares and a sqrt, a few ulps) times F of up to ~4 sigma, plus x: terms of up to ~150,
        // a few ulps of which is ~5e-5 absolute; 1e-4 absolute and 1e-5 relative leave margin
        Numerics.AssertClose(output.GetAsArray1D(), expected, rtol: 1e-5, atol: 1e-4, "radial skip");
    }

    [TestCase(1, 2)]
    [TestCase(37, 2)]
    [TestCase(19, 5)]
    public void Residual_matches_the_float64_reference_and_skip_inverts_it_in_place(int batch, int dim)
    {
        var device = TestDevice.Cpu;
        var rng = new Random(batch * 23 + dim);
        var (points, z) = SkipInputs(rng, batch, dim);
        var mean = Numerics.Uniform(rng, batch * dim); // posterior means lie inside the data's hull
        using var pointsBuffer = device.Accelerator.Allocate1D(points);
        using var zBuffer = device.Accelerator.Allocate1D(z);
        using var meanBuffer = device.Accelerator.Allocate1D(mean);
        using var rows = device.Accelerator.Allocate1D(Numerics.Poison(batch * (dim + 1)));
        var op = RadialScale.For(device);
        op.Residual(pointsBuffer.View, zBuffer.View, meanBuffer.View, rows.View, batch, dim, 0.65f);
        var residual = rows.GetAsArray1D();
        // (ȳ - k x) / s with |k x| <= s: order 1; the difference loses a few ulps of |x| <= ~40 before the division by s >= |x|
        Numerics.AssertClose(residual, RadialScale.ResidualReference(points, z, mean, batch, dim, 0.65), rtol: 1e-5, atol: 2e-5, "radial residual");

        op.Skip(pointsBuffer.View, zBuffer.View, rows.View, rows.View, batch, dim, 0.65f);
        var back = rows.GetAsArray1D();
        var expected = new double[batch * (dim + 1)];
        for (int i = 0; i < batch; i++)
        {
            for (int d = 0; d < dim; d++) expected[i * (dim + 1) + d] = mean[i * dim + d];
        }

        // the round trip cancels terms of up to ~40 (k x against s F) to recover ȳ of size 1: a few ulps of 40
        Numerics.AssertClose(back, expected, rtol: 0, atol: 5e-5, "skip of the residual");
    }

    [Test]
    public void Skip_weight_keeps_x_near_the_plane_and_drops_it_far_above()
    {
        Assert.That(RadialScale.SkipWeight(0, 0.65), Is.EqualTo(1.0));
        Assert.That(RadialScale.SkipWeight(0.65, 0.65), Is.EqualTo(0.5).Within(1e-15));
        Assert.That(RadialScale.SkipWeight(650, 0.65), Is.LessThan(1e-5));
        // near the plane and the data, ȳ ≈ x gives a residual near 0; far above, ȳ ≈ the data's centre does too
        var near = RadialScale.ResidualReference([0.3f, -0.2f], [0.001f], [0.3f, -0.2f], 1, 2, 0.65);
        var high = RadialScale.ResidualReference([40f, 30f], [100f], [0.1f, 0f], 1, 2, 0.65);
        Assert.That(Math.Abs(near[0]) + Math.Abs(near[1]), Is.LessThan(1e-5));
        Assert.That(Math.Abs(high[0]) + Math.Abs(high[1]), Is.LessThan(1e-2));
    }

    [Test]
    public void Bad_skip_shapes_are_rejected()
    {
        var device = TestDevice.Cpu;
        using var buffer = device.Accelerator.Allocate1D<float>(6);
        var op = RadialScale.For(device);
        Assert.That(() => op.Skip(buffer.View, buffer.View, buffer.View, buffer.View, 3, 2, 1f), Throws.ArgumentException.With.Message.Contains("too short"));
        Assert.That(() => op.Skip(buffer.View, buffer.View, buffer.View, buffer.View, 2, 2, float.NaN), Throws.ArgumentException.With.Message.Contains("scale"));
        Assert.That(() => op.Residual(buffer.View, buffer.View, buffer.View.SubView(0, 3), buffer.View, 2, 2, 1f), Throws.ArgumentException.With.Message.Contains("means"));
    }

    // points from near the data to tens of scales away, z from the plane to far above it
    private static (float[] Points, float[] Z) SkipInputs(Random rng, int batch, int dim) => (
        Numerics.Normal(rng, batch * dim).Select((v, i) => v * MathF.Pow(10, i % 3 - 1)).ToArray(),
        Numerics.Uniform(rng, batch, 1e-3f, 30f));

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
