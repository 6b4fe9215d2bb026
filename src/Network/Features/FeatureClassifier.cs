using ILGPU;
using ILGPU.Runtime;
using PoissonFlow.Kernels;
using PoissonFlow.Kernels.Device;

namespace PoissonFlow.Network.Features;

/// <summary>
/// The image classifier whose penultimate activations are the quality metric's feature space (the role Inception
/// plays for FID, with no weights to download): an MLP of fused GEMM+bias+SiLU layers (<see cref="Linear"/>), trained
/// with the fused <see cref="SoftmaxCrossEntropy"/> and the shared <see cref="ParameterOptimizer"/> (Adam + EMA).
/// Parameters are <c>layers.{i}.weight</c> (out x in) and <c>layers.{i}.bias</c>, initialised like PyTorch's
/// nn.Linear. A training step is L forward launches, one loss launch, 2L - 1 backward launches and two optimiser
/// launches, with no host round-trip; evaluation and feature extraction use the EMA weights.
/// </summary>
public sealed class FeatureClassifier : IDisposable
{
    private readonly Linear _linear;
    private readonly SoftmaxCrossEntropy _loss;
    private readonly ParameterTensor[] _weights;
    private readonly ParameterTensor[] _biases;
    private TrainingWorkspace? _training;
    private InferenceWorkspace? _inference;
    private ParameterOptimizer? _optimizer;
    private int _lossSteps;

    /// <summary>Builds the network on <paramref name="device"/>, initialised deterministically from <paramref name="seed"/>.</summary>
    /// <exception cref="ArgumentException">The config is invalid.</exception>
    public FeatureClassifier(ComputeDevice device, ClassifierConfig config, ulong seed = 0)
    {
        config.Validate();
        Device = device;
        Config = config;
        _linear = Linear.For(device);
        _loss = SoftmaxCrossEntropy.For(device);
        var specs = new List<ParameterSpec>();
        for (int l = 0; l < config.Layers; l++)
        {
            float bound = (float)(1.0 / Math.Sqrt(config.LayerInput(l)));
            specs.Add(new ParameterSpec($"layers.{l}.weight", [config.LayerOutput(l), config.LayerInput(l)], bound));
            specs.Add(new ParameterSpec($"layers.{l}.bias", [config.LayerOutput(l)], bound));
        }

        Parameters = new ParameterStore(device, specs);
        Parameters.Initialize(seed);
        _weights = Enumerable.Range(0, config.Layers).Select(l => Parameters.Tensor($"layers.{l}.weight")).ToArray();
        _biases = Enumerable.Range(0, config.Layers).Select(l => Parameters.Tensor($"layers.{l}.bias")).ToArray();
    }

    /// <summary>The device it runs on.</summary>
    public ComputeDevice Device { get; }

    /// <summary>The architecture.</summary>
    public ClassifierConfig Config { get; }

    /// <summary>Weights, gradients, Adam moments and EMA weights.</summary>
    public ParameterStore Parameters { get; }

    /// <summary>Completed optimiser updates.</summary>
    public long StepCount => _optimizer?.StepCount ?? 0;

    /// <summary>Images per inference launch in <see cref="Logits"/> and <see cref="Features"/> (bounds their buffers).</summary>
    public int InferenceBatch { get; init; } = 1000;

    /// <summary>
    /// One training step on a batch already on the device: <paramref name="images"/> (batch x Input) and
    /// <paramref name="labels"/> (batch). Minimises the batch-mean cross-entropy with Adam (<paramref name="adam"/>
    /// must be the same on every call). No synchronisation; <see cref="ReadLoss"/> fetches the losses.
    /// </summary>
    public void TrainStep(ArrayView<float> images, ArrayView<int> labels, int batch, AdamOptions adam)
    {
        _optimizer ??= new ParameterOptimizer(Parameters, adam);
        AccumulateGradients(images, labels, batch);
        _optimizer.Update();
        _lossSteps++;
    }

    /// <summary>
    /// Forward pass with the live weights, fused loss, and backward pass: the gradients of the batch-mean
    /// cross-entropy are ADDED to the gradient buffer and the scaled row losses to the loss accumulator.
    /// </summary>
    public void AccumulateGradients(ArrayView<float> images, ArrayView<int> labels, int batch)
    {
        if (batch <= 0) throw new ArgumentException($"classifier: batch must be positive, got {batch}");
        if (images.Length < (long)batch * Config.Input) throw new ArgumentException($"classifier: images have {images.Length} values, need {batch} x {Config.Input}");
        if (labels.Length < batch) throw new ArgumentException($"classifier: labels have {labels.Length} values, need {batch}");
        if (_training is null || _training.Capacity < batch)
        {
            Device.Synchronize();
            _training?.Dispose();
            _training = new TrainingWorkspace(Device, Config, batch);
        }

        var ws = _training;
        ArrayView<float> logits = ws.Logits.View.SubView(0, (long)batch * Config.Classes);
        ArrayView<float> dLogits = ws.DLogits.View.SubView(0, (long)batch * Config.Classes);
        Forward(ParameterBuffer.Weights, images, batch, Config.Layers, logits, ws.Activations, ws.PreActivations);
        _loss.ForwardBackward(logits, labels, ws.RowLoss.View, dLogits, batch, Config.Classes, 1f / batch);
        Backward(images, dLogits, batch, ws);
    }

