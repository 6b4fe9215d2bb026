using PoissonFlow.Data;

namespace PoissonFlow.Cli.Plots;

/// <summary>Samples (blue) drawn over the truth (grey) in the plane of the first two coordinates.</summary>
internal static class ScatterPlot
{
    /// <summary>
    /// Draws the PNG and returns how many samples fell outside the view (the truth's bounding box, padded by 25%):
    /// samples far off the data are a failure mode worth reporting, not hiding.
    /// </summary>
    public static int Draw(string path, PointSet truth, PointSet samples, int size = 800)
    {
        if (truth.Dim < 2 || samples.Dim < 2) throw new ArgumentException("a scatter plot needs at least 2 coordinates");
        var (min, max) = truth.Bounds();
        double padX = 0.25 * Math.Max(max[0] - min[0], 1e-6), padY = 0.25 * Math.Max(max[1] - min[1], 1e-6);
        double minX = min[0] - padX, maxX = max[0] + padX, minY = min[1] - padY, maxY = max[1] + padY;
        var canvas = new Canvas(size, size, minX, maxX, minY, maxY, Colour.White);
        // Thin frame of the data's own box, so "outside" can be seen.
        canvas.Line(min[0], min[1], max[0], min[1], Colour.LightGrey, 1);
        canvas.Line(max[0], min[1], max[0], max[1], Colour.LightGrey, 1);
        canvas.Line(max[0], max[1], min[0], max[1], Colour.LightGrey, 1);
        canvas.Line(min[0], max[1], min[0], min[1], Colour.LightGrey, 1);
        // Translucent points: density shows as darkness when thousands overlap.
        float truthAlpha = Math.Clamp(2000f / truth.Count, 0.08f, 0.6f), sampleAlpha = Math.Clamp(2000f / samples.Count, 0.08f, 0.6f);
        for (int i = 0; i < truth.Count; i++) canvas.Disc(truth[i][0], truth[i][1], 1.6, Colour.Grey, truthAlpha);
        int outside = 0;
        for (int i = 0; i < samples.Count; i++)
        {
            double x = samples[i][0], y = samples[i][1];
            if (!(x >= minX && x <= maxX && y >= minY && y <= maxY)) outside++;
            canvas.Disc(x, y, 1.6, Colour.Blue, sampleAlpha);
        }

        canvas.SavePng(path);
        return outside;
    }
}
