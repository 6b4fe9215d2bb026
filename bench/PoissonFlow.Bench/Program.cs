using BenchmarkDotNet.Running;
using PoissonFlow.Bench;

#if DEBUG
// BenchmarkDotNet refuses a Debug build but exits 0; fail loudly instead.
Console.Error.WriteLine("PoissonFlow.Bench must be built and run with -c Release");
return 1;
#else
// Our configuration runs in process (see BenchConfig.FieldJob); a --job given on the command line would add an
// out-of-process job, where TorchSharp cannot load, unless --inProcess comes with it.
if (args.Contains("--job") && !args.Contains("--inProcess")) args = [.. args, "--inProcess"];
var summaries = BenchmarkSwitcher.FromAssembly(typeof(FieldBenchmarks).Assembly).Run(args, BenchConfig.Create());
return summaries.Any(s => s.HasCriticalValidationErrors) ? 1 : 0;
#endif
