namespace PoissonFlow.Data;

/// <summary>
/// Built-in 2-D data sets, generated from a seed (same name, count and seed: same points, bit for bit).
/// <para>
/// Scale: every set is centred on the origin and scaled so that its widest axis spans about [-1, 1] (the range
/// PFGM's image configs use for pixels), so that one set of hyper-parameters suits all of them. Sets with Gaussian
/// noise can spill past ±1 by a few noise widths.
/// </para>
/// <list type="bullet">
/// <item><c>heart</c>: uniform inside the curve (x² + y² − 1)³ = x²y³ (the PFGM figure's heart), filled.</item>
/// <item><c>pfgm</c>: the letters P F G M drawn with line segments, uniform along their length, noise 0.012.</item>
/// <item><c>moons</c>: two interleaved half circles, noise 0.05.</item>
/// <item><c>spirals</c>: two interleaved spiral arms of 1.5 turns, noise 0.03.</item>
/// <item><c>checkerboard</c>: uniform on the 8 dark squares of a 4 x 4 board.</item>
/// <item><c>8gaussians</c>: 8 Gaussians (std 0.06) on a circle of radius 0.8.</item>
/// </list>
/// </summary>
public static class ToyDatasets
{
    /// <summary>The names accepted by <see cref="Generate"/>.</summary>
    public static IReadOnlyList<string> Names { get; } = ["heart", "pfgm", "moons", "spirals", "checkerboard", "8gaussians"];

    /// <summary>True when <paramref name="name"/> is a built-in set (case-insensitive).</summary>
    public static bool IsKnown(string name) => Names.Contains(name.Trim().ToLowerInvariant());

    /// <summary>Draws <paramref name="count"/> points of the named set.</summary>
    /// <exception cref="DatasetException">The name is not one of <see cref="Names"/>, or count is not positive.</exception>
    public static PointSet Generate(string name, int count, int seed)
    {
        if (count <= 0) throw new DatasetException($"the number of points must be positive, got {count}");
        var rng = new Random(seed);
        var data = new float[2 * count];
        Func<Random, (double X, double Y)> draw = name.Trim().ToLowerInvariant() switch
        {
            "heart" => Heart,
            "pfgm" => Letters,
            "moons" => Moons,
            "spirals" => Spirals,
            "checkerboard" => Checkerboard,
            "8gaussians" => EightGaussians,
            _ => throw new DatasetException($"unknown data set '{name}': expected one of {string.Join(", ", Names)}, or a .npy/.csv file"),
        };
        for (int i = 0; i < count; i++)
        {
            var (x, y) = draw(rng);
            data[2 * i] = (float)x;
            data[2 * i + 1] = (float)y;
        }

        return new PointSet(data, count, 2);
    }

    // The heart (x²+y²−1)³ ≤ x²y³ spans x in [-1.1390, 1.1390], y in [-1, 1.2360]; centre y and divide by the
    // half-width in x so that x spans [-1, 1] and y about [-0.98, 0.98]. Rejection sampling from the bounding box.
    private const double HeartHalfWidth = 1.1390, HeartCentreY = 0.1180;

    private static (double, double) Heart(Random rng)
    {
        while (true)
        {
            double x = (2 * rng.NextDouble() - 1) * HeartHalfWidth;
            double y = -1 + 2.2360 * rng.NextDouble();
            double r = x * x + y * y - 1;
            if (r * r * r - x * x * y * y * y <= 0) return (x / HeartHalfWidth, (y - HeartCentreY) / HeartHalfWidth);
        }
    }

    private static (double, double) Moons(Random rng)
    {
        // scikit-learn's make_moons spans x in [-1, 2], y in [-0.5, 1]: centre on (0.5, 0.25) and scale by 2/3.
        double t = Math.PI * rng.NextDouble();
        var (x, y) = rng.Next(2) == 0 ? (Math.Cos(t), Math.Sin(t)) : (1 - Math.Cos(t), 0.5 - Math.Sin(t));
        return ((x - 0.5) * (2.0 / 3) + 0.05 * Gaussian(rng), (y - 0.25) * (2.0 / 3) + 0.05 * Gaussian(rng));
    }

    private static (double, double) Spirals(Random rng)
    {
        // sqrt(U) spreads points evenly along the arm length, as in FFJORD's 2spirals; radius grows to 1 at 3π.
        double theta = Math.Sqrt(rng.NextDouble()) * 3 * Math.PI;
        double r = theta / (3 * Math.PI);
        double sign = rng.Next(2) == 0 ? 1 : -1;
        return (sign * r * Math.Cos(theta) + 0.03 * Gaussian(rng), sign * r * Math.Sin(theta) + 0.03 * Gaussian(rng));
    }

