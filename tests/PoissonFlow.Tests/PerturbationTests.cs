using PoissonFlow.Kernels;

namespace PoissonFlow.Tests;

/// <summary>
/// PFGM and PFGM++ perturbations: against the float64 reference on the same Philox integers, and statistically
/// against closed forms (5-sigma tolerances from the sample size, so a correct implementation fails ~1 run in 10^6).
/// </summary>
public sealed class PerturbationTests
{
    private static Perturbation Op => Perturbation.For(TestDevice.Cpu);

    [Test]
    public void PfgmMatchesFloat64Reference()
    {
        const int batch = 50, dim = 37;
        var options = new PfgmPerturbationOptions();
        var clean = Numerics.Uniform(new Random(1), batch * dim);
        var run = RunPfgm(clean, batch, dim, options, seed: 77, step: 5);
        var (perturbed, z, scalars) = Perturbation.PfgmReference(clean, batch, dim, options, 77, 5);
        // Float32 Box-Muller and exp(m ln 1.03) against float64: a few float ulps of values up to |k eps| ~ 1e3.
        Numerics.AssertClose(run.Perturbed, perturbed, rtol: 2e-5, atol: 1e-5, "x~");
        Numerics.AssertClose(run.Z, z, rtol: 2e-5, atol: 0, "z~");
        Numerics.AssertClose(run.Scalars, scalars, rtol: 2e-5, atol: 1e-6, "m, k, |eps|, z0");
        for (int i = 0; i < batch; i++) Assert.That(run.ZNetwork[i], Is.EqualTo(Math.Max(run.Z[i], 1e-10f)));
    }

    [Test]
    public void PfgmStatisticsMatchClosedForms()
    {
        const int batch = 4096, dim = 16;
        var options = new PfgmPerturbationOptions();
        var clean = Numerics.Uniform(new Random(2), batch * dim);
        var run = RunPfgm(clean, batch, dim, options, seed: 2024, step: 0);
        double sigma = options.Sigma;

        // E|eps| = sigma sqrt(2) Gamma((N+1)/2) / Gamma(N/2); Var = sigma^2 N - mean^2.
        double meanNorm = sigma * Math.Sqrt(2) * Math.Exp(LogGamma((dim + 1) / 2.0) - LogGamma(dim / 2.0));
        double sdNorm = Math.Sqrt(sigma * sigma * dim - meanNorm * meanNorm);
        double observedNorm = Enumerable.Range(0, batch).Average(i => (double)run.Scalars[i * 4 + 2]);
        Assert.That(observedNorm, Is.EqualTo(meanNorm).Within(5 * sdNorm / Math.Sqrt(batch)), "mean noise norm");

        // Restricted fraction: P(|N(0,1)| < 0.5) = erf(0.5 / sqrt 2) = 0.382925.
        int restricted = Enumerable.Range(0, batch).Count(i => run.Scalars[i * 4 + 3] < options.RestrictThreshold);
        const double pRestricted = 0.38292492254802624;
        Assert.That(restricted / (double)batch, Is.EqualTo(pRestricted).Within(5 * Math.Sqrt(pRestricted * (1 - pRestricted) / batch)), "restricted fraction");

        var free = new List<double>();
        for (int i = 0; i < batch; i++)
        {
            double m = run.Scalars[i * 4], k = run.Scalars[i * 4 + 1], norm = run.Scalars[i * 4 + 2], z0 = run.Scalars[i * 4 + 3];
            bool isRestricted = z0 < options.RestrictThreshold;
            Assert.That(m, Is.GreaterThanOrEqualTo(0).And.LessThan(isRestricted ? options.RestrictedM : options.M), $"m of sample {i}");
            if (!isRestricted) free.Add(m);
            Assert.That(k, Is.EqualTo(Math.Pow(1 + options.Tau, m)).Within(2e-5 * k), $"k of sample {i}");
            Assert.That(run.Z[i], Is.EqualTo(k * z0).Within(2e-6 * k * z0 + 1e-30), $"z~ of sample {i}");
            double displacement = Math.Sqrt(Enumerable.Range(0, dim).Sum(e => Math.Pow((double)run.Perturbed[i * dim + e] - clean[i * dim + e], 2)));
            Assert.That(displacement, Is.EqualTo(k * norm).Within(1e-4 * k * norm + 1e-6), $"|x~ - y| of sample {i}");
        }

        // Unrestricted m ~ U[0, M): mean M/2, sd M/sqrt(12).
        Assert.That(free.Average(), Is.EqualTo(options.M / 2.0).Within(5 * options.M / Math.Sqrt(12 * free.Count)), "mean of free m");
        Assert.That(free.Max(), Is.GreaterThan(0.99 * options.M));
    }

