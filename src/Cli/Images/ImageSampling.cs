using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using PoissonFlow.Cli.Pfgm;
using PoissonFlow.Cli.Runs;
using PoissonFlow.IO;
using PoissonFlow.Network;
using PoissonFlow.Sampling;
using PoissonFlow.Sampling.Imaging;

namespace PoissonFlow.Cli.Images;

/// <summary>
/// <c>pfgm sample</c> on an image run: images from the prior through the backward ODE with the EMA weights, in
/// batches, written as an .npy of [n, C·H·W] values in [-1, 1] and an 8 x 8 PNG grid of the first 64.
/// </summary>
internal static class ImageSampling
{
    /// <summary>Images per sampler batch (bounds the device memory of the network's activations).</summary>
    public const int MaxBatch = 256;

    /// <summary>Reads an image run's config.json, or null when the folder holds a 2-D run (or none).</summary>
    /// <exception cref="UserErrorException">The file says it is an image run but does not parse.</exception>
    public static ImageRunConfig? TryReadConfig(RunFolder folder)
    {
        if (!File.Exists(folder.Config)) return null;
        try
        {
            var node = JsonNode.Parse(File.ReadAllText(folder.Config));
            if (node is not JsonObject root || root["kind"]?.GetValue<string>() != ImageRunConfig.ImagesKind) return null;
            return RunFolder.ReadJson<ImageRunConfig>(folder.Config);
        }
        catch (Exception e) when (e is JsonException or InvalidOperationException or InvalidDataException or FormatException)
        {
            throw new UserErrorException($"{folder.Config}: not a valid run config: {e.Message}", e);
        }
    }

    /// <summary>Samples from the image run in <paramref name="folder"/> as the command line says.</summary>
    public static void Run(CliContext context, ParsedArgs args, RunFolder folder, ImageRunConfig config)
    {
        var solver = RunOptions.Solver(args, config.Solver);
        int count = args.GetInt("count", args.GetInt("samples", config.Samples, min: 1, max: 1_000_000), min: 1, max: 1_000_000);
        int steps = args.GetInt("steps", args.GetInt("ode-steps", config.OdeSteps, min: 1, max: 100_000), min: 1, max: 100_000);
        var zMin = args.GetFloat("z-min", (float)config.ZMin, min: 1e-6f);
        ulong seed = (ulong)args.GetInt("seed", config.Seed, min: 0) + 17;
        string samplesPath = args.Has("out") ? args.GetOutputPath("out") : folder.Samples;
        string gridPath = Path.ChangeExtension(samplesPath, ".png");
        if (!File.Exists(folder.Checkpoint)) throw new UserErrorException($"{folder.Checkpoint}: no checkpoint; train first with 'pfgm train'");

        var device = context.Device;
        ITrainableNetwork loaded;
        CheckpointInfo info;
        try
        {
            // The checkpoint names its own network (type and config), so it is loaded as it was saved.
            loaded = ModelRegistry.Load(device, folder.Checkpoint, out info);
        }
        catch (CheckpointException e)
        {
            throw new UserErrorException(e.Message, e);
        }

        using var network = loaded;
        if (network.Dim != config.Dim)
        {
            throw new UserErrorException($"{folder.Checkpoint}: holds a network for {network.Dim} values per image, the run's config.json says {config.Dim}");
        }

        long step = info.Step;
        var options = (config with { ZMin = zMin }).Ode(solver, steps);
        int batch = Math.Min(count, MaxBatch), dim = config.Dim;
        var samples = new float[(long)count * dim];
        using var sampler = new PfgmSampler(device, batch, dim);
        var progress = context.Progress(count, unit: "image");
        int evaluations = 0;
        var timer = Stopwatch.StartNew();
        for (int start = 0, index = 0; start < count; start += batch, index++)
        {
            var (images, result) = sampler.Sample(network, options, (float)config.Hyper.UpperNorm, seed + (ulong)index * 7919);
            int take = Math.Min(batch, count - start);
            images.AsSpan(0, take * dim).CopyTo(samples.AsSpan(start * dim));
            evaluations += result.FunctionEvaluations;
            progress.Report(start + take);
        }

        progress.Finish();
        double seconds = timer.Elapsed.TotalSeconds;
        Npy.Write(samplesPath, samples, count, dim);
        ImageGrid.WritePng(gridPath, samples, Math.Min(count, 64), config.Channels, config.Height, config.Width, columns: 8);
        int nonFinite = Npy.ContainsNonFinite(samples) ? samples.Count(v => !float.IsFinite(v)) : 0;
        var c = CultureInfo.InvariantCulture;
        context.Out.WriteLine(string.Create(c,
            $"sampled {count} images {config.Channels}x{config.Height}x{config.Width} with the EMA weights of step {step} in {seconds:F1} s " +
            $"({seconds / count * 1000:F0} ms/image; {solver.ToString().ToLowerInvariant()}, {evaluations} field evaluations over {(count + batch - 1) / batch} batches of {batch})"));
        if (nonFinite > 0) context.Out.WriteLine($"warning: {nonFinite} sample values are not finite (shown black in the grid)");
        context.Out.WriteLine($"samples: {samplesPath} ([{count}, {dim}], values in [-1, 1]); grid: {gridPath}");
    }
}
