using System.Diagnostics;
using System.Globalization;
using PoissonFlow.Cli.Pfgm;
using PoissonFlow.Cli.Plots;
using PoissonFlow.Cli.Runs;
using PoissonFlow.Data;
using PoissonFlow.IO;
using PoissonFlow.Network;
using PoissonFlow.Network.Training;
using PoissonFlow.Sampling;
using PoissonFlow.Sampling.Imaging;

namespace PoissonFlow.Cli.Images;

/// <summary>One logged loss (the mean over the steps since the previous one).</summary>
/// <param name="Step">Completed updates when it was read.</param>
/// <param name="Loss">The mean loss.</param>
internal sealed record LossEntry(long Step, double Loss);

/// <summary>What an image run has logged so far (training-log.json): the losses, and the steps of the preview rows.</summary>
internal sealed record TrainingLog
{
    /// <summary>The losses in step order.</summary>
    public List<LossEntry> Losses { get; init; } = [];

    /// <summary>The step of each row of previews.npy, in order.</summary>
    public List<long> PreviewSteps { get; init; } = [];

    /// <summary>Seconds spent in training steps (excluding checkpoints and previews), summed over resumes.</summary>
    public double TrainSeconds { get; init; }
}

/// <summary>
/// <c>pfgm train</c> on images: the PFGM recipe at N = C·H·W, the data on the device, checkpoints every K steps and at
/// the end, resumable. Each checkpoint first writes the log and previews (atomically, each covering exactly the steps
/// up to the checkpoint), then the checkpoint itself (atomically, with its <see cref="SamplingCard"/>), so a kill at
/// any moment leaves the previous complete checkpoint (or the new one) and logs that may run ahead of it, which a
/// resume trims back. Training draws depend only on (seed, step), so a resumed run is the uninterrupted one.
/// </summary>
internal static class ImageTrainingRun
{
    /// <summary>The training options only a fresh run may set (a resumed run keeps its config.json).</summary>
    public static readonly string[] FixedOnResume =
        ["data", "image-size", "channels", "model", "seed", "batch", "ref-batch", "lr", "warmup", "ema", "m", "z-max", "upper-norm", "hidden", "depth", "count"];

    /// <summary>Preview rows are drawn from this seed offset, the same at every checkpoint (rows are comparable).</summary>
    private const int PreviewSeedOffset = 29;

    /// <summary>Starts a new image run into <paramref name="folder"/> from the command line's options.</summary>
    public static void Start(CliContext context, ParsedArgs args, RunFolder folder)
    {
        string model = args.GetString("model", "tiny")!;
        ImageModels.CheckName(model);
        var config = new ImageRunConfig
        {
            Data = args.GetString("data", ImageData.FashionMnist)!,
            ImageSize = args.Has("image-size") ? args.GetRequiredInt("image-size", min: 4, max: 1024) : null,
            Channels = args.Has("channels") ? ParseChannels(args) : 1,
            Model = model,
            Seed = args.GetInt("seed", 1, min: 0),
            MlpHidden = args.GetInt("hidden", 256, min: 1, max: 8192),
            MlpDepth = args.GetInt("depth", 2, min: 1, max: 64),
        };
        config = ApplyShared(config, args);
        config = config with
        {
            Batch = args.GetInt("batch", config.Batch, min: 1, max: 65536),
            LearningRate = args.GetFloat("lr", config.LearningRate, min: 0f, max: 1f),
            Warmup = args.GetInt("warmup", config.Warmup, min: 0),
            EmaRate = args.GetFloat("ema", config.EmaRate, min: 0f, max: 1f),
        };
        config = config with { ReferenceBatch = args.GetInt("ref-batch", Math.Max(config.ReferenceBatch, config.Batch), min: config.Batch, max: 1 << 20) };
        if (File.Exists(folder.Config) || File.Exists(folder.Checkpoint))
        {
            throw new UserErrorException($"{folder.Path}: already holds a run; continue it with 'pfgm train --out {folder.Path} --resume' or choose another --out");
        }

        var data = LoadData(context, config.Data, config.ImageSize, args.Has("channels") ? config.Channels : null);
        var (m, zMax, upperNorm) = RunOptions.HyperOverrides(args);
        var (norm, hyper) = PfgmPipeline.Hyper(config.Data, data.Images, m, zMax, upperNorm);
        config = config with
        {
            DataCount = data.Images.Count, Channels = data.Channels, Height = data.Height, Width = data.Width,
            ImageSize = Directory.Exists(config.Data) ? data.Height : null,
            MeanNorm = norm, Hyper = hyper, RestrictM = true,
        };
        RunFolder.WriteJson(folder.Config, config);
        Train(context, config, data, folder, resume: false);
    }

