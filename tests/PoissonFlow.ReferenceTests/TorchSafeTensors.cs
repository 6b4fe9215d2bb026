using System.Buffers.Binary;
using System.Text;
using System.Text.Json;
using TorchSharp;
using static TorchSharp.torch;

namespace PoissonFlow.Reference;

/// <summary>
/// Reads a safetensors file into libtorch tensors, the way a PyTorch user would open our checkpoints
/// (<c>safetensors.torch.load_file</c>). Written from the format's description (8-byte little-endian header length,
/// JSON header of name -> dtype / shape / data_offsets plus <c>__metadata__</c>, then the raw data) and deliberately
/// independent of src/Network/SafeTensorsFile.cs: a reader shared with the writer would hide a format bug in both.
/// TorchSharp 0.107 has no safetensors support of its own. Shared, as a linked file, by the reference tests and the
/// benchmarks.
/// </summary>
public static class TorchSafeTensors
{
    /// <summary>The tensors (converted to <paramref name="dtype"/>) and the metadata of the file at <paramref name="path"/>.</summary>
    /// <exception cref="InvalidDataException">Not a float32 safetensors file, or a tensor's byte range does not fit.</exception>
    public static (Dictionary<string, Tensor> Tensors, Dictionary<string, string> Metadata) Read(string path, ScalarType dtype)
    {
        byte[] bytes = File.ReadAllBytes(path);
        if (bytes.Length < 8) throw new InvalidDataException($"{path}: shorter than a safetensors header");
        long headerLength = BinaryPrimitives.ReadInt64LittleEndian(bytes);
        if (headerLength <= 0 || 8 + headerLength > bytes.Length) throw new InvalidDataException($"{path}: header length {headerLength} does not fit the file");
        long dataStart = 8 + headerLength;
        using var header = JsonDocument.Parse(Encoding.UTF8.GetString(bytes, 8, (int)headerLength));
        var tensors = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        var metadata = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var entry in header.RootElement.EnumerateObject())
        {
            if (entry.Name == "__metadata__")
            {
                foreach (var item in entry.Value.EnumerateObject()) metadata[item.Name] = item.Value.GetString() ?? "";
                continue;
            }

            string type = entry.Value.GetProperty("dtype").GetString() ?? "";
            if (type != "F32") throw new InvalidDataException($"{path}: tensor '{entry.Name}' is {type}; only F32 is expected");
            long[] shape = entry.Value.GetProperty("shape").EnumerateArray().Select(d => d.GetInt64()).ToArray();
            var offsets = entry.Value.GetProperty("data_offsets").EnumerateArray().Select(d => d.GetInt64()).ToArray();
            long count = shape.Aggregate(1L, (a, d) => a * d);
            if (offsets.Length != 2 || offsets[1] - offsets[0] != 4 * count || dataStart + offsets[1] > bytes.Length)
            {
                throw new InvalidDataException($"{path}: tensor '{entry.Name}' has byte range [{string.Join(", ", offsets)}] for {count} floats");
            }

            var values = new float[count];
            Buffer.BlockCopy(bytes, (int)(dataStart + offsets[0]), values, 0, (int)(4 * count));
            if (!BitConverter.IsLittleEndian) throw new PlatformNotSupportedException("safetensors data is little-endian");
            tensors[entry.Name] = tensor(values, shape).to_type(dtype);
        }

        return (tensors, metadata);
    }

    /// <summary>
    /// Copies the plain (unprefixed) tensors of a checkpoint into <paramref name="module"/>'s parameters by name.
    /// Strict both ways: every parameter must be in the file with the same shape, and every weight in the file
    /// (everything but the <c>ema.</c> / <c>adam_m.</c> / <c>adam_v.</c> copies) must be a parameter of the module.
    /// </summary>
    /// <exception cref="InvalidDataException">A name or shape differs.</exception>
    public static void LoadInto(nn.Module module, IReadOnlyDictionary<string, Tensor> tensors)
    {
        var parameters = module.named_parameters().ToDictionary(p => p.name, p => p.parameter, StringComparer.Ordinal);
        foreach (var (name, parameter) in parameters)
        {
            if (!tensors.TryGetValue(name, out var value)) throw new InvalidDataException($"checkpoint has no tensor '{name}'");
            if (!value.shape.SequenceEqual(parameter.shape))
            {
                throw new InvalidDataException($"'{name}': checkpoint shape [{string.Join(", ", value.shape)}], module shape [{string.Join(", ", parameter.shape)}]");
            }

            using (no_grad()) parameter.copy_(value);
        }

        string[] prefixes = ["ema.", "adam_m.", "adam_v."];
        var unused = tensors.Keys.Where(n => !prefixes.Any(p => n.StartsWith(p, StringComparison.Ordinal)) && !parameters.ContainsKey(n)).ToList();
        if (unused.Count > 0) throw new InvalidDataException($"checkpoint tensors the module does not have: {string.Join(", ", unused)}");
    }
}
