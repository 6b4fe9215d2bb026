using System.Buffers.Binary;
using System.Globalization;
using System.Runtime.InteropServices;
using System.Text;

namespace PoissonFlow.IO;

/// <summary>A float32 array read from or written to a NumPy .npy file, with its shape (C order).</summary>
/// <param name="Data">The values in C (row-major) order.</param>
/// <param name="Shape">The dimensions.</param>
public sealed record NpyArray(float[] Data, int[] Shape)
{
    /// <summary>The number of dimensions (0 for a scalar).</summary>
    public int Rank => Shape.Length;

    /// <summary>The shape as NumPy prints it: "()", "(3,)", "(3, 2)".</summary>
    public string ShapeText => Npy.FormatShape(Shape);
}

/// <summary>Thrown for a file that is not a readable .npy array of a supported kind; the message names the file and the problem.</summary>
public sealed class NpyFormatException : Exception
{
    /// <summary>Creates the exception.</summary>
    public NpyFormatException(string message) : base(message) { }

    /// <summary>Creates the exception with the underlying cause.</summary>
    public NpyFormatException(string message, Exception inner) : base(message, inner) { }
}

/// <summary>
/// NumPy .npy reading (float32 or float64, either byte order, C order, format versions 1.0 to 3.0; float64 is
/// converted) and writing (float32 little-endian, format 1.0, atomically).
/// </summary>
public static class Npy
{
    /// <summary>The six magic bytes every .npy file starts with: 0x93 then "NUMPY".</summary>
    private static ReadOnlySpan<byte> Magic => [0x93, (byte)'N', (byte)'U', (byte)'M', (byte)'P', (byte)'Y'];

    /// <summary>NumPy pads the header so the data starts on a 64-byte boundary (aligned loads, memory mapping).</summary>
    private const int HeaderAlignment = 64;

    /// <summary>NumPy's spare room in the header for the growing axis (numpy.lib.format.GROWTH_AXIS_MAX_DIGITS).</summary>
    private const int GrowthAxisMaxDigits = 21;