    /// <summary>Continues the image run in <paramref name="folder"/> from its last checkpoint (or from the start if it has none).</summary>
    public static void Resume(CliContext context, ParsedArgs args, RunFolder folder, ImageRunConfig config)
    {
        var fixedGiven = FixedOnResume.Where(args.Has).Select(o => "--" + o).ToList();
        if (fixedGiven.Count > 0)
        {
            throw new UserErrorException($"--resume keeps the run's config.json; only --steps, --checkpoint-every and --preview-steps may change, got {string.Join(", ", fixedGiven)}");
        }

        config = ApplyShared(config, args);
        ClearStaleTemporaries(folder);
        var data = LoadData(context, config.Data, config.ImageSize, config.Channels);
        if (data.Images.Count != config.DataCount || data.Dim != config.Dim)
        {
            throw new UserErrorException($"{config.Data}: now holds {data.Images.Count} images of {data.Channels}x{data.Height}x{data.Width}, " +
                                         $"the run was started on {config.DataCount} of {config.Channels}x{config.Height}x{config.Width}; a resumed run needs the same data");
        }

        RunFolder.WriteJson(folder.Config, config);
        Train(context, config, data, folder, resume: true);
    }

    /// <summary>Reads the image data, as a user error when they are bad; skipped-file warnings go to stderr.</summary>
    public static ImageData LoadData(CliContext context, string data, int? size, int? channels)
    {
        try
        {
            return ImageData.Load(data, size, channels, context.Error);
        }
        catch (DatasetException e)
        {
            throw new UserErrorException(e.Message, e);
        }
    }

    /// <summary>
    /// Deletes the temporary files a killed run may have left mid-write (<see cref="AtomicFile"/>'s hidden
    /// <c>.name.guid.tmp</c>); the files they were to replace are intact.
    /// </summary>
    private static void ClearStaleTemporaries(RunFolder folder)
    {
        foreach (string temp in Directory.EnumerateFiles(folder.Path, ".*.tmp")) File.Delete(temp);
    }

    private static ImageRunConfig ApplyShared(ImageRunConfig config, ParsedArgs args)
    {
        var updated = config with
        {
            Steps = args.GetInt("steps", config.Steps, min: 1),
            CheckpointEvery = args.GetInt("checkpoint-every", config.CheckpointEvery, min: 1),
            PreviewSteps = args.GetInt("preview-steps", config.PreviewSteps, min: 1, max: 10_000),
        };
        return updated;
    }

    private static int ParseChannels(ParsedArgs args)
    {
        int channels = args.GetRequiredInt("channels", min: 1, max: 3);
        if (channels == 2) throw new UserErrorException("option --channels expects 1 (grey) or 3 (RGB), got 2");
        return channels;
    }

