using System.Globalization;
using System.Security.Cryptography;
using PoissonFlow.Data;
using PoissonFlow.Kernels.Device;

namespace PoissonFlow.Network.Features;

/// <summary>What a features file says about how it was made (its safetensors metadata).</summary>
/// <param name="Version">File format version (<see cref="FeatureModelFile.Version"/>).</param>
/// <param name="Architecture">The classifier, e.g. <c>mlp 784-256-128-10 silu</c>.</param>
/// <param name="Dataset">The data set name (fashion-mnist).</param>
/// <param name="TrainCount">Training images used.</param>
/// <param name="TrainSha256">SHA-256 of the training images and labels as read (see <see cref="FeatureModelFile.DataHash"/>).</param>
/// <param name="TestCount">Test images the accuracy was measured on.</param>
/// <param name="TestSha256">SHA-256 of the test images and labels.</param>
/// <param name="TestAccuracy">Fraction of test images classified correctly.</param>
/// <param name="Training">The training settings, as text.</param>
public sealed record FeatureModelInfo(int Version, string Architecture, string Dataset, int TrainCount, string TrainSha256,
    int TestCount, string TestSha256, double TestAccuracy, string Training);

/// <summary>
/// The frozen feature network as a versioned safetensors file: tensors <c>layers.{i}.weight</c> / <c>.bias</c> (the
/// EMA weights, the ones evaluated) and metadata <c>pfgm_features_version</c>, <c>architecture</c>,
/// <c>feature_layer</c>, the data set's name, sizes and hashes, <c>test_accuracy</c> and the training settings.
/// Written atomically (<see cref="SafeTensorsFile.Write"/>); a load checks the version, the architecture and every
/// tensor's shape.
/// </summary>
public static class FeatureModelFile
{
    /// <summary>The format version this code writes and reads.</summary>
    public const int Version = 1;

    /// <summary>The committed features file, relative to the repository root (and to the pfgm binary's folder).</summary>
    public const string DefaultRelativePath = "models/fashion-mnist-features-v1.safetensors";

    private const string VersionKey = "pfgm_features_version";

    /// <summary>Saves <paramref name="model"/>'s EMA weights with <paramref name="info"/> (synchronises).</summary>
    public static void Save(string path, FeatureClassifier model, FeatureModelInfo info)
    {
        var store = model.Parameters;
        var weights = store.Download(ParameterBuffer.Ema);
        var tensors = store.Tensors.Select(t => new NamedTensor(t.Name, t.Shape, store.Slice(weights, t))).ToList();
        var c = CultureInfo.InvariantCulture;
        var metadata = new Dictionary<string, string>
        {
            ["format"] = "pt",
            [VersionKey] = Version.ToString(c),
            ["architecture"] = model.Config.ToString(),
            ["feature_layer"] = $"layers.{model.Config.Layers - 2} after SiLU ({model.Config.FeatureSize} values)",
            ["input_scaling"] = "pixels / 127.5 - 1, row-major 28x28",
            ["dataset"] = info.Dataset,
            ["train_count"] = info.TrainCount.ToString(c),
            ["train_sha256"] = info.TrainSha256,
            ["test_count"] = info.TestCount.ToString(c),
            ["test_sha256"] = info.TestSha256,
            ["test_accuracy"] = info.TestAccuracy.ToString("R", c),
            ["training"] = info.Training,
        };
        SafeTensorsFile.Write(path, tensors, metadata);
    }

    /// <summary>Reads a features file's metadata (validating the file's structure and version).</summary>
    /// <exception cref="CheckpointException">Missing, unreadable, another version, or incomplete metadata.</exception>
    public static FeatureModelInfo ReadInfo(string path) => Info(SafeTensorsFile.Read(path));

    /// <summary>Loads a features file onto <paramref name="device"/>: a classifier whose EMA (and live) weights are the file's.</summary>
    /// <exception cref="CheckpointException">Missing, unreadable, another version or architecture, missing or misshapen tensor.</exception>
    public static (FeatureClassifier Model, FeatureModelInfo Info) Load(ComputeDevice device, string path)
    {
        var file = SafeTensorsFile.Read(path);
        var info = Info(file);
        ClassifierConfig config;
        try
        {
            config = ClassifierConfig.Parse(info.Architecture);
        }
        catch (Exception e) when (e is FormatException or ArgumentException)
        {
            throw new CheckpointException($"{path}: {e.Message}");
        }

        var model = new FeatureClassifier(device, config);
        try
        {
            var store = model.Parameters;
            var buffer = new float[store.Count];
            foreach (var tensor in store.Tensors) file.Get(tensor.Name, tensor.Shape).CopyTo(buffer, tensor.Offset);
            store.Upload(ParameterBuffer.Weights, buffer);
            store.Upload(ParameterBuffer.Ema, buffer);
            device.Synchronize();
            return (model, info);
        }
        catch
        {
            model.Dispose();
            throw;
        }
    }

    /// <summary>
    /// SHA-256 (hex) of a labelled image set as read: the float32 pixels (little-endian) then the labels. It names the
    /// exact data a features file was trained or tested on, whatever compression the files had.
    /// </summary>
    public static string DataHash(IdxImages images, ReadOnlySpan<byte> labels)
    {
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        var pixels = System.Runtime.InteropServices.MemoryMarshal.AsBytes(images.Pixels.AsSpan());
        if (!BitConverter.IsLittleEndian) throw new PlatformNotSupportedException("data hashes assume a little-endian machine");
        hash.AppendData(pixels);
        hash.AppendData(labels);
        return Convert.ToHexStringLower(hash.GetHashAndReset());
    }

    private static FeatureModelInfo Info(SafeTensorsFile file)
    {
        string Get(string key) => file.Metadata.TryGetValue(key, out var v)
            ? v
            : throw new CheckpointException($"{file.Path}: no '{key}' in the metadata: not a PoissonFlow features file");
        int Int(string key) => int.TryParse(Get(key), NumberStyles.None, CultureInfo.InvariantCulture, out int v)
            ? v
            : throw new CheckpointException($"{file.Path}: metadata '{key}' is '{Get(key)}', not a count");
        int version = Int(VersionKey);
        if (version != Version)
        {
            throw new CheckpointException($"{file.Path}: features file version {version}; this pfgm reads version {Version} (retrain with 'pfgm train-features')");
        }

        if (!double.TryParse(Get("test_accuracy"), NumberStyles.Float, CultureInfo.InvariantCulture, out double accuracy))
        {
            throw new CheckpointException($"{file.Path}: metadata 'test_accuracy' is '{Get("test_accuracy")}', not a number");
        }

        return new FeatureModelInfo(version, Get("architecture"), Get("dataset"), Int("train_count"), Get("train_sha256"),
            Int("test_count"), Get("test_sha256"), accuracy, Get("training"));
    }
}
