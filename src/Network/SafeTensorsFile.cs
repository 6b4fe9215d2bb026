using System.Buffers.Binary;
using System.Runtime.InteropServices;
using System.Text.Json;

namespace PoissonFlow.Network;

/// <summary>Thrown for a checkpoint that cannot be read or does not fit the model; the message names the file and the problem.</summary>
public class CheckpointException : Exception
{
    /// <summary>Creates the exception.</summary>
    public CheckpointException(string message) : base(message) { }
}

/// <summary>One float32 tensor to write: name, shape (row-major) and values.</summary>
/// <param name="Name">Unique tensor name.</param>
/// <param name="Shape">Dimensions.</param>
/// <param name="Data">Values; their count must equal the product of the shape.</param>
public sealed record NamedTensor(string Name, int[] Shape, float[] Data);

/// <summary>
/// The safetensors format (what Python's <c>safetensors</c> reads): an 8-byte little-endian header length, a JSON
/// header mapping each tensor name to {dtype, shape, data_offsets} plus an optional "__metadata__" string map, then
/// the raw little-endian data with tensors packed back to back. Only F32 tensors are written or read.
/// </summary>
public sealed class SafeTensorsFile
{
    private readonly byte[] _data;
    private readonly int _dataStart;
    private readonly Dictionary<string, (int[] Shape, long Begin, long End)> _entries;

    private SafeTensorsFile(string path, byte[] data, int dataStart, Dictionary<string, (int[], long, long)> entries,
        Dictionary<string, string> metadata)
    {
        Path = path;
        _data = data;
        _dataStart = dataStart;
        _entries = entries;
        Metadata = metadata;
    }

    /// <summary>The file this was read from.</summary>
    public string Path { get; }

    /// <summary>The "__metadata__" string map (empty if absent).</summary>
    public IReadOnlyDictionary<string, string> Metadata { get; }

    /// <summary>Tensor names in the file.</summary>
    public IEnumerable<string> Names => _entries.Keys;

    /// <summary>
    /// Writes <paramref name="tensors"/> and <paramref name="metadata"/> atomically: to a temporary file in the same
    /// folder, flushed to disk, then renamed over <paramref name="path"/>, so a crash never leaves a half-written
    /// checkpoint under the real name.
    /// </summary>
    public static void Write(string path, IReadOnlyList<NamedTensor> tensors, IReadOnlyDictionary<string, string> metadata)
    {
        var header = new MemoryStream();
        long offset = 0;
        using (var json = new Utf8JsonWriter(header))
        {
            json.WriteStartObject();
            json.WriteStartObject("__metadata__");
            foreach (var (key, value) in metadata) json.WriteString(key, value);
            json.WriteEndObject();
            foreach (var tensor in tensors)
            {
                long count = tensor.Shape.Aggregate(1L, (a, d) => a * d);
                if (count != tensor.Data.Length)
                {
                    throw new ArgumentException($"safetensors: tensor '{tensor.Name}' has {tensor.Data.Length} values for shape [{string.Join(", ", tensor.Shape)}]");
                }

                json.WriteStartObject(tensor.Name);
                json.WriteString("dtype", "F32");
                json.WriteStartArray("shape");
                foreach (int d in tensor.Shape) json.WriteNumberValue(d);
                json.WriteEndArray();
                json.WriteStartArray("data_offsets");
                json.WriteNumberValue(offset);
                json.WriteNumberValue(offset + 4 * count);
                json.WriteEndArray();
                json.WriteEndObject();
                offset += 4 * count;
            }

            json.WriteEndObject();
        }

        // Pad the header with spaces to a multiple of 8 bytes, as the reference writer does (aligned data).
        while (header.Length % 8 != 0) header.WriteByte((byte)' ');
        string directory = System.IO.Path.GetDirectoryName(System.IO.Path.GetFullPath(path))!;
        Directory.CreateDirectory(directory);
        string temporary = System.IO.Path.Combine(directory, $".{System.IO.Path.GetFileName(path)}.{Guid.NewGuid():N}.tmp");
        try
        {
            using (var file = new FileStream(temporary, FileMode.CreateNew, FileAccess.Write))
            {
                Span<byte> length = stackalloc byte[8];
                BinaryPrimitives.WriteUInt64LittleEndian(length, (ulong)header.Length);
                file.Write(length);
                header.Position = 0;
                header.CopyTo(file);
                foreach (var tensor in tensors) WriteLittleEndian(file, tensor.Data);
                file.Flush(flushToDisk: true);
            }

            File.Move(temporary, path, overwrite: true);
        }
        catch
        {
            File.Delete(temporary);
            throw;
        }
    }

