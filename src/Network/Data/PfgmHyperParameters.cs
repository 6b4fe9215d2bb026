namespace PoissonFlow.Data;

/// <summary>
/// The PFGM hyper-parameters that depend on the data: the perturbation's largest exponent M, the prior plane
/// z_max and the prior's radius clip upper_norm, with the noise scale σ and growth rate τ they derive from.
/// <para>
/// <see cref="Recipe"/> is the official <c>hyper-parameters.py</c> formula (spec §2). It targets high dimensions,
/// where data norms concentrate. In 2-D it gives a prior plane only a few data scales up (z_max ≈ 1.95 for the
/// built-in heart, whose mean norm is about 0.65) and a clip radius of only √(πd/2) ≈ 1.77 z_max, which in 2-D
/// clips P(R &gt; u) = z_max/√(u² + z_max²) ≈ half of the heavy-tailed prior onto one ring. <see cref="ForData"/>
/// therefore raises both to floors (<see cref="MinZMaxPerNorm"/>, <see cref="MinUpperNormPerZMax"/>) and raises M
/// so that the training perturbation still reaches z_max.
/// </para>
/// </summary>
/// <param name="M">Largest exponent of the perturbation scale k = (1+τ)^m, m ~ U[0, M).</param>
/// <param name="ZMax">The prior plane z = z_max where sampling starts.</param>
/// <param name="UpperNorm">The prior radius clip.</param>
/// <param name="Sigma">σ, the base noise scale (sigma_end = 0.01).</param>
/// <param name="Tau">τ, the growth rate of the perturbation scale (0.03).</param>
public sealed record PfgmHyperParameters(int M, double ZMax, double UpperNorm, double Sigma = 0.01, double Tau = 0.03)
{
    /// <summary>σ of the official configs.</summary>
    public const double DefaultSigma = 0.01;

    /// <summary>τ of the official configs.</summary>
    public const double DefaultTau = 0.03;

    /// <summary>
    /// The floors apply up to this data dimension. Above it, data norms concentrate and the recipe is the official,
    /// tested choice (it would also be wrong to ask for 40 norms there: CIFAR's norm of 30 would give z_max = 1200).
    /// </summary>
    public const int LowDimensionLimit = 8;

    /// <summary>
    /// Floor of z_max in units of the mean data norm: the prior is the flow's image of the data only when the plane is
    /// far from the data compared with the data's extent; a few tens of data scales is where 2-D PFGM works.
    /// </summary>
    public const double MinZMaxPerNorm = 40;

    /// <summary>
    /// Floor of upper_norm in units of z_max: in 2-D the clip moves z_max/√(upper² + z_max²) of the prior (5% at 20)
    /// onto one ring.
    /// </summary>
    public const double MinUpperNormPerZMax = 20;

    /// <summary>
    /// The official recipe (<c>hyper-parameters.py</c>): M = floor(0.75 ln(‖y‖²/(2√d σ²)) / ln(1+τ)) + 1,
    /// z_max = √(2/π) σ (1+τ)^M, upper_norm = √d σ (1+τ)^M. For CIFAR-10 (‖y‖ = 30, d = 3072): M = 287.
    /// </summary>
    /// <exception cref="ArgumentException">A non-positive norm, dimension, σ or τ.</exception>
    public static PfgmHyperParameters Recipe(double meanNorm, int dim, double sigma = DefaultSigma, double tau = DefaultTau)
    {
        Validate(meanNorm, dim, sigma, tau);
        int m = (int)Math.Floor(0.75 * Math.Log(meanNorm * meanNorm / (2 * Math.Sqrt(dim) * sigma * sigma)) / Math.Log(1 + tau)) + 1;
        return FromM(Math.Max(m, 1), dim, sigma, tau);
    }

    /// <summary>z_max and upper_norm of the recipe for a given M (M = 291 gives z_max 43.4 and upper_norm 3015 for CIFAR).</summary>
    public static PfgmHyperParameters FromM(int m, int dim, double sigma = DefaultSigma, double tau = DefaultTau)
    {
        Validate(1, dim, sigma, tau);
        if (m < 1) throw new ArgumentException($"M must be positive, got {m}");
        double kMax = Math.Pow(1 + tau, m);
        return new PfgmHyperParameters(m, Math.Sqrt(2 / Math.PI) * sigma * kMax, Math.Sqrt(dim) * sigma * kMax, sigma, tau);
    }

    /// <summary>
    /// The recipe, then for data of at most <see cref="LowDimensionLimit"/> dimensions the floors: z_max &gt;= <see cref="MinZMaxPerNorm"/> ‖y‖_avg (M raised so that
    /// √(2/π) σ (1+τ)^M reaches it) and upper_norm &gt;= <see cref="MinUpperNormPerZMax"/> z_max.
    /// </summary>
    public static PfgmHyperParameters ForData(double meanNorm, int dim, double sigma = DefaultSigma, double tau = DefaultTau)
    {
        var recipe = Recipe(meanNorm, dim, sigma, tau);
        if (dim > LowDimensionLimit) return recipe;
        double zMaxFloor = MinZMaxPerNorm * meanNorm;
        if (recipe.ZMax < zMaxFloor)
        {
            int m = (int)Math.Ceiling(Math.Log(zMaxFloor / (Math.Sqrt(2 / Math.PI) * sigma)) / Math.Log(1 + tau));
            recipe = FromM(m, dim, sigma, tau);
        }

        return recipe with { UpperNorm = Math.Max(recipe.UpperNorm, MinUpperNormPerZMax * recipe.ZMax) };
    }

    /// <summary>The largest perturbation scale (1+τ)^M.</summary>
    public double KMax => Math.Pow(1 + Tau, M);

    private static void Validate(double meanNorm, int dim, double sigma, double tau)
    {
        if (!(meanNorm > 0) || !double.IsFinite(meanNorm)) throw new ArgumentException($"the mean data norm must be positive and finite, got {meanNorm}");
        if (dim < 1) throw new ArgumentException($"the data dimension must be at least 1, got {dim}");
        if (!(sigma > 0)) throw new ArgumentException($"sigma must be positive, got {sigma}");
        if (!(tau > 0)) throw new ArgumentException($"tau must be positive, got {tau}");
    }
}
