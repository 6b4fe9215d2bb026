using System.Diagnostics;
using System.Globalization;
using ILGPU.Runtime;
using PoissonFlow.Kernels;

namespace PoissonFlow.Cli.Commands;

/// <summary>
/// <c>pfgm bench TARGET</c>: times a kernel on random inputs of a chosen size on the selected device, reporting
/// time per call, throughput and memory traffic. Targets: <c>field</c>.
/// </summary>
public sealed class BenchCommand : CliCommand
{
    /// <summary>The seed of the random inputs, fixed so runs are comparable.</summary>
    public const int Seed = 1234;

    /// <inheritdoc />
    public override string Name => "bench";

    /// <inheritdoc />
    public override string Summary => "time a kernel on random inputs (targets: field)";

    /// <inheritdoc />
    public override string Usage =>
        "pfgm bench field --B 128 --M 4096 --N 784 [--D 128] [--repeats 5] [--device auto|cuda|cpu]";

    /// <inheritdoc />
    public override string? Positionals => "TARGET";

    /// <inheritdoc />
    public override IReadOnlyList<CliOption> Options { get; } =
    [
        new("B", "B", "points per call, the batch (default 128)"),
        new("M", "M", "reference points (default 4096)"),
        new("N", "N", "data dimension (default 784, a 28 x 28 image)"),
        new("D", "D", "time the PFGM++ posterior mean with D extra dimensions instead of the PFGM field"),
        new("repeats", "R", "timed calls after one warm-up call (default 5)"),
    ];

    /// <inheritdoc />
    public override string Details =>
        "GFLOP/s counts 5 B M N per call (PoissonField.FlopCount: 3 B M N for the distances, 2 B M N for the weighted sum).\n" +
        "Bytes moved counts each input read once and the output written once: 4 (B N + B + M N + B W) bytes with\n" +
        "W = N+1 for PFGM, N for PFGM++ (a lower bound on the real traffic: tiles of Y are re-read from cache).";

    /// <inheritdoc />
    public override int Execute(CliContext context, ParsedArgs args)
    {
        if (args.Positionals.Count != 1)
        {
            throw new UserErrorException("pfgm bench needs exactly one target: field (see 'pfgm bench --help')");
        }

        return args.Positionals[0] switch
        {
            "field" => BenchField(context, args),
            string other => throw new UserErrorException($"unknown benchmark target '{other}' (targets: field)"),
        };
    }