    private static (double, double) Checkerboard(Random rng)
    {
        // FFJORD's board on [-2, 2]², halved.
        double x = 4 * rng.NextDouble() - 2;
        int parity = (int)Math.Floor(x) & 1; // & rather than %: floor(x) = -1 is odd, as numpy's % has it
        double y = rng.NextDouble() - 2 * rng.Next(2) + parity;
        return (x / 2, y / 2);
    }

    private static (double, double) EightGaussians(Random rng)
    {
        double angle = rng.Next(8) * Math.PI / 4;
        return (0.8 * Math.Cos(angle) + 0.06 * Gaussian(rng), 0.8 * Math.Sin(angle) + 0.06 * Gaussian(rng));
    }

    private static (double, double) Letters(Random rng)
    {
        double at = rng.NextDouble() * s_letterLengths[^1];
        // segment i covers [L[i], L[i+1]): the last cumulative length <= at
        int found = Array.BinarySearch(s_letterLengths, at);
        int segment = Math.Min(found >= 0 ? found : ~found - 1, s_letterSegments.Length - 1);
        var (a, b) = s_letterSegments[segment];
        double t = (at - s_letterLengths[segment]) / (s_letterLengths[segment + 1] - s_letterLengths[segment]);
        double x = a.X + t * (b.X - a.X), y = a.Y + t * (b.Y - a.Y);
        return (x + 0.012 * Gaussian(rng), y + 0.012 * Gaussian(rng));
    }

    private static readonly ((double X, double Y) A, (double X, double Y) B)[] s_letterSegments = BuildLetters();
    private static readonly double[] s_letterLengths = CumulativeLengths(s_letterSegments);

    /// <summary>
    /// P, F, G, M as polylines in letter units (each letter 0.8 wide, 1.2 tall, 1.1 apart), then centred and scaled
    /// so the word spans x in [-1, 1] (y then spans about [-0.29, 0.29]).
    /// </summary>
    private static ((double X, double Y), (double X, double Y))[] BuildLetters()
    {
        var strokes = new List<(double X, double Y)[]>
        {
            // P: stem and bowl
            new[] { (0.0, 0.0), (0.0, 1.2), (0.55, 1.2), (0.75, 1.1), (0.8, 0.9), (0.75, 0.7), (0.55, 0.6), (0.0, 0.6) },
            // F
            new[] { (1.1, 0.0), (1.1, 1.2), (1.9, 1.2) },
            new[] { (1.1, 0.65), (1.7, 0.65) },
            // G: an elliptic arc from 45° round to 360°, then the inward bar
            Enumerable.Range(0, 22).Select(k =>
            {
                double angle = (45 + 315.0 * k / 21) * Math.PI / 180;
                return (2.6 + 0.4 * Math.Cos(angle), 0.6 + 0.6 * Math.Sin(angle));
            }).Append((2.65, 0.6)).ToArray(),
            // M
            new[] { (3.3, 0.0), (3.3, 1.2), (3.7, 0.5), (4.1, 1.2), (4.1, 0.0) },
        };
        const double centreX = 2.05, centreY = 0.6, scale = 2 / 4.1;
        var segments = new List<((double, double), (double, double))>();
        foreach (var stroke in strokes)
        {
            for (int i = 0; i + 1 < stroke.Length; i++)
            {
                segments.Add((((stroke[i].X - centreX) * scale, (stroke[i].Y - centreY) * scale),
                    ((stroke[i + 1].X - centreX) * scale, (stroke[i + 1].Y - centreY) * scale)));
            }
        }

        return segments.ToArray();
    }

    private static double[] CumulativeLengths(((double X, double Y) A, (double X, double Y) B)[] segments)
    {
        var lengths = new double[segments.Length + 1];
        for (int i = 0; i < segments.Length; i++)
        {
            var (a, b) = segments[i];
            lengths[i + 1] = lengths[i] + Math.Sqrt((b.X - a.X) * (b.X - a.X) + (b.Y - a.Y) * (b.Y - a.Y));
        }

        return lengths;
    }

    private static double Gaussian(Random rng)
    {
        double u1 = 1.0 - rng.NextDouble(), u2 = rng.NextDouble();
        return Math.Sqrt(-2.0 * Math.Log(u1)) * Math.Cos(2 * Math.PI * u2);
    }
}
