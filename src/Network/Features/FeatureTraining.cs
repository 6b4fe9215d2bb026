using ILGPU;
using ILGPU.Runtime;
using PoissonFlow.Data;
using PoissonFlow.Kernels;
using PoissonFlow.Kernels.Device;

namespace PoissonFlow.Network.Features;

/// <summary>Settings of a feature-classifier training run.</summary>
/// <param name="Epochs">Passes over the training images.</param>
/// <param name="Batch">Images per step (the last, smaller batch of an epoch is kept).</param>
/// <param name="LearningRate">Adam's peak learning rate.</param>
/// <param name="WarmupSteps">Linear warmup length.</param>
/// <param name="EmaRate">EMA rate of the weights that are evaluated and saved.</param>
/// <param name="Seed">Seeds the initialisation and the shuffling: the same seed gives the same bytes on the same device.</param>
/// <param name="LossInterval">Steps between loss reads (the only synchronisations during training).</param>
public sealed record FeatureTrainingOptions(
    int Epochs = 6,
    int Batch = 64,
    float LearningRate = 1e-3f,
    int WarmupSteps = 100,
    float EmaRate = 0.999f,
    ulong Seed = 1,
    int LossInterval = 50)
{
    /// <summary>
    /// The optimiser settings for a run of <paramref name="totalSteps"/> steps: Adam with warmup, then a linear decay to
    /// zero at the last step, clipping at norm 5 (a safety net, rarely active) and the EMA.
    /// </summary>
    public AdamOptions Adam(long totalSteps) =>
        new(LearningRate, WarmupSteps: WarmupSteps, GradClip: 5f, EmaRate: EmaRate, DecaySteps: (int)Math.Max(1, totalSteps - WarmupSteps));

    /// <summary>Throws when a setting is out of range; the message names it.</summary>
    /// <exception cref="ArgumentException">A setting is out of range.</exception>
    public void Validate()
    {
        if (Epochs < 1) throw new ArgumentException($"feature training: epochs must be at least 1, got {Epochs}");
        if (Batch < 1) throw new ArgumentException($"feature training: batch must be at least 1, got {Batch}");
        if (!(LearningRate > 0) || !float.IsFinite(LearningRate)) throw new ArgumentException($"feature training: learning rate must be positive, got {LearningRate}");
        if (WarmupSteps < 0) throw new ArgumentException($"feature training: warmup must be non-negative, got {WarmupSteps}");
        if (!(EmaRate is >= 0 and < 1)) throw new ArgumentException($"feature training: EMA rate must be in [0, 1), got {EmaRate}");
        if (LossInterval < 1) throw new ArgumentException($"feature training: loss interval must be at least 1, got {LossInterval}");
    }
}

/// <summary>Progress of a feature training run: steps done, total steps, and the mean loss of the last interval.</summary>
/// <param name="Step">Steps done.</param>
/// <param name="TotalSteps">Steps of the whole run.</param>
/// <param name="Loss">Mean training loss since the previous report.</param>
public readonly record struct FeatureTrainingProgress(long Step, long TotalSteps, double Loss);

/// <summary>
/// Trains a <see cref="FeatureClassifier"/> on labelled images, deterministically: the initialisation and each epoch's
/// shuffle come from the seed (Philox, the same on every runtime), every kernel reduces in a fixed order, and the
/// host only gathers the shuffled batch and uploads it. Two runs with the same options on the same device give
/// bit-identical weights.
/// </summary>
public static class FeatureTraining
{
    /// <summary>Philox "purpose" of the per-epoch shuffle.</summary>
    private const uint ShufflePurpose = 0x5EA7_F00D;

    /// <summary>Trains on <paramref name="images"/> (their labels in <paramref name="labels"/>) and returns the model.</summary>
    /// <exception cref="ArgumentException">Options out of range, or images that do not fit the config.</exception>
    /// <exception cref="TrainingDivergedException">A gradient became non-finite.</exception>
    public static FeatureClassifier Train(ComputeDevice device, ClassifierConfig config, IdxImages images, byte[] labels,
        FeatureTrainingOptions options, Action<FeatureTrainingProgress>? progress = null)
    {
        options.Validate();
        if (images.PixelsPerImage != config.Input) throw new ArgumentException($"feature training: images have {images.PixelsPerImage} pixels, the classifier takes {config.Input}");
        if (labels.Length != images.Count) throw new ArgumentException($"feature training: {labels.Length} labels for {images.Count} images");
        int bad = Array.FindIndex(labels, l => l >= config.Classes);
        if (bad >= 0) throw new ArgumentException($"feature training: label {labels[bad]} of image {bad} is not below {config.Classes} classes");

        int n = images.Count, batch = Math.Min(options.Batch, n), width = config.Input;
        long stepsPerEpoch = (n + batch - 1) / batch, total = stepsPerEpoch * options.Epochs;
        var model = new FeatureClassifier(device, config, options.Seed);
        try
        {
            using var imageBuffer = device.Accelerator.Allocate1D<float>((long)batch * width);
            using var labelBuffer = device.Accelerator.Allocate1D<int>(batch);
            var hostImages = new float[batch * width];
            var hostLabels = new int[batch];
            var adam = options.Adam(total);
            long step = 0;
            for (int epoch = 0; epoch < options.Epochs; epoch++)
            {
                var order = Shuffle(n, options.Seed, (uint)epoch);
                for (int start = 0; start < n; start += batch)
                {
                    int rows = Math.Min(batch, n - start);
                    for (int r = 0; r < rows; r++)
                    {
                        int index = order[start + r];
                        images.Image(index).CopyTo(hostImages.AsSpan(r * width, width));
                        hostLabels[r] = labels[index];
                    }

                    // The copies are synchronous, so the previous step has finished reading these buffers.
                    ((ArrayView<float>)imageBuffer.View.SubView(0, (long)rows * width)).CopyFromCPU(hostImages.AsSpan(0, rows * width));
                    ((ArrayView<int>)labelBuffer.View.SubView(0, rows)).CopyFromCPU(hostLabels.AsSpan(0, rows));
                    model.TrainStep(imageBuffer.View, labelBuffer.View.SubView(0, rows), rows, adam);
                    step++;
                    if (step % options.LossInterval == 0 || step == total) progress?.Invoke(new FeatureTrainingProgress(step, total, model.ReadLoss()));
                }
            }

            model.ReadLoss();
            return model;
        }
        catch
        {
            model.Dispose();
            throw;
        }
    }

    /// <summary>
    /// A permutation of 0..count-1 (Fisher-Yates driven by Philox with the seed and <paramref name="stream"/>): the same
    /// on every machine and runtime.
    /// </summary>
    public static int[] Shuffle(int count, ulong seed, uint stream)
    {
        var order = new int[count];
        for (int i = 0; i < count; i++) order[i] = i;
        for (int i = count - 1; i > 0; i--)
        {
            uint bits = Philox.Generate(seed, ShufflePurpose, (uint)i, 0, stream).X0;
            int j = (int)((ulong)bits * (uint)(i + 1) >> 32);
            (order[i], order[j]) = (order[j], order[i]);
        }

        return order;
    }
}
