using System.Buffers.Binary;
using System.IO.Compression;

namespace PoissonFlow.Data;

/// <summary>
/// Greyscale images read from an IDX file: <see cref="Count"/> images of <see cref="Height"/> x <see cref="Width"/>
/// pixels, row-major, scaled from bytes to [-1, 1] as PFGM scales its data (v / 127.5 - 1).
/// </summary>
/// <param name="Pixels">Count x Height x Width values in [-1, 1].</param>
/// <param name="Count">Number of images.</param>
/// <param name="Height">Rows per image.</param>
/// <param name="Width">Columns per image.</param>
public sealed record IdxImages(float[] Pixels, int Count, int Height, int Width)
{
    /// <summary>Pixels per image (Height x Width).</summary>
    public int PixelsPerImage => Height * Width;

    /// <summary>The pixels of image <paramref name="index"/>.</summary>
    public ReadOnlySpan<float> Image(int index) => Pixels.AsSpan(index * PixelsPerImage, PixelsPerImage);
}

/// <summary>
/// Reads IDX files (the MNIST / Fashion-MNIST format), plain or gzip-compressed (detected from the content, not the
/// name): a big-endian magic 0x0000TTRR (TT = 0x08, unsigned bytes; RR = rank), RR big-endian 32-bit dimensions,
/// then exactly the product of the dimensions in bytes. Every problem (missing, truncated, corrupt gzip, wrong magic,
/// wrong rank, trailing bytes) is a <see cref="DatasetException"/> naming the file.
/// </summary>
public static class IdxFile
{
    /// <summary>Where Debian's <c>dataset-fashion-mnist</c> package installs the gzip IDX files.</summary>
    public const string FashionMnistFolder = "/usr/share/datasets/fashion-mnist";

    /// <summary>The command that installs Fashion-MNIST on Debian and Ubuntu.</summary>
    public const string FashionMnistInstallHint = "sudo apt-get install dataset-fashion-mnist";

    /// <summary>Largest decompressed file accepted (a gzip bomb or hostile header must not exhaust memory).</summary>
    public const long MaxDecompressedBytes = 1L << 30;

    private const int UnsignedByteType = 0x08;

    /// <summary>Reads a rank-3 image file (n x h x w unsigned bytes) scaled to [-1, 1].</summary>
    /// <exception cref="DatasetException">The file is missing, unreadable, corrupt or not rank-3 unsigned bytes.</exception>
    public static IdxImages ReadImages(string path)
    {
        var (dims, data) = ReadRaw(path);
        if (dims.Length != 3) throw new DatasetException($"{path}: IDX rank {dims.Length}, expected 3 (images x rows x columns)");
        var pixels = new float[data.Length];
        for (int i = 0; i < data.Length; i++) pixels[i] = data[i] / 127.5f - 1f;
        return new IdxImages(pixels, dims[0], dims[1], dims[2]);
    }

    /// <summary>Reads a rank-1 label file (one unsigned byte per item).</summary>
    /// <exception cref="DatasetException">The file is missing, unreadable, corrupt or not rank-1 unsigned bytes.</exception>
    public static byte[] ReadLabels(string path)
    {
        var (dims, data) = ReadRaw(path);
        if (dims.Length != 1) throw new DatasetException($"{path}: IDX rank {dims.Length}, expected 1 (one label per item)");
        return data;
    }

    /// <summary>Reads an image file and its label file and checks that they describe the same number of items.</summary>
    /// <exception cref="DatasetException">Either file is bad, or the counts differ.</exception>
    public static (IdxImages Images, byte[] Labels) ReadPair(string imagesPath, string labelsPath)
    {
        var images = ReadImages(imagesPath);
        var labels = ReadLabels(labelsPath);
        if (labels.Length != images.Count)
        {
            throw new DatasetException($"{labelsPath}: {labels.Length} labels but {imagesPath} holds {images.Count} images");
        }

        return (images, labels);
    }

    /// <summary>
    /// Fashion-MNIST from <paramref name="folder"/> (default: Debian's package folder): <paramref name="split"/> is
    /// "train" (60,000 images) or "test" (10,000). A missing folder or file says how to install the package.
    /// </summary>
    /// <exception cref="DatasetException">Unknown split, package not installed, or a bad file.</exception>
    public static (IdxImages Images, byte[] Labels) ReadFashionMnist(string split, string folder = FashionMnistFolder)
    {
        var (imagesPath, labelsPath) = FashionMnistPaths(split, folder);
        foreach (string path in new[] { imagesPath, labelsPath })
        {
            if (!File.Exists(path))
            {
                throw new DatasetException($"{path}: Fashion-MNIST not found; install it with '{FashionMnistInstallHint}'");
            }
        }

        return ReadPair(imagesPath, labelsPath);
    }

