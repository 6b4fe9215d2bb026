using ILGPU;
using ILGPU.Runtime;
using PoissonFlow.Kernels;
using PoissonFlow.Kernels.Device;

namespace PoissonFlow.Network;

/// <summary>Which weights <see cref="Mlp.Predict"/> uses.</summary>
public enum InferenceWeights
{
    /// <summary>The exponential moving average (what PFGM samples with).</summary>
    Ema,

    /// <summary>The live, last-updated weights.</summary>
    Live,
}

/// <summary>
/// The PFGM field MLP for low-dimensional data: [x, emb(z)] -> Depth x (Linear + SiLU) -> Linear -> N + 1 values.
/// A forward pass is 1 + (Depth + 1) launches (input assembly with the embedding, then one fused GEMM+bias+SiLU per
/// layer); a backward pass is 2 Depth + 1 (a weight+bias-gradient GEMM per layer and an input-gradient GEMM with the
/// SiLU derivative fused in, per layer but the first). Parameters are <c>layers.{i}.weight</c> (out x in) and
/// <c>layers.{i}.bias</c>, initialised like PyTorch's nn.Linear (uniform +-1/sqrt(fan_in)), the output layer's weights
/// scaled by <see cref="MlpConfig.OutputInitScale"/> and its bias zero.
/// </summary>
public sealed class Mlp : ITrainableNetwork
{
    /// <summary>The model-type tag in checkpoints.</summary>
    public const string TypeTag = "mlp";

    private readonly Linear _linear;
    private readonly SinusoidalEmbedding _embedding;
    private readonly ParameterTensor[] _weights;
    private readonly ParameterTensor[] _biases;
    private Workspace? _training;
    private Workspace? _inference;

    /// <summary>Builds the network on <paramref name="device"/> and initialises it deterministically from <paramref name="seed"/>.</summary>
    /// <exception cref="ArgumentException">The config is invalid.</exception>
    public Mlp(ComputeDevice device, MlpConfig config, ulong seed = 0)
    {
        config.Validate();
        Device = device;
        Config = config;
        _linear = Linear.For(device);
        _embedding = SinusoidalEmbedding.For(device);
        var specs = new List<ParameterSpec>();
        for (int l = 0; l <= config.Depth; l++)
        {
            int fanIn = LayerInput(l), fanOut = LayerOutput(l);
            float bound = (float)(1.0 / Math.Sqrt(fanIn));
            bool last = l == config.Depth;
            specs.Add(new ParameterSpec($"layers.{l}.weight", [fanOut, fanIn], last ? bound * config.OutputInitScale : bound));
            specs.Add(new ParameterSpec($"layers.{l}.bias", [fanOut], last ? 0f : bound));
        }

        Parameters = new ParameterStore(device, specs);
        Parameters.Initialize(seed);
        _weights = Enumerable.Range(0, config.Depth + 1).Select(l => Parameters.Tensor($"layers.{l}.weight")).ToArray();
        _biases = Enumerable.Range(0, config.Depth + 1).Select(l => Parameters.Tensor($"layers.{l}.bias")).ToArray();
    }

    /// <summary>The configuration.</summary>
    public MlpConfig Config { get; }

    /// <inheritdoc />
    public ComputeDevice Device { get; }

    /// <inheritdoc />
    public ParameterStore Parameters { get; }

    /// <inheritdoc />
    public int Dim => Config.Dim;

    /// <inheritdoc />
    public int OutputWidth => Config.Dim + 1;

    /// <inheritdoc />
    public string ModelType => TypeTag;

    /// <inheritdoc />
    public string ConfigJson => Config.ToJson();

    /// <summary>The weights <see cref="Predict"/> uses (EMA by default).</summary>
    public InferenceWeights InferenceWeights { get; set; } = InferenceWeights.Ema;

    /// <summary>Kernel launches of one <see cref="Predict"/> or <see cref="ForwardTraining"/>.</summary>
    public int ForwardLaunches => Config.Depth + 2;

    /// <summary>Kernel launches of one <see cref="Backward"/>.</summary>
    public int BackwardLaunches => 2 * Config.Depth + 1;

