namespace PoissonFlow.Evaluation;

/// <summary>The mean and covariance of a set of feature vectors (float64), what a Frechet distance compares.</summary>
/// <param name="Mean">The mean vector (Dim values).</param>
/// <param name="Covariance">The unbiased (n - 1) covariance, Dim x Dim row-major, symmetric.</param>
/// <param name="Dim">Feature dimension.</param>
/// <param name="Count">Number of vectors it was computed from.</param>
public sealed record GaussianStatistics(double[] Mean, double[] Covariance, int Dim, int Count)
{
    /// <summary>
    /// Statistics of <paramref name="count"/> row vectors of <paramref name="dim"/> floats (row-major), accumulated in
    /// float64 around the mean (two passes, so no cancellation), with the n - 1 normalisation that FID uses.
    /// </summary>
    /// <exception cref="ArgumentException">Fewer than 2 rows, or the length does not match.</exception>
    public static GaussianStatistics FromRows(ReadOnlySpan<float> rows, int count, int dim)
    {
        if (count < 2 || dim < 1) throw new ArgumentException($"feature statistics need at least 2 vectors of dimension 1 or more, got {count} x {dim}");
        if (rows.Length != (long)count * dim) throw new ArgumentException($"feature statistics: {rows.Length} values are not {count} x {dim}");
        var mean = new double[dim];
        for (int i = 0; i < count; i++)
        {
            var row = rows.Slice(i * dim, dim);
            for (int d = 0; d < dim; d++) mean[d] += row[d];
        }

        for (int d = 0; d < dim; d++) mean[d] /= count;
        var covariance = new double[dim * dim];
        var centred = new double[dim];
        for (int i = 0; i < count; i++)
        {
            var row = rows.Slice(i * dim, dim);
            for (int d = 0; d < dim; d++) centred[d] = row[d] - mean[d];
            // Upper triangle only; mirrored below.
            for (int a = 0; a < dim; a++)
            {
                double ca = centred[a];
                int offset = a * dim;
                for (int b = a; b < dim; b++) covariance[offset + b] += ca * centred[b];
            }
        }

        for (int a = 0; a < dim; a++)
        {
            for (int b = a; b < dim; b++)
            {
                double value = covariance[a * dim + b] / (count - 1);
                covariance[a * dim + b] = value;
                covariance[b * dim + a] = value;
            }
        }

        return new GaussianStatistics(mean, covariance, dim, count);
    }
}

/// <summary>
/// The Frechet (2-Wasserstein) distance between two Gaussians, the quantity behind FID:
/// FD = |mu1 - mu2|^2 + tr(S1) + tr(S2) - 2 tr((S1^1/2 S2 S1^1/2)^1/2). Host code in float64: S1^1/2 and the trace of
/// the square root both come from symmetric eigen-decompositions (cyclic Jacobi), which stay real and stable for
/// the positive semi-definite matrices involved (negative rounding-level eigenvalues are clamped to 0), unlike the
/// general matrix square root of S1 S2.
/// </summary>
public static class FrechetDistance
{
    /// <summary>The Frechet distance between two sets of statistics of the same dimension.</summary>
    /// <exception cref="ArgumentException">The dimensions differ.</exception>
    public static double Compute(GaussianStatistics a, GaussianStatistics b)
    {
        if (a.Dim != b.Dim) throw new ArgumentException($"Frechet distance: dimensions differ ({a.Dim} vs {b.Dim})");
        return Compute(a.Mean, a.Covariance, b.Mean, b.Covariance, a.Dim);
    }

    /// <summary>The Frechet distance from means and covariances (row-major, symmetric positive semi-definite).</summary>
    public static double Compute(ReadOnlySpan<double> mean1, ReadOnlySpan<double> covariance1, ReadOnlySpan<double> mean2,
        ReadOnlySpan<double> covariance2, int dim)
    {
        if (mean1.Length != dim || mean2.Length != dim || covariance1.Length != dim * dim || covariance2.Length != dim * dim)
        {
            throw new ArgumentException($"Frechet distance: means need {dim} values and covariances {dim} x {dim}");
        }

        double meanTerm = 0, traces = 0;
        for (int d = 0; d < dim; d++)
        {
            double diff = mean1[d] - mean2[d];
            meanTerm += diff * diff;
            traces += covariance1[d * dim + d] + covariance2[d * dim + d];
        }

        var root1 = SymmetricSquareRoot(covariance1, dim);
        var product = Multiply(Multiply(root1, covariance2.ToArray(), dim), root1, dim);
        Symmetrise(product, dim);
        var (values, _) = SymmetricEigen(product, dim);
        double traceRoot = values.Sum(v => Math.Sqrt(Math.Max(v, 0)));
        return meanTerm + traces - 2 * traceRoot;
    }

