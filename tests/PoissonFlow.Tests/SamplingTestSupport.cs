using PoissonFlow.Kernels;
using PoissonFlow.Network;

namespace PoissonFlow.Tests;

/// <summary>
/// The exact PFGM field of a few point charges at (c_k, 0) in N+1 dimensions, in float64 on the host: the normalised
/// empirical field of spec section 3 with the charges as the data set, E = sum_k w_k (c_k - p), w_k proportional to
/// q_k |p - c_k|^-(N+1), sum w = 1 (so E_z = -z exactly), v = sqrt(N) E / (|E| + gamma). Copies in and out of the
/// device on every call, which is fine for tests.
/// </summary>
public sealed class PointChargeField(int dim, double[] charges, double[] strengths, double gamma) : IFieldPredictor
{
    /// <inheritdoc />
    public int Dim => dim;

    /// <summary>Number of charges.</summary>
    public int Count => strengths.Length;

    /// <summary>Charge positions, Count x N.</summary>
    public double[] Charges => charges;

    /// <inheritdoc />
    public void Predict(ArrayView<float> points, ArrayView<float> z, ArrayView<float> output, int batch)
    {
        var x = ((ArrayView1D<float, Stride1D.Dense>)points).GetAsArray1D();
        var zs = ((ArrayView1D<float, Stride1D.Dense>)z).GetAsArray1D();
        var field = new double[batch * (dim + 1)];
        for (int b = 0; b < batch; b++)
        {
            Field(x.AsSpan(b * dim, dim).ToArray().Select(v => (double)v).ToArray(), zs[b], field.AsSpan(b * (dim + 1), dim + 1));
        }

        output.CopyFromCPU(field.Select(v => (float)v).ToArray());
    }

    /// <summary>The normalised field at (x, z) in float64.</summary>
    public void Field(ReadOnlySpan<double> x, double z, Span<double> v)
    {
        Span<double> logWeights = stackalloc double[Count];
        double maxLog = double.NegativeInfinity;
        for (int k = 0; k < Count; k++)
        {
            double d2 = z * z;
            for (int i = 0; i < dim; i++) d2 += Square(x[i] - charges[k * dim + i]);
            logWeights[k] = Math.Log(strengths[k]) - (dim + 1) / 2.0 * Math.Log(d2);
            maxLog = Math.Max(maxLog, logWeights[k]);
        }

        double total = 0;
        for (int k = 0; k < Count; k++) total += logWeights[k] = Math.Exp(logWeights[k] - maxLog);
        double norm2 = z * z;
        for (int i = 0; i < dim; i++)
        {
            double e = 0;
            for (int k = 0; k < Count; k++) e += logWeights[k] / total * (charges[k * dim + i] - x[i]);
            v[i] = e;
            norm2 += e * e;
        }

        v[dim] = -z;
        double scale = Math.Sqrt(dim) / (Math.Sqrt(norm2) + gamma);
        for (int i = 0; i <= dim; i++) v[i] *= scale;
    }

    private static double Square(double v) => v * v;
}

/// <summary>Float64 references for the sampler tests.</summary>
public static class SamplingReference
{
    /// <summary>
    /// Integrates the PFGM ODE in t = ln z with classical RK4 in float64 and many steps, using the same drift as the
    /// kernels (<see cref="OdeSteps.DriftReference"/>: epsilon and z-substitution included). Rows are independent.
    /// </summary>
    public static double[] Integrate(PointChargeField field, ReadOnlySpan<float> start, double zFrom, double zTo,
        double gamma, double zExp, int steps = 4000)
    {
        int dim = field.Dim;
        int rows = start.Length / dim;
        var result = new double[start.Length];
        double t0 = Math.Log(zFrom), h = (Math.Log(zTo) - t0) / steps;
        var v = new double[dim + 1];
        for (int b = 0; b < rows; b++)
        {
            var x = new double[dim];
            for (int i = 0; i < dim; i++) x[i] = start[b * dim + i];
            double[] Drift(double[] y, double t)
            {
                double z = Math.Exp(t);
                field.Field(y, z, v);
                return OdeSteps.DriftReference(v, 1, dim, new DriftSettings((float)z, (float)z, (float)gamma, (float)zExp));
            }

            for (int s = 0; s < steps; s++)
            {
                double t = t0 + s * h;
                var k1 = Drift(x, t);
                var k2 = Drift(Add(x, k1, h / 2), t + h / 2);
                var k3 = Drift(Add(x, k2, h / 2), t + h / 2);
                var k4 = Drift(Add(x, k3, h), t + h);
                for (int i = 0; i < dim; i++) x[i] += h / 6 * (k1[i] + 2 * k2[i] + 2 * k3[i] + k4[i]);
            }

            x.CopyTo(result, b * dim);
        }

        return result;
    }