    [Test]
    public void SameSeedGivesSameNumbersAndOtherStepsDiffer()
    {
        const int batch = 9, dim = 13;
        var options = new PfgmPerturbationOptions();
        var clean = Numerics.Uniform(new Random(3), batch * dim);
        var first = RunPfgm(clean, batch, dim, options, seed: 5, step: 1);
        var second = RunPfgm(clean, batch, dim, options, seed: 5, step: 1);
        var other = RunPfgm(clean, batch, dim, options, seed: 5, step: 2);
        Assert.That(second.Perturbed, Is.EqualTo(first.Perturbed));
        Assert.That(second.Z, Is.EqualTo(first.Z));
        Assert.That(other.Perturbed, Is.Not.EqualTo(first.Perturbed));
        var radius = Enumerable.Repeat(0.7f, batch).ToArray();
        Assert.That(RunStudentT(clean, radius, batch, dim, 8, 11, 4), Is.EqualTo(RunStudentT(clean, radius, batch, dim, 8, 11, 4)));
    }

    [TestCase(3, 1, false)]
    [TestCase(10, 7, true)]
    [TestCase(33, 2048, false)]
    public void PfgmPlusPlusMatchesFloat64Reference(int dim, int extraDims, bool radiusIsSigma)
    {
        const int batch = 20;
        var rng = new Random(dim);
        var clean = Numerics.Uniform(rng, batch * dim);
        var radius = Numerics.Uniform(rng, batch, 0.1f, 3f);
        var actual = RunStudentT(clean, radius, batch, dim, extraDims, 9, 2, radiusIsSigma);
        var expected = Perturbation.PfgmPlusPlusReference(clean, radius, batch, dim, extraDims, 9, 2, radiusIsSigma);
        // D = 1 has a heavy tail (|h| near 0): relative 2e-5 of values that can reach 1e3.
        Numerics.AssertClose(actual, expected, rtol: 2e-5, atol: 1e-5, "x~");
    }

    /// <summary>E[R^2] = r^2 N / (D - 2) for D &gt; 2 (R = |x~ - y|), with a 5-sigma band from the sample variance.</summary>
    [TestCase(8, 16)]
    [TestCase(8, 2048)]
    public void PfgmPlusPlusSecondMomentMatches(int dim, int extraDims)
    {
        const int batch = 8192;
        const float r = 1.5f;
        var squares = RadiiOverR(dim, extraDims, batch, r).Select(v => v * v * r * r).ToArray();
        double mean = squares.Average(), sd = Math.Sqrt(squares.Average(v => (v - mean) * (v - mean)));
        Assert.That(mean, Is.EqualTo(r * r * dim / (extraDims - 2.0)).Within(5 * sd / Math.Sqrt(batch)));
    }

    /// <summary>D = 1, N = 2: P(R/r &lt; s) = 1 - 1/sqrt(1 + s^2), so the median is sqrt(3) and P(R/r &lt; 1) = 1 - 1/sqrt(2).</summary>
    [Test]
    public void PfgmPlusPlusQuantilesForOneExtraDimension()
    {
        const int batch = 8192;
        var ratios = RadiiOverR(dim: 2, extraDims: 1, batch, r: 0.8f);
        foreach (var (s, p) in new[] { (Math.Sqrt(3), 0.5), (1.0, 1 - 1 / Math.Sqrt(2)), (10.0, 1 - 1 / Math.Sqrt(101)) })
        {
            double fraction = ratios.Count(v => v < s) / (double)batch;
            Assert.That(fraction, Is.EqualTo(p).Within(5 * Math.Sqrt(p * (1 - p) / batch)), $"P(R/r < {s:G4})");
        }
    }