    private static int BenchField(CliContext context, ParsedArgs args)
    {
        int batch = args.GetInt("B", 128, min: 1), count = args.GetInt("M", 4096, min: 1), dim = args.GetInt("N", 784, min: 1);
        int repeats = args.GetInt("repeats", 5, min: 1, max: 10_000);
        var options = args.Has("D") ? FieldOptions.PfgmPlusPlus(args.GetRequiredInt("D", min: 1)) : FieldOptions.Pfgm();
        int width = options.OutputWidth(dim);
        long pointValues = (long)batch * dim, dataValues = (long)count * dim, outputValues = (long)batch * width;
        if (Math.Max(pointValues, Math.Max(dataValues, outputValues)) > Array.MaxLength)
        {
            throw new UserErrorException($"--B {batch} --M {count} --N {dim}: an input or the output would exceed {Array.MaxLength} values");
        }

        // Data in [-1, 1] like scaled images; points are references plus noise so the weights are not degenerate.
        var rng = new Random(Seed);
        var data = new float[dataValues];
        for (long i = 0; i < data.LongLength; i++) data[i] = 2f * rng.NextSingle() - 1f;
        var points = new float[pointValues];
        for (int b = 0; b < batch; b++)
        {
            long row = (long)rng.Next(count) * dim;
            for (int k = 0; k < dim; k++) points[(long)b * dim + k] = data[row + k] + 0.5f * (2f * rng.NextSingle() - 1f);
        }

        var extra = new float[batch];
        for (int b = 0; b < batch; b++) extra[b] = 0.1f + 10f * rng.NextSingle();

        var device = context.Device;
        var field = PoissonField.For(device);
        var accelerator = device.Accelerator;
        using var pointsBuffer = accelerator.Allocate1D(points);
        using var extraBuffer = accelerator.Allocate1D(extra);
        using var dataBuffer = accelerator.Allocate1D(data);
        using var outputBuffer = accelerator.Allocate1D<float>(outputValues);

        var warmup = Stopwatch.StartNew();
        field.Compute(pointsBuffer.View, extraBuffer.View, dataBuffer.View, outputBuffer.View, batch, count, dim, options);
        device.Synchronize();
        warmup.Stop();

        var seconds = new double[repeats];
        for (int r = 0; r < repeats; r++)
        {
            long start = Stopwatch.GetTimestamp();
            field.Compute(pointsBuffer.View, extraBuffer.View, dataBuffer.View, outputBuffer.View, batch, count, dim, options);
            device.Synchronize();
            seconds[r] = Stopwatch.GetElapsedTime(start).TotalSeconds;
        }

        var summary = BenchSummary.Field(batch, count, dim, options, seconds);
        var c = CultureInfo.InvariantCulture;
        var output = context.Out;
        output.WriteLine($"device: {device.Description}");
        output.WriteLine(string.Create(c,
            $"field: {(options.Kind == FieldKind.Pfgm ? "PFGM" : $"PFGM++ D={options.ExtraDims}")}, B={batch} M={count} N={dim}, {repeats} repeats after one warm-up ({warmup.Elapsed.TotalMilliseconds:F1} ms, includes compilation)"));
        output.WriteLine(string.Create(c,
            $"time per call: mean {summary.MeanSeconds * 1e3:F3} ms, min {summary.MinSeconds * 1e3:F3} ms, median {summary.MedianSeconds * 1e3:F3} ms"));
        output.WriteLine(string.Create(c,
            $"compute: {summary.Flops / 1e9:G4} GFLOP per call (5 B M N) -> {summary.GflopsPerSecond:G4} GFLOP/s at the mean time"));
        output.WriteLine(string.Create(c,
            $"memory: {summary.Bytes:F0} bytes ({summary.Bytes / 1e6:G4} MB) per call (4 (B N + B + M N + B W), W={width}) -> {summary.GigabytesPerSecond:G4} GB/s at the mean time"));
        return CliApp.ExitSuccess;
    }
}

/// <summary>The figures <c>pfgm bench field</c> reports, computed from the sizes and the measured times.</summary>
/// <param name="MeanSeconds">Mean time per call.</param>
/// <param name="MinSeconds">Fastest call.</param>
/// <param name="MedianSeconds">Median call.</param>
/// <param name="Flops">Floating-point operations per call, <see cref="PoissonField.FlopCount"/>.</param>
/// <param name="Bytes">Bytes moved per call: inputs read once plus the output written once.</param>
public sealed record BenchSummary(double MeanSeconds, double MinSeconds, double MedianSeconds, double Flops, double Bytes)
{
    /// <summary>Throughput at the mean time.</summary>
    public double GflopsPerSecond => Flops / MeanSeconds / 1e9;

    /// <summary>Memory bandwidth at the mean time, in GB/s (1e9 bytes).</summary>
    public double GigabytesPerSecond => Bytes / MeanSeconds / 1e9;

    /// <summary>
    /// The summary of a field benchmark. Bytes = 4 (B N + B + M N + B W): points, z or r, and the reference set read
    /// once, the B x W output written once (W = N+1 for PFGM, N for PFGM++).
    /// </summary>
    public static BenchSummary Field(int batch, int count, int dim, FieldOptions options, IReadOnlyList<double> seconds)
    {
        ArgumentOutOfRangeException.ThrowIfZero(seconds.Count);
        var sorted = seconds.Order().ToArray();
        double median = sorted.Length % 2 == 1
            ? sorted[sorted.Length / 2]
            : 0.5 * (sorted[sorted.Length / 2 - 1] + sorted[sorted.Length / 2]);
        double bytes = 4.0 * ((double)batch * dim + batch + (double)count * dim + (double)batch * options.OutputWidth(dim));
        return new BenchSummary(seconds.Average(), sorted[0], median, PoissonField.FlopCount(batch, count, dim), bytes);
    }
}
