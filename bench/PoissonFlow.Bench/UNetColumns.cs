using BenchmarkDotNet.Columns;
using BenchmarkDotNet.Reports;
using BenchmarkDotNet.Running;

namespace PoissonFlow.Bench;

/// <summary>
/// Images per second and GFLOP/s of a <see cref="UNetStepBenchmarks"/> row, from its mean time, its case's batch and
/// the FLOPs per image of its category (<see cref="UNetFlops"/>: forward only, or forward + backward).
/// </summary>
public sealed class UNetThroughputColumn(bool gflops) : IColumn
{
    /// <inheritdoc />
    public string Id => gflops ? "UNetGflops" : "UNetImagesPerSecond";

    /// <inheritdoc />
    public string ColumnName => gflops ? "GFLOP/s" : "img/s";

    /// <inheritdoc />
    public bool AlwaysShow => true;

    /// <inheritdoc />
    public ColumnCategory Category => ColumnCategory.Custom;

    /// <inheritdoc />
    public int PriorityInCategory => gflops ? 1 : 0;

    /// <inheritdoc />
    public bool IsNumeric => true;

    /// <inheritdoc />
    public UnitType UnitType => UnitType.Dimensionless;

    /// <inheritdoc />
    public string Legend => gflops
        ? "Throughput counting the convolutions' and dense layers' FLOPs (UNetFlops; backward = 2x forward)"
        : "Images per second: batch / mean time";

    /// <inheritdoc />
    public bool IsDefault(Summary summary, BenchmarkCase benchmarkCase) => false;

    /// <inheritdoc />
    public bool IsAvailable(Summary summary) => summary.BenchmarksCases.Any(c => c.Parameters["Case"] is UNetCase);

    /// <inheritdoc />
    public string GetValue(Summary summary, BenchmarkCase benchmarkCase) => GetValue(summary, benchmarkCase, SummaryStyle.Default);

    /// <inheritdoc />
    public string GetValue(Summary summary, BenchmarkCase benchmarkCase, SummaryStyle style)
    {
        double? meanNs = summary[benchmarkCase]?.ResultStatistics?.Mean;
        if (meanNs is not > 0 || benchmarkCase.Parameters["Case"] is not UNetCase unet) return "NA";
        double imagesPerSecond = unet.Batch / (meanNs.Value * 1e-9);
        if (!gflops) return imagesPerSecond.ToString("F1");
        bool step = benchmarkCase.Descriptor.Categories.Contains(UNetStepBenchmarks.StepCategory);
        return (imagesPerSecond * (step ? unet.StepFlopsPerImage : unet.ForwardFlopsPerImage) / 1e9).ToString("F1");
    }
}
