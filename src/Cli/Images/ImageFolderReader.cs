using PoissonFlow.Data;
using SixLabors.ImageSharp;
using SixLabors.ImageSharp.Advanced;
using SixLabors.ImageSharp.PixelFormats;
using SixLabors.ImageSharp.Processing;

namespace PoissonFlow.Cli.Images;

/// <summary>
/// Reads a folder (and its sub-folders) of PNG and JPEG images into planar [count, C, H, W] floats in [-1, 1] with
/// ImageSharp: each image is resized so that its shorter side is the requested size, centre-cropped to a square,
/// and converted to grey (C = 1, ImageSharp's luminance) or RGB (C = 3). Files that are not PNG/JPEG by name are
/// ignored; files that are corrupt, truncated, not really images, or announce absurd dimensions (a decompression
/// bomb) are skipped with a warning naming them. Symbolic links are not followed (no loops, no escaping the folder).
/// </summary>
internal static class ImageFolderReader
{
    /// <summary>File name endings read as images.</summary>
    public static readonly string[] Extensions = [".png", ".jpg", ".jpeg"];

    /// <summary>Largest side accepted before decoding: a header promising more is treated as hostile and skipped.</summary>
    public const int MaxSide = 16384;

    /// <summary>Largest pixel count accepted before decoding (64 Mpixel, about 200 MB as RGB).</summary>
    public const long MaxPixels = 64L << 20;

    /// <summary>Largest number of images read (the data must fit in memory, and on the device).</summary>
    public const int MaxImages = 1_000_000;

    /// <summary>Reads every readable image under <paramref name="folder"/>; warnings go to <paramref name="warnings"/>.</summary>
    /// <param name="folder">The folder.</param>
    /// <param name="size">The output height and width.</param>
    /// <param name="channels">1 (grey) or 3 (RGB).</param>
    /// <param name="warnings">One line per skipped file.</param>
    /// <returns>The images (count x C·size·size values) and the names of the files skipped.</returns>
    /// <exception cref="DatasetException">The folder is missing or unreadable, or holds no readable image.</exception>
    public static (PointSet Images, IReadOnlyList<string> Skipped) Read(string folder, int size, int channels, TextWriter warnings)
    {
        if (size < 1) throw new ArgumentException($"image size must be positive, got {size}");
        if (channels is not (1 or 3)) throw new ArgumentException($"channels must be 1 or 3, got {channels}");
        if (!Directory.Exists(folder)) throw new DatasetException($"{folder}: no such folder");
        List<string> files;
        try
        {
            var options = new EnumerationOptions
            {
                RecurseSubdirectories = true,
                IgnoreInaccessible = true,
                AttributesToSkip = FileAttributes.ReparsePoint | FileAttributes.Hidden | FileAttributes.System,
            };
            files = Directory.EnumerateFiles(folder, "*", options)
                .Where(f => Extensions.Contains(Path.GetExtension(f), StringComparer.OrdinalIgnoreCase))
                .Order(StringComparer.Ordinal)
                .ToList();
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new DatasetException($"{folder}: cannot list the folder: {e.Message}");
        }

        int perImage = channels * size * size;
        var values = new List<float>();
        var skipped = new List<(string File, string Problem)>();
        int count = 0;
        foreach (string file in files)
        {
            if (count == MaxImages) break;
            string? problem = TryRead(file, size, channels, values);
            if (problem is null) count++;
            else skipped.Add((file, problem));
        }

        if (count == 0)
        {
            // One error line naming the first bad file, rather than a warning per file before the error.
            string what = files.Count == 0
                ? "no .png/.jpg/.jpeg files"
                : $"none of its {files.Count} .png/.jpg/.jpeg files could be read (first: {skipped[0].File}: {skipped[0].Problem})";
            throw new DatasetException($"{folder}: {what}; need at least one readable image");
        }

        foreach (var (file, problem) in skipped) warnings.WriteLine($"warning: skipped {file}: {problem}");
        return (new PointSet(values.ToArray(), count, perImage), skipped.Select(s => s.File).ToList());
    }

    /// <summary>Decodes one file and appends its planar pixels; returns null, or why it was skipped.</summary>
    private static string? TryRead(string file, int size, int channels, List<float> values)
    {
        try
        {
            var info = Image.Identify(file);
            if (info is null) return "not a recognised image format";
            if (info.Width < 1 || info.Height < 1 || info.Width > MaxSide || info.Height > MaxSide || (long)info.Width * info.Height > MaxPixels)
            {
                return $"dimensions {info.Width}x{info.Height} are out of range (at most {MaxSide} a side and {MaxPixels >> 20} Mpixel)";
            }

            using var image = Image.Load<Rgb24>(file);
            image.Mutate(x => x.Resize(new ResizeOptions { Size = new Size(size, size), Mode = ResizeMode.Crop, Position = AnchorPositionMode.Center }));
            if (image.Width != size || image.Height != size) return $"resized to {image.Width}x{image.Height}, not {size}x{size}";
            var pixels = new Rgb24[size * size];
            image.CopyPixelDataTo(pixels);
            var planar = new float[channels * size * size];
            for (int p = 0; p < pixels.Length; p++)
            {
                var rgb = pixels[p];
                if (channels == 1)
                {
                    // ITU-R BT.709 luma, as ImageSharp's L8 conversion uses.
                    planar[p] = Scale(0.2126f * rgb.R + 0.7152f * rgb.G + 0.0722f * rgb.B);
                }
                else
                {
                    planar[p] = Scale(rgb.R);
                    planar[size * size + p] = Scale(rgb.G);
                    planar[2 * size * size + p] = Scale(rgb.B);
                }
            }

            values.AddRange(planar);
            return null;
        }
        catch (Exception e) when (e is UnknownImageFormatException or InvalidImageContentException or ImageFormatException
                                      or NotSupportedException or IOException or UnauthorizedAccessException
                                      or SixLabors.ImageSharp.Memory.InvalidMemoryOperationException or OutOfMemoryException
                                      or ArgumentException or IndexOutOfRangeException or InvalidOperationException)
        {
            return OneLine(e.Message);
        }
    }

    /// <summary>A byte level (0..255) to [-1, 1], as the spec scales images (v / 127.5 - 1).</summary>
    private static float Scale(float level) => level / 127.5f - 1f;

    private static string OneLine(string text) => string.Join(' ', text.Split(['\r', '\n'], StringSplitOptions.RemoveEmptyEntries));
}
