using PoissonFlow.Evaluation;

namespace PoissonFlow.Tests.Data;

public sealed class FrechetDistanceTests
{
    /// <summary>A random rotation (orthonormal columns) from Gram-Schmidt on Gaussian vectors.</summary>
    private static double[] RandomRotation(Random rng, int n)
    {
        var q = Numerics.Normal(rng, n * n).Select(v => (double)v).ToArray();
        for (int j = 0; j < n; j++)
        {
            for (int k = 0; k < j; k++)
            {
                double dot = 0;
                for (int i = 0; i < n; i++) dot += q[i * n + j] * q[i * n + k];
                for (int i = 0; i < n; i++) q[i * n + j] -= dot * q[i * n + k];
            }

            double norm = Math.Sqrt(Enumerable.Range(0, n).Sum(i => q[i * n + j] * q[i * n + j]));
            for (int i = 0; i < n; i++) q[i * n + j] /= norm;
        }

        return q;
    }

    /// <summary>R diag(d) R^T.</summary>
    private static double[] Rotated(double[] r, double[] d, int n)
    {
        var m = new double[n * n];
        for (int i = 0; i < n; i++)
        {
            for (int j = 0; j < n; j++)
            {
                double s = 0;
                for (int k = 0; k < n; k++) s += r[i * n + k] * d[k] * r[j * n + k];
                m[i * n + j] = s;
            }
        }

        return m;
    }

    private static double[] Diagonal(double[] d)
    {
        int n = d.Length;
        var m = new double[n * n];
        for (int i = 0; i < n; i++) m[i * n + i] = d[i];
        return m;
    }

    private static double MeanTerm(double[] m1, double[] m2) => m1.Zip(m2, (a, b) => (a - b) * (a - b)).Sum();

    [Test]
    public void Diagonal_covariances_give_the_sum_of_squared_root_differences()
    {
        var rng = new Random(5);
        const int n = 12;
        var a = Enumerable.Range(0, n).Select(_ => 0.1 + 3 * rng.NextDouble()).ToArray();
        var b = Enumerable.Range(0, n).Select(_ => 0.1 + 3 * rng.NextDouble()).ToArray();
        var m1 = Numerics.Normal(rng, n).Select(v => (double)v).ToArray();
        var m2 = Numerics.Normal(rng, n).Select(v => (double)v).ToArray();
        double expected = MeanTerm(m1, m2) + a.Zip(b, (x, y) => (Math.Sqrt(x) - Math.Sqrt(y)) * (Math.Sqrt(x) - Math.Sqrt(y))).Sum();
        // float64 Jacobi on well-conditioned matrices: ~1e-13 relative; 1e-10 leaves room for the clamp of tiny eigenvalues.
        Assert.That(FrechetDistance.Compute(m1, Diagonal(a), m2, Diagonal(b), n), Is.EqualTo(expected).Within(1e-10 * expected));
        Assert.That(FrechetDistance.Compute(m1, Diagonal(a), m1, Diagonal(a), n), Is.EqualTo(0).Within(1e-11), "a Gaussian against itself");
    }

    [Test]
    public void Commonly_rotated_covariances_keep_the_diagonal_closed_form()
    {
        var rng = new Random(6);
        const int n = 40;
        var r = RandomRotation(rng, n);
        var a = Enumerable.Range(0, n).Select(_ => 0.01 + 2 * rng.NextDouble()).ToArray();
        var b = Enumerable.Range(0, n).Select(_ => 0.01 + 2 * rng.NextDouble()).ToArray();
        var m1 = new double[n];
        var m2 = Enumerable.Repeat(0.3, n).ToArray();
        double expected = MeanTerm(m1, m2) + a.Zip(b, (x, y) => (Math.Sqrt(x) - Math.Sqrt(y)) * (Math.Sqrt(x) - Math.Sqrt(y))).Sum();
        Assert.That(FrechetDistance.Compute(m1, Rotated(r, a, n), m2, Rotated(r, b, n), n), Is.EqualTo(expected).Within(1e-9 * expected));
    }

    [Test]
    public void Non_commuting_two_by_two_matches_the_determinant_formula()
    {
        // For 2x2 PSD M, tr sqrt(M) = sqrt(tr M + 2 sqrt(det M)); with M = S1^1/2 S2 S1^1/2, tr M = tr(S1 S2) and
        // det M = det S1 det S2.
        var s1 = new[] { 2.0, 0.0, 0.0, 0.5 };
        double angle = 0.7;
        var rotation = new[] { Math.Cos(angle), -Math.Sin(angle), Math.Sin(angle), Math.Cos(angle) };
        var s2 = Rotated(rotation, [3.0, 0.2], 2);
        double trS1S2 = s1[0] * s2[0] + s1[1] * s2[2] + s1[2] * s2[1] + s1[3] * s2[3];
        double det1 = s1[0] * s1[3] - s1[1] * s1[2], det2 = s2[0] * s2[3] - s2[1] * s2[2];
        double expected = 1.0 * 1.0 + 2.0 * 2.0 + (s1[0] + s1[3] + s2[0] + s2[3]) - 2 * Math.Sqrt(trS1S2 + 2 * Math.Sqrt(det1 * det2));
        Assert.That(FrechetDistance.Compute([0, 0], s1, [1, -2], s2, 2), Is.EqualTo(expected).Within(1e-12));
    }

