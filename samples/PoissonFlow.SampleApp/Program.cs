using PoissonFlow.Sampling;
using PoissonFlow.Sampling.Models;

// PoissonFlow.SampleApp MODEL.safetensors [OUTPUT] [COUNT]: a PNG grid for an image model, a .npy file for a point model.
if (args.Length == 0) { Console.Error.WriteLine("usage: PoissonFlow.SampleApp MODEL.safetensors [OUTPUT] [COUNT]"); return 2; }
using var model = PfgmModel.Load(args[0]);                    // CUDA when present, else the CPU accelerator
string output = args.Length > 1 ? args[1] : model.IsImageModel ? "samples.png" : "samples.npy";
int count = args.Length > 2 ? int.Parse(args[2]) : model.IsImageModel ? 64 : 1000;
var samples = model.Sample(count, new SampleOptions { Solver = OdeSolver.Heun, Steps = 30, Seed = 1 });
if (model.IsImageModel) samples.SavePng(output); else samples.SaveNpy(output);
Console.WriteLine($"{samples.Count} samples of shape [{string.Join(", ", model.DataShape)}] on {model.DeviceDescription}: {output}");
return 0;
