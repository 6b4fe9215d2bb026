using PoissonFlow.Data;
using PoissonFlow.Evaluation;

namespace PoissonFlow.Tests.Data;

public sealed class SlicedWassersteinTests
{
    [Test]
    public void Identical_sets_are_at_distance_zero()
    {
        var a = ToyDatasets.Generate("moons", 2000, seed: 1);
        Assert.That(SlicedWasserstein.Distance(a, a), Is.EqualTo(0));
        // order does not matter: a permutation is the same empirical distribution
        var shuffled = a.Subsample(a.Count, seed: 9);
        Assert.That(SlicedWasserstein.Distance(a, shuffled), Is.EqualTo(0).Within(1e-12));
    }

    [Test]
    public void A_shifted_set_is_at_the_closed_form_distance_in_2d()
    {
        // Shifting by s moves every projection by θ·s, so W₂²(θ) = (θ·s)² and SW₂ = √(mean cos²) |s| = |s|/√2.
        // The 2-D directions are evenly spaced, which makes the mean of cos² exactly 1/2: only rounding remains.
        var a = ToyDatasets.Generate("heart", 3000, seed: 2);
        var shifted = Shift(a, [0.3f, -0.4f]);
        double expected = 0.5 / Math.Sqrt(2);
        Assert.That(SlicedWasserstein.Distance(a, shifted), Is.EqualTo(expected).Within(1e-4).Percent); // float32 coordinates: ~1e-7 relative rounding
    }

    [Test]
    public void A_shifted_set_is_at_the_closed_form_distance_in_higher_dimension()
    {
        // In d dimensions SW₂ = |s|/√d in expectation over random directions. With P directions the relative
        // standard deviation of the mean of cos² is about √(2/(d+2))/√P = 3.8% for d = 5, P = 512, halved by the
        // square root: 6% is more than 3 standard deviations.
        var rng = new Random(3);
        var a = new PointSet(Numerics.Normal(rng, 1000 * 5), 1000, 5);
        var shifted = Shift(a, [0.2f, 0.1f, -0.3f, 0.4f, 0f]);
        double expected = Math.Sqrt(0.04 + 0.01 + 0.09 + 0.16) / Math.Sqrt(5);
        Assert.That(SlicedWasserstein.Distance(a, shifted, projections: 512, seed: 4), Is.EqualTo(expected).Within(6).Percent);
    }

    [Test]
    public void Independent_draws_of_the_truth_are_above_zero_and_the_floor_shrinks_with_size()
    {
        double small = SlicedWasserstein.Floor(ToyDatasets.Generate("heart", 1000, 1), ToyDatasets.Generate("heart", 1000, 2));
        double large = SlicedWasserstein.Floor(ToyDatasets.Generate("heart", 10000, 1), ToyDatasets.Generate("heart", 10000, 2));
        TestContext.Out.WriteLine($"heart floor: {small:F5} at 1000, {large:F5} at 10000");
        Assert.That(large, Is.GreaterThan(0));
        // ~1/√n: ten times the points should cut it by about √10 ≈ 3.2; at least 1.8 allows for sampling noise.
        Assert.That(small / large, Is.GreaterThan(1.8));
        // a wrong distribution is far above the floor
        double wrong = SlicedWasserstein.Distance(ToyDatasets.Generate("heart", 10000, 1), ToyDatasets.Generate("moons", 10000, 2));
        Assert.That(wrong, Is.GreaterThan(10 * large));
    }

    [Test]
    public void Unequal_sizes_use_exact_quantile_matching()
    {
        // {0, 1} against {0, 0.5, 1}: quantile functions differ by 0.5 on t in (1/3, 1/2) and (1/2, 2/3) → W₂² = 2 * (1/6) * 0.25.
        double w2 = SlicedWasserstein.SortedW2Squared([0, 1], [0, 0.5, 1]);
        Assert.That(w2, Is.EqualTo(2.0 / 6 * 0.25).Within(1e-12));
        // and it agrees with the equal-size formula when one set is the other repeated
        double[] a = [0.1, 0.4, 0.9], b = [-0.2, 0.5, 1.3];
        double[] a2 = [0.1, 0.1, 0.4, 0.4, 0.9, 0.9];
        Assert.That(SlicedWasserstein.SortedW2Squared(a2, b), Is.EqualTo(SlicedWasserstein.SortedW2Squared(a, b)).Within(1e-12));
    }

    [Test]
    public void Mismatched_dimensions_are_an_error()
    {
        var a = new PointSet([1, 2, 3, 4], 2, 2);
        var b = new PointSet([1, 2, 3], 1, 3);
        Assert.That(() => SlicedWasserstein.Distance(a, b), Throws.ArgumentException.With.Message.Contains("dimensions"));
    }

    private static PointSet Shift(PointSet set, float[] shift)
    {
        var data = (float[])set.Data.Clone();
        for (int i = 0; i < data.Length; i++) data[i] += shift[i % set.Dim];
        return new PointSet(data, set.Count, set.Dim);
    }
}