    private static void Train(CliContext context, ImageRunConfig config, ImageData data, RunFolder folder, bool resume)
    {
        var output = context.Out;
        var device = context.Device;
        using var network = ImageModels.Create(device, config);
        using var trainer = new Trainer(network, new TrainerOptions(config.Adam, LossInterval: 10));
        var log = new TrainingLog();
        var previews = new List<float>();
        string checkpoint = folder.Checkpoint;
        if (resume && File.Exists(checkpoint))
        {
            try
            {
                Checkpoint.Load(checkpoint, trainer);
            }
            catch (CheckpointException e)
            {
                throw new UserErrorException(e.Message, e);
            }

            (log, previews) = ReadLog(folder, config, trainer.StepCount);
            output.WriteLine($"resuming {folder.Path} at step {trainer.StepCount} of {config.Steps}");
        }
        else if (resume)
        {
            output.WriteLine($"resuming {folder.Path}: no checkpoint yet, starting at step 0");
        }

        output.WriteLine($"data: {config.Data}, {data.Images.Count} images {config.Channels}x{config.Height}x{config.Width} (N = {config.Dim}), mean norm {F(config.MeanNorm)}");
        output.WriteLine($"PFGM: M {config.Hyper.M}, z_max {F(config.Hyper.ZMax)}, upper_norm {F(config.Hyper.UpperNorm)}, restrict_M {(config.RestrictM ? "on" : "off")}");
        output.WriteLine($"network: {config.Model} ({network.Parameters.ParameterCount:N0} parameters) predicting the normalised field; " +
                         $"{config.Steps} steps, batch {config.Batch}, reference batch {config.ReferenceBatch}, lr {F(config.LearningRate)} " +
                         $"(warmup {config.Warmup}), clip {F(config.GradClip)}, EMA {F(config.EmaRate)}; checkpoint every {config.CheckpointEvery}");
        output.WriteLine($"device: {device.Description}");
        if (trainer.StepCount >= config.Steps)
        {
            output.WriteLine($"already at step {trainer.StepCount}: nothing to do (raise --steps to train on)");
            return;
        }

        using var training = new PfgmTraining(trainer, data.Images, new PfgmTrainingOptions(config.Hyper, config.Batch, config.ReferenceBatch,
            config.Gamma, config.RestrictM, (ulong)config.Seed, PfgmTarget.Field));
        var progress = context.Progress(config.Steps);
        long startStep = trainer.StepCount;
        // total: every training step of this session; steady: all but the first, whose time is mostly kernel
        // compilation. Both pause for previews and checkpoint writes.
        var total = new Stopwatch();
        var steady = new Stopwatch();
        while (trainer.StepCount < config.Steps)
        {
            total.Start();
            if (trainer.StepCount > startStep) steady.Start();
            float loss = training.Step();
            long step = trainer.StepCount;
            if (step == startStep + 1) device.Synchronize();
            if (trainer.LastLossStep == step) log.Losses.Add(new LossEntry(step, loss));
            // Every step, with the latest loss read (reading it every step would synchronise every step).
            progress.Report(step, float.IsNaN(trainer.LastLoss) ? null : trainer.LastLoss);
            if (step % config.CheckpointEvery == 0 || step == config.Steps)
            {
                if (trainer.LastLossStep != step) log.Losses.Add(new LossEntry(step, trainer.ReadLoss()));
                total.Stop();
                steady.Stop();
                previews.AddRange(Preview(context, network, config));
                log.PreviewSteps.Add(step);
                WriteLog(folder, config, log with { TrainSeconds = log.TrainSeconds + total.Elapsed.TotalSeconds }, previews);
                Checkpoint.Save(checkpoint, trainer, config.ToSamplingCard());
            }
        }

        progress.Report(trainer.StepCount, trainer.LastLoss);
        progress.Finish();
        long trained = trainer.StepCount - startStep;
        double seconds = total.Elapsed.TotalSeconds;
        string rate = trained > 1
            ? $"{(trained - 1) * (double)config.Batch / steady.Elapsed.TotalSeconds:G3} images/s, {steady.Elapsed.TotalMilliseconds / (trained - 1):F0} ms/step after the first"
            : $"{seconds * 1000:F0} ms for the one step, kernel compilation included";
        output.WriteLine($"trained {trained} steps in {seconds:F1} s ({rate}); final loss {F(trainer.LastLoss)}; checkpoint {checkpoint}");
        output.WriteLine($"plots: {LossPlotPath(folder)}, {PreviewPlotPath(folder)}");
    }

