namespace PoissonFlow.Sampling;

/// <summary>The Dormand-Prince 5(4) tableau, as scipy's RK45 uses it (7 stages, first same as last).</summary>
internal static class DormandPrince
{
    /// <summary>Stage times as fractions of the step.</summary>
    public static readonly double[] C = [0, 1.0 / 5, 3.0 / 10, 4.0 / 5, 8.0 / 9, 1, 1];

    /// <summary>A[s][j]: weight of stage j in the input of stage s (row 6 equals B: the FSAL stage is at y_new).</summary>
    public static readonly double[][] A =
    [
        [],
        [1.0 / 5],
        [3.0 / 40, 9.0 / 40],
        [44.0 / 45, -56.0 / 15, 32.0 / 9],
        [19372.0 / 6561, -25360.0 / 2187, 64448.0 / 6561, -212.0 / 729],
        [9017.0 / 3168, -355.0 / 33, 46732.0 / 5247, 49.0 / 176, -5103.0 / 18656],
        [35.0 / 384, 0, 500.0 / 1113, 125.0 / 192, -2187.0 / 6784, 11.0 / 84],
    ];

    /// <summary>Error weights E = b5 - b4 over the 7 stages (scipy's RK45.E).</summary>
    public static readonly double[] E = [-71.0 / 57600, 0, 71.0 / 16695, -71.0 / 1920, 17253.0 / 339200, -22.0 / 525, 1.0 / 40];

    /// <summary>Order of the embedded error estimator (scipy: error_estimator_order = 4).</summary>
    public const int ErrorEstimatorOrder = 4;

    /// <summary>scipy's controller constants.</summary>
    public const double Safety = 0.9, MinFactor = 0.2, MaxFactor = 10;
}
