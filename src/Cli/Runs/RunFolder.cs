using System.Globalization;
using System.Text.Json;
using System.Text.Json.Serialization;
using PoissonFlow.IO;

namespace PoissonFlow.Cli.Runs;

/// <summary>
/// The folder one command writes its results into, with fixed file names so that later commands (sample, eval)
/// find them:
/// <list type="bullet">
/// <item><c>config.json</c>: every setting of the run, the data-derived ones included (M, z_max, upper_norm).</item>
/// <item><c>model.safetensors</c>: the trained network (EMA weights) and its shape.</item>
/// <item><c>samples.npy</c>: the generated points, n x d float32.</item>
/// <item><c>metrics.json</c>: the evaluation (sliced Wasserstein distance, its floor, timings).</item>
/// <item><c>samples.png</c>, <c>trajectories.png</c>: the drawings.</item>
/// </list>
/// Every file is written atomically (<see cref="PoissonFlow.IO.AtomicFile"/>).
/// </summary>
internal sealed class RunFolder
{
    /// <summary>JSON as written: indented, camelCase, enums as strings.</summary>
    public static readonly JsonSerializerOptions Json = new()
    {
        WriteIndented = true,
        PropertyNamingPolicy = JsonNamingPolicy.CamelCase,
        Converters = { new JsonStringEnumConverter(JsonNamingPolicy.CamelCase) },
        NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals,
    };

    private RunFolder(string path) => Path = path;

    /// <summary>The folder.</summary>
    public string Path { get; }

    public string Config => Combine("config.json");

    public string Checkpoint => Combine("model.safetensors");

    public string Samples => Combine("samples.npy");

    public string Metrics => Combine("metrics.json");

    public string SamplesPlot => Combine("samples.png");

    public string TrajectoriesPlot => Combine("trajectories.png");

    /// <summary>Opens (creating if needed) the folder at <paramref name="path"/>.</summary>
    public static RunFolder At(string path)
    {
        Directory.CreateDirectory(path);
        return new RunFolder(path);
    }

    /// <summary>A new folder <c>root/prefix-yyyyMMdd-HHmmss</c> (with a numeric suffix if that exists already).</summary>
    public static RunFolder CreateTimestamped(string root, string prefix, DateTime utcNow)
    {
        string stem = System.IO.Path.Combine(root, $"{prefix}-{utcNow.ToString("yyyyMMdd-HHmmss", CultureInfo.InvariantCulture)}");
        string path = stem;
        for (int n = 2; Directory.Exists(path); n++) path = $"{stem}-{n}";
        return At(path);
    }

    /// <summary>Serialises <paramref name="value"/> to JSON and writes it atomically.</summary>
    public static void WriteJson<T>(string path, T value)
    {
        byte[] bytes = System.Text.Encoding.UTF8.GetBytes(JsonSerializer.Serialize(value, Json) + "\n");
        PoissonFlow.IO.AtomicFile.Write(path, stream => stream.Write(bytes));
    }

    /// <summary>Reads a JSON file written by <see cref="WriteJson{T}"/>.</summary>
    /// <exception cref="InvalidDataException">The file is not valid JSON of the expected shape.</exception>
    public static T ReadJson<T>(string path)
    {
        try
        {
            return JsonSerializer.Deserialize<T>(File.ReadAllText(path), Json)
                ?? throw new InvalidDataException($"{path}: empty JSON document");
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"{path}: not a valid {typeof(T).Name} JSON file: {e.Message}", e);
        }
    }

    private string Combine(string name) => System.IO.Path.Combine(Path, name);
}
