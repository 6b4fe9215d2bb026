using PoissonFlow.Kernels;

namespace PoissonFlow.Tests;

public sealed class PosteriorMeanFieldTests
{
    [TestCase(1, 2)]
    [TestCase(45, 2)]
    [TestCase(13, 6)]
    public void Field_matches_the_float64_reference(int batch, int dim)
    {
        var device = TestDevice.Cpu;
        var rng = new Random(batch + 7 * dim);
        var prediction = Numerics.Uniform(rng, batch * (dim + 1));
        var points = Numerics.Normal(rng, batch * dim, scale: 20f);
        var z = Numerics.Uniform(rng, batch, 1e-3f, 30f);
        using var predictionBuffer = device.Accelerator.Allocate1D(prediction);
        using var pointsBuffer = device.Accelerator.Allocate1D(points);
        using var zBuffer = device.Accelerator.Allocate1D(z);
        using var output = device.Accelerator.Allocate1D(Numerics.Poison(batch * (dim + 1)));
        PosteriorMeanField.For(device).Field(predictionBuffer.View, pointsBuffer.View, zBuffer.View, output.View, batch, dim);
        // float32: differences, a short sum of squares, one sqrt and one product per element: a few ulps
        Numerics.AssertClose(output.GetAsArray1D(), PosteriorMeanField.FieldReference(prediction, points, z, batch, dim),
            rtol: 1e-5, atol: 1e-6, "posterior-mean field");
    }

    [Test]
    public void The_exact_posterior_mean_gives_the_direction_of_the_official_field()
    {
        // The field of §3 points along (ȳ − x, −z) because Σ w = 1: from the PFGM++ posterior mean with D = 1, r = z,
        // the conversion must reproduce the PFGM field's direction (the norms differ by design: √N here, γ there).
        var device = TestDevice.Cpu;
        var rng = new Random(5);
        const int batch = 24, count = 64, dim = 2;
        var data = Numerics.Uniform(rng, count * dim);
        var points = Numerics.Normal(rng, batch * dim, scale: 3f);
        var z = Numerics.Uniform(rng, batch, 0.05f, 10f);
        var field = PoissonField.For(device);
        var official = field.Compute(points, z, data, batch, count, dim, FieldOptions.Pfgm(gamma: 0f));
        var mean = field.Compute(points, z, data, batch, count, dim, FieldOptions.PfgmPlusPlus(1));
        using var meanBuffer = device.Accelerator.Allocate1D(mean);
        using var target = device.Accelerator.Allocate1D(Numerics.Poison(batch * (dim + 1)));
        var op = PosteriorMeanField.For(device);
        op.Target(meanBuffer.View, target.View, batch, dim);
        var padded = target.GetAsArray1D();
        using var pointsBuffer = device.Accelerator.Allocate1D(points);
        using var zBuffer = device.Accelerator.Allocate1D(z);
        using var output = device.Accelerator.Allocate1D(Numerics.Poison(batch * (dim + 1)));
        op.Field(target.View, pointsBuffer.View, zBuffer.View, output.View, batch, dim);
        var converted = output.GetAsArray1D();
        for (int i = 0; i < batch; i++)
        {
            Assert.That(padded[i * 3 + 2], Is.EqualTo(0f), "target padding");
            Assert.That(padded[i * 3], Is.EqualTo(mean[i * 2]), "target copy");
            double officialNorm = Math.Sqrt(official[i * 3] * official[i * 3] + official[i * 3 + 1] * official[i * 3 + 1] + official[i * 3 + 2] * official[i * 3 + 2]);
            for (int c = 0; c < 3; c++)
            {
                // both are unit directions times √2 (γ = 0): float32 field and weights, 1e-4 absolute
                Assert.That(converted[i * 3 + c] / Math.Sqrt(2), Is.EqualTo(official[i * 3 + c] / officialNorm).Within(1e-4), $"row {i}, component {c}");
            }
        }
    }

    [Test]
    public void Short_views_are_rejected()
    {
        var device = TestDevice.Cpu;
        using var buffer = device.Accelerator.Allocate1D<float>(4);
        var op = PosteriorMeanField.For(device);
        Assert.That(() => op.Target(buffer.View, buffer.View, 2, 2), Throws.ArgumentException.With.Message.Contains("too short"));
        Assert.That(() => op.Field(buffer.View, buffer.View, buffer.View, buffer.View, 2, 2), Throws.ArgumentException.With.Message.Contains("too short"));
    }
}