    [Test]
    public void Scaled_dense_covariance_gives_one_minus_c_squared_times_trace()
    {
        // S2 = c^2 S1 commutes with S1: tr sqrt(S1^1/2 S2 S1^1/2) = c tr S1, so FD = (1 - c)^2 tr S1.
        var rng = new Random(7);
        const int n = 128;
        var x = Numerics.Normal(rng, n * 3 * n).Select(v => (double)v).ToArray();
        var s1 = new double[n * n];
        for (int i = 0; i < n; i++)
        {
            for (int j = 0; j < n; j++)
            {
                double s = 0;
                for (int k = 0; k < 3 * n; k++) s += x[i * 3 * n + k] * x[j * 3 * n + k];
                s1[i * n + j] = s / (3 * n);
            }
        }

        const double c = 1.7;
        var s2 = s1.Select(v => c * c * v).ToArray();
        double trace = Enumerable.Range(0, n).Sum(i => s1[i * n + i]);
        double expected = (1 - c) * (1 - c) * trace;
        Assert.That(FrechetDistance.Compute(new double[n], s1, new double[n], s2, n), Is.EqualTo(expected).Within(1e-9 * trace));
    }

    [Test]
    public void Eigen_decomposition_reconstructs_the_matrix_with_orthonormal_vectors()
    {
        var rng = new Random(8);
        const int n = 30;
        var a = Numerics.Normal(rng, n * n).Select(v => (double)v).ToArray();
        for (int i = 0; i < n; i++)
        {
            for (int j = 0; j < i; j++) a[i * n + j] = a[j * n + i];
        }

        var (values, v) = FrechetDistance.SymmetricEigen(a, n);
        for (int i = 0; i < n; i++)
        {
            for (int j = 0; j < n; j++)
            {
                double reconstructed = 0, gram = 0;
                for (int k = 0; k < n; k++)
                {
                    reconstructed += v[i * n + k] * values[k] * v[j * n + k];
                    gram += v[k * n + i] * v[k * n + j];
                }

                Assert.That(reconstructed, Is.EqualTo(a[i * n + j]).Within(1e-11), $"A[{i},{j}]");
                Assert.That(gram, Is.EqualTo(i == j ? 1 : 0).Within(1e-12), $"V^T V [{i},{j}]");
            }
        }
    }

    [Test]
    public void Statistics_of_rows_match_a_two_point_hand_computation()
    {
        var stats = GaussianStatistics.FromRows(new float[] { 1, 2, 3, 6 }, 2, 2);
        Assert.That(stats.Mean, Is.EqualTo(new[] { 2.0, 4.0 }));
        // Deviations (-1, -2) and (1, 2), divided by n - 1 = 1.
        Assert.That(stats.Covariance, Is.EqualTo(new[] { 2.0, 4.0, 4.0, 8.0 }));
        Assert.Throws<ArgumentException>(() => GaussianStatistics.FromRows(new float[] { 1, 2 }, 1, 2));
    }

    [Test]
    public void Sampled_gaussians_approach_the_closed_form()
    {
        // 20,000 draws each of N(0, diag(1, 4)) and N((1, 0), diag(4, 1)): FD = 1 + (1 - 2)^2 + (2 - 1)^2 = 3; the
        // estimate's standard error at this size is ~0.03.
        var rng = new Random(9);
        const int count = 20_000;
        var x = Numerics.Normal(rng, 2 * count);
        var y = Numerics.Normal(rng, 2 * count);
        for (int i = 0; i < count; i++)
        {
            x[2 * i + 1] *= 2;
            y[2 * i] = 1 + 2 * y[2 * i];
        }

        double fd = FrechetDistance.Compute(GaussianStatistics.FromRows(x, count, 2), GaussianStatistics.FromRows(y, count, 2));
        Assert.That(fd, Is.EqualTo(3).Within(0.15));
    }
}

public sealed class NearestNeighbourTests
{
    [TestCase(1, 1, 3)]
    [TestCase(37, 130, 784)]
    [TestCase(9, 5, 17)]
    public void Matches_the_float64_brute_force(int queries, int references, int dim)
    {
        var rng = new Random(queries + references + dim);
        var q = Numerics.Uniform(rng, queries * dim);
        var r = Numerics.Uniform(rng, references * dim);
        var result = NearestNeighbour.Compute(q, queries, r, references, dim);
        var expected = NearestNeighbour.Reference(q, queries, r, references, dim);
        // d^2 = |q|^2 + |r|^2 - 2 q.r in float32 over up to 784 terms of size <= 1: ~1e-4 absolute on d^2 ~ 260, so
        // ~1e-5 on d ~ 16; rtol 1e-4 covers it.
        Numerics.AssertClose(result.Distances, expected, 1e-4, 1e-3, "nearest-neighbour distances");
        Assert.That(result.Mean, Is.EqualTo(expected.Average()).Within(1e-4 * expected.Average() + 1e-6));
        Assert.That(result.Min, Is.EqualTo(expected.Min()).Within(1e-4 * expected.Min() + 1e-3));
    }

    [Test]
    public void A_copied_reference_point_is_at_distance_zero()
    {
        var rng = new Random(3);
        const int dim = 50;
        var r = Numerics.Uniform(rng, 20 * dim);
        var q = Numerics.Uniform(rng, 3 * dim);
        r.AsSpan(11 * dim, dim).CopyTo(q.AsSpan(dim, dim));
        var result = NearestNeighbour.Compute(q, 3, r, 20, dim);
        // Cancellation of |q|^2 + |r|^2 - 2 q.r (~33 each): float32 leaves ~1e-5 on d^2, so d <= ~4e-3.
        Assert.That(result.Distances[1], Is.LessThan(5e-3));
        Assert.That(result.Min, Is.EqualTo(result.Distances[1]));
    }
}
