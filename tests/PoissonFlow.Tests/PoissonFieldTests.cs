using PoissonFlow.Kernels;

namespace PoissonFlow.Tests;

/// <summary>
/// The fused empirical field against its float64 reference, on both implementations (coarse: the CPU design,
/// tiled: the CUDA design, run on the CPU emulator at tiny shapes), with the output poisoned with NaN before each run.
/// Tolerance: 1e-4 max-norm relative error per output row. Why that is the right budget: inputs and outputs are
/// float32 (6e-8); squared distances carry ~1e-7 relative error, which the weight exponent (N+D)/2 (up to 2560 here)
/// amplifies into logit errors of order 1e-5..1e-4 for the worst rows; everything after (float64 ratios, an accurate
/// log1p, float32 accumulation over at most 1000 terms) adds less than 1e-5. A naive float32 logit -(N+D)/2 ln q
/// would miss this by an order of magnitude at N = 3072.
/// </summary>
[NonParallelizable]
public sealed class PoissonFieldTests
{
    private const double RowTolerance = 1e-4;

    private static PoissonField Field => PoissonField.For(TestDevice.Cpu);

    [TearDown]
    public void ResetOverrides()
    {
        Field.ForcePath = FieldPath.Auto;
        Field.ChunkOverride = 0;
        Field.SplitOverride = 0;
    }

    /// <summary>The N x M x D grid on the coarse path (the CPU accelerator's default).</summary>
    [Test]
    public void CoarsePathMatchesReferenceOverTheGrid(
        [Values(2, 784, 3072)] int dim,
        [Values(1, 7, 1000)] int count,
        [Values(0, 1, 128, 2048)] int extraDims)
    {
        // extraDims 0 = PFGM (D = 1 with the normalised target); otherwise PFGM++ with that D.
        var options = extraDims == 0 ? FieldOptions.Pfgm() : FieldOptions.PfgmPlusPlus(extraDims);
        var problem = Problem.Create(seed: dim * 31 + count * 7 + extraDims, batch: 10, count, dim, options);
        CheckAgainstReference(problem, options, FieldPath.Coarse);
    }

    /// <summary>The tiled path at tiny shapes: single and multiple chunks, partial tiles, split-K 1..3.</summary>
    [TestCase(8, 40, 24, 64, 2, 0)]
    [TestCase(8, 150, 24, 64, 3, 0)]
    [TestCase(5, 1, 2, 64, 1, 0)]
    [TestCase(8, 150, 24, 64, 2, 128)]
    [TestCase(66, 70, 17, 64, 2, 2048)]
    [TestCase(8, 130, 40, 64, 2, 1)]
    public void TiledPathMatchesReference(int batch, int count, int dim, int chunk, int splits, int extraDims)
    {
        var options = extraDims == 0 ? FieldOptions.Pfgm() : FieldOptions.PfgmPlusPlus(extraDims);
        var problem = Problem.Create(seed: batch + count + dim + extraDims, batch, count, dim, options);
        Field.ChunkOverride = chunk;
        Field.SplitOverride = splits;
        CheckAgainstReference(problem, options, FieldPath.Tiled);
    }

    /// <summary>
    /// All points far away (N = 3072 on the coarse path, 784 on the slow-to-emulate tiled one): raw weights q^-(N+D)/2
    /// underflow even in float64, the ratios do not.
    /// </summary>
    [TestCase(false, 3072, 64, 6)]
    [TestCase(true, 24, 64, 6)]
    [TestCase(true, 784, 16, 2)]
    public void FarFieldPointsAreFiniteAndMatch(bool tiled, int dim, int count, int batch)
    {
        var path = tiled ? FieldPath.Tiled : FieldPath.Coarse;
        var rng = new Random(5);
        var data = Numerics.Uniform(rng, count * dim);
        var points = new float[batch * dim];
        var extra = new float[batch];
        for (int i = 0; i < batch; i++)
        {
            var direction = Problem.UnitVector(rng, dim);
            for (int k = 0; k < dim; k++) points[i * dim + k] = (float)(2000.0 * (i + 1) * direction[k]);
            extra[i] = 40f * (i + 1);
        }

        Field.ChunkOverride = 64;
        Field.SplitOverride = 1;
        foreach (var options in new[] { FieldOptions.Pfgm(), FieldOptions.PfgmPlusPlus(128) })
        {
            CheckAgainstReference(new Problem(points, extra, data, batch, count, dim), options, path);
        }
    }

