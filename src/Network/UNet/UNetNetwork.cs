using ILGPU;
using PoissonFlow.Kernels;
using PoissonFlow.Kernels.Device;

namespace PoissonFlow.Network.UNet;

/// <summary>
/// The PFGM image field network: the compact <see cref="UNet"/> with its conditioning MLP, as an
/// <see cref="ITrainableNetwork"/> that <see cref="Trainer"/> trains and <see cref="Checkpoint"/> saves.
/// Points are flattened images [batch, C*H*W] (N = C*H*W) and z holds one conditioning value per image. The embedding
/// is PFGM's DDPM++ one (spec section 4): nf sinusoidal features of z (or ln z, <see cref="UNetConfig.EmbeddingInput"/>),
/// <c>embed.dense0</c> (nf to 4 nf), SiLU, <c>embed.dense1</c> (4 nf to 4 nf), and silu(emb) goes to every residual
/// block's Dense layer. The output is the (N + 1)-vector field: C channels of x-field, then the spatial mean of the
/// extra channel.
/// <para>
/// Parameters live in one unpadded <see cref="ParameterStore"/> laid out exactly as
/// <see cref="UNetConfig.ParameterShapes"/>, initialised like DDPM: conv and linear weights uniform in
/// +-1/sqrt(fan_in) (PyTorch's default bound), biases 0, GroupNorm gains 1 and shifts 0, and zero weights for each
/// residual block's second conv, each attention block's output projection and the output conv (DDPM's
/// <c>init_scale = 0</c>), so every block starts as the identity on its shortcut and the prediction starts at 0.
/// </para>
/// <para>
/// The U-Net's activations are allocated per batch size (its shapes fix the batch); the last two batch sizes used are
/// kept for training and for inference each. Inference bodies hold no gradients and apply no dropout.
/// </para>
/// </summary>
public sealed class UNetNetwork : ITrainableNetwork
{
    /// <summary>The model-type tag in checkpoints.</summary>
    public const string TypeTag = "unet";

    /// <summary>Batch sizes whose activations stay allocated, per mode (a sampler's full batch and its last, shorter one).</summary>
    private const int CachedBatchSizes = 2;

    private readonly ulong _seed;
    private readonly Linear _linear;
    private readonly SinusoidalEmbedding _embedding;
    private readonly Silu _silu;
    private readonly ParameterTensor _dense0Weight, _dense0Bias, _dense1Weight, _dense1Bias;
    private readonly List<Body> _training = [], _inference = [];
    private Body? _lastTraining;
    private int _inputGradientBatch;
    private long _trainingStep;

    /// <summary>
    /// Builds the network on <paramref name="device"/> and initialises it deterministically from <paramref name="seed"/>,
    /// which also keys the dropout masks (a resumed run must use the same seed to draw the same masks).
    /// </summary>
    /// <exception cref="ArgumentException">The config is invalid; the message names the field.</exception>
    public UNetNetwork(ComputeDevice device, UNetConfig config, ulong seed = 0)
    {
        ArgumentNullException.ThrowIfNull(config);
        config.Validate();
        Device = device;
        Config = config;
        _seed = seed;
        _linear = Linear.For(device);
        _embedding = SinusoidalEmbedding.For(device);
        _silu = Silu.For(device);
        Parameters = new ParameterStore(device, config.ParameterShapes().Select(InitialSpec).ToList(), alignment: 1);
        Parameters.Initialize(seed);
        _dense0Weight = Parameters.Tensor("embed.dense0.weight");
        _dense0Bias = Parameters.Tensor("embed.dense0.bias");
        _dense1Weight = Parameters.Tensor("embed.dense1.weight");
        _dense1Bias = Parameters.Tensor("embed.dense1.bias");
    }

    /// <summary>The configuration.</summary>
    public UNetConfig Config { get; }

    /// <inheritdoc />
    public ComputeDevice Device { get; }

    /// <inheritdoc />
    public ParameterStore Parameters { get; }

    /// <summary>N = C * H * W, the flattened image size.</summary>
    public int Dim => Config.ImageChannels * Config.ImageSize * Config.ImageSize;