    /// <summary>A few samples with the EMA weights (Euler, fixed seed), as one preview row.</summary>
    private static float[] Preview(CliContext context, IFieldPredictor network, ImageRunConfig config)
    {
        using var sampler = new PfgmSampler(context.Device, config.PreviewCount, config.Dim);
        var (samples, _) = sampler.Sample(network, config.Ode(OdeSolver.Euler, config.PreviewSteps), (float)config.Hyper.UpperNorm,
            (ulong)(config.Seed + PreviewSeedOffset));
        return samples;
    }

    private static void WriteLog(RunFolder folder, ImageRunConfig config, TrainingLog log, List<float> previews)
    {
        RunFolder.WriteJson(LogPath(folder), log);
        int rows = log.PreviewSteps.Count;
        Npy.Write(PreviewDataPath(folder), previews.ToArray(), rows * config.PreviewCount, config.Dim);
        ImageGrid.WritePng(PreviewPlotPath(folder), previews.ToArray(), rows * config.PreviewCount, config.Channels, config.Height, config.Width,
            columns: config.PreviewCount);
        if (log.Losses.Any(l => double.IsFinite(l.Loss) && l.Loss > 0))
        {
            LossPlot.Draw(LossPlotPath(folder), log.Losses.Select(l => (l.Step, l.Loss)).ToList());
        }
    }

    /// <summary>The log and previews up to <paramref name="step"/> (a kill after the log write leaves them ahead of the checkpoint).</summary>
    private static (TrainingLog Log, List<float> Previews) ReadLog(RunFolder folder, ImageRunConfig config, long step)
    {
        if (!File.Exists(LogPath(folder))) return (new TrainingLog(), []);
        TrainingLog log;
        try
        {
            log = RunFolder.ReadJson<TrainingLog>(LogPath(folder));
        }
        catch (InvalidDataException e)
        {
            throw new UserErrorException(e.Message, e);
        }

        int rows = log.PreviewSteps.Count(s => s <= step);
        var previews = new List<float>();
        if (rows > 0 && File.Exists(PreviewDataPath(folder)))
        {
            var array = Npy.Read(PreviewDataPath(folder));
            int keep = Math.Min(rows * config.PreviewCount * config.Dim, array.Data.Length) / (config.PreviewCount * config.Dim);
            previews.AddRange(array.Data.AsSpan(0, keep * config.PreviewCount * config.Dim).ToArray());
            rows = keep;
        }
        else
        {
            rows = 0;
        }

        var kept = new TrainingLog
        {
            Losses = log.Losses.Where(l => l.Step <= step).ToList(),
            PreviewSteps = log.PreviewSteps.Where(s => s <= step).Take(rows).ToList(),
            TrainSeconds = log.TrainSeconds,
        };
        return (kept, previews);
    }

    /// <summary>training-log.json: losses and preview steps.</summary>
    public static string LogPath(RunFolder folder) => Path.Combine(folder.Path, "training-log.json");

    /// <summary>loss.png: the loss curve.</summary>
    public static string LossPlotPath(RunFolder folder) => Path.Combine(folder.Path, "loss.png");

    /// <summary>samples-over-training.png: one row of EMA samples per checkpoint.</summary>
    public static string PreviewPlotPath(RunFolder folder) => Path.Combine(folder.Path, "samples-over-training.png");

    /// <summary>previews.npy: the preview rows' images, rows x count by N.</summary>
    public static string PreviewDataPath(RunFolder folder) => Path.Combine(folder.Path, "previews.npy");

    private static string F(double value) => value.ToString("G4", CultureInfo.InvariantCulture);
}