    private static double[] Add(double[] x, double[] k, double h) => x.Select((v, i) => v + h * k[i]).ToArray();

    /// <summary>Largest Euclidean row distance between a float32 result and a float64 reference.</summary>
    public static double MaxRowError(ReadOnlySpan<float> actual, ReadOnlySpan<double> expected, int dim)
    {
        double max = 0;
        for (int b = 0; b < actual.Length / dim; b++)
        {
            double d2 = 0;
            for (int i = b * dim; i < (b + 1) * dim; i++) d2 += (actual[i] - expected[i]) * (actual[i] - expected[i]);
            max = Math.Max(max, Math.Sqrt(d2));
        }

        return max;
    }

    /// <summary>ln Gamma(x) for x &gt; 0 (Lanczos, g = 7, 9 terms: about 1e-15 relative).</summary>
    public static double LogGamma(double x)
    {
        double[] c =
        [
            0.99999999999980993, 676.5203681218851, -1259.1392167224028, 771.32342877765313, -176.61502916214059,
            12.507343278686905, -0.13857109526572012, 9.9843695780195716e-6, 1.5056327351493116e-7,
        ];
        if (x < 0.5) return Math.Log(Math.PI / Math.Abs(Math.Sin(Math.PI * x))) - LogGamma(1 - x);
        x -= 1;
        double a = c[0], t = x + 7.5;
        for (int i = 1; i < 9; i++) a += c[i] / (x + i);
        return 0.5 * Math.Log(2 * Math.PI) + (x + 0.5) * Math.Log(t) - t + Math.Log(a);
    }

    /// <summary>The regularised incomplete beta function I_x(a, b) (continued fraction, Numerical Recipes' betacf).</summary>
    public static double IncompleteBeta(double x, double a, double b)
    {
        if (x <= 0) return 0;
        if (x >= 1) return 1;
        double front = Math.Exp(LogGamma(a + b) - LogGamma(a) - LogGamma(b) + a * Math.Log(x) + b * Math.Log(1 - x));
        return x < (a + 1) / (a + b + 2) ? front * BetaFraction(x, a, b) / a : 1 - front * BetaFraction(1 - x, b, a) / b;
    }

    private static double BetaFraction(double x, double a, double b)
    {
        const double tiny = 1e-300;
        double c = 1, d = 1 - (a + b) * x / (a + 1);
        d = 1 / (Math.Abs(d) < tiny ? tiny : d);
        double h = d;
        for (int m = 1; m <= 1000; m++)
        {
            double aa = m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m));
            d = 1 + aa * d; d = 1 / (Math.Abs(d) < tiny ? tiny : d);
            c = 1 + aa / c; c = Math.Abs(c) < tiny ? tiny : c;
            h *= d * c;
            aa = -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1));
            d = 1 + aa * d; d = 1 / (Math.Abs(d) < tiny ? tiny : d);
            c = 1 + aa / c; c = Math.Abs(c) < tiny ? tiny : c;
            double delta = d * c;
            h *= delta;
            if (Math.Abs(delta - 1) < 1e-15) break;
        }

        return h;
    }

    /// <summary>
    /// CDF of the prior radius R = s sqrt(B/(1-B)), B ~ Beta(N/2, D/2): P(R &lt;= r) = I_{r^2/(r^2+s^2)}(N/2, D/2).
    /// </summary>
    public static double RadiusCdf(double r, int dim, int extraDims, double scale) =>
        IncompleteBeta(r * r / (r * r + scale * scale), dim / 2.0, extraDims / 2.0);

    /// <summary>The radius with CDF p (bisection on <see cref="RadiusCdf"/>).</summary>
    public static double RadiusQuantile(double p, int dim, int extraDims, double scale)
    {
        double lo = 0, hi = scale;
        while (RadiusCdf(hi, dim, extraDims, scale) < p) hi *= 2;
        for (int i = 0; i < 200; i++)
        {
            double mid = (lo + hi) / 2;
            if (RadiusCdf(mid, dim, extraDims, scale) < p) lo = mid; else hi = mid;
        }

        return (lo + hi) / 2;
    }
}