    /// <summary>Reads an array; throws <see cref="NpyFormatException"/> naming the file and the problem.</summary>
    public static NpyArray Read(string path)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(path);
        if (Directory.Exists(path)) throw new NpyFormatException($"{path}: is a folder, not an .npy file");
        if (!File.Exists(path)) throw new NpyFormatException($"{path}: file not found");
        try
        {
            using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16);
            return Read(stream, path);
        }
        catch (UnauthorizedAccessException ex)
        {
            throw new NpyFormatException($"{path}: cannot be read (permission denied)", ex);
        }
    }

    /// <summary>
    /// Reads an array from a stream positioned at the magic bytes; <paramref name="name"/> names the source in
    /// error messages.
    /// </summary>
    public static NpyArray Read(Stream stream, string name)
    {
        ArgumentNullException.ThrowIfNull(stream);
        Span<byte> preamble = stackalloc byte[8];
        if (ReadFully(stream, preamble) < 8 || !preamble[..6].SequenceEqual(Magic))
        {
            throw new NpyFormatException($"{name}: not a NumPy .npy file (the magic bytes \\x93NUMPY are missing)");
        }

        byte major = preamble[6], minor = preamble[7];
        int lengthBytes = major switch
        {
            1 => 2,
            2 or 3 => 4,
            _ => throw new NpyFormatException($"{name}: unsupported .npy format version {major}.{minor} (1.0, 2.0 and 3.0 are supported)"),
        };
        Span<byte> lengthField = stackalloc byte[4];
        if (ReadFully(stream, lengthField[..lengthBytes]) < lengthBytes)
        {
            throw new NpyFormatException($"{name}: truncated .npy header");
        }

        long headerLength = lengthBytes == 2
            ? BinaryPrimitives.ReadUInt16LittleEndian(lengthField)
            : BinaryPrimitives.ReadUInt32LittleEndian(lengthField);
        if (headerLength > 1 << 20)
        {
            throw new NpyFormatException($"{name}: bad .npy header (declared header length {headerLength} bytes is implausible)");
        }

        var headerBytes = new byte[headerLength];
        if (ReadFully(stream, headerBytes) < headerLength)
        {
            throw new NpyFormatException($"{name}: truncated .npy header (declared {headerLength} bytes)");
        }

        // Versions 1 and 2 store the header in latin-1, version 3 in UTF-8.
        string header = major == 3 ? Encoding.UTF8.GetString(headerBytes) : Encoding.Latin1.GetString(headerBytes);
        var (descr, fortranOrder, shape) = ParseHeader(header, name);
        if (fortranOrder)
        {
            throw new NpyFormatException($"{name}: the array is stored in Fortran (column-major) order; only C order is supported (save it with np.ascontiguousarray)");
        }

        var (itemSize, bigEndian) = descr switch
        {
            "<f4" or "=f4" => (4, false),
            "<f8" or "=f8" => (8, false),
            ">f4" => (4, true),
            ">f8" => (8, true),
            _ => throw new NpyFormatException($"{name}: unsupported dtype '{descr}' (only float32 '<f4' and float64 '<f8' are supported)"),
        };

        long count = 1;
        foreach (int dim in shape)
        {
            count *= dim;
            if (count > Array.MaxLength)
            {
                throw new NpyFormatException($"{name}: the array of shape {FormatShape(shape)} is too large (more than {Array.MaxLength} values)");
            }
        }

        var data = new float[count];
        long expectedBytes = count * itemSize;
        long got = itemSize == 4 ? ReadSingles(stream, data, bigEndian) : ReadDoubles(stream, data, bigEndian);
        if (got < expectedBytes)
        {
            throw new NpyFormatException($"{name}: truncated data: shape {FormatShape(shape)} of {descr} needs {expectedBytes} bytes after the header, the file has {got}");
        }

        if (stream.ReadByte() >= 0)
        {
            throw new NpyFormatException($"{name}: unexpected bytes after the {expectedBytes} bytes of data that shape {FormatShape(shape)} of {descr} needs");
        }

        return new NpyArray(data, shape);
    }

    /// <summary>Writes a float32 array atomically (temporary file, then rename), so a failure leaves no partial file.</summary>
    public static void Write(string path, ReadOnlySpan<float> data, params int[] shape)
    {
        ArgumentNullException.ThrowIfNull(shape);
        long count = 1;
        foreach (int dim in shape)
        {
            if (dim < 0) throw new ArgumentException($"shape {FormatShape(shape)} has a negative dimension", nameof(shape));
            count *= dim;
        }

        if (count != data.Length)
        {
            throw new ArgumentException($"shape {FormatShape(shape)} holds {count} values but {data.Length} were given", nameof(shape));
        }

        byte[] header = BuildHeader(shape);
        // The span cannot be captured by the lambda; one copy of the bytes is cheap next to the disk write.
        byte[] payload = MemoryMarshal.AsBytes(data).ToArray();
        if (!BitConverter.IsLittleEndian) SwapEndianness(payload, 4);
        AtomicFile.Write(path, stream =>
        {
            stream.Write(header);
            stream.Write(payload);
        });
    }

    /// <summary>Index of the first NaN or infinity in <paramref name="values"/>, or -1 when every value is finite.</summary>
    public static int IndexOfNonFinite(ReadOnlySpan<float> values)
    {
        for (int i = 0; i < values.Length; i++)
        {
            if (!float.IsFinite(values[i])) return i;
        }

        return -1;
    }

    /// <summary>True when <paramref name="values"/> holds a NaN or an infinity.</summary>
    public static bool ContainsNonFinite(ReadOnlySpan<float> values) => IndexOfNonFinite(values) >= 0;

    /// <summary>Formats a shape as NumPy prints it: "()", "(3,)", "(3, 2)".</summary>
    public static string FormatShape(IReadOnlyList<int> shape) => shape.Count switch
    {
        0 => "()",
        1 => $"({shape[0].ToString(CultureInfo.InvariantCulture)},)",
        _ => "(" + string.Join(", ", shape.Select(d => d.ToString(CultureInfo.InvariantCulture))) + ")",
    };

    /// <summary>
    /// The full preamble NumPy writes for a little-endian float32 C-order array, format 1.0: magic, version,
    /// header length and the dict padded with spaces and a final newline to a multiple of 64 bytes. Like NumPy,
    /// it leaves room for the first dimension to grow to 21 digits, so tools that append rows in place work.
    /// </summary>
    internal static byte[] BuildHeader(int[] shape)
    {
        string dict = $"{{'descr': '<f4', 'fortran_order': False, 'shape': {FormatShape(shape)}, }}";
        if (shape.Length > 0) dict += new string(' ', GrowthAxisMaxDigits - shape[0].ToString(CultureInfo.InvariantCulture).Length);
        const int preambleLength = 10; // magic (6) + version (2) + uint16 header length (2)
        int total = (preambleLength + dict.Length + 1 + HeaderAlignment - 1) / HeaderAlignment * HeaderAlignment;
        int headerLength = total - preambleLength;
        if (headerLength > ushort.MaxValue) throw new ArgumentException($"shape {FormatShape(shape)} has too many dimensions for an .npy header", nameof(shape));
        var bytes = new byte[total];
        Magic.CopyTo(bytes);
        bytes[6] = 1;
        bytes[7] = 0;
        BinaryPrimitives.WriteUInt16LittleEndian(bytes.AsSpan(8), (ushort)headerLength);
        var text = dict.PadRight(headerLength - 1) + "\n";
        Encoding.ASCII.GetBytes(text, bytes.AsSpan(preambleLength));
        return bytes;
    }

    private static long ReadSingles(Stream stream, float[] data, bool bigEndian)
    {
        Span<byte> bytes = MemoryMarshal.AsBytes(data.AsSpan());
        long got = ReadFully(stream, bytes);
        if (bigEndian == BitConverter.IsLittleEndian) SwapEndianness(bytes, 4);
        return got;
    }

    private static long ReadDoubles(Stream stream, float[] data, bool bigEndian)
    {
        // Convert in chunks so a large float64 file never needs a second full-size buffer.
        var buffer = new double[Math.Min(data.Length, 1 << 16)];
        long total = 0;
        for (int start = 0; start < data.Length; start += buffer.Length)
        {
            int n = Math.Min(buffer.Length, data.Length - start);
            Span<byte> bytes = MemoryMarshal.AsBytes(buffer.AsSpan(0, n));
            int got = ReadFully(stream, bytes);
            total += got;
            if (got < bytes.Length) return total;
            if (bigEndian == BitConverter.IsLittleEndian) SwapEndianness(bytes, 8);
            for (int i = 0; i < n; i++) data[start + i] = (float)buffer[i];
        }

        return total;
    }

    private static void SwapEndianness(Span<byte> bytes, int itemSize)
    {
        for (int i = 0; i + itemSize <= bytes.Length; i += itemSize) bytes.Slice(i, itemSize).Reverse();
    }

    private static int ReadFully(Stream stream, Span<byte> buffer)
    {
        int total = 0;
        while (total < buffer.Length)
        {
            int n = stream.Read(buffer[total..]);
            if (n == 0) break;
            total += n;
        }

        return total;
    }

    /// <summary>
    /// Parses the header, a Python dict literal such as <c>{'descr': '&lt;f8', 'fortran_order': False, 'shape': (3, 2), }</c>.
    /// Accepts any key order, either quote style, extra whitespace and a trailing comma (all things NumPy versions
    /// have written); rejects anything else with a message that names the problem.
    /// </summary>
    private static (string Descr, bool FortranOrder, int[] Shape) ParseHeader(string header, string name)
    {
        var parser = new HeaderParser(header, name);
        string? descr = null;
        bool? fortran = null;
        int[]? shape = null;
        parser.Expect('{');
        while (!parser.TryConsume('}'))
        {
            string key = parser.ReadString();
            parser.Expect(':');
            switch (key)
            {
                case "descr":
                    descr = parser.TryPeek('[')
                        ? throw parser.Error($"unsupported dtype: a structured array ({parser.Rest()}); only float32 and float64 are supported")
                        : parser.ReadString();
                    break;
                case "fortran_order":
                    fortran = parser.ReadBool();
                    break;
                case "shape":
                    shape = parser.ReadShape();
                    break;
                default:
                    throw parser.Error($"unexpected key '{key}'");
            }

            if (!parser.TryConsume(',')) parser.Expect('}', "',' or '}'");
            else continue;
            break;
        }

        parser.ExpectEnd();
        if (descr is null) throw parser.Error("the key 'descr' is missing");
        if (fortran is null) throw parser.Error("the key 'fortran_order' is missing");
        if (shape is null) throw parser.Error("the key 'shape' is missing");
        return (descr, fortran.Value, shape);
    }

    /// <summary>A minimal reader for the Python literal subset that .npy headers use.</summary>
    private sealed class HeaderParser(string text, string name)
    {
        private int _pos;

        public NpyFormatException Error(string problem) =>
            new($"{name}: bad .npy header ({problem}): {text.Trim()}");

        public string Rest() => text[_pos..].Trim();

        public bool TryPeek(char c)
        {
            SkipSpace();
            return _pos < text.Length && text[_pos] == c;
        }

        public bool TryConsume(char c)
        {
            if (!TryPeek(c)) return false;
            _pos++;
            return true;
        }

        public void Expect(char c, string? what = null)
        {
            if (!TryConsume(c)) throw Error($"expected {what ?? $"'{c}'"} at offset {_pos}");
        }

        public void ExpectEnd()
        {
            SkipSpace();
            if (_pos != text.Length) throw Error($"unexpected text after the dict at offset {_pos}");
        }

        public string ReadString()
        {
            SkipSpace();
            if (_pos >= text.Length || (text[_pos] != '\'' && text[_pos] != '"')) throw Error($"expected a quoted string at offset {_pos}");
            char quote = text[_pos++];
            int end = text.IndexOf(quote, _pos);
            if (end < 0) throw Error("unterminated string");
            string value = text[_pos..end];
            _pos = end + 1;
            return value;
        }

        public bool ReadBool()
        {
            SkipSpace();
            if (Match("True")) return true;
            if (Match("False")) return false;
            throw Error($"expected True or False at offset {_pos}");
        }

        public int[] ReadShape()
        {
            Expect('(', "a shape tuple");
            var dims = new List<int>();
            while (!TryConsume(')'))
            {
                SkipSpace();
                int start = _pos;
                while (_pos < text.Length && char.IsAsciiDigit(text[_pos])) _pos++;
                if (_pos == start) throw Error($"expected a dimension at offset {_pos}");
                if (!int.TryParse(text.AsSpan(start, _pos - start), NumberStyles.None, CultureInfo.InvariantCulture, out int dim))
                {
                    throw Error($"dimension {text[start.._pos]} is too large");
                }

                if (_pos < text.Length && text[_pos] == 'L') _pos++; // Python 2 long literal
                dims.Add(dim);
                if (!TryConsume(',')) Expect(')', "',' or ')' in the shape");
                else continue;
                break;
            }

            return [.. dims];
        }

        private bool Match(string word)
        {
            if (string.CompareOrdinal(text, _pos, word, 0, word.Length) != 0) return false;
            _pos += word.Length;
            return true;
        }

        private void SkipSpace()
        {
            while (_pos < text.Length && char.IsWhiteSpace(text[_pos])) _pos++;
        }
    }
}
