using PoissonFlow.Data;

namespace PoissonFlow.Cli.Plots;

/// <summary>
/// Backward-ODE trajectories from the prior plane z = z_max down to the data, drawn in the (x₁, z) plane (the idea
/// of the PFGM paper's first figure). Two panels: the whole flow (x in [-z_max, z_max], z in [0, z_max]) and a zoom
/// on the last stretch above the data, where the lines fan into its shape.
/// </summary>
internal static class TrajectoryPlot
{
    /// <summary>
    /// Draws the PNG. <paramref name="states"/> holds the trajectories as steps x count x (dim + 1) floats: each
    /// point's x coordinates followed by its z, one block per recorded step, the first block on the prior plane.
    /// </summary>
    public static void Draw(string path, PointSet truth, float[] states, int steps, int count, int dim, double zMax, int panelSize = 600)
    {
        int width = dim + 1;
        if (states.Length != (long)steps * count * width)
        {
            throw new ArgumentException($"trajectories: expected {steps} x {count} x {width} values, got {states.Length}");
        }

        var (min, max) = truth.Bounds();
        double dataHalfWidth = Math.Max(Math.Abs(min[0]), Math.Abs(max[0]));
        // Panels are 2.1 wide by 1.15 high in world units (x in ±1.05 h, z in [-0.05 h, 1.1 h]).
        int height = (int)Math.Ceiling(panelSize * 1.15 / 2.1);
        var canvas = new Canvas(2 * panelSize, height, -1, 1, 0, 1, Colour.White);

        // Panel 1: the whole flow.
        canvas.SetView(0, 0, panelSize, height, -1.05 * zMax, 1.05 * zMax, -0.05 * zMax, 1.1 * zMax);
        DrawPanel(canvas, truth, states, steps, count, dim, zMax, dataHalfWidth);

        // Panel 2: the last stretch, up to about the data's width above it.
        double zoom = 1.3 * dataHalfWidth;
        canvas.SetView(panelSize, 0, panelSize, height, -1.05 * zoom, 1.05 * zoom, -0.05 * zoom, 1.1 * zoom);
        DrawPanel(canvas, truth, states, steps, count, dim, zMax, dataHalfWidth);

        // Separator between the panels.
        canvas.SetView(0, 0, 2 * panelSize, height, 0, 2, 0, 1);
        canvas.Line(1, 0, 1, 1, Colour.Grey, 1);
        canvas.SavePng(path);
    }

    private static void DrawPanel(Canvas canvas, PointSet truth, float[] states, int steps, int count, int dim, double zMax, double dataHalfWidth)
    {
        int width = dim + 1;
        canvas.HorizontalRule(0, Colour.Black, 0.8f);
        canvas.HorizontalRule(zMax, Colour.Grey, 0.8f);
        for (int i = 0; i < truth.Count; i++) canvas.Disc(truth[i][0], 0, 1.2, Colour.Grey, 0.25f);
        float alpha = Math.Clamp(40f / count, 0.15f, 0.8f);
        for (int k = 0; k < count; k++)
        {
            // colour by where the trajectory lands, so neighbouring lines can be told apart
            double landing = states[((steps - 1) * count + k) * width];
            var colour = Colour.Ramp(0.5 + 0.5 * landing / Math.Max(dataHalfWidth, 1e-9));
            for (int s = 0; s + 1 < steps; s++)
            {
                int a = (s * count + k) * width, b = ((s + 1) * count + k) * width;
                canvas.Line(states[a], states[a + dim], states[b], states[b + dim], colour, alpha);
            }

            canvas.Disc(landing, states[((steps - 1) * count + k) * width + dim], 1.5, colour, 0.9f);
        }
    }
}