    /// <inheritdoc />
    public int OutputWidth => Dim + 1;

    /// <inheritdoc />
    public string ModelType => TypeTag;

    /// <inheritdoc />
    public string ConfigJson => Config.ToJson();

    /// <summary>The weights <see cref="Predict"/> uses (EMA by default).</summary>
    public InferenceWeights InferenceWeights { get; set; } = InferenceWeights.Ema;

    /// <summary>
    /// When set, <see cref="Backward"/> also computes dLoss/dImages (one more launch), readable from
    /// <see cref="InputGradient"/>; off by default since training does not need it.
    /// </summary>
    public bool ComputeInputGradient { get; set; }

    /// <summary>
    /// dLoss/dPoints [batch, C*H*W] of the last <see cref="Backward"/> run with <see cref="ComputeInputGradient"/> set
    /// (written, not accumulated; valid until the next backward pass of the same batch size).
    /// </summary>
    /// <exception cref="InvalidOperationException">The last backward pass did not compute it.</exception>
    public ArrayView<float> InputGradient =>
        _lastTraining is { } body && _inputGradientBatch == body.Batch
            ? body.InputGradient
            : throw new InvalidOperationException("unet: no input gradient: set ComputeInputGradient before Backward");

    /// <summary>The optimiser step the training forward passes draw their dropout masks for (see <see cref="SetTrainingStep"/>).</summary>
    public long TrainingStep => _trainingStep;

    /// <summary>Creates the network from the config JSON a checkpoint stores (<see cref="ConfigJson"/>).</summary>
    /// <exception cref="ArgumentException">The JSON is malformed or a field is missing, unknown or invalid; the message names it.</exception>
    public static UNetNetwork FromConfigJson(ComputeDevice device, string configJson, ulong seed = 0) =>
        new(device, UNetConfig.FromJson(configJson), seed);

    /// <inheritdoc />
    public void SetTrainingStep(long step) => _trainingStep = step;

    /// <inheritdoc />
    public void Predict(ArrayView<float> points, ArrayView<float> z, ArrayView<float> output, int batch)
    {
        RequireInputs(points, z, batch);
        if (output.Length < (long)batch * OutputWidth) throw new ArgumentException($"unet: output has {output.Length} elements, needs {batch} x {OutputWidth}");
        var body = BodyFor(_inference, batch, training: false);
        var buffer = InferenceWeights == InferenceWeights.Ema ? ParameterBuffer.Ema : ParameterBuffer.Weights;
        Forward(body, buffer, points, z, output.SubView(0, (long)batch * OutputWidth));
    }

    /// <inheritdoc />
    public ArrayView<float> ForwardTraining(ArrayView<float> points, ArrayView<float> z, int batch)
    {
        RequireInputs(points, z, batch);
        var body = BodyFor(_training, batch, training: true);
        Forward(body, ParameterBuffer.Weights, points, z, body.Output);
        _lastTraining = body;
        _inputGradientBatch = 0;
        return body.Output;
    }

    /// <inheritdoc />
    public void Backward(ArrayView<float> dPrediction, int batch)
    {
        if (_lastTraining is not { } body || body.Batch != batch)
        {
            throw new InvalidOperationException($"unet backward: no training forward pass of batch {batch} to differentiate");
        }

        if (dPrediction.Length < (long)batch * OutputWidth) throw new ArgumentException($"unet backward: dPrediction has {dPrediction.Length} elements, needs {batch} x {OutputWidth}");
        int nf = Config.BaseChannels, width = Config.EmbeddingChannels;
        body.Net.Bind(Parameters.View(ParameterBuffer.Weights), Parameters.View(ParameterBuffer.Gradients));
        body.Net.Backward(dPrediction.SubView(0, (long)batch * OutputWidth), body.DEmbedding, ComputeInputGradient ? body.InputGradient : default);
        // dLoss/d emb from dLoss/d silu(emb), then back through dense1, the SiLU (fused into the input-gradient GEMM) and dense0.
        _silu.Backward(body.Embedding, body.DEmbedding, body.DEmbeddingPre);
        _linear.BackwardWeights(body.Hidden, body.DEmbeddingPre, G(_dense1Weight), G(_dense1Bias), batch, width, width);
        _linear.BackwardInput(body.DEmbeddingPre, P(ParameterBuffer.Weights, _dense1Weight), body.DHiddenPre, body.HiddenPre,
            batch, width, width, Activation.Silu);
        _linear.BackwardWeights(body.Features, body.DHiddenPre, G(_dense0Weight), G(_dense0Bias), batch, nf, width);
        _inputGradientBatch = ComputeInputGradient ? batch : 0;
    }

