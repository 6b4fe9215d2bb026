using PoissonFlow.Cli.Plots;
using PoissonFlow.Cli.Runs;
using PoissonFlow.Data;
using PoissonFlow.IO;
using SixLabors.ImageSharp;
using SixLabors.ImageSharp.PixelFormats;

namespace PoissonFlow.Tests.Plots;

public sealed class PlotTests
{
    private string _folder = "";

    [SetUp]
    public void CreateFolder() => _folder = Directory.CreateTempSubdirectory("pfgm-plot-").FullName;

    [TearDown]
    public void DeleteFolder() => Directory.Delete(_folder, recursive: true);

    [Test]
    public void Scatter_plot_writes_a_png_with_both_colours_and_counts_strays()
    {
        var truth = ToyDatasets.Generate("heart", 2000, 1);
        var samples = ToyDatasets.Generate("heart", 1000, 2);
        var strayData = (float[])samples.Data.Clone();
        strayData[0] = 50; // one sample far to the right
        string path = Path.Combine(_folder, "samples.png");
        int outside = ScatterPlot.Draw(path, truth, new PointSet(strayData, samples.Count, 2), size: 300);
        Assert.That(outside, Is.EqualTo(1));

        using var image = Image.Load<Rgb24>(path);
        Assert.That((image.Width, image.Height), Is.EqualTo((300, 300)));
        int blue = 0, grey = 0, white = 0;
        image.ProcessPixelRows(rows =>
        {
            for (int y = 0; y < rows.Height; y++)
            {
                foreach (var p in rows.GetRowSpan(y))
                {
                    if (p.R == 255 && p.G == 255 && p.B == 255) white++;
                    else if (p.B > p.R + 40) blue++;
                    else if (Math.Abs(p.R - p.B) < 10 && p.R < 230) grey++;
                }
            }
        });
        // the heart covers a good part of the frame; both layers must be visible, and the background too
        Assert.That(blue, Is.GreaterThan(2000), "sample pixels");
        Assert.That(grey, Is.GreaterThan(200), "truth pixels (partly under the samples)");
        Assert.That(white, Is.GreaterThan(300 * 300 / 4), "background");
    }

    [Test]
    public void Trajectory_plot_draws_lines_from_the_plane_down_to_the_data()
    {
        var truth = ToyDatasets.Generate("heart", 500, 1);
        // straight lines from (x0, z_max) down to (x0 / 20, 1e-3), as a sampler would record them
        const int steps = 30, count = 12, dim = 2;
        const double zMax = 20;
        var states = new float[steps * count * (dim + 1)];
        for (int s = 0; s < steps; s++)
        {
            double z = zMax * Math.Pow(1e-3 / zMax, s / (steps - 1.0));
            for (int k = 0; k < count; k++)
            {
                double x0 = -15 + 30.0 * k / (count - 1);
                int i = (s * count + k) * (dim + 1);
                states[i] = (float)(x0 * z / zMax + (1 - z / zMax) * x0 / 20);
                states[i + 1] = 0.1f;
                states[i + 2] = (float)z;
            }
        }

        string path = Path.Combine(_folder, "trajectories.png");
        TrajectoryPlot.Draw(path, truth, states, steps, count, dim, zMax, panelSize: 400);
        using var image = Image.Load<Rgb24>(path);
        Assert.That(image.Width, Is.EqualTo(800));
        // coloured (non-grey) pixels in both panels: the lines reach the zoomed view of the data too
        int left = 0, right = 0;
        image.ProcessPixelRows(rows =>
        {
            for (int y = 0; y < rows.Height; y++)
            {
                var row = rows.GetRowSpan(y);
                for (int x = 0; x < row.Length; x++)
                {
                    var p = row[x];
                    if (Math.Abs(p.R - p.B) > 40) (x < 400 ? ref left : ref right)++;
                }
            }
        });
        Assert.That(left, Is.GreaterThan(500), "left panel");
        Assert.That(right, Is.GreaterThan(200), "right panel");
    }

    [Test]
    public void Trajectory_plot_rejects_a_wrong_layout()
    {
        var truth = ToyDatasets.Generate("heart", 10, 1);
        Assert.That(() => TrajectoryPlot.Draw(Path.Combine(_folder, "t.png"), truth, new float[10], 2, 2, 2, 10),
            Throws.ArgumentException.With.Message.Contains("expected 2 x 2 x 3"));
    }

    [Test]
    public void Run_folder_writes_json_atomically_and_reads_it_back()
    {
        var run = RunFolder.CreateTimestamped(_folder, "demo", new DateTime(2026, 12, 3, 17, 5, 9, DateTimeKind.Utc));
        var again = RunFolder.CreateTimestamped(_folder, "demo", new DateTime(2026, 12, 3, 17, 5, 9, DateTimeKind.Utc));
        Assert.That(Path.GetFileName(run.Path), Is.EqualTo("demo-20261203-170509"));
        Assert.That(again.Path, Is.Not.EqualTo(run.Path));
        RunFolder.WriteJson(run.Metrics, new Dictionary<string, double> { ["swd"] = 0.0125 });
        Assert.That(RunFolder.ReadJson<Dictionary<string, double>>(run.Metrics)["swd"], Is.EqualTo(0.0125));
        // no temporary files left behind
        Assert.That(Directory.GetFiles(run.Path), Is.EquivalentTo(new[] { run.Metrics }));
        // a failed write leaves the previous file intact
        Assert.Throws<InvalidOperationException>(() => AtomicFile.Write(run.Metrics, _ => throw new InvalidOperationException("boom")));
        Assert.That(RunFolder.ReadJson<Dictionary<string, double>>(run.Metrics)["swd"], Is.EqualTo(0.0125));
        Assert.That(Directory.GetFiles(run.Path), Has.Length.EqualTo(1));
    }
}