    /// <summary>
    /// The mean training loss over the steps since the last read (NaN if none), and a check that no update diverged
    /// (synchronises).
    /// </summary>
    /// <exception cref="TrainingDivergedException">A gradient norm was not finite.</exception>
    public double ReadLoss()
    {
        if (_training is null || _optimizer is null || _lossSteps == 0) return double.NaN;
        var rows = _training.RowLoss.GetAsArray1D();
        double sum = 0;
        foreach (float v in rows) sum += v;
        double loss = sum / _lossSteps;
        _lossSteps = 0;
        _training.RowLoss.MemSetToZero();
        int bad = _optimizer.DivergedStep();
        if (bad >= 0)
        {
            var tensors = _optimizer.NonFiniteGradientTensors();
            throw new TrainingDivergedException(
                $"classifier training diverged at step {bad}: non-finite gradients in {string.Join(", ", tensors)} (loss {loss})", bad, tensors);
        }

        return loss;
    }

    /// <summary>Logits (count x Classes) of host images (count x Input) with the EMA weights.</summary>
    public float[] Logits(ReadOnlySpan<float> images, int count) => Infer(images, count, Config.Layers, Config.Classes);

    /// <summary>The feature vectors (count x <see cref="ClassifierConfig.FeatureSize"/>) of host images with the EMA weights.</summary>
    public float[] Features(ReadOnlySpan<float> images, int count) => Infer(images, count, Config.Layers - 1, Config.FeatureSize);

    /// <summary>The fraction of <paramref name="labels"/> that the arg-max of the logits matches.</summary>
    public double Accuracy(ReadOnlySpan<float> images, ReadOnlySpan<byte> labels)
    {
        int count = labels.Length;
        var logits = Logits(images, count);
        int correct = 0;
        for (int i = 0; i < count; i++)
        {
            if (ArgMax(logits.AsSpan(i * Config.Classes, Config.Classes)) == labels[i]) correct++;
        }

        return (double)correct / count;
    }

    /// <summary>
    /// Float64 reference of the forward pass from a downloaded weight buffer, up to <paramref name="layers"/> layers
    /// (all of them: logits; one fewer: features).
    /// </summary>
    public static double[] ForwardReference(ClassifierConfig config, ParameterStore store, ReadOnlySpan<double> weights,
        ReadOnlySpan<double> images, int count, int layers)
    {
        double[] x = images.ToArray();
        for (int l = 0; l < layers; l++)
        {
            var w = store.Tensor($"layers.{l}.weight");
            var b = store.Tensor($"layers.{l}.bias");
            bool last = l == config.Layers - 1;
            x = Linear.ForwardReference(x, weights.Slice((int)w.Offset, (int)w.Length), weights.Slice((int)b.Offset, (int)b.Length),
                count, config.LayerInput(l), config.LayerOutput(l), last ? Activation.None : Activation.Silu, out _);
        }

        return x;
    }

    /// <inheritdoc />
    public void Dispose()
    {
        _training?.Dispose();
        _inference?.Dispose();
        _optimizer?.Dispose();
        Parameters.Dispose();
    }

    private static int ArgMax(ReadOnlySpan<float> values)
    {
        int best = 0;
        for (int i = 1; i < values.Length; i++)
        {
            if (values[i] > values[best]) best = i;
        }

        return best;
    }

    private float[] Infer(ReadOnlySpan<float> images, int count, int layers, int width)
    {
        if (count <= 0) throw new ArgumentException($"classifier: image count must be positive, got {count}");
        if (images.Length != (long)count * Config.Input) throw new ArgumentException($"classifier: {images.Length} values are not {count} images of {Config.Input}");
        _inference ??= new InferenceWorkspace(Device, Config, InferenceBatch);
        var ws = _inference;
        var result = new float[(long)count * width];
        for (int start = 0; start < count; start += InferenceBatch)
        {
            int batch = Math.Min(InferenceBatch, count - start);
            ArrayView<float> input = ws.Input.View.SubView(0, (long)batch * Config.Input);
            input.CopyFromCPU(images.Slice(start * Config.Input, batch * Config.Input));
            ArrayView<float> output = ws.Output.View.SubView(0, (long)batch * width);
            Forward(ParameterBuffer.Ema, input, batch, layers, output, ws.Activations, []);
            output.CopyToCPU(result.AsSpan(start * width, batch * width));
        }

        return result;
    }