    /// <summary>
    /// A point exactly on a data point with a zero extra coordinate (q = 0): the coincident data points share all the
    /// weight, so PFGM gives the zero field and PFGM++ the point itself; other rows are unaffected.
    /// </summary>
    [TestCase(false)]
    [TestCase(true)]
    public void ExactHitGivesTheCoincidentPoint(bool tiled)
    {
        var path = tiled ? FieldPath.Tiled : FieldPath.Coarse;
        var rng = new Random(11);
        int dim = 24, count = 40, batch = 3;
        var data = Numerics.Uniform(rng, count * dim);
        Array.Copy(data, 5 * dim, data, 17 * dim, dim); // a duplicate of data point 5 at 17 (and 5 before 17 in order)
        var points = Numerics.Uniform(rng, batch * dim, -0.5f, 0.5f);
        Array.Copy(data, 5 * dim, points, 0, dim);
        Array.Copy(data, 30 * dim, points, 2 * dim, dim);
        var extra = new[] { 0f, 0.3f, 0f };
        var problem = new Problem(points, extra, data, batch, count, dim);
        Field.ChunkOverride = 64;
        foreach (var options in new[] { FieldOptions.Pfgm(), FieldOptions.PfgmPlusPlus(3) })
        {
            var actual = Run(problem, options, path);
            int width = options.OutputWidth(dim);
            for (int k = 0; k < width; k++)
            {
                double expected0 = options.Kind == FieldKind.Pfgm ? 0 : data[5 * dim + k];
                double expected2 = options.Kind == FieldKind.Pfgm ? 0 : data[30 * dim + k];
                Assert.That(actual[k], Is.EqualTo(expected0).Within(1e-6), $"{options.Kind} row 0 [{k}]");
                Assert.That(actual[2 * width + k], Is.EqualTo(expected2).Within(1e-6), $"{options.Kind} row 2 [{k}]");
            }

            CheckRows(actual, PoissonField.Reference(points, extra, data, batch, count, dim, options), batch, width, $"{path} {options.Kind} exact hit");
        }
    }

    /// <summary>Workspaces are reused across shapes: a large call then a smaller one on the same instance.</summary>
    [Test]
    public void TiledWorkspacesAreReusedAcrossShapes()
    {
        Field.ChunkOverride = 64;
        Field.SplitOverride = 2;
        var options = FieldOptions.PfgmPlusPlus(16);
        CheckAgainstReference(Problem.Create(1, batch: 10, count: 100, dim: 20, options), options, FieldPath.Tiled);
        CheckAgainstReference(Problem.Create(2, batch: 3, count: 20, dim: 7, options), options, FieldPath.Tiled);
    }

    [Test]
    public void AutoPathOnTheCpuAcceleratorIsCoarse()
    {
        var options = FieldOptions.Pfgm();
        var problem = Problem.Create(3, batch: 2, count: 3, dim: 4, options);
        Run(problem, options, FieldPath.Auto);
        Assert.That(Field.LastPath, Is.EqualTo(FieldPath.Coarse));
    }

    [Test]
    public void HostConvenienceMatchesReference()
    {
        var options = FieldOptions.Pfgm(gamma: 2f);
        var p = Problem.Create(4, batch: 5, count: 30, dim: 12, options);
        var actual = Field.Compute(p.Points, p.Extra, p.Data, p.Batch, p.Count, p.Dim, options);
        CheckRows(actual, PoissonField.Reference(p.Points, p.Extra, p.Data, p.Batch, p.Count, p.Dim, options), p.Batch, 13, "host");
    }