    /// <summary>
    /// Float64 reference of the training forward pass (dropout masks of <paramref name="step"/>, the value
    /// <see cref="SetTrainingStep"/> would select) for <paramref name="parameters"/> laid out as
    /// <see cref="UNetConfig.ParameterShapes"/>: the kernels' references composed, for tests.
    /// </summary>
    public double[] ForwardReference(double[] parameters, double[] points, double[] z, int batch, long step)
    {
        if (parameters.Length != Parameters.Count) throw new ArgumentException($"unet reference: {parameters.Length} parameters, the network has {Parameters.Count}");
        int nf = Config.BaseChannels, width = Config.EmbeddingChannels;
        ReadOnlySpan<double> Slice(ParameterTensor t) => parameters.AsSpan((int)t.Offset, (int)t.Length);
        var features = SinusoidalEmbedding.Reference([], z, batch, 0, nf, Config.EmbeddingInput);
        var hidden = Linear.ForwardReference(features, Slice(_dense0Weight), Slice(_dense0Bias), batch, nf, width, Activation.Silu, out _);
        var embedding = Linear.ForwardReference(hidden, Slice(_dense1Weight), Slice(_dense1Bias), batch, width, width, Activation.Silu, out _);
        var body = BodyFor(_training, batch, training: true);
        return body.Net.ForwardReference(points, embedding, parameters, (uint)step);
    }

    /// <inheritdoc />
    public void Dispose()
    {
        Device.Synchronize();
        foreach (var body in _training.Concat(_inference)) body.Dispose();
        _training.Clear();
        _inference.Clear();
        _lastTraining = null;
        Parameters.Dispose();
    }

    /// <summary>The DDPM-style initialisation of one tensor (see the class summary).</summary>
    private static ParameterSpec InitialSpec(ParameterShape shape)
    {
        string name = shape.Name;
        if (name.EndsWith(".gamma", StringComparison.Ordinal)) return new ParameterSpec(name, shape.Shape, 0f, InitCenter: 1f);
        if (!name.EndsWith(".weight", StringComparison.Ordinal)) return new ParameterSpec(name, shape.Shape, 0f);
        bool zero = name == "conv_out.weight" || name.EndsWith(".conv1.weight", StringComparison.Ordinal)
            || name.EndsWith(".proj_out.weight", StringComparison.Ordinal);
        long fanIn = shape.Length / shape.Shape[0];
        return new ParameterSpec(name, shape.Shape, zero ? 0f : (float)(1.0 / Math.Sqrt(fanIn)));
    }

    private void Forward(Body body, ParameterBuffer buffer, ArrayView<float> points, ArrayView<float> z, ArrayView<float> output)
    {
        int batch = body.Batch, nf = Config.BaseChannels, width = Config.EmbeddingChannels;
        _embedding.Forward(z, body.Features, batch, nf, Config.EmbeddingInput);
        _linear.Forward(body.Features, P(buffer, _dense0Weight), P(buffer, _dense0Bias), body.Hidden, body.HiddenPre, batch, nf, width, Activation.Silu);
        _linear.Forward(body.Hidden, P(buffer, _dense1Weight), P(buffer, _dense1Bias), body.SiluEmbedding, body.Embedding, batch, width, width, Activation.Silu);
        body.Net.Bind(Parameters.View(buffer), Parameters.View(ParameterBuffer.Gradients));
        body.Net.Forward(points.SubView(0, (long)batch * Dim), body.SiluEmbedding, output, (uint)_trainingStep);
    }