    /// <summary>The image and label file paths of a Fashion-MNIST split ("train" or "test") in <paramref name="folder"/>.</summary>
    /// <exception cref="DatasetException">The split is neither "train" nor "test".</exception>
    public static (string Images, string Labels) FashionMnistPaths(string split, string folder = FashionMnistFolder)
    {
        string prefix = split switch
        {
            "train" => "train",
            "test" => "t10k",
            _ => throw new DatasetException($"unknown Fashion-MNIST split '{split}': expected train or test"),
        };
        return (Path.Combine(folder, $"{prefix}-images-idx3-ubyte.gz"), Path.Combine(folder, $"{prefix}-labels-idx1-ubyte.gz"));
    }

    /// <summary>Reads any unsigned-byte IDX file: its dimensions and its data bytes (exactly their product).</summary>
    /// <exception cref="DatasetException">Missing, unreadable, truncated, corrupt, or not unsigned-byte IDX.</exception>
    public static (int[] Dims, byte[] Data) ReadRaw(string path)
    {
        byte[] bytes = Decompress(path);
        if (bytes.Length < 4) throw new DatasetException($"{path}: truncated: {bytes.Length} bytes, too short for the IDX magic number");
        uint magic = BinaryPrimitives.ReadUInt32BigEndian(bytes);
        int type = (int)(magic >> 8) & 0xFF, rank = (int)magic & 0xFF;
        if (magic >> 16 != 0 || type != UnsignedByteType || rank is < 1 or > 4)
        {
            throw new DatasetException($"{path}: not an unsigned-byte IDX file (magic 0x{magic:X8}; expected 0x000008RR with rank RR from 1 to 4)");
        }

        int headerBytes = 4 + 4 * rank;
        if (bytes.Length < headerBytes) throw new DatasetException($"{path}: truncated: the header needs {headerBytes} bytes, the file has {bytes.Length}");
        var dims = new int[rank];
        long expected = 1;
        for (int d = 0; d < rank; d++)
        {
            uint dim = BinaryPrimitives.ReadUInt32BigEndian(bytes.AsSpan(4 + 4 * d));
            if (dim == 0 || dim > int.MaxValue) throw new DatasetException($"{path}: dimension {d} is {dim}; every dimension must be positive");
            dims[d] = (int)dim;
            expected *= dim;
            if (expected > MaxDecompressedBytes) throw new DatasetException($"{path}: the header claims more than {MaxDecompressedBytes} data bytes");
        }

        long actual = bytes.Length - headerBytes;
        if (actual < expected) throw new DatasetException($"{path}: truncated: dimensions [{string.Join(", ", dims)}] need {expected} data bytes, the file has {actual}");
        if (actual > expected) throw new DatasetException($"{path}: {actual - expected} unexpected bytes after the {expected} data bytes of [{string.Join(", ", dims)}]");
        return (dims, bytes.AsSpan(headerBytes).ToArray());
    }

    /// <summary>The file's content, gunzipped when it starts with the gzip signature.</summary>
    private static byte[] Decompress(string path)
    {
        try
        {
            byte[] raw = File.ReadAllBytes(path);
            if (raw.Length < 2 || raw[0] != 0x1F || raw[1] != 0x8B) return raw;
            using var gzip = new GZipStream(new MemoryStream(raw), CompressionMode.Decompress);
            using var output = new MemoryStream();
            var buffer = new byte[1 << 16];
            int read;
            while ((read = gzip.Read(buffer)) > 0)
            {
                output.Write(buffer, 0, read);
                if (output.Length > MaxDecompressedBytes) throw new DatasetException($"{path}: decompresses to more than {MaxDecompressedBytes} bytes");
            }

            return output.ToArray();
        }
        catch (FileNotFoundException)
        {
            throw new DatasetException($"{path}: no such file");
        }
        catch (DirectoryNotFoundException)
        {
            throw new DatasetException($"{path}: no such file (the folder does not exist)");
        }
        catch (InvalidDataException e)
        {
            throw new DatasetException($"{path}: corrupt gzip data: {e.Message}", e);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new DatasetException($"{path}: cannot read: {e.Message}", e);
        }
    }
}