    /// <summary>
    /// Creates an MLP from a checkpoint written by <see cref="Checkpoint"/>: the config comes from the file,
    /// the weights and EMA weights are loaded (optimiser state, if present, is ignored).
    /// </summary>
    /// <exception cref="FileNotFoundException">There is no file at <paramref name="path"/>.</exception>
    /// <exception cref="CheckpointException">The file is unreadable, not an MLP checkpoint, or inconsistent.</exception>
    public static Mlp FromCheckpoint(ComputeDevice device, string path)
    {
        var info = ModelRegistry.ReadInfo(path);
        if (info.ModelType != TypeTag) throw new CheckpointException($"{path}: holds a '{info.ModelType}' model, not an '{TypeTag}'");
        return (Mlp)ModelRegistry.Load(device, path);
    }

    /// <inheritdoc />
    public void Predict(ArrayView<float> points, ArrayView<float> z, ArrayView<float> output, int batch)
    {
        RequireInputs(points, z, batch);
        if (output.Length < (long)batch * OutputWidth) throw new ArgumentException($"mlp: output has {output.Length} elements, needs {batch} x {OutputWidth}");
        _inference = Workspace.Ensure(_inference, Device, Config, batch, training: false);
        var buffer = InferenceWeights == InferenceWeights.Ema ? ParameterBuffer.Ema : ParameterBuffer.Weights;
        Forward(buffer, points, z, output, batch, _inference, training: false);
    }

    /// <inheritdoc />
    public ArrayView<float> ForwardTraining(ArrayView<float> points, ArrayView<float> z, int batch)
    {
        RequireInputs(points, z, batch);
        _training = Workspace.Ensure(_training, Device, Config, batch, training: true);
        var output = _training.Output.View.SubView(0, (long)batch * OutputWidth);
        Forward(ParameterBuffer.Weights, points, z, output, batch, _training, training: true);
        _training.Batch = batch;
        return output;
    }

    /// <inheritdoc />
    public void Backward(ArrayView<float> dPrediction, int batch)
    {
        if (_training is null || _training.Batch != batch) throw new InvalidOperationException($"mlp backward: no training forward pass of batch {batch} to differentiate");
        if (dPrediction.Length < (long)batch * OutputWidth) throw new ArgumentException($"mlp backward: dPrediction has {dPrediction.Length} elements, needs {batch} x {OutputWidth}");
        var ws = _training;
        var current = dPrediction;
        for (int l = Config.Depth; l >= 0; l--)
        {
            int inF = LayerInput(l), outF = LayerOutput(l);
            ArrayView<float> input = l == 0 ? ws.Input.View : ws.Activations[l - 1].View;
            _linear.BackwardWeights(input, current, Parameters.View(ParameterBuffer.Gradients, _weights[l]),
                Parameters.View(ParameterBuffer.Gradients, _biases[l]), batch, inF, outF);
            if (l == 0) break;
            // The gradient with respect to the previous layer's pre-activation, SiLU derivative fused in.
            ArrayView<float> next = ws.Gradients[l % 2].View;
            _linear.BackwardInput(current, Parameters.View(ParameterBuffer.Weights, _weights[l]), next,
                ws.PreActivations[l - 1].View, batch, inF, outF, Config.Activation);
            current = next;
        }
    }

    /// <inheritdoc />
    public void Dispose()
    {
        _training?.Dispose();
        _inference?.Dispose();
        Parameters.Dispose();
    }

    /// <summary>
    /// Float64 reference of the forward pass from a downloaded weight buffer (see <see cref="ParameterStore.Download"/>);
    /// for tests and for checking a trained model on the host.
    /// </summary>
    public static double[] ForwardReference(MlpConfig config, ParameterStore store, ReadOnlySpan<double> weights,
        ReadOnlySpan<double> points, ReadOnlySpan<double> z, int batch)
    {
        var x = SinusoidalEmbedding.Reference(points, z, batch, config.Dim, config.EmbeddingSize, config.EmbeddingInput);
        int width = config.InputWidth;
        for (int l = 0; l <= config.Depth; l++)
        {
            var w = store.Tensor($"layers.{l}.weight");
            var b = store.Tensor($"layers.{l}.bias");
            bool last = l == config.Depth;
            int outF = last ? config.Dim + 1 : config.Hidden;
            x = Linear.ForwardReference(x, weights.Slice((int)w.Offset, (int)w.Length), weights.Slice((int)b.Offset, (int)b.Length),
                batch, width, outF, last ? Activation.None : config.Activation, out _);
            width = outF;
        }

        return x;
    }