    /// <summary>The principal square root of a symmetric positive semi-definite matrix: V diag(sqrt(max(l, 0))) V^T.</summary>
    public static double[] SymmetricSquareRoot(ReadOnlySpan<double> matrix, int dim)
    {
        var (values, vectors) = SymmetricEigen(matrix, dim);
        var root = new double[dim * dim];
        for (int k = 0; k < dim; k++)
        {
            double s = Math.Sqrt(Math.Max(values[k], 0));
            if (s == 0) continue;
            for (int i = 0; i < dim; i++)
            {
                double vik = vectors[i * dim + k] * s;
                if (vik == 0) continue;
                for (int j = 0; j < dim; j++) root[i * dim + j] += vik * vectors[j * dim + k];
            }
        }

        Symmetrise(root, dim);
        return root;
    }

    /// <summary>
    /// Eigen-decomposition of a symmetric matrix by cyclic Jacobi rotations: eigenvalues (unsorted) and the
    /// eigenvectors as the COLUMNS of a dim x dim row-major matrix, so that A = V diag(values) V^T. Sweeps until the
    /// off-diagonal mass is below 1e-30 of the total (or 100 sweeps; Jacobi converges quadratically, ~10 for dim 128).
    /// </summary>
    public static (double[] Values, double[] Vectors) SymmetricEigen(ReadOnlySpan<double> matrix, int dim)
    {
        if (matrix.Length != dim * dim) throw new ArgumentException($"eigen-decomposition: {matrix.Length} values are not {dim} x {dim}");
        var a = matrix.ToArray();
        Symmetrise(a, dim);
        var v = new double[dim * dim];
        for (int i = 0; i < dim; i++) v[i * dim + i] = 1;
        double total = 0;
        foreach (double x in a) total += x * x;
        for (int sweep = 0; sweep < 100; sweep++)
        {
            double off = 0;
            for (int p = 0; p < dim; p++)
            {
                for (int q = p + 1; q < dim; q++) off += a[p * dim + q] * a[p * dim + q];
            }

            if (off <= 1e-30 * total || off == 0) break;
            for (int p = 0; p < dim - 1; p++)
            {
                for (int q = p + 1; q < dim; q++) Rotate(a, v, dim, p, q);
            }
        }

        var values = new double[dim];
        for (int i = 0; i < dim; i++) values[i] = a[i * dim + i];
        return (values, v);
    }

    /// <summary>One Jacobi rotation zeroing a[p, q] (the numerically stable form of Golub and Van Loan, 8.4).</summary>
    private static void Rotate(double[] a, double[] v, int n, int p, int q)
    {
        double apq = a[p * n + q];
        if (apq == 0) return;
        double app = a[p * n + p], aqq = a[q * n + q];
        double theta = (aqq - app) / (2 * apq);
        double t = Math.Sign(theta) / (Math.Abs(theta) + Math.Sqrt(theta * theta + 1));
        if (theta == 0) t = 1;
        double c = 1 / Math.Sqrt(t * t + 1), s = t * c;
        for (int k = 0; k < n; k++)
        {
            // Columns p and q of A (A is kept symmetric, so rows follow below).
            double akp = a[k * n + p], akq = a[k * n + q];
            a[k * n + p] = c * akp - s * akq;
            a[k * n + q] = s * akp + c * akq;
        }

        for (int k = 0; k < n; k++)
        {
            double apk = a[p * n + k], aqk = a[q * n + k];
            a[p * n + k] = c * apk - s * aqk;
            a[q * n + k] = s * apk + c * aqk;
        }

        a[p * n + q] = 0;
        a[q * n + p] = 0;
        for (int k = 0; k < n; k++)
        {
            double vkp = v[k * n + p], vkq = v[k * n + q];
            v[k * n + p] = c * vkp - s * vkq;
            v[k * n + q] = s * vkp + c * vkq;
        }
    }

    private static double[] Multiply(double[] x, double[] y, int n)
    {
        var result = new double[n * n];
        for (int i = 0; i < n; i++)
        {
            for (int k = 0; k < n; k++)
            {
                double xik = x[i * n + k];
                if (xik == 0) continue;
                for (int j = 0; j < n; j++) result[i * n + j] += xik * y[k * n + j];
            }
        }

        return result;
    }

    private static void Symmetrise(double[] m, int n)
    {
        for (int i = 0; i < n; i++)
        {
            for (int j = i + 1; j < n; j++)
            {
                double mean = 0.5 * (m[i * n + j] + m[j * n + i]);
                m[i * n + j] = mean;
                m[j * n + i] = mean;
            }
        }
    }
}
