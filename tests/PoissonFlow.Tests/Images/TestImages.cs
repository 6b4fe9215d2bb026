using System.Buffers.Binary;
using System.IO.Compression;

namespace PoissonFlow.Tests.Images;

/// <summary>Small image data sets written to disk for the image tests.</summary>
internal static class TestImages
{
    /// <summary>
    /// A gzip IDX file of <paramref name="count"/> grey images of size x size: random blobs on a dark background, so
    /// the data have structure and a mean norm well away from zero.
    /// </summary>
    public static string WriteIdx(string path, int count, int size, int seed)
    {
        var rng = new Random(seed);
        var pixels = new byte[count * size * size];
        for (int i = 0; i < count; i++)
        {
            double cx = rng.NextDouble() * size, cy = rng.NextDouble() * size, radius = 1 + rng.NextDouble() * size / 3;
            for (int y = 0; y < size; y++)
            {
                for (int x = 0; x < size; x++)
                {
                    double d = Math.Sqrt((x - cx) * (x - cx) + (y - cy) * (y - cy));
                    pixels[(i * size + y) * size + x] = (byte)Math.Clamp(255 * (1.2 - d / radius), 0, 255);
                }
            }
        }

        var idx = new byte[16 + pixels.Length];
        BinaryPrimitives.WriteUInt32BigEndian(idx, 0x0803);
        BinaryPrimitives.WriteUInt32BigEndian(idx.AsSpan(4), (uint)count);
        BinaryPrimitives.WriteUInt32BigEndian(idx.AsSpan(8), (uint)size);
        BinaryPrimitives.WriteUInt32BigEndian(idx.AsSpan(12), (uint)size);
        pixels.CopyTo(idx, 16);
        using (var file = File.Create(path))
        using (var gzip = new GZipStream(file, CompressionLevel.Fastest))
        {
            gzip.Write(idx);
        }

        return path;
    }

    /// <summary>
    /// The bytes of a PNG whose header claims <paramref name="width"/> x <paramref name="height"/> pixels (valid
    /// signature and IHDR with its CRC) followed by an empty IEND: a decompression-bomb header with no data.
    /// </summary>
    public static byte[] PngHeaderOnly(int width, int height)
    {
        var stream = new MemoryStream();
        stream.Write([0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]);
        var ihdr = new byte[13];
        BinaryPrimitives.WriteInt32BigEndian(ihdr, width);
        BinaryPrimitives.WriteInt32BigEndian(ihdr.AsSpan(4), height);
        ihdr[8] = 8; // bit depth
        ihdr[9] = 2; // RGB
        Chunk(stream, "IHDR", ihdr);
        Chunk(stream, "IEND", []);
        return stream.ToArray();
    }

    private static void Chunk(Stream stream, string type, byte[] data)
    {
        var length = new byte[4];
        BinaryPrimitives.WriteInt32BigEndian(length, data.Length);
        stream.Write(length);
        var typed = System.Text.Encoding.ASCII.GetBytes(type).Concat(data).ToArray();
        stream.Write(typed);
        var crc = new byte[4];
        BinaryPrimitives.WriteUInt32BigEndian(crc, Crc32(typed));
        stream.Write(crc);
    }

    private static uint Crc32(byte[] data)
    {
        uint crc = 0xFFFFFFFFu;
        foreach (byte b in data)
        {
            crc ^= b;
            for (int k = 0; k < 8; k++) crc = (crc & 1) != 0 ? 0xEDB88320u ^ (crc >> 1) : crc >> 1;
        }

        return ~crc;
    }
}