    private int LayerInput(int layer) => layer == 0 ? Config.InputWidth : Config.Hidden;

    private int LayerOutput(int layer) => layer == Config.Depth ? Config.Dim + 1 : Config.Hidden;

    private void Forward(ParameterBuffer buffer, ArrayView<float> points, ArrayView<float> z, ArrayView<float> output, int batch,
        Workspace ws, bool training)
    {
        _embedding.Concat(points, z, ws.Input.View, batch, Config.Dim, Config.EmbeddingSize, Config.EmbeddingInput);
        ArrayView<float> input = ws.Input.View;
        for (int l = 0; l <= Config.Depth; l++)
        {
            bool last = l == Config.Depth;
            ArrayView<float> result = last ? output : ws.Activations[training ? l : l % 2].View;
            ArrayView<float> pre = training && !last ? ws.PreActivations[l].View : default;
            _linear.Forward(input, Parameters.View(buffer, _weights[l]), Parameters.View(buffer, _biases[l]), result, pre,
                batch, LayerInput(l), LayerOutput(l), last ? Activation.None : Config.Activation);
            input = result;
        }
    }

    private void RequireInputs(ArrayView<float> points, ArrayView<float> z, int batch)
    {
        if (batch <= 0) throw new ArgumentException($"mlp: batch must be positive, got {batch}");
        if (points.Length < (long)batch * Dim) throw new ArgumentException($"mlp: points have {points.Length} elements, need {batch} x {Dim}");
        if (z.Length < batch) throw new ArgumentException($"mlp: z has {z.Length} elements, needs {batch}");
    }

    /// <summary>
    /// Activation memory for one batch capacity, allocated once and reused while batches fit (views are cut to the
    /// batch). Training keeps every layer's pre-activation and activation plus two gradient ping-pong buffers;
    /// inference only two ping-pong activation buffers.
    /// </summary>
    private sealed class Workspace : IDisposable
    {
        private Workspace(ComputeDevice device, MlpConfig config, int capacity, bool training)
        {
            Capacity = capacity;
            Training = training;
            var accelerator = device.Accelerator;
            Input = accelerator.Allocate1D<float>((long)capacity * config.InputWidth);
            int hiddenBuffers = training ? config.Depth : Math.Min(2, config.Depth);
            Activations = Enumerable.Range(0, hiddenBuffers).Select(_ => accelerator.Allocate1D<float>((long)capacity * config.Hidden)).ToArray();
            PreActivations = training
                ? Enumerable.Range(0, config.Depth).Select(_ => accelerator.Allocate1D<float>((long)capacity * config.Hidden)).ToArray()
                : [];
            Gradients = training
                ? Enumerable.Range(0, 2).Select(_ => accelerator.Allocate1D<float>((long)capacity * config.Hidden)).ToArray()
                : [];
            Output = accelerator.Allocate1D<float>(training ? (long)capacity * (config.Dim + 1) : 1);
        }

        public int Capacity { get; }

        public bool Training { get; }

        /// <summary>Batch of the last training forward pass (what backward may differentiate).</summary>
        public int Batch { get; set; }

        public MemoryBuffer1D<float, Stride1D.Dense> Input { get; }

        public MemoryBuffer1D<float, Stride1D.Dense>[] Activations { get; }

        public MemoryBuffer1D<float, Stride1D.Dense>[] PreActivations { get; }

        public MemoryBuffer1D<float, Stride1D.Dense>[] Gradients { get; }

        public MemoryBuffer1D<float, Stride1D.Dense> Output { get; }

        /// <summary>Returns <paramref name="current"/> if the batch fits, else a new workspace (disposing the old one).</summary>
        public static Workspace Ensure(Workspace? current, ComputeDevice device, MlpConfig config, int batch, bool training)
        {
            if (current is not null && current.Capacity >= batch) return current;
            if (current is not null)
            {
                // Kernels queued on the old buffers must finish before they are freed.
                device.Synchronize();
                current.Dispose();
            }

            return new Workspace(device, config, batch, training);
        }

        public void Dispose()
        {
            Input.Dispose();
            foreach (var b in Activations.Concat(PreActivations).Concat(Gradients)) b.Dispose();
            Output.Dispose();
        }
    }
}
