namespace PoissonFlow.Cli.Plots;

/// <summary>
/// The training loss against the step, on a log scale (the PFGM loss falls by orders of magnitude early on): a blue
/// polyline over grey rules at every power of ten, the step axis spanning the first to the last logged step. The
/// canvas has no text, so the numbers live in the run's training-log.json; the picture shows the shape.
/// </summary>
internal static class LossPlot
{
    /// <summary>Draws the PNG; non-finite or non-positive losses are left out. Needs at least one drawable point.</summary>
    public static void Draw(string path, IReadOnlyList<(long Step, double Loss)> losses, int width = 800, int height = 480)
    {
        var points = losses.Where(p => double.IsFinite(p.Loss) && p.Loss > 0).ToList();
        if (points.Count == 0) throw new ArgumentException("loss plot: no finite positive loss to draw");
        double first = points[0].Step, last = Math.Max(points[^1].Step, first + 1);
        double low = Math.Floor(points.Min(p => Math.Log10(p.Loss))), high = Math.Ceiling(points.Max(p => Math.Log10(p.Loss)));
        if (high <= low) high = low + 1;
        // World box: x in [0, 1], y in [0, aspect], so the canvas's equal scale fills it.
        double aspect = (double)height / width;
        var canvas = new Canvas(width, height, -0.03, 1.03, -0.03 * aspect, 1.03 * aspect, Colour.White);
        double X(double step) => (step - first) / (last - first);
        double Y(double loss) => aspect * (Math.Log10(loss) - low) / (high - low);
        for (double decade = low; decade <= high; decade++) canvas.HorizontalRule(aspect * (decade - low) / (high - low), Colour.LightGrey, 1);
        for (int i = 1; i < points.Count; i++)
        {
            canvas.Line(X(points[i - 1].Step), Y(points[i - 1].Loss), X(points[i].Step), Y(points[i].Loss), Colour.Blue, 1);
        }

        if (points.Count == 1) canvas.Disc(X(points[0].Step), Y(points[0].Loss), 3, Colour.Blue, 1);
        canvas.SavePng(path);
    }
}