    [Test]
    public void RejectsBadArgumentsWithMessagesNamingTheProblem()
    {
        var options = FieldOptions.Pfgm();
        var p = Problem.Create(6, batch: 2, count: 3, dim: 4, options);
        Assert.Multiple(() =>
        {
            Assert.That(() => Field.Compute(p.Points, p.Extra, p.Data, 2, 3, 5, options),
                Throws.ArgumentException.With.Message.Contains("points has 8 values but B x N = 2 x 5 needs 10"));
            Assert.That(() => Field.Compute(p.Points, new float[3], p.Data, 2, 3, 4, options),
                Throws.ArgumentException.With.Message.Contains("extra"));
            Assert.That(() => Field.Compute(p.Points, p.Extra, p.Data, 2, 4, 4, options),
                Throws.ArgumentException.With.Message.Contains("data has 12 values but M x N = 4 x 4 needs 16"));
            Assert.That(() => Field.Compute(p.Points, p.Extra, p.Data, 2, 3, 4, FieldOptions.PfgmPlusPlus(0)),
                Throws.ArgumentException.With.Message.Contains("extra dimensions D must be at least 1"));
            Assert.That(() => Field.Compute(p.Points, p.Extra, p.Data, 0, 3, 4, options),
                Throws.ArgumentException.With.Message.Contains("batch B must be at least 1"));
        });
        var device = TestDevice.Cpu;
        using var points = device.Accelerator.Allocate1D(p.Points);
        using var extra = device.Accelerator.Allocate1D(p.Extra);
        using var data = device.Accelerator.Allocate1D(p.Data);
        using var output = device.Accelerator.Allocate1D<float>(2 * 4);
        Assert.That(() => Field.Compute(points.View, extra.View, data.View, output.View, 2, 3, 4, options),
            Throws.ArgumentException.With.Message.Contains("output has 8 values but B x (N+1) = 2 x 5 needs 10"));
    }

    [TestCase(1e-12)]
    [TestCase(3e-9)]
    [TestCase(1e-4)]
    [TestCase(0.3)]
    [TestCase(0.41421)]
    [TestCase(0.5)]
    [TestCase(1.0)]
    [TestCase(7.5)]
    [TestCase(1e6)]
    [TestCase(1e200)]
    public void Log1pIsAccurateToDoublePrecision(double delta)
    {
        // Goldberg's correction makes the double log of the rounded 1 + delta accurate for tiny delta too.
        double u = 1 + delta;
        double expected = u == 1 ? delta : Math.Log(u) * delta / (u - 1);
        Assert.That(PoissonField.Log1pAccurate(delta), Is.EqualTo(expected).Within(Math.Abs(expected) * 1e-14));
    }

    [Test, Category("Cuda")]
    public void CudaTiledPathMatchesReference()
    {
        using var device = TestDevice.CudaOrIgnore();
        var field = PoissonField.For(device);
        foreach (var (options, dim) in new[] { (FieldOptions.Pfgm(), 784), (FieldOptions.PfgmPlusPlus(128), 3072) })
        {
            var p = Problem.Create(9, batch: 70, count: 5000, dim, options);
            var actual = RunOn(field, p, options);
            Assert.That(field.LastPath, Is.EqualTo(FieldPath.Tiled));
            CheckRows(actual, PoissonField.Reference(p.Points, p.Extra, p.Data, p.Batch, p.Count, p.Dim, options), p.Batch,
                options.OutputWidth(dim), $"cuda {options.Kind}");
        }
    }

    /// <summary>
    /// The tiled path on CUDA at the design point (256, 60000, 784): many chunks, every split. The first 8 rows are
    /// checked against the float64 reference (all 256 would take the host reference ~10 s). Its speed is measured by
    /// `pfgm bench field --device cuda --B 256 --M 60000 --N 784` and the bench project, not here.
    /// </summary>
    [Test, Category("Cuda")]
    public void CudaTiledPathMatchesReferenceAtTheDesignPoint()
    {
        using var device = TestDevice.CudaOrIgnore();
        var field = PoissonField.For(device);
        const int batch = 256, count = 60000, dim = 784, checkedRows = 8;
        var options = FieldOptions.Pfgm();
        var p = Problem.Create(10, batch, count, dim, options);
        var actual = RunOn(field, p, options);
        Assert.That(field.LastPath, Is.EqualTo(FieldPath.Tiled));
        var expected = PoissonField.Reference(p.Points.AsSpan(0, checkedRows * dim), p.Extra, p.Data, checkedRows, count, dim, options);
        CheckRows(actual[..(checkedRows * (dim + 1))], expected, checkedRows, dim + 1, "cuda tiled (256, 60000, 784)");
    }

