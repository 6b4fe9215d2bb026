using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace PoissonFlow.Network;

/// <summary>What a checkpoint's metadata says.</summary>
/// <param name="ModelType">Model-type tag (e.g. <c>mlp</c>).</param>
/// <param name="ConfigJson">The model config as JSON.</param>
/// <param name="Step">Completed optimiser updates when it was written.</param>
/// <param name="HasOptimizerState">Whether the Adam moments are included (training can resume).</param>
/// <param name="Sampling">What a sampler needs besides the weights, when the checkpoint carries it.</param>
public sealed record CheckpointInfo(string ModelType, string ConfigJson, long Step, bool HasOptimizerState, SamplingCard? Sampling = null);

/// <summary>
/// Training checkpoints as safetensors files that Python's <c>safetensors</c> opens directly. Tensors: the weights
/// under their own names (<c>layers.0.weight</c>, ... so a PyTorch module with the same names can load them), the EMA
/// weights as <c>ema.&lt;name&gt;</c>, and Adam's moments as <c>adam_m.&lt;name&gt;</c> / <c>adam_v.&lt;name&gt;</c>.
/// Metadata: <c>model_type</c>, <c>model_config</c> (JSON), <c>step</c>, <c>format</c> = pt, and optionally the
/// <see cref="SamplingCard"/> (JSON under <see cref="SamplingCard.MetadataKey"/>). Writes are atomic;
/// loads validate everything (file, header, model type and config, every tensor's presence and shape) before
/// touching the model, so a failed load changes nothing.
/// </summary>
public static class Checkpoint
{
    private const string ModelTypeKey = "model_type";
    private const string ConfigKey = "model_config";
    private const string StepKey = "step";
    private const string EmaPrefix = "ema.";
    private const string AdamMPrefix = "adam_m.";
    private const string AdamVPrefix = "adam_v.";

    /// <summary>Saves the full training state: weights, EMA, Adam moments, step and model config (synchronises).</summary>
    /// <param name="path">The file to write (atomically).</param>
    /// <param name="trainer">The training state.</param>
    /// <param name="sampling">What a sampler needs besides the weights (stored in the metadata when given).</param>
    public static void Save(string path, Trainer trainer, SamplingCard? sampling = null) =>
        Write(path, trainer.Network, trainer.StepCount, includeOptimizer: true, sampling);

    /// <summary>Saves a network for sampling only: weights and EMA weights, with the model config.</summary>
    /// <param name="path">The file to write (atomically).</param>
    /// <param name="network">The network.</param>
    /// <param name="step">The training step to record.</param>
    /// <param name="sampling">What a sampler needs besides the weights (stored in the metadata when given).</param>
    public static void Save(string path, ITrainableNetwork network, long step = 0, SamplingCard? sampling = null) =>
        Write(path, network, step, includeOptimizer: false, sampling);

    /// <summary>Reads a checkpoint's metadata (validating the file's structure).</summary>
    /// <exception cref="CheckpointException">The file is unreadable or lacks the metadata.</exception>
    public static CheckpointInfo ReadInfo(string path) => Info(SafeTensorsFile.Read(path));

    /// <summary>
    /// Restores a full training state into <paramref name="trainer"/> (its network must have the same type and config);
    /// training then continues exactly as if it had never stopped.
    /// </summary>
    /// <exception cref="CheckpointException">Unreadable file, other model or config, missing or misshapen tensor; nothing is changed.</exception>
    public static void Load(string path, Trainer trainer)
    {
        var file = SafeTensorsFile.Read(path);
        var info = RequireSameModel(file, trainer.Network);
        if (!info.HasOptimizerState) throw new CheckpointException($"{path}: holds no optimiser state (weights only): it cannot resume training");
        var store = trainer.Network.Parameters;
        var buffers = new[]
        {
            (ParameterBuffer.Weights, ""), (ParameterBuffer.Ema, EmaPrefix), (ParameterBuffer.AdamM, AdamMPrefix), (ParameterBuffer.AdamV, AdamVPrefix),
        }.Select(b => (b.Item1, Gather(file, store, b.Item2))).ToList();
        foreach (var (buffer, data) in buffers) store.Upload(buffer, data);
        store.Upload(ParameterBuffer.Gradients, new float[store.Count]);
        trainer.Restore(info.Step);
        store.Device.Synchronize();
    }

