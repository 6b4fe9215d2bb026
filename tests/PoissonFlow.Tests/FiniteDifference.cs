namespace PoissonFlow.Tests;

/// <summary>Central finite differences of float64 reference functions: the oracle for every backward kernel.</summary>
public static class FiniteDifference
{
    /// <summary>
    /// d f / d x_i for every i by (f(x + h e_i) - f(x - h e_i)) / 2h. In float64 with h = 1e-5 the truncation error is
    /// O(h^2 |f'''|) ~ 1e-10 and the rounding error ~ 1e-16 |f| / h ~ 1e-11: far below the float32 kernel's own error.
    /// </summary>
    public static double[] Gradient(Func<double[], double> f, double[] x, double h = 1e-5) =>
        Gradient(f, x, Enumerable.Range(0, x.Length).ToArray(), h);

    /// <summary>The same central differences at the given <paramref name="indices"/> only (one value per index).</summary>
    public static double[] Gradient(Func<double[], double> f, double[] x, int[] indices, double h = 1e-5)
    {
        var gradient = new double[indices.Length];
        var probe = (double[])x.Clone();
        for (int j = 0; j < indices.Length; j++)
        {
            int i = indices[j];
            probe[i] = x[i] + h;
            double plus = f(probe);
            probe[i] = x[i] - h;
            double minus = f(probe);
            probe[i] = x[i];
            gradient[j] = (plus - minus) / (2 * h);
        }

        return gradient;
    }

    /// <summary>sum_i weights_i * values_i: turns a vector output into the scalar whose gradient a backward pass computes.</summary>
    public static double Dot(double[] weights, double[] values)
    {
        double sum = 0;
        for (int i = 0; i < values.Length; i++) sum += weights[i] * values[i];
        return sum;
    }

    /// <summary>The array widened to float64.</summary>
    public static double[] Wide(this float[] values) => values.Select(v => (double)v).ToArray();
}
