using PoissonFlow.Data;
using PoissonFlow.Evaluation;

namespace PoissonFlow.Network.Features;

/// <summary>Settings of an image-quality evaluation.</summary>
/// <param name="NearestNeighbourCount">Samples (and, for the baseline, test images) whose nearest training image is
/// searched exactly among all training images; 0 skips the search. The default, 1,000, keeps the search to a few
/// seconds on 2 cores (1,000 x 60,000 x 784 multiply-adds); the mean is then good to about 1%.</param>
/// <param name="Seed">Seeds which training images form the floor's reference set and which rows the search uses.</param>
public sealed record ImageQualityOptions(int NearestNeighbourCount = 1000, ulong Seed = 0);

/// <summary>What <see cref="ImageQuality.Evaluate"/> measured.</summary>
/// <param name="Samples">Samples evaluated.</param>
/// <param name="FeatureSize">Dimension of the feature space.</param>
/// <param name="FrechetDistance">FD between the samples' features and the test set's.</param>
/// <param name="Floor">FD between as many random training images as samples and the test set: what a perfect generator scores at this sample size.</param>
/// <param name="TestCount">Test images the statistics come from.</param>
/// <param name="NearestNeighbourCount">Samples searched for their nearest training image (0: skipped).</param>
/// <param name="SampleToTrainMean">Mean pixel-space distance of those samples to their nearest training image.</param>
/// <param name="SampleToTrainMin">The smallest such distance (near 0: a training image was reproduced).</param>
/// <param name="TestToTrainMean">The same mean for as many unseen test images: the distance a non-memorising generator should show.</param>
/// <param name="TestToTrainMin">The smallest test-image distance.</param>
/// <param name="ClampedValues">Sample values outside [-1, 1], clamped before the features were computed.</param>
public sealed record ImageQualityReport(int Samples, int FeatureSize, double FrechetDistance, double Floor, int TestCount,
    int NearestNeighbourCount, double SampleToTrainMean, double SampleToTrainMin, double TestToTrainMean, double TestToTrainMin,
    long ClampedValues);

/// <summary>
/// Judges generated images without downloaded weights: the Frechet distance in the frozen classifier's feature space
/// against the test set (an FID analogue), next to its floor at the same sample size, and the nearest-neighbour
/// distance to the training set in pixel space (memorisation), next to the same distance for unseen test images.
/// </summary>
public static class ImageQuality
{
    private const uint FloorStream = 1, SampleSearchStream = 2, TestSearchStream = 3;

    /// <summary>
    /// Evaluates <paramref name="count"/> samples (row-major images of the classifier's input size, in [-1, 1]; values
    /// outside are clamped) against <paramref name="train"/> and <paramref name="test"/>. <paramref name="log"/>
    /// receives a line per stage.
    /// </summary>
    /// <exception cref="ArgumentException">Fewer than 2 samples, or images that do not fit the classifier.</exception>
    public static ImageQualityReport Evaluate(FeatureClassifier model, float[] samples, int count, IdxImages train, IdxImages test,
        ImageQualityOptions options, Action<string>? log = null)
    {
        int pixels = model.Config.Input;
        if (count < 2) throw new ArgumentException($"image evaluation needs at least 2 samples, got {count}");
        if (samples.Length != (long)count * pixels) throw new ArgumentException($"image evaluation: {samples.Length} values are not {count} images of {pixels} pixels");
        if (train.PixelsPerImage != pixels || test.PixelsPerImage != pixels)
        {
            throw new ArgumentException($"image evaluation: the classifier takes {pixels} pixels, the data sets have {train.PixelsPerImage} and {test.PixelsPerImage}");
        }

        var clean = new float[samples.Length];
        long clamped = 0;
        for (int i = 0; i < samples.Length; i++)
        {
            float v = samples[i];
            if (v < -1f || v > 1f) clamped++;
            clean[i] = Math.Clamp(v, -1f, 1f);
        }

        log?.Invoke($"features of {test.Count} test images, {count} samples and {Math.Min(count, train.Count)} training images ({model.Config.FeatureSize}-D)");
        var testStats = Statistics(model, test.Pixels, test.Count);
        var sampleStats = Statistics(model, clean, count);
        var floorImages = Gather(train, FeatureTraining.Shuffle(train.Count, options.Seed, FloorStream), Math.Min(count, train.Count));
        var floorStats = Statistics(model, floorImages, floorImages.Length / pixels);
        double fd = FrechetDistance.Compute(sampleStats, testStats);
        double floor = FrechetDistance.Compute(floorStats, testStats);

        int searched = Math.Min(options.NearestNeighbourCount, Math.Min(count, test.Count));
        NearestNeighbourDistances? sampleNn = null, testNn = null;
        if (searched > 0)
        {
            log?.Invoke($"nearest training image of {searched} samples and {searched} test images (exact search over {train.Count})");
            var sampleRows = Gather(clean, pixels, FeatureTraining.Shuffle(count, options.Seed, SampleSearchStream), searched);
            sampleNn = NearestNeighbour.Compute(sampleRows, searched, train.Pixels, train.Count, pixels);
            var testRows = Gather(test, FeatureTraining.Shuffle(test.Count, options.Seed, TestSearchStream), searched);
            testNn = NearestNeighbour.Compute(testRows, searched, train.Pixels, train.Count, pixels);
        }

        return new ImageQualityReport(count, model.Config.FeatureSize, fd, floor, test.Count, searched,
            sampleNn?.Mean ?? double.NaN, sampleNn?.Min ?? double.NaN, testNn?.Mean ?? double.NaN, testNn?.Min ?? double.NaN, clamped);
    }

    /// <summary>Feature statistics of host images.</summary>
    public static GaussianStatistics Statistics(FeatureClassifier model, float[] images, int count) =>
        GaussianStatistics.FromRows(model.Features(images, count), count, model.Config.FeatureSize);

    private static float[] Gather(IdxImages images, int[] order, int take) => Gather(images.Pixels, images.PixelsPerImage, order, take);

    private static float[] Gather(float[] rows, int width, int[] order, int take)
    {
        var result = new float[(long)take * width];
        for (int i = 0; i < take; i++) rows.AsSpan(order[i] * width, width).CopyTo(result.AsSpan(i * width, width));
        return result;
    }
}
