using PoissonFlow.Data;

namespace PoissonFlow.Tests.Data;

public sealed class ToyDatasetsTests
{
    private static IEnumerable<string> Names => ToyDatasets.Names;

    [TestCaseSource(nameof(Names))]
    public void Generates_the_requested_shape_with_finite_values(string name)
    {
        var set = ToyDatasets.Generate(name, 3000, seed: 7);
        Assert.Multiple(() =>
        {
            Assert.That(set.Count, Is.EqualTo(3000));
            Assert.That(set.Dim, Is.EqualTo(2));
            Assert.That(set.Data, Has.Length.EqualTo(6000));
            Assert.That(set.Data.All(float.IsFinite), Is.True);
        });
    }

    [TestCaseSource(nameof(Names))]
    public void Same_seed_gives_the_same_points_and_another_seed_other_points(string name)
    {
        var a = ToyDatasets.Generate(name, 500, seed: 3);
        var b = ToyDatasets.Generate(name, 500, seed: 3);
        var c = ToyDatasets.Generate(name, 500, seed: 4);
        Assert.That(a.Data, Is.EqualTo(b.Data));
        Assert.That(a.Data, Is.Not.EqualTo(c.Data));
    }

    [TestCaseSource(nameof(Names))]
    public void Extents_are_centred_and_the_widest_axis_spans_about_minus_one_to_one(string name)
    {
        var set = ToyDatasets.Generate(name, 20000, seed: 11);
        var (min, max) = set.Bounds();
        double widest = Math.Max(max[0] - min[0], max[1] - min[1]);
        // Bounded shapes reach their ends within sampling resolution; noisy ones spill by a few noise widths
        // (largest: moons, 0.05, so 5 widths = 0.25 beyond ±1 at 20000 points is already very unlikely).
        Assert.That(widest, Is.InRange(1.7, 2.5), $"{name}: widest span");
        for (int d = 0; d < 2; d++)
        {
            Assert.That(min[d], Is.GreaterThan(-1.25), $"{name}: min of axis {d}");
            Assert.That(max[d], Is.LessThan(1.25), $"{name}: max of axis {d}");
            double mean = Enumerable.Range(0, set.Count).Average(i => set[i][d]);
            Assert.That(Math.Abs(mean), Is.LessThan(0.15), $"{name}: mean of axis {d}");
        }
    }

    [Test]
    public void Heart_points_lie_inside_the_heart_curve()
    {
        var set = ToyDatasets.Generate("heart", 2000, seed: 1);
        for (int i = 0; i < set.Count; i++)
        {
            // undo the documented scaling: x = X / 1.139, y = (Y - 0.118) / 1.139
            double x = set[i][0] * 1.1390, y = set[i][1] * 1.1390 + 0.1180;
            double r = x * x + y * y - 1;
            Assert.That(r * r * r - x * x * y * y * y, Is.LessThanOrEqualTo(1e-5), $"point {i} outside the heart");
        }
    }

    [Test]
    public void Checkerboard_fills_only_the_dark_squares()
    {
        var set = ToyDatasets.Generate("checkerboard", 4000, seed: 2);
        var cells = new HashSet<(int, int)>();
        for (int i = 0; i < set.Count; i++)
        {
            int cx = (int)Math.Floor(set[i][0] * 2), cy = (int)Math.Floor(set[i][1] * 2);
            Assert.That((cx + cy) & 1, Is.EqualTo(0), $"point {i} ({set[i][0]}, {set[i][1]}) on a light square");
            cells.Add((cx, cy));
        }

        Assert.That(cells, Has.Count.EqualTo(8));
    }

    [Test]
    public void Eight_gaussians_has_eight_clusters_on_the_circle()
    {
        var set = ToyDatasets.Generate("8gaussians", 4000, seed: 5);
        var counts = new int[8];
        for (int i = 0; i < set.Count; i++)
        {
            double angle = Math.Atan2(set[i][1], set[i][0]);
            int k = ((int)Math.Round(angle / (Math.PI / 4)) + 8) % 8;
            counts[k]++;
            double radius = Math.Sqrt(set[i][0] * set[i][0] + set[i][1] * set[i][1]);
            Assert.That(radius, Is.InRange(0.8 - 0.4, 0.8 + 0.4)); // 6.7 std: never reached at 4000 points
        }

        // each cluster expects 500 (binomial std ≈ 21): 400..600 is a ±4.7 std band
        Assert.That(counts, Is.All.InRange(400, 600));
    }

    [Test]
    public void Unknown_name_is_an_error_that_lists_the_known_ones()
    {
        var e = Assert.Throws<DatasetException>(() => ToyDatasets.Generate("hearts", 10, 0));
        Assert.That(e!.Message, Does.Contain("hearts").And.Contain("moons").And.Contain("8gaussians"));
    }
}
