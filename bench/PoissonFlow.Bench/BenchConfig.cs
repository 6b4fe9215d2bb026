using BenchmarkDotNet.Columns;
using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Diagnosers;
using BenchmarkDotNet.Engines;
using BenchmarkDotNet.Exporters;
using BenchmarkDotNet.Exporters.Csv;
using BenchmarkDotNet.Filters;
using BenchmarkDotNet.Jobs;
using BenchmarkDotNet.Order;
using BenchmarkDotNet.Reports;
using BenchmarkDotNet.Toolchains.InProcess.Emit;

namespace PoissonFlow.Bench;

/// <summary>The benchmark configuration: one short in-process job, memory, GFLOP/s and temporaries columns.</summary>
public static class BenchConfig
{
    /// <summary>
    /// In process, deliberately: TorchSharp loads only because our build marks GLIBCXX_3.4.32 weak in the output
    /// copy of libLibTorchSharp.so (build/TorchSharpDebian12.targets). BenchmarkDotNet's out-of-process toolchain
    /// builds a generated project that skips our build files, so TorchSharp would fail to load there (rows "NA").
    /// In process also saves the ~20 s generated build and lets setup state (device, validated shapes) be shared.
    /// The evaluations take 10 ms to tens of seconds (the ILGPU CPU emulator on the larger shape): no pilot stage,
    /// one call per iteration, 1 warm-up + 3 measured, and a case time limit far above the in-process default
    /// (5 minutes), which a loaded 2-core machine exceeds.
    /// </summary>
    public static Job FieldJob { get; } = Job.Default
        .WithToolchain(new InProcessEmitToolchain(TimeSpan.FromMinutes(60), logOutput: true))
        .WithStrategy(RunStrategy.Monitoring)
        .WithLaunchCount(1)
        .WithWarmupCount(1)
        .WithIterationCount(3)
        .WithId("Field");

    /// <summary>
    /// The configuration Program.cs passes to BenchmarkSwitcher: with <see cref="FieldJob"/>, or without it when the
    /// command line names its own job (whose characteristics <see cref="FieldJob"/> would otherwise override).
    /// </summary>
    public static IConfig Create(bool withFieldJob)
    {
        var config = DefaultConfig.Instance;
        return (withFieldJob ? config.AddJob(FieldJob.AsDefault()) : config)
            .AddDiagnoser(MemoryDiagnoser.Default)
            .AddColumn(new GflopsColumn(), new TemporariesColumn(), new UNetThroughputColumn(gflops: false), new UNetThroughputColumn(gflops: true))
            .AddExporter(MarkdownExporter.GitHub, CsvExporter.Default)
            .AddFilter(new SimpleFilter(FieldBenchmarks.ShouldRun))
            .WithOrderer(new DefaultOrderer(SummaryOrderPolicy.Declared))
            .WithSummaryStyle(SummaryStyle.Default.WithRatioStyle(RatioStyle.Trend));
    }
}
