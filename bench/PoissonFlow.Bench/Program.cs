using BenchmarkDotNet.Running;
using PoissonFlow.Bench;

#if DEBUG
// BenchmarkDotNet refuses a Debug build but exits 0; fail loudly instead.
Console.Error.WriteLine("PoissonFlow.Bench must be built and run with -c Release");
return 1;
#else
// Our job runs in process (see BenchConfig.FieldJob). A --job named on the command line replaces it, and gets
// --inProcess added: out of process, TorchSharp cannot load.
bool ownJob = args.Contains("--job");
if (ownJob && !args.Contains("--inProcess")) args = [.. args, "--inProcess"];
var summaries = BenchmarkSwitcher.FromAssembly(typeof(FieldBenchmarks).Assembly).Run(args, BenchConfig.Create(withFieldJob: !ownJob));
return summaries.Any(s => s.HasCriticalValidationErrors) ? 1 : 0;
#endif
