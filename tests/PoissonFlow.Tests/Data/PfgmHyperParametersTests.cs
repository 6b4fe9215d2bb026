using PoissonFlow.Data;

namespace PoissonFlow.Tests.Data;

public sealed class PfgmHyperParametersTests
{
    [Test]
    public void Recipe_gives_the_official_M_for_CIFAR()
    {
        // spec §2: hyper-parameters.py with norm 30, d = 3072, σ = 0.01, τ = 0.03 gives M = 287.
        var p = PfgmHyperParameters.Recipe(30, 3072);
        Assert.That(p.M, Is.EqualTo(287));
        // z_max and upper_norm follow from M with the same formulas (checked at M = 291 below).
        Assert.That(p.ZMax, Is.EqualTo(Math.Sqrt(2 / Math.PI) * 0.01 * Math.Pow(1.03, 287)).Within(1e-9).Percent);
    }

    [Test]
    public void At_the_configs_M_291_the_recipe_gives_z_max_43_4_and_upper_norm_3015()
    {
        // spec §2: "z_max ... gives 43.4 at M = 291", "upper_norm ... gives 3015 for CIFAR" (rounded in the spec, hence 0.1%).
        var p = PfgmHyperParameters.FromM(291, 3072);
        Assert.That(p.ZMax, Is.EqualTo(43.4).Within(0.1).Percent);
        Assert.That(p.UpperNorm, Is.EqualTo(3015).Within(0.1).Percent);
        Assert.That(p.KMax, Is.EqualTo(5440).Within(0.1).Percent);
    }

    [Test]
    public void For_the_heart_the_floors_raise_z_max_to_forty_data_norms()
    {
        var heart = ToyDatasets.Generate("heart", 20000, seed: 0);
        double norm = heart.MeanNorm();
        var recipe = PfgmHyperParameters.Recipe(norm, 2);
        var chosen = PfgmHyperParameters.ForData(norm, 2);
        TestContext.Out.WriteLine($"heart mean norm {norm:F3}: recipe M={recipe.M} z_max={recipe.ZMax:F2} upper={recipe.UpperNorm:F2}; " +
                                  $"with floors M={chosen.M} z_max={chosen.ZMax:F2} upper={chosen.UpperNorm:F1}");
        // The recipe alone puts the prior plane only a few data norms up: the reason for the floors.
        Assert.That(recipe.ZMax / norm, Is.LessThan(10));
        Assert.That(chosen.ZMax, Is.GreaterThanOrEqualTo(PfgmHyperParameters.MinZMaxPerNorm * norm));
        // ...and M is the smallest that reaches it: one less falls short.
        Assert.That(PfgmHyperParameters.FromM(chosen.M - 1, 2).ZMax, Is.LessThan(PfgmHyperParameters.MinZMaxPerNorm * norm));
        Assert.That(chosen.UpperNorm, Is.EqualTo(PfgmHyperParameters.MinUpperNormPerZMax * chosen.ZMax).Within(1e-9).Percent);
    }

    [Test]
    public void In_high_dimension_the_floors_leave_the_recipe_alone()
    {
        Assert.That(PfgmHyperParameters.ForData(30, 3072), Is.EqualTo(PfgmHyperParameters.Recipe(30, 3072)));
    }

    [Test]
    public void Bad_arguments_name_the_problem()
    {
        Assert.That(() => PfgmHyperParameters.Recipe(0, 2), Throws.ArgumentException.With.Message.Contains("norm"));
        Assert.That(() => PfgmHyperParameters.Recipe(1, 0), Throws.ArgumentException.With.Message.Contains("dimension"));
        Assert.That(() => PfgmHyperParameters.FromM(0, 2), Throws.ArgumentException.With.Message.Contains("M"));
    }
}
