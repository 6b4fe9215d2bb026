using System.Text.Json;
using PoissonFlow.Kernels.Device;
using PoissonFlow.Network.UNet;

namespace PoissonFlow.Network;

/// <summary>Thrown for a checkpoint whose model type this version of PoissonFlow does not know.</summary>
public sealed class UnknownModelTypeException : CheckpointException
{
    /// <summary>Creates the exception; the message names the file, its model type and the known ones.</summary>
    public UnknownModelTypeException(string message, string modelType) : base(message) => ModelType = modelType;

    /// <summary>The model-type tag found in the checkpoint.</summary>
    public string ModelType { get; }
}

/// <summary>
/// Thrown for a checkpoint that holds weights but no <see cref="SamplingCard"/>: it was written by a PoissonFlow
/// version from before the card, or by code that saves raw training state only, so the shape, prior and output
/// form needed to sample from it are unknown.
/// </summary>
public sealed class MissingSamplingCardException : CheckpointException
{
    /// <summary>Creates the exception; the message names the file and says how to get a card.</summary>
    public MissingSamplingCardException(string message) : base(message) { }
}

/// <summary>
/// The one place that turns a checkpoint's model-type tag and config JSON into a network: the application API, the
/// CLI and the tests all build networks from checkpoints through it. Known types: <see cref="Mlp.TypeTag"/> and
/// <see cref="UNetNetwork.TypeTag"/>.
/// </summary>
public static class ModelRegistry
{
    private static readonly Dictionary<string, Func<ComputeDevice, string, ulong, ITrainableNetwork>> Factories = new(StringComparer.Ordinal)
    {
        [Mlp.TypeTag] = (device, json, seed) => new Mlp(device, MlpConfig.FromJson(json), seed),
        [UNetNetwork.TypeTag] = UNetNetwork.FromConfigJson,
    };

    /// <summary>The model-type tags this version can build, sorted.</summary>
    public static IReadOnlyList<string> ModelTypes { get; } = [.. Factories.Keys.Order(StringComparer.Ordinal)];

    /// <summary>Whether <paramref name="modelType"/> is a tag this version can build.</summary>
    public static bool IsKnown(string modelType) => Factories.ContainsKey(modelType);

    /// <summary>Builds an untrained network of <paramref name="modelType"/> from its config JSON, initialised from <paramref name="seed"/>.</summary>
    /// <exception cref="UnknownModelTypeException">The tag is not a known model type.</exception>
    /// <exception cref="ArgumentException">The config is malformed or invalid; the message names the field.</exception>
    public static ITrainableNetwork Create(ComputeDevice device, string modelType, string configJson, ulong seed = 0)
    {
        ArgumentNullException.ThrowIfNull(device);
        ArgumentNullException.ThrowIfNull(configJson);
        if (!Factories.TryGetValue(modelType, out var factory))
        {
            throw new UnknownModelTypeException($"unknown model type '{modelType}': this version of PoissonFlow knows {string.Join(", ", ModelTypes)}", modelType);
        }

        try
        {
            return factory(device, configJson, seed);
        }
        catch (JsonException e)
        {
            throw new ArgumentException($"{modelType} config: not valid JSON: {e.Message}", e);
        }
    }

    /// <summary>Builds the network a checkpoint describes and loads its weights and EMA weights (optimiser state is ignored).</summary>
    /// <exception cref="FileNotFoundException">There is no file at <paramref name="path"/>.</exception>
    /// <exception cref="UnknownModelTypeException">The checkpoint holds a model type this version does not know.</exception>
    /// <exception cref="CheckpointException">The file is unreadable, not a PoissonFlow checkpoint, or inconsistent.</exception>
    public static ITrainableNetwork Load(ComputeDevice device, string path) => Load(device, path, out _);

    /// <summary>As <see cref="Load(ComputeDevice, string)"/>, also returning what the checkpoint's metadata says.</summary>
    /// <exception cref="FileNotFoundException">There is no file at <paramref name="path"/>.</exception>
    /// <exception cref="UnknownModelTypeException">The checkpoint holds a model type this version does not know.</exception>
    /// <exception cref="CheckpointException">The file is unreadable, not a PoissonFlow checkpoint, or inconsistent.</exception>
    public static ITrainableNetwork Load(ComputeDevice device, string path, out CheckpointInfo info)
    {
        info = ReadInfo(path);
        ITrainableNetwork network;
        try
        {
            network = Create(device, info.ModelType, info.ConfigJson);
        }
        catch (UnknownModelTypeException e)
        {
            throw new UnknownModelTypeException($"{path}: holds a '{info.ModelType}' model: {e.Message}", info.ModelType);
        }
        catch (ArgumentException e)
        {
            throw new CheckpointException($"{path}: the model config in the metadata is invalid: {e.Message}");
        }

        try
        {
            Checkpoint.LoadWeights(path, network);
            return network;
        }
        catch
        {
            network.Dispose();
            throw;
        }
    }

    /// <summary>Reads a checkpoint's metadata, with a missing file reported as such.</summary>
    /// <exception cref="FileNotFoundException">There is no file at <paramref name="path"/>.</exception>
    /// <exception cref="CheckpointException">The file is unreadable or not a PoissonFlow checkpoint.</exception>
    public static CheckpointInfo ReadInfo(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        if (!File.Exists(path)) throw new FileNotFoundException($"{path}: no such checkpoint file", path);
        return Checkpoint.ReadInfo(path);
    }

    /// <summary>
    /// The sampling card of a checkpoint, or a <see cref="MissingSamplingCardException"/> explaining why a checkpoint
    /// without one cannot be sampled on its own.
    /// </summary>
    /// <exception cref="MissingSamplingCardException">The checkpoint carries no card.</exception>
    public static SamplingCard RequireSamplingCard(CheckpointInfo info, string path) =>
        info.Sampling ?? throw new MissingSamplingCardException(
            $"{path}: has no sampling card ('{SamplingCard.MetadataKey}' metadata): it was written by an older PoissonFlow version " +
            "or is a raw training checkpoint, so its data shape and prior are unknown; save it again with a sampling card " +
            "(a current 'pfgm train' writes one)");

    /// <summary>
    /// The field predictor a sampler integrates for <paramref name="network"/> under <paramref name="card"/>: the
    /// network wrapped in a <see cref="PosteriorMeanNetwork"/> (which then owns it) when the card gives a posterior-mean
    /// scale, the network itself otherwise.
    /// </summary>
    /// <exception cref="CheckpointException">The card's data size differs from the network's.</exception>
    public static ITrainableNetwork ForSampling(ITrainableNetwork network, SamplingCard card)
    {
        ArgumentNullException.ThrowIfNull(network);
        ArgumentNullException.ThrowIfNull(card);
        if (card.Dim != network.Dim)
        {
            throw new CheckpointException($"the sampling card describes {card.Dim} values per data point ([{string.Join(", ", card.DataShape)}]), but the '{network.ModelType}' network takes {network.Dim}");
        }

        return card.PosteriorMeanScale is { } scale ? new PosteriorMeanNetwork(network, (float)scale) : network;
    }
}
