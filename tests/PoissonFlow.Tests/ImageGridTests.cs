using PoissonFlow.Sampling.Imaging;
using SixLabors.ImageSharp;
using SixLabors.ImageSharp.PixelFormats;

namespace PoissonFlow.Tests;

public sealed class ImageGridTests
{
    [TestCase(1)]
    [TestCase(3)]
    public void PngDecodesToTheExactPixelsWithAnIndependentReader(int channels)
    {
        // ImageSharp is the independent decoder: CRCs, zlib stream and header must all be right for it to load.
        const int width = 13, height = 7;
        var random = new Random(11);
        var pixels = new byte[width * height * channels];
        random.NextBytes(pixels);
        var png = PngEncoder.Encode(pixels, width, height, channels);
        using var image = Image.Load<Rgb24>(png);
        Assert.That((image.Width, image.Height), Is.EqualTo((width, height)));
        for (int y = 0; y < height; y++)
        {
            for (int x = 0; x < width; x++)
            {
                var p = image[x, y];
                int i = (y * width + x) * channels;
                var expected = channels == 1 ? (pixels[i], pixels[i], pixels[i]) : (pixels[i], pixels[i + 1], pixels[i + 2]);
                Assert.That((p.R, p.G, p.B), Is.EqualTo(expected), $"pixel ({x}, {y})");
            }
        }
    }

    [Test]
    public void GridPlacesEveryImageAndMapsTheRange()
    {
        const int count = 5, channels = 3, size = 4, columns = 3, padding = 1;
        var random = new Random(5);
        var images = Enumerable.Range(0, count * channels * size * size).Select(_ => (float)(random.NextDouble() * 2.4 - 1.2)).ToArray();
        images[7] = float.NaN;
        var (pixels, width, height) = ImageGrid.Render(images, count, channels, size, size, columns, padding: padding);
        Assert.That((width, height), Is.EqualTo((columns * (size + padding) + padding, 2 * (size + padding) + padding)));
        for (int i = 0; i < count; i++)
        {
            int left = padding + (i % columns) * (size + padding), top = padding + (i / columns) * (size + padding);
            for (int c = 0; c < channels; c++)
            {
                for (int y = 0; y < size; y++)
                {
                    for (int x = 0; x < size; x++)
                    {
                        float v = images[((i * channels + c) * size + y) * size + x];
                        // Reference mapping in float64: [-1, 1] -> [0, 255], clipped, NaN -> 0.
                        double level = double.IsNaN(v) ? 0 : Math.Clamp((v + 1.0) * 127.5, 0, 255);
                        Assert.That(pixels[((top + y) * width + left + x) * channels + c], Is.EqualTo((byte)Math.Round(level)), $"image {i} c{c} ({x}, {y})");
                    }
                }
            }
        }

        Assert.That(pixels[0], Is.EqualTo(255), "background between tiles is white");
    }

    [Test]
    public void BadArgumentsNameTheProblem()
    {
        Assert.That(() => PngEncoder.Encode(new byte[5], 2, 2, 1), Throws.ArgumentException.With.Message.Contains("expected 4 bytes"));
        Assert.That(() => PngEncoder.Encode(new byte[8], 2, 2, 2), Throws.ArgumentException.With.Message.Contains("channels"));
        Assert.That(() => ImageGrid.Render(new float[3], 1, 1, 2, 2, 1), Throws.ArgumentException.With.Message.Contains("need 4 values"));
        Assert.That(() => ImageGrid.Render(new float[4], 1, 1, 2, 2, 1, low: 1, high: 1), Throws.ArgumentException.With.Message.Contains("low < high"));
    }

    [Test]
    public void WritePngLeavesNoFileOnFailure()
    {
        string folder = Directory.CreateTempSubdirectory("pfgm-grid-").FullName;
        try
        {
            string path = Path.Combine(folder, "grid.png");
            Assert.That(() => ImageGrid.WritePng(path, new float[3], 1, 1, 2, 2), Throws.ArgumentException);
            Assert.That(Directory.GetFiles(folder), Is.Empty);
            ImageGrid.WritePng(path, [0.5f, -0.5f, 1f, -1f], 1, 1, 2, 2);
            using var image = Image.Load<L8>(path);
            Assert.That(image[3, 3].PackedValue, Is.EqualTo(0), "value -1 (tile pixel (1, 1), after the 2-pixel border) maps to black");
            Assert.That(image[2, 2].PackedValue, Is.EqualTo(191), "value 0.5 maps to 191");
        }
        finally
        {
            Directory.Delete(folder, recursive: true);
        }
    }
}
