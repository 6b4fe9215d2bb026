using BenchmarkDotNet.Columns;
using BenchmarkDotNet.Reports;
using BenchmarkDotNet.Running;

namespace PoissonFlow.Bench;

/// <summary>GFLOP/s from the mean time, with 5 B M N FLOPs per evaluation (<see cref="Kernels.PoissonField.FlopCount"/>).</summary>
public sealed class GflopsColumn : IColumn
{
    /// <inheritdoc />
    public string Id => nameof(GflopsColumn);

    /// <inheritdoc />
    public string ColumnName => "GFLOP/s";

    /// <inheritdoc />
    public bool AlwaysShow => true;

    /// <inheritdoc />
    public ColumnCategory Category => ColumnCategory.Custom;

    /// <inheritdoc />
    public int PriorityInCategory => 0;

    /// <inheritdoc />
    public bool IsNumeric => true;

    /// <inheritdoc />
    public UnitType UnitType => UnitType.Dimensionless;

    /// <inheritdoc />
    public string Legend => "Throughput counting 5*B*M*N FLOPs per field evaluation";

    /// <inheritdoc />
    public bool IsDefault(Summary summary, BenchmarkCase benchmarkCase) => false;

    /// <inheritdoc />
    public bool IsAvailable(Summary summary) => summary.BenchmarksCases.Any(c => c.Parameters["Shape"] is FieldShape);

    /// <inheritdoc />
    public string GetValue(Summary summary, BenchmarkCase benchmarkCase) => GetValue(summary, benchmarkCase, SummaryStyle.Default);

    /// <inheritdoc />
    public string GetValue(Summary summary, BenchmarkCase benchmarkCase, SummaryStyle style)
    {
        double? meanNs = summary[benchmarkCase]?.ResultStatistics?.Mean;
        if (meanNs is not > 0 || benchmarkCase.Parameters["Shape"] is not FieldShape shape) return "NA";
        return (shape.Flops / meanNs.Value).ToString("F1");
    }
}

/// <summary>
/// The large temporaries a method creates per evaluation, by formula (libtorch's native memory is invisible to
/// MemoryDiagnoser): the B x M x (N+1) float32 broadcasts of the official formula, the B x M ones of the others.
/// </summary>
public sealed class TemporariesColumn : IColumn
{
    /// <inheritdoc />
    public string Id => nameof(TemporariesColumn);

    /// <inheritdoc />
    public string ColumnName => "Temporaries";

    /// <inheritdoc />
    public bool AlwaysShow => true;

    /// <inheritdoc />
    public ColumnCategory Category => ColumnCategory.Custom;

    /// <inheritdoc />
    public int PriorityInCategory => 1;

    /// <inheritdoc />
    public bool IsNumeric => false;

    /// <inheritdoc />
    public UnitType UnitType => UnitType.Dimensionless;

    /// <inheritdoc />
    public string Legend => "Large per-call temporaries by formula: official = 5 x 4*B*M*(N+1) bytes created, 2 alive at peak";

    /// <inheritdoc />
    public bool IsDefault(Summary summary, BenchmarkCase benchmarkCase) => false;

    /// <inheritdoc />
    public bool IsAvailable(Summary summary) => summary.BenchmarksCases.Any(c => c.Parameters["Shape"] is FieldShape);

    /// <inheritdoc />
    public string GetValue(Summary summary, BenchmarkCase benchmarkCase) => GetValue(summary, benchmarkCase, SummaryStyle.Default);

    /// <inheritdoc />
    public string GetValue(Summary summary, BenchmarkCase benchmarkCase, SummaryStyle style)
    {
        if (benchmarkCase.Parameters["Shape"] is not FieldShape shape) return "?";
        long pairs = 4L * shape.Batch * shape.Count;
        return benchmarkCase.Descriptor.WorkloadMethod.Name switch
        {
            FieldBenchmarks.TorchOfficialName => $"peak 2x{Megabytes(shape.BroadcastTemporaryBytes)} (5 made)",
            FieldBenchmarks.TorchTunedName => $"2x{Megabytes(pairs)} (BxM)",
            nameof(FieldBenchmarks.CSharpLoop) => $"{Megabytes(4L * Environment.ProcessorCount * (shape.Count + shape.Dim))} scratch",
            _ => "none per call",
        };
    }

    private static string Megabytes(long bytes) => bytes >= 1_000_000 ? $"{bytes / 1e6:F1} MB" : $"{bytes / 1e3:F0} KB";
}
