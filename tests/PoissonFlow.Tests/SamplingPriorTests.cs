using PoissonFlow.Kernels;

namespace PoissonFlow.Tests;

/// <summary>
/// Statistics of the priors against the closed form of the radius: R = s sqrt(B/(1-B)), B ~ Beta(N/2, D/2), so
/// P(R &lt;= r) = I_{r^2/(r^2+s^2)}(N/2, D/2). Bounds are 5 standard errors: a correct sampler fails about once in
/// 1.7 million runs, a wrong shape parameter (N/2 vs (N+1)/2, D vs D+1) fails every time at these sample sizes.
/// </summary>
public sealed class SamplingPriorTests
{
    private const int Samples = 20000;

    private static float[] Draw(int dim, Action<ArrayView<float>> sample)
    {
        var device = TestDevice.Cpu;
        using var points = device.Accelerator.Allocate1D(Numerics.Poison(Samples * dim));
        sample(points.View);
        return points.GetAsArray1D();
    }

    private static double[] Radii(float[] x, int dim) =>
        Enumerable.Range(0, x.Length / dim).Select(b => Math.Sqrt(x.AsSpan(b * dim, dim).ToArray().Sum(v => (double)v * v))).ToArray();

    private static void AssertFraction(double observed, double expected, string what)
    {
        double stdError = Math.Sqrt(expected * (1 - expected) / Samples);
        Assert.That(observed, Is.EqualTo(expected).Within(5 * stdError), $"{what}: observed {observed:F4}, closed form {expected:F4}");
    }

    /// <summary>Sample median within 5 standard errors 1/(2 f(m) sqrt(n)), f the radius density at the median m.</summary>
    private static void AssertMedian(double[] radii, int dim, int extraDims, double scale)
    {
        Array.Sort(radii);
        double median = radii[radii.Length / 2];
        double expected = SamplingReference.RadiusQuantile(0.5, dim, extraDims, scale);
        double dr = 1e-4 * expected;
        double density = (SamplingReference.RadiusCdf(expected + dr, dim, extraDims, scale) - SamplingReference.RadiusCdf(expected - dr, dim, extraDims, scale)) / (2 * dr);
        double stdError = 1 / (2 * density * Math.Sqrt(radii.Length));
        Assert.That(median, Is.EqualTo(expected).Within(5 * stdError), $"median radius {median:G5}, closed form {expected:G5}");
    }

    /// <summary>Directions uniform on the sphere: each coordinate of u = x/|x| has mean 0 and E[u_i^2] = 1/N.</summary>
    private static void AssertUniformDirections(float[] x, int dim)
    {
        int rows = x.Length / dim;
        for (int i = 0; i < dim; i++)
        {
            double mean = 0, meanSquare = 0;
            for (int b = 0; b < rows; b++)
            {
                double norm = Math.Sqrt(x.AsSpan(b * dim, dim).ToArray().Sum(v => (double)v * v));
                double u = x[b * dim + i] / norm;
                mean += u / rows;
                meanSquare += u * u / rows;
            }

            // Var(u_i) = 1/N and Var(u_i^2) <= 1/N: standard errors sqrt(1/(N n)).
            double se = Math.Sqrt(1.0 / (dim * rows));
            Assert.That(mean, Is.EqualTo(0).Within(5 * se), $"mean of u_{i}");
            Assert.That(meanSquare, Is.EqualTo(1.0 / dim).Within(5 * se), $"mean of u_{i}^2");
        }
    }

    [Test]
    public void PfgmPriorMatchesTheProjectedHemisphere()
    {
        // N = 3, z_max = 3 and the clip [1, 20] chosen so that both clips catch a measurable fraction (1.4% and 19%).
        const int dim = 3;
        const float zMax = 3f, upper = 20f;
        var x = Draw(dim, view => Prior.For(TestDevice.Cpu).Pfgm(view, Samples, dim, zMax, upper, seed: 5));
        var radii = Radii(x, dim);
        // Clipped radii sit exactly on the bounds (float32 rounding of x: relative 1e-6).
        double atLower = radii.Count(r => Math.Abs(r - 1) < 1e-5) / (double)Samples;
        double atUpper = radii.Count(r => Math.Abs(r - upper) < 1e-5 * upper) / (double)Samples;
        Assert.That(radii.Min(), Is.GreaterThan(1 - 1e-5));
        Assert.That(radii.Max(), Is.LessThan(upper * (1 + 1e-5)));
        AssertFraction(atLower, SamplingReference.RadiusCdf(1, dim, 1, zMax), "fraction clipped at 1");
        AssertFraction(atUpper, 1 - SamplingReference.RadiusCdf(upper, dim, 1, zMax), "fraction clipped at upper_norm");
        AssertMedian(radii, dim, 1, zMax);
        AssertUniformDirections(x, dim);
    }

    [TestCase(2, 0.5f)]
    [TestCase(6, 1.5f)]
    public void PfgmPlusPlusPriorMatchesTheStudentT(int extraDims, float sigmaMax)
    {
        const int dim = 4;
        var x = Draw(dim, view => Prior.For(TestDevice.Cpu).PfgmPlusPlus(view, Samples, dim, extraDims, sigmaMax, seed: 9));
        var radii = Radii(x, dim);
        double scale = sigmaMax * Math.Sqrt(extraDims);
        AssertMedian(radii, dim, extraDims, scale);
        // One more point of the CDF, in the tail: P(R > 2 * median).
        double tailRadius = 2 * SamplingReference.RadiusQuantile(0.5, dim, extraDims, scale);
        AssertFraction(radii.Count(r => r > tailRadius) / (double)Samples, 1 - SamplingReference.RadiusCdf(tailRadius, dim, extraDims, scale), "tail fraction");
        AssertUniformDirections(x, dim);
    }

    [Test]
    public void DifferentSeedsGiveDifferentSamples()
    {
        const int dim = 3;
        var a = Draw(dim, view => Prior.For(TestDevice.Cpu).Pfgm(view, Samples, dim, 40f, 3000f, seed: 1));
        var b = Draw(dim, view => Prior.For(TestDevice.Cpu).Pfgm(view, Samples, dim, 40f, 3000f, seed: 2));
        Assert.That(a.Zip(b).Count(p => p.First == p.Second), Is.LessThan(10));
    }

    [Test]
    public void RejectsBadSettings()
    {
        var device = TestDevice.Cpu;
        using var points = device.Accelerator.Allocate1D<float>(12);
        var prior = Prior.For(device);
        Assert.That(() => prior.Pfgm(points.View, 4, 3, 0f, 3000f, 1), Throws.ArgumentException.With.Message.Contains("z_max"));
        Assert.That(() => prior.PfgmPlusPlus(points.View, 4, 3, 0, 80f, 1), Throws.ArgumentException.With.Message.Contains("extra dimensions"));
        Assert.That(() => prior.Pfgm(points.View, 5, 3, 40f, 3000f, 1), Throws.ArgumentException.With.Message.Contains("values"));
    }
}