    /// <summary>
    /// Runs layers 0 .. <paramref name="layers"/>-1, the last one into <paramref name="output"/> (SiLU unless it is
    /// the logit layer). Training passes one activation and pre-activation buffer per hidden layer; inference two
    /// ping-pong activation buffers and no pre-activations.
    /// </summary>
    private void Forward(ParameterBuffer buffer, ArrayView<float> input, int batch, int layers, ArrayView<float> output,
        MemoryBuffer1D<float, Stride1D.Dense>[] activations, MemoryBuffer1D<float, Stride1D.Dense>[] preActivations)
    {
        bool training = preActivations.Length > 0;
        for (int l = 0; l < layers; l++)
        {
            int outF = Config.LayerOutput(l);
            bool logitLayer = l == Config.Layers - 1;
            ArrayView<float> result = l == layers - 1 ? output : activations[training ? l : l % 2].View.SubView(0, (long)batch * outF);
            ArrayView<float> pre = training && !logitLayer ? preActivations[l].View.SubView(0, (long)batch * outF) : default(ArrayView<float>);
            _linear.Forward(input, Parameters.View(buffer, _weights[l]), Parameters.View(buffer, _biases[l]), result, pre,
                batch, Config.LayerInput(l), outF, logitLayer ? Activation.None : Activation.Silu);
            input = result;
        }
    }

    private void Backward(ArrayView<float> images, ArrayView<float> dLogits, int batch, TrainingWorkspace ws)
    {
        var current = dLogits;
        for (int l = Config.Layers - 1; l >= 0; l--)
        {
            int inF = Config.LayerInput(l), outF = Config.LayerOutput(l);
            ArrayView<float> input = l == 0 ? images : ws.Activations[l - 1].View.SubView(0, (long)batch * inF);
            _linear.BackwardWeights(input, current, Parameters.View(ParameterBuffer.Gradients, _weights[l]),
                Parameters.View(ParameterBuffer.Gradients, _biases[l]), batch, inF, outF);
            if (l == 0) break;
            // Gradient with respect to the previous layer's pre-activation, its SiLU derivative fused in.
            ArrayView<float> next = ws.Gradients[l % 2].View.SubView(0, (long)batch * inF);
            _linear.BackwardInput(current, Parameters.View(ParameterBuffer.Weights, _weights[l]), next,
                ws.PreActivations[l - 1].View.SubView(0, (long)batch * inF), batch, inF, outF, Activation.Silu);
            current = next;
        }
    }

    /// <summary>Per-layer activations and pre-activations, logits, their gradient and the row losses of one batch size.</summary>
    private sealed class TrainingWorkspace : IDisposable
    {
        public TrainingWorkspace(ComputeDevice device, ClassifierConfig config, int capacity)
        {
            var a = device.Accelerator;
            Capacity = capacity;
            Activations = config.Hidden.Select(h => a.Allocate1D<float>((long)capacity * h)).ToArray();
            PreActivations = config.Hidden.Select(h => a.Allocate1D<float>((long)capacity * h)).ToArray();
            Gradients = [a.Allocate1D<float>((long)capacity * config.MaxWidth), a.Allocate1D<float>((long)capacity * config.MaxWidth)];
            Logits = a.Allocate1D<float>((long)capacity * config.Classes);
            DLogits = a.Allocate1D<float>((long)capacity * config.Classes);
            RowLoss = a.Allocate1D<float>(capacity);
            RowLoss.MemSetToZero();
        }

        public int Capacity { get; }

        public MemoryBuffer1D<float, Stride1D.Dense>[] Activations { get; }

        public MemoryBuffer1D<float, Stride1D.Dense>[] PreActivations { get; }

        public MemoryBuffer1D<float, Stride1D.Dense>[] Gradients { get; }

        public MemoryBuffer1D<float, Stride1D.Dense> Logits { get; }

        public MemoryBuffer1D<float, Stride1D.Dense> DLogits { get; }

        public MemoryBuffer1D<float, Stride1D.Dense> RowLoss { get; }

        public void Dispose()
        {
            foreach (var b in Activations.Concat(PreActivations).Concat(Gradients)) b.Dispose();
            Logits.Dispose();
            DLogits.Dispose();
            RowLoss.Dispose();
        }
    }

    /// <summary>An input batch, two ping-pong activation buffers and the output of one inference batch size.</summary>
    private sealed class InferenceWorkspace : IDisposable
    {
        public InferenceWorkspace(ComputeDevice device, ClassifierConfig config, int capacity)
        {
            var a = device.Accelerator;
            Input = a.Allocate1D<float>((long)capacity * config.Input);
            Activations = [a.Allocate1D<float>((long)capacity * config.MaxWidth), a.Allocate1D<float>((long)capacity * config.MaxWidth)];
            Output = a.Allocate1D<float>((long)capacity * config.MaxWidth);
        }

        public MemoryBuffer1D<float, Stride1D.Dense> Input { get; }

        public MemoryBuffer1D<float, Stride1D.Dense>[] Activations { get; }

        public MemoryBuffer1D<float, Stride1D.Dense> Output { get; }

        public void Dispose()
        {
            Input.Dispose();
            foreach (var b in Activations) b.Dispose();
            Output.Dispose();
        }
    }
}
