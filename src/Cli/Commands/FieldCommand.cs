using System.Diagnostics;
using System.Globalization;
using PoissonFlow.IO;
using PoissonFlow.Kernels;

namespace PoissonFlow.Cli.Commands;

/// <summary>
/// <c>pfgm field</c>: the empirical field of a reference set at given points, from .npy files to an .npy file,
/// for inspecting what a PFGM or PFGM++ model is trained to predict.
/// </summary>
public sealed class FieldCommand : CliCommand
{
    /// <inheritdoc />
    public override string Name => "field";

    /// <inheritdoc />
    public override string Summary => "compute the empirical PFGM field or PFGM++ posterior mean of a data set at given points";

    /// <inheritdoc />
    public override string Usage =>
        "pfgm field --points P.npy --data Y.npy --z Z.npy [--gamma 5] --out E.npy          (PFGM)\n" +
        "pfgm field --points P.npy --data Y.npy --r R.npy --D 128 --out E.npy              (PFGM++)";

    /// <inheritdoc />
    public override IReadOnlyList<CliOption> Options { get; } =
    [
        new("points", "P.npy", "the B x N points x where the field is evaluated (float32 or float64)"),
        new("data", "Y.npy", "the M x N reference set y (the data the field points to)"),
        new("z", "Z.npy", "PFGM: B values z >= 0, the extra coordinate of each point"),
        new("r", "R.npy", "PFGM++: B values r >= 0, the norm of each point's D extra coordinates"),
        new("D", "D", "PFGM++: the number of extra dimensions (>= 1); required with --r"),
        new("gamma", "G", "PFGM: gamma of the normalisation sqrt(N) E / (|E| + gamma) (default 5, >= 0)"),
        new("out", "E.npy", "the output: B x (N+1) float32 for PFGM (x components, then z), B x N for PFGM++"),
    ];

    /// <inheritdoc />
    public override string Details =>
        "PFGM: E_i = sum_j w_ij ((y_j, 0) - (x_i, z_i)) with w_ij proportional to |(x_i, z_i) - (y_j, 0)|^-(N+1),\n" +
        "normalised to sqrt(N) E_i / (|E_i| + gamma). PFGM++: sum_j w_ij y_j with w_ij proportional to\n" +
        "(|x_i - y_j|^2 + r_i^2)^-((N+D)/2). The output is written atomically: on any error no file is left.";

    /// <inheritdoc />
    public override int Execute(CliContext context, ParsedArgs args)
    {
        // Cheap option checks first, so a mistake is reported before any file is read or device created.
        bool pfgm = args.Has("z"), plusPlus = args.Has("r");
        if (pfgm == plusPlus)
        {
            throw new UserErrorException("give exactly one of --z Z.npy (PFGM field) or --r R.npy with --D (PFGM++ posterior mean)");
        }

        if (pfgm && args.Has("D")) throw new UserErrorException("--D applies only to PFGM++ (with --r), not with --z");
        if (plusPlus && args.Has("gamma")) throw new UserErrorException("--gamma applies only to PFGM (with --z), not with --r");
        var options = pfgm
            ? FieldOptions.Pfgm(args.GetFloat("gamma", 5f, min: 0f))
            : FieldOptions.PfgmPlusPlus(args.GetRequiredInt("D", min: 1));
        string outPath = args.GetOutputPath("out");

        var points = NpyInput.ReadMatrix(args, "points", "B x N: one point per row");
        int batch = points.Shape[0], dim = points.Shape[1];
        var data = NpyInput.ReadMatrix(args, "data", "M x N: one reference point per row");
        if (data.Shape[1] != dim)
        {
            throw new UserErrorException(
                $"--data {args.GetRequiredString("data")}: rows have N={data.Shape[1]} values but --points {args.GetRequiredString("points")} rows have N={dim}");
        }

        int count = data.Shape[0];
        string extraOption = pfgm ? "z" : "r";
        float[] extra = NpyInput.ReadVector(args, extraOption, batch, $"row of --points (B={batch})");
        NpyInput.RequireNonNegative(args, extraOption, extra, pfgm ? "z" : "r (a norm)");

        var device = context.Device;
        var timer = Stopwatch.StartNew();
        float[] field = PoissonField.For(device).Compute(points.Data, extra, data.Data, batch, count, dim, options);
        timer.Stop();
        int width = options.OutputWidth(dim);
        if (field.Length != batch * width)
        {
            throw new InvalidOperationException($"the field kernel returned {field.Length} values, expected {batch} x {width}");
        }

        Npy.Write(outPath, field, batch, width);
        string what = pfgm ? "PFGM field" : $"PFGM++ posterior mean (D={options.ExtraDims})";
        context.Out.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"wrote {outPath}: {what}, shape ({batch}, {width}), from B={batch} points and M={count} references of N={dim}, {timer.Elapsed.TotalMilliseconds:F1} ms on {device.Description}"));
        return CliApp.ExitSuccess;
    }
}