    /// <summary>The cached body for <paramref name="batch"/>, or a new one (evicting the least recently used beyond the cache size).</summary>
    private Body BodyFor(List<Body> cache, int batch, bool training)
    {
        int index = cache.FindIndex(b => b.Batch == batch);
        Body body;
        if (index >= 0)
        {
            body = cache[index];
            cache.RemoveAt(index);
        }
        else
        {
            if (cache.Count >= CachedBatchSizes)
            {
                // Kernels queued on the evicted buffers must finish before they are freed.
                Device.Synchronize();
                if (ReferenceEquals(cache[0], _lastTraining)) _lastTraining = null;
                cache[0].Dispose();
                cache.RemoveAt(0);
            }

            body = new Body(Device, Config, batch, _seed, training);
        }

        cache.Add(body);
        return body;
    }

    private ArrayView<float> P(ParameterBuffer buffer, ParameterTensor tensor) => Parameters.View(buffer, tensor);

    private ArrayView<float> G(ParameterTensor tensor) => Parameters.View(ParameterBuffer.Gradients, tensor);

    private void RequireInputs(ArrayView<float> points, ArrayView<float> z, int batch)
    {
        if (batch <= 0) throw new ArgumentException($"unet: batch must be positive, got {batch}");
        if (points.Length < (long)batch * Dim) throw new ArgumentException($"unet: points have {points.Length} elements, need {batch} x {Dim} (C*H*W)");
        if (z.Length < batch) throw new ArgumentException($"unet: z has {z.Length} elements, needs {batch}");
    }

    /// <summary>
    /// The U-Net and the embedding MLP's activations for one batch size. Training bodies also keep the pre-activations
    /// and gradients the backward pass needs, the prediction and the input gradient.
    /// </summary>
    private sealed class Body : IDisposable
    {
        private readonly DeviceArena _arena;

        public Body(ComputeDevice device, UNetConfig config, int batch, ulong seed, bool training)
        {
            Batch = batch;
            _arena = new DeviceArena(device);
            long features = (long)batch * config.BaseChannels, embedding = (long)batch * config.EmbeddingChannels;
            long dim = (long)config.ImageChannels * config.ImageSize * config.ImageSize;
            Features = _arena.Allocate(features);
            Hidden = _arena.Allocate(embedding);
            SiluEmbedding = _arena.Allocate(embedding);
            if (training)
            {
                HiddenPre = _arena.Allocate(embedding);
                Embedding = _arena.Allocate(embedding);
                DEmbedding = _arena.Allocate(embedding);
                DEmbeddingPre = _arena.Allocate(embedding);
                DHiddenPre = _arena.Allocate(embedding);
                Output = _arena.Allocate(batch * (dim + 1));
                InputGradient = _arena.Allocate(batch * dim);
            }

            try
            {
                Net = new UNet(device, config, batch, seed, training);
            }
            catch
            {
                _arena.Dispose();
                throw;
            }
        }

        public int Batch { get; }

        public UNet Net { get; }

        /// <summary>Sinusoidal features of z [batch, nf].</summary>
        public ArrayView<float> Features { get; }

        /// <summary>dense0 before and after its SiLU [batch, 4 nf].</summary>
        public ArrayView<float> HiddenPre { get; }

        public ArrayView<float> Hidden { get; }

        /// <summary>emb = dense1(hidden) and silu(emb), what the U-Net reads [batch, 4 nf].</summary>
        public ArrayView<float> Embedding { get; }

        public ArrayView<float> SiluEmbedding { get; }

        /// <summary>Gradients with respect to silu(emb), emb and dense0's pre-activation.</summary>
        public ArrayView<float> DEmbedding { get; }

        public ArrayView<float> DEmbeddingPre { get; }

        public ArrayView<float> DHiddenPre { get; }

        public ArrayView<float> Output { get; }

        public ArrayView<float> InputGradient { get; }

        public void Dispose()
        {
            Net.Dispose();
            _arena.Dispose();
        }
    }
}
