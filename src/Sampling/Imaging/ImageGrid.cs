using PoissonFlow.IO;

namespace PoissonFlow.Sampling.Imaging;

/// <summary>
/// Tiles a batch of images (planar [count, C, H, W] floats, as the samplers produce them) into one grid picture and
/// writes it as PNG: values map linearly from [low, high] to [0, 255] and are clipped; NaN becomes 0 so a diverged
/// sample shows as black rather than failing the whole grid.
/// </summary>
public static class ImageGrid
{
    /// <summary>The pixel bytes of the grid (row-major, C bytes per pixel) and its size.</summary>
    /// <param name="images">count x channels x height x width values.</param>
    /// <param name="count">Number of images; tiles beyond it stay the background colour.</param>
    /// <param name="channels">1 (grey) or 3 (RGB).</param>
    /// <param name="height">Image height.</param>
    /// <param name="width">Image width.</param>
    /// <param name="columns">Images per grid row (rows follow from the count).</param>
    /// <param name="low">The value that maps to 0.</param>
    /// <param name="high">The value that maps to 255.</param>
    /// <param name="padding">Background pixels between tiles and around the grid.</param>
    /// <exception cref="ArgumentException">A size is not positive, the channel count is not 1 or 3, the range is empty, or the data is short.</exception>
    public static (byte[] Pixels, int Width, int Height) Render(ReadOnlySpan<float> images, int count, int channels, int height, int width,
        int columns, double low = -1, double high = 1, int padding = 2)
    {
        if (count <= 0 || height <= 0 || width <= 0 || columns <= 0 || padding < 0)
        {
            throw new ArgumentException($"image grid: count, height, width and columns must be positive and padding non-negative, got {count}, {height}, {width}, {columns}, {padding}");
        }

        if (channels is not (1 or 3)) throw new ArgumentException($"image grid: channels must be 1 or 3, got {channels}");
        if (!(low < high)) throw new ArgumentException($"image grid: the value range must have low < high, got [{low}, {high}]");
        long perImage = (long)channels * height * width;
        if (images.Length < count * perImage) throw new ArgumentException($"image grid: {count} images of {channels}x{height}x{width} need {count * perImage} values, got {images.Length}");

        columns = Math.Min(columns, count);
        int rows = (count + columns - 1) / columns;
        int gridWidth = columns * (width + padding) + padding, gridHeight = rows * (height + padding) + padding;
        var pixels = new byte[(long)gridWidth * gridHeight * channels];
        Array.Fill(pixels, (byte)255); // white background between tiles
        double scale = 255.0 / (high - low);
        for (int i = 0; i < count; i++)
        {
            int left = padding + (i % columns) * (width + padding), top = padding + (i / columns) * (height + padding);
            var image = images.Slice((int)(i * perImage), (int)perImage);
            for (int y = 0; y < height; y++)
            {
                for (int x = 0; x < width; x++)
                {
                    long pixel = ((long)(top + y) * gridWidth + left + x) * channels;
                    for (int c = 0; c < channels; c++)
                    {
                        float value = image[(c * height + y) * width + x];
                        double level = float.IsNaN(value) ? 0 : Math.Clamp((value - low) * scale, 0, 255);
                        pixels[pixel + c] = (byte)Math.Round(level);
                    }
                }
            }
        }

        return (pixels, gridWidth, gridHeight);
    }

    /// <summary>Renders the grid (see <see cref="Render"/>) and writes it to <paramref name="path"/> as PNG, atomically.</summary>
    /// <exception cref="ArgumentException">As for <see cref="Render"/>.</exception>
    /// <exception cref="IOException">The file cannot be written; no partial file is left.</exception>
    public static void WritePng(string path, ReadOnlySpan<float> images, int count, int channels, int height, int width,
        int columns = 8, double low = -1, double high = 1, int padding = 2)
    {
        var (pixels, gridWidth, gridHeight) = Render(images, count, channels, height, width, columns, low, high, padding);
        var png = PngEncoder.Encode(pixels, gridWidth, gridHeight, channels);
        AtomicFile.Write(path, stream => stream.Write(png));
    }
}
