using PoissonFlow.Data;

namespace PoissonFlow.Cli.Images;

/// <summary>
/// An image data set ready for training: count images of C x H x W values in [-1, 1], stored planar as the rows of
/// a <see cref="PointSet"/> (N = C·H·W), with where they came from.
/// </summary>
/// <param name="Images">The images, one per row.</param>
/// <param name="Channels">C.</param>
/// <param name="Height">H.</param>
/// <param name="Width">W.</param>
internal sealed record ImageData(PointSet Images, int Channels, int Height, int Width)
{
    /// <summary>The built-in name of Fashion-MNIST's training split.</summary>
    public const string FashionMnist = "fashion-mnist";

    /// <summary>N = C·H·W.</summary>
    public int Dim => Channels * Height * Width;

    /// <summary>
    /// True when <paramref name="data"/> names image data: <see cref="FashionMnist"/>, a folder, or a file other than the
    /// point formats (.npy, .csv), which is read as IDX.
    /// </summary>
    public static bool IsImageSource(string data)
    {
        if (string.Equals(data, FashionMnist, StringComparison.OrdinalIgnoreCase)) return true;
        if (Directory.Exists(data)) return true;
        if (!File.Exists(data)) return false;
        string extension = Path.GetExtension(data);
        return !extension.Equals(".npy", StringComparison.OrdinalIgnoreCase) && !extension.Equals(".csv", StringComparison.OrdinalIgnoreCase);
    }

    /// <summary>
    /// Loads <paramref name="data"/>: Fashion-MNIST's 60,000 training images, an IDX image file (plain or gzip), or a
    /// folder of PNG/JPEG images resized and centre-cropped to <paramref name="size"/> with <paramref name="channels"/>
    /// channels. IDX images are grey and keep their own size, so a different size or channel count is an error.
    /// </summary>
    /// <exception cref="DatasetException">Missing package, file or folder, a corrupt file, or no readable image.</exception>
    public static ImageData Load(string data, int? size, int? channels, TextWriter warnings)
    {
        if (Directory.Exists(data))
        {
            var (images, _) = ImageFolderReader.Read(data, size ?? 32, channels ?? 3, warnings);
            int c = channels ?? 3, s = size ?? 32;
            return new ImageData(images, c, s, s);
        }

        var idx = string.Equals(data, FashionMnist, StringComparison.OrdinalIgnoreCase)
            ? IdxFile.ReadFashionMnist("train").Images
            : File.Exists(data) ? IdxFile.ReadImages(data) : throw new DatasetException($"{data}: no such file or folder, and not '{FashionMnist}'");
        if (channels is { } wanted && wanted != 1) throw new DatasetException($"{data}: IDX images are grey (1 channel); --channels {wanted} applies to image folders");
        if (size is { } given && (given != idx.Height || given != idx.Width))
        {
            throw new DatasetException($"{data}: the images are {idx.Height}x{idx.Width}; --image-size {given} applies to image folders");
        }

        return new ImageData(new PointSet(idx.Pixels, idx.Count, idx.PixelsPerImage), 1, idx.Height, idx.Width);
    }
}
