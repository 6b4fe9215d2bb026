namespace PoissonFlow.Tests;

/// <summary>Shared helpers for kernel tests: fresh random inputs, poisoned outputs, tolerance checks.</summary>
public static class Numerics
{
    /// <summary>Uniform floats in [lo, hi) from a seeded generator (never zeros).</summary>
    public static float[] Uniform(Random rng, int count, float lo = -1f, float hi = 1f)
    {
        var data = new float[count];
        for (int i = 0; i < data.Length; i++) data[i] = lo + (hi - lo) * rng.NextSingle();
        return data;
    }

    /// <summary>Standard normal floats (Box-Muller) from a seeded generator.</summary>
    public static float[] Normal(Random rng, int count, float scale = 1f)
    {
        var data = new float[count];
        for (int i = 0; i < data.Length; i++)
        {
            double u1 = 1.0 - rng.NextDouble(), u2 = rng.NextDouble();
            data[i] = (float)(scale * Math.Sqrt(-2.0 * Math.Log(u1)) * Math.Cos(2 * Math.PI * u2));
        }

        return data;
    }

    /// <summary>An array of NaN: written to a kernel's output before the run so unwritten elements fail the check.</summary>
    public static float[] Poison(int count) => Enumerable.Repeat(float.NaN, count).ToArray();

    /// <summary>
    /// Asserts |actual - expected| &lt;= atol + rtol * |expected| element-wise, and that every element is finite
    /// (a NaN from the poisoned output fails here). Reports the worst element.
    /// </summary>
    public static void AssertClose(ReadOnlySpan<float> actual, ReadOnlySpan<double> expected, double rtol, double atol, string what)
    {
        Assert.That(actual.Length, Is.EqualTo(expected.Length), $"{what}: length");
        int worst = -1;
        double worstExcess = 0;
        for (int i = 0; i < actual.Length; i++)
        {
            if (!double.IsFinite(actual[i]))
            {
                Assert.Fail($"{what}: element {i} is {actual[i]} (expected {expected[i]:G9}): unwritten or non-finite");
            }

            double excess = Math.Abs(actual[i] - expected[i]) - (atol + rtol * Math.Abs(expected[i]));
            if (excess > worstExcess)
            {
                worstExcess = excess;
                worst = i;
            }
        }

        if (worst >= 0)
        {
            Assert.Fail($"{what}: element {worst} is {actual[worst]:G9}, expected {expected[worst]:G9} (rtol {rtol:G3}, atol {atol:G3})");
        }
    }

    /// <summary>Relative error of a vector in the max norm: max|a - e| / max|e|.</summary>
    public static double MaxRelativeError(ReadOnlySpan<float> actual, ReadOnlySpan<double> expected)
    {
        double maxDiff = 0, maxRef = 0;
        for (int i = 0; i < actual.Length; i++)
        {
            maxDiff = Math.Max(maxDiff, Math.Abs(actual[i] - expected[i]));
            maxRef = Math.Max(maxRef, Math.Abs(expected[i]));
        }

        return maxDiff / Math.Max(maxRef, double.Epsilon);
    }
}