    private static void CheckAgainstReference(Problem p, FieldOptions options, FieldPath path)
    {
        var actual = Run(p, options, path);
        var expected = PoissonField.Reference(p.Points, p.Extra, p.Data, p.Batch, p.Count, p.Dim, options);
        CheckRows(actual, expected, p.Batch, options.OutputWidth(p.Dim), $"{path} {options.Kind} D={options.ExtraDims} B={p.Batch} M={p.Count} N={p.Dim}");
    }

    private static float[] Run(Problem p, FieldOptions options, FieldPath path)
    {
        Field.ForcePath = path;
        return RunOn(Field, p, options);
    }

    private static float[] RunOn(PoissonField field, Problem p, FieldOptions options)
    {
        var accelerator = field.Device.Accelerator;
        using var points = accelerator.Allocate1D(p.Points);
        using var extra = accelerator.Allocate1D(p.Extra);
        using var data = accelerator.Allocate1D(p.Data);
        using var output = accelerator.Allocate1D(Numerics.Poison(p.Batch * options.OutputWidth(p.Dim)));
        field.Compute(points.View, extra.View, data.View, output.View, p.Batch, p.Count, p.Dim, options);
        field.Device.Synchronize();
        return output.GetAsArray1D();
    }

    /// <summary>Per row: every value finite, and max|actual - expected| &lt;= 1e-4 max|expected| (see the class comment).</summary>
    private static void CheckRows(float[] actual, double[] expected, int batch, int width, string what)
    {
        Assert.That(actual, Has.Length.EqualTo(expected.Length), what);
        for (int i = 0; i < batch; i++)
        {
            var row = actual.AsSpan(i * width, width);
            var reference = expected.AsSpan(i * width, width);
            for (int k = 0; k < width; k++)
            {
                if (!float.IsFinite(row[k])) Assert.Fail($"{what}: row {i} [{k}] is {row[k]} (expected {reference[k]:G9})");
            }

            double error = Numerics.MaxRelativeError(row, reference);
            if (error > RowTolerance) Assert.Fail($"{what}: row {i} max-norm relative error {error:G3} > {RowTolerance:G3}");
        }
    }

    /// <summary>A field problem: B points with their extra coordinate and an M x N reference set.</summary>
    private sealed record Problem(float[] Points, float[] Extra, float[] Data, int Batch, int Count, int Dim)
    {
        /// <summary>
        /// Data uniform in [-1, 1]; points perturbed from data rows by the PFGM schedule (k = 1.03^m, m ~ U[0, 291),
        /// noise norm 0.01 |g|, z = k |N(0, 0.01^2)|; for PFGM++ r = z sqrt(D)) so weights range from one-hot to
        /// spread; every 4th point is far field (radius 3000, z = 40).
        /// </summary>
        public static Problem Create(int seed, int batch, int count, int dim, FieldOptions options)
        {
            var rng = new Random(seed);
            var data = Numerics.Uniform(rng, count * dim);
            var points = new float[batch * dim];
            var extra = new float[batch];
            double extraScale = options.Kind == FieldKind.Pfgm ? 1 : Math.Sqrt(options.ExtraDims);
            for (int i = 0; i < batch; i++)
            {
                var direction = UnitVector(rng, dim);
                if (i % 4 == 3)
                {
                    for (int k = 0; k < dim; k++) points[i * dim + k] = (float)(3000.0 * direction[k]);
                    extra[i] = (float)(40 * extraScale);
                    continue;
                }

                double m = rng.NextDouble() * 291;
                double k1 = Math.Pow(1.03, m);
                double noise = 0.01 * Norm(Numerics.Normal(rng, dim));
                int source = i % count;
                for (int k = 0; k < dim; k++) points[i * dim + k] = (float)(data[source * dim + k] + k1 * noise * direction[k]);
                extra[i] = (float)(k1 * Math.Abs(0.01 * Numerics.Normal(rng, 1)[0]) * extraScale);
            }

            return new Problem(points, extra, data, batch, count, dim);
        }

        public static double[] UnitVector(Random rng, int dim)
        {
            var g = Numerics.Normal(rng, dim);
            double norm = Norm(g);
            return g.Select(v => v / norm).ToArray();
        }

        private static double Norm(float[] v) => Math.Sqrt(v.Sum(x => (double)x * x));
    }
}
