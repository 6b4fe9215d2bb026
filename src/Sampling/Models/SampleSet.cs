using PoissonFlow.IO;
using PoissonFlow.Sampling.Imaging;

namespace PoissonFlow.Sampling.Models;

/// <summary>
/// Points or images a <see cref="PfgmModel"/> produced: <see cref="Count"/> rows of <see cref="Shape"/> each, stored
/// row after row in <see cref="Values"/> (images planar: channel, row, column).
/// </summary>
public sealed class SampleSet
{
    private readonly int[] _shape;
    private readonly double[]? _pixelRange;

    internal SampleSet(float[] values, int count, int[] shape, double[]? pixelRange)
    {
        _shape = shape;
        _pixelRange = pixelRange;
        Values = values;
        Count = count;
        Dim = shape.Aggregate(1, (product, d) => product * d);
    }

    /// <summary>All values, <see cref="Count"/> x <see cref="Dim"/>, row after row.</summary>
    public float[] Values { get; }

    /// <summary>Number of points or images.</summary>
    public int Count { get; }

    /// <summary>Shape of one row: [N] for points, [C, H, W] for images.</summary>
    public IReadOnlyList<int> Shape => _shape;

    /// <summary>Values per row.</summary>
    public int Dim { get; }

    /// <summary>Whether the rows are images (a shape of two or three dimensions), which <see cref="SavePng"/> can draw.</summary>
    public bool IsImage => _shape.Length >= 2;

    /// <summary>The values of row <paramref name="index"/>.</summary>
    /// <exception cref="ArgumentOutOfRangeException">The index is not in [0, <see cref="Count"/>).</exception>
    public ReadOnlySpan<float> this[int index]
    {
        get
        {
            ArgumentOutOfRangeException.ThrowIfNegative(index);
            ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(index, Count);
            return Values.AsSpan(index * Dim, Dim);
        }
    }

    /// <summary>Writes the rows as a float32 .npy array of shape [Count, ...Shape] (atomically: no partial file on failure).</summary>
    /// <exception cref="IOException">The file cannot be written.</exception>
    public void SaveNpy(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        Npy.Write(path, Values, [Count, .. _shape]);
    }

    /// <summary>
    /// Draws the images as one PNG grid of <paramref name="columns"/> per row, mapping the model's pixel range to 0..255
    /// (atomically: no partial file on failure). Point samples have no picture: write them with <see cref="SaveNpy"/>.
    /// </summary>
    /// <exception cref="InvalidOperationException">The rows are points, not images, the set is empty, or the channel count is not 1 or 3; nothing is written.</exception>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="columns"/> is not positive.</exception>
    /// <exception cref="IOException">The file cannot be written.</exception>
    public void SavePng(string path, int columns = 8)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(columns);
        if (!IsImage) throw new InvalidOperationException($"samples of shape [{string.Join(", ", _shape)}] are points, not images: write them with SaveNpy");
        if (Count == 0) throw new InvalidOperationException("no images to draw: the sample set is empty");
        var (channels, height, width) = _shape.Length == 2 ? (1, _shape[0], _shape[1]) : (_shape[0], _shape[1], _shape[2]);
        if (channels is not (1 or 3)) throw new InvalidOperationException($"images of {channels} channels cannot be drawn as PNG (1 or 3 needed)");
        double low = _pixelRange?[0] ?? -1, high = _pixelRange?[1] ?? 1;
        ImageGrid.WritePng(path, Values, Count, channels, height, width, columns, low, high);
    }
}