    /// <summary>Loads the weights and EMA weights into <paramref name="network"/> (same type and config); optimiser state is ignored.</summary>
    /// <exception cref="CheckpointException">Unreadable file, other model or config, missing or misshapen tensor; nothing is changed.</exception>
    public static void LoadWeights(string path, ITrainableNetwork network)
    {
        var file = SafeTensorsFile.Read(path);
        RequireSameModel(file, network);
        var store = network.Parameters;
        var weights = Gather(file, store, "");
        var ema = Gather(file, store, EmaPrefix);
        store.Upload(ParameterBuffer.Weights, weights);
        store.Upload(ParameterBuffer.Ema, ema);
        store.Device.Synchronize();
    }

    private static void Write(string path, ITrainableNetwork network, long step, bool includeOptimizer, SamplingCard? sampling)
    {
        sampling?.Validate();
        var store = network.Parameters;
        var tensors = new List<NamedTensor>();
        void Add(ParameterBuffer buffer, string prefix)
        {
            var data = store.Download(buffer);
            foreach (var t in store.Tensors) tensors.Add(new NamedTensor(prefix + t.Name, t.Shape, store.Slice(data, t)));
        }

        Add(ParameterBuffer.Weights, "");
        Add(ParameterBuffer.Ema, EmaPrefix);
        if (includeOptimizer)
        {
            Add(ParameterBuffer.AdamM, AdamMPrefix);
            Add(ParameterBuffer.AdamV, AdamVPrefix);
        }

        var metadata = new Dictionary<string, string>
        {
            ["format"] = "pt",
            [ModelTypeKey] = network.ModelType,
            [ConfigKey] = network.ConfigJson,
            [StepKey] = step.ToString(CultureInfo.InvariantCulture),
        };
        if (sampling is not null) metadata[SamplingCard.MetadataKey] = sampling.ToJson();
        SafeTensorsFile.Write(path, tensors, metadata);
    }

    private static CheckpointInfo Info(SafeTensorsFile file)
    {
        if (!file.Metadata.TryGetValue(ModelTypeKey, out var type)) throw new CheckpointException($"{file.Path}: no '{ModelTypeKey}' in the metadata: not a PoissonFlow checkpoint");
        if (!file.Metadata.TryGetValue(ConfigKey, out var config)) throw new CheckpointException($"{file.Path}: no '{ConfigKey}' in the metadata: not a PoissonFlow checkpoint");
        long step = 0;
        if (file.Metadata.TryGetValue(StepKey, out var stepText) && !long.TryParse(stepText, NumberStyles.None, CultureInfo.InvariantCulture, out step))
        {
            throw new CheckpointException($"{file.Path}: metadata '{StepKey}' is '{stepText}', not a step count");
        }

        bool optimizer = file.Names.Any(n => n.StartsWith(AdamMPrefix, StringComparison.Ordinal));
        SamplingCard? sampling = null;
        if (file.Metadata.TryGetValue(SamplingCard.MetadataKey, out var card))
        {
            try
            {
                sampling = SamplingCard.FromJson(card);
            }
            catch (ArgumentException e)
            {
                throw new CheckpointException($"{file.Path}: metadata '{SamplingCard.MetadataKey}' is invalid: {e.Message}");
            }
        }

        return new CheckpointInfo(type, config, step, optimizer, sampling);
    }

    private static CheckpointInfo RequireSameModel(SafeTensorsFile file, ITrainableNetwork network)
    {
        var info = Info(file);
        if (info.ModelType != network.ModelType)
        {
            throw new CheckpointException($"{file.Path}: holds a '{info.ModelType}' model, this is an '{network.ModelType}'");
        }

        bool same;
        try
        {
            same = JsonNode.DeepEquals(JsonNode.Parse(info.ConfigJson), JsonNode.Parse(network.ConfigJson));
        }
        catch (JsonException e)
        {
            throw new CheckpointException($"{file.Path}: the model config in the metadata is not valid JSON: {e.Message}");
        }

        if (!same)
        {
            throw new CheckpointException($"{file.Path}: written for {info.ModelType} config {info.ConfigJson}, but this model's config is {network.ConfigJson}");
        }

        return info;
    }

    /// <summary>Assembles one full store buffer from the file's tensors named prefix + tensor name (validating each).</summary>
    private static float[] Gather(SafeTensorsFile file, ParameterStore store, string prefix)
    {
        var buffer = new float[store.Count];
        foreach (var tensor in store.Tensors) file.Get(prefix + tensor.Name, tensor.Shape).CopyTo(buffer, tensor.Offset);
        return buffer;
    }
}