    [Test]
    public void RejectsBadArguments()
    {
        var device = TestDevice.Cpu;
        using var clean = device.Accelerator.Allocate1D<float>(12);
        using var small = device.Accelerator.Allocate1D<float>(2);
        Assert.Multiple(() =>
        {
            Assert.That(() => Op.Pfgm(clean.View, clean.View, small.View, small.View, 3, 4, new PfgmPerturbationOptions(), 1, 0),
                Throws.ArgumentException.With.Message.Contains("z has 2 values but needs 3"));
            Assert.That(() => Op.Pfgm(clean.View, small.View, small.View, small.View, 2, 4, new PfgmPerturbationOptions(), 1, 0),
                Throws.ArgumentException.With.Message.Contains("perturbed has 2 values but needs 8"));
            Assert.That(() => Op.Pfgm(clean.View, clean.View, small.View, small.View, 2, 4, new PfgmPerturbationOptions(Sigma: 0), 1, 0),
                Throws.ArgumentException.With.Message.Contains("sigma"));
            Assert.That(() => Op.PfgmPlusPlus(clean.View, clean.View, small.View, 2, 4, 0, 1, 0),
                Throws.ArgumentException.With.Message.Contains("extra dimensions D must be at least 1"));
        });
    }

    private static double[] RadiiOverR(int dim, int extraDims, int batch, float r)
    {
        var clean = Numerics.Uniform(new Random(dim + extraDims), batch * dim);
        var radius = Enumerable.Repeat(r, batch).ToArray();
        var perturbed = RunStudentT(clean, radius, batch, dim, extraDims, 31, 0);
        return Enumerable.Range(0, batch)
            .Select(i => Math.Sqrt(Enumerable.Range(0, dim).Sum(e => Math.Pow((double)perturbed[i * dim + e] - clean[i * dim + e], 2))) / r)
            .ToArray();
    }

    private static float[] RunStudentT(float[] clean, float[] radius, int batch, int dim, int extraDims, ulong seed, uint step, bool radiusIsSigma = false)
    {
        var accelerator = TestDevice.Cpu.Accelerator;
        using var cleanBuffer = accelerator.Allocate1D(clean);
        using var radiusBuffer = accelerator.Allocate1D(radius);
        using var perturbed = accelerator.Allocate1D(Numerics.Poison(batch * dim));
        Op.PfgmPlusPlus(cleanBuffer.View, perturbed.View, radiusBuffer.View, batch, dim, extraDims, seed, step, radiusIsSigma);
        return perturbed.GetAsArray1D();
    }

    private static PfgmRun RunPfgm(float[] clean, int batch, int dim, PfgmPerturbationOptions options, ulong seed, uint step)
    {
        var accelerator = TestDevice.Cpu.Accelerator;
        using var cleanBuffer = accelerator.Allocate1D(clean);
        using var perturbed = accelerator.Allocate1D(Numerics.Poison(batch * dim));
        using var z = accelerator.Allocate1D(Numerics.Poison(batch));
        using var zNetwork = accelerator.Allocate1D(Numerics.Poison(batch));
        Op.Pfgm(cleanBuffer.View, perturbed.View, z.View, zNetwork.View, batch, dim, options, seed, step);
        TestDevice.Cpu.Synchronize();
        var scalars = new float[batch * Perturbation.ScalarsPerSample];
        Op.SampleScalars.CopyToCPU(scalars);
        return new PfgmRun(perturbed.GetAsArray1D(), z.GetAsArray1D(), zNetwork.GetAsArray1D(), scalars);
    }

    /// <summary>ln Gamma(x) for x &gt; 0 (Lanczos, g = 7, 9 terms: ~1e-15 relative).</summary>
    private static double LogGamma(double x)
    {
        double[] c = [0.99999999999980993, 676.5203681218851, -1259.1392167224028, 771.32342877765313, -176.61502916214059,
            12.507343278686905, -0.13857109526572012, 9.9843695780195716e-6, 1.5056327351493116e-7];
        if (x < 0.5) return Math.Log(Math.PI / Math.Sin(Math.PI * x)) - LogGamma(1 - x);
        x -= 1;
        double a = c[0], t = x + 7.5;
        for (int i = 1; i < 9; i++) a += c[i] / (x + i);
        return 0.5 * Math.Log(2 * Math.PI) + (x + 0.5) * Math.Log(t) - t + Math.Log(a);
    }

    private sealed record PfgmRun(float[] Perturbed, float[] Z, float[] ZNetwork, float[] Scalars);
}