    /// <summary>Reads and validates a whole file: header length, JSON, dtypes, shapes against byte ranges, and data bounds.</summary>
    /// <exception cref="CheckpointException">The file is missing, truncated or malformed; the message says which.</exception>
    public static SafeTensorsFile Read(string path)
    {
        byte[] bytes;
        try
        {
            bytes = File.ReadAllBytes(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new CheckpointException($"{path}: cannot read checkpoint: {e.Message}");
        }

        if (bytes.Length < 8) throw new CheckpointException($"{path}: truncated: {bytes.Length} bytes, too short for the 8-byte header length");
        ulong headerLength = BinaryPrimitives.ReadUInt64LittleEndian(bytes);
        if (headerLength > (ulong)(bytes.Length - 8))
        {
            throw new CheckpointException($"{path}: truncated or not a safetensors file: the header claims {headerLength} bytes but only {bytes.Length - 8} follow");
        }

        int dataStart = 8 + (int)headerLength;
        long dataLength = bytes.Length - dataStart;
        var entries = new Dictionary<string, (int[], long, long)>(StringComparer.Ordinal);
        var metadata = new Dictionary<string, string>(StringComparer.Ordinal);
        try
        {
            using var document = JsonDocument.Parse(bytes.AsMemory(8, (int)headerLength));
            if (document.RootElement.ValueKind != JsonValueKind.Object) throw new CheckpointException($"{path}: bad header: the JSON header is not an object");
            foreach (var property in document.RootElement.EnumerateObject())
            {
                if (property.Name == "__metadata__")
                {
                    foreach (var item in property.Value.EnumerateObject()) metadata[item.Name] = item.Value.GetString() ?? "";
                    continue;
                }

                string dtype = property.Value.GetProperty("dtype").GetString() ?? "";
                if (dtype != "F32") throw new CheckpointException($"{path}: tensor '{property.Name}' has dtype {dtype}; only F32 is supported");
                int[] shape = property.Value.GetProperty("shape").EnumerateArray().Select(e => e.GetInt32()).ToArray();
                long[] offsets = property.Value.GetProperty("data_offsets").EnumerateArray().Select(e => e.GetInt64()).ToArray();
                if (offsets.Length != 2 || offsets[0] < 0 || offsets[1] < offsets[0])
                {
                    throw new CheckpointException($"{path}: tensor '{property.Name}' has invalid data_offsets [{string.Join(", ", offsets)}]");
                }

                if (offsets[1] > dataLength)
                {
                    throw new CheckpointException($"{path}: truncated: tensor '{property.Name}' ends at data byte {offsets[1]} but the file holds {dataLength} data bytes");
                }

                long count = shape.Aggregate(1L, (a, d) => a * d);
                if (shape.Any(d => d < 0) || count * 4 != offsets[1] - offsets[0])
                {
                    throw new CheckpointException($"{path}: tensor '{property.Name}' has shape [{string.Join(", ", shape)}] but {offsets[1] - offsets[0]} data bytes");
                }

                entries[property.Name] = (shape, offsets[0], offsets[1]);
            }
        }
        catch (Exception e) when (e is JsonException or InvalidOperationException or KeyNotFoundException or FormatException or ArgumentException)
        {
            throw new CheckpointException($"{path}: bad header: {e.Message}");
        }

        return new SafeTensorsFile(path, bytes, dataStart, entries, metadata);
    }

    /// <summary>The shape of tensor <paramref name="name"/>.</summary>
    /// <exception cref="CheckpointException">No such tensor.</exception>
    public int[] Shape(string name) =>
        _entries.TryGetValue(name, out var entry) ? entry.Shape : throw new CheckpointException($"{Path}: missing tensor '{name}'");

    /// <summary>The values of tensor <paramref name="name"/>, which must have exactly <paramref name="shape"/>.</summary>
    /// <exception cref="CheckpointException">The tensor is missing or has another shape.</exception>
    public float[] Get(string name, int[] shape)
    {
        if (!_entries.TryGetValue(name, out var entry)) throw new CheckpointException($"{Path}: missing tensor '{name}'");
        if (!entry.Shape.SequenceEqual(shape))
        {
            throw new CheckpointException(
                $"{Path}: tensor '{name}' has shape [{string.Join(", ", entry.Shape)}], the model needs [{string.Join(", ", shape)}]");
        }

        var values = new float[(entry.End - entry.Begin) / 4];
        var source = _data.AsSpan(_dataStart + (int)entry.Begin, (int)(entry.End - entry.Begin));
        if (BitConverter.IsLittleEndian) source.CopyTo(MemoryMarshal.AsBytes(values.AsSpan()));
        else for (int i = 0; i < values.Length; i++) values[i] = BinaryPrimitives.ReadSingleLittleEndian(source[(4 * i)..]);
        return values;
    }

    private static void WriteLittleEndian(Stream stream, float[] data)
    {
        if (BitConverter.IsLittleEndian)
        {
            stream.Write(MemoryMarshal.AsBytes(data.AsSpan()));
            return;
        }

        var buffer = new byte[4];
        foreach (float v in data)
        {
            BinaryPrimitives.WriteSingleLittleEndian(buffer, v);
            stream.Write(buffer);
        }
    }
}
