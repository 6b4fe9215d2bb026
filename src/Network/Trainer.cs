using ILGPU;
using ILGPU.Runtime;
using PoissonFlow.Kernels;

namespace PoissonFlow.Network;

/// <summary>Options of a <see cref="Trainer"/>.</summary>
/// <param name="Adam">Optimiser, warmup, clipping and EMA settings.</param>
/// <param name="ReduceMean">Loss per sample: false for 0.5 * sum of squares (PFGM's CIFAR/CelebA configs), true for the mean.</param>
/// <param name="LossInterval">The host reads the loss (and the divergence status) every this many steps, and after the
/// first step; in between, a step is launches only, with no synchronisation.</param>
public sealed record TrainerOptions(AdamOptions Adam, bool ReduceMean = false, int LossInterval = 10)
{
    /// <summary>PFGM's defaults: Adam 2e-4, warmup 5000, clip 1, EMA 0.9999, 0.5 * sum loss.</summary>
    public static TrainerOptions Pfgm { get; } = new(new AdamOptions());
}

/// <summary>Thrown when a gradient becomes NaN or infinite; the message names the step and the tensors affected.</summary>
public sealed class TrainingDivergedException : Exception
{
    /// <summary>Creates the exception.</summary>
    public TrainingDivergedException(string message, long step, IReadOnlyList<string> tensors) : base(message)
    {
        Step = step;
        Tensors = tensors;
    }

    /// <summary>The first step whose gradient norm was not finite (0-based count of completed updates).</summary>
    public long Step { get; }

    /// <summary>Tensors whose gradients hold NaN or infinity.</summary>
    public IReadOnlyList<string> Tensors { get; }
}

/// <summary>
/// Trains an <see cref="ITrainableNetwork"/> on the field regression, llm.c style. One <see cref="Step"/> is: training
/// forward pass, fused loss+gradient, backward pass (gradients accumulate), gradient-norm partials, and the single
/// fused clip+Adam+zero-grad+EMA launch. Nothing is read back except every <see cref="TrainerOptions.LossInterval"/>
/// steps, when the mean loss over the interval and the divergence status are fetched (one small copy each). For
/// micro-batching call <see cref="Accumulate"/> per micro-batch with weight micro/total, then <see cref="Update"/>.
/// </summary>
public sealed class Trainer : IDisposable
{
    private readonly FieldLoss _loss;
    private readonly ParameterOptimizer _optimizer;
    private MemoryBuffer1D<float, Stride1D.Dense>? _dPrediction;
    private MemoryBuffer1D<float, Stride1D.Dense>? _rowLoss;
    private int _capacity;
    private int _lossAccumulations;

    /// <summary>Creates a trainer for <paramref name="network"/> (which it does not own).</summary>
    public Trainer(ITrainableNetwork network, TrainerOptions options)
    {
        if (options.LossInterval < 1) throw new ArgumentException($"trainer: loss interval must be at least 1, got {options.LossInterval}");
        Network = network;
        Options = options;
        _loss = FieldLoss.For(network.Device);
        _optimizer = new ParameterOptimizer(network.Parameters, options.Adam);
    }

    /// <summary>The network being trained.</summary>
    public ITrainableNetwork Network { get; }

    /// <summary>The options.</summary>
    public TrainerOptions Options { get; }

    /// <summary>Completed optimiser updates (the step counter the warmup, bias corrections and EMA use).</summary>
    public long StepCount => _optimizer.StepCount;

    /// <summary>Mean loss over the last read interval (NaN before the first read).</summary>
    public float LastLoss { get; private set; } = float.NaN;

    /// <summary>The <see cref="StepCount"/> at which <see cref="LastLoss"/> was read.</summary>
    public long LastLossStep { get; private set; }

    /// <summary>Kernel launches of one <see cref="Step"/> with no micro-batching: forward, loss, backward, norm, Adam.</summary>
    public int LaunchesPerStep => Network is Mlp mlp ? mlp.ForwardLaunches + 1 + mlp.BackwardLaunches + 2 : -1;

    /// <summary>
    /// One training step on a batch already on the device: <paramref name="points"/> (batch x N), <paramref name="z"/>
    /// (batch), <paramref name="target"/> (batch x (N+1)). Returns <see cref="LastLoss"/>, refreshed when this step
    /// is a read step (the first, then every <see cref="TrainerOptions.LossInterval"/>).
    /// </summary>
    /// <exception cref="TrainingDivergedException">A read step found a non-finite gradient.</exception>
    public float Step(ArrayView<float> points, ArrayView<float> z, ArrayView<float> target, int batch)
    {
        Accumulate(points, z, target, batch);
        return Update();
    }

    /// <summary>
    /// Forward, loss and backward for one (micro-)batch; gradients add to those already accumulated. <paramref name="weight"/>
    /// scales this batch's loss (use micro-batch size / total batch size so the sum equals the full batch's gradient).
    /// </summary>
    public void Accumulate(ArrayView<float> points, ArrayView<float> z, ArrayView<float> target, int batch, float weight = 1f)
    {
        EnsureCapacity(batch);
        int width = Network.OutputWidth;
        Network.SetTrainingStep(StepCount);
        var prediction = Network.ForwardTraining(points, z, batch);
        var dPrediction = _dPrediction!.View.SubView(0, (long)batch * width);
        _loss.ForwardBackward(prediction, target, dPrediction, _rowLoss!.View, batch, width, Options.ReduceMean, weight);
        Network.Backward(dPrediction, batch);
    }

    /// <summary>
    /// Applies the accumulated gradients: norm partials, then the fused clip+Adam+EMA launch (which zeroes the
    /// gradients). Reads the loss and status on read steps. Returns <see cref="LastLoss"/>.
    /// </summary>
    /// <exception cref="TrainingDivergedException">A read step found a non-finite gradient.</exception>
    public float Update()
    {
        _optimizer.Update();
        _lossAccumulations++;
        if (StepCount == 1 || StepCount % Options.LossInterval == 0) ReadLoss();
        return LastLoss;
    }

    /// <summary>
    /// Synchronises, sets <see cref="LastLoss"/> to the mean loss of the steps since the previous read, and checks
    /// for divergence. Returns the loss.
    /// </summary>
    /// <exception cref="TrainingDivergedException">A gradient norm was not finite.</exception>
    public float ReadLoss()
    {
        if (_rowLoss is null || _lossAccumulations == 0) return LastLoss;
        var rows = _rowLoss.GetAsArray1D();
        double sum = 0;
        foreach (float v in rows) sum += v;
        LastLoss = (float)(sum / _lossAccumulations);
        LastLossStep = StepCount;
        _lossAccumulations = 0;
        _rowLoss.MemSetToZero();
        CheckFinite();
        return LastLoss;
    }

    /// <summary>
    /// Throws if any update since the trainer started saw a non-finite gradient norm, naming the step and the tensors
    /// whose gradients are not finite (they are left in place for this purpose). Synchronises.
    /// </summary>
    /// <exception cref="TrainingDivergedException">A gradient norm was not finite.</exception>
    public void CheckFinite()
    {
        int bad = _optimizer.DivergedStep();
        if (bad < 0) return;
        var tensors = _optimizer.NonFiniteGradientTensors();
        string which = tensors.Count > 0 ? string.Join(", ", tensors) : "(none left: the gradients were reset)";
        string loss = float.IsFinite(LastLoss) ? "" : $" (the loss is {LastLoss}: check the inputs and targets)";
        throw new TrainingDivergedException(
            $"training diverged at step {bad}: the gradient norm is not finite; non-finite gradients in {which}{loss}; the weights keep their last finite values",
            bad, tensors);
    }

    /// <summary>
    /// Restores the step counter and clears the divergence status and loss accumulators (used when loading a
    /// checkpoint; the parameter buffers are restored by the caller).
    /// </summary>
    internal void Restore(long stepCount)
    {
        _optimizer.Restore(stepCount);
        LastLoss = float.NaN;
        LastLossStep = stepCount;
        _lossAccumulations = 0;
        _rowLoss?.MemSetToZero();
    }

    /// <inheritdoc />
    public void Dispose()
    {
        _optimizer.Dispose();
        _dPrediction?.Dispose();
        _rowLoss?.Dispose();
    }

    private void EnsureCapacity(int batch)
    {
        if (batch <= 0) throw new ArgumentException($"trainer: batch must be positive, got {batch}");
        if (batch <= _capacity) return;
        var accelerator = Network.Device.Accelerator;
        var oldRows = _rowLoss?.GetAsArray1D();
        _dPrediction?.Dispose();
        _rowLoss?.Dispose();
        _dPrediction = accelerator.Allocate1D<float>((long)batch * Network.OutputWidth);
        _rowLoss = accelerator.Allocate1D<float>(batch);
        _rowLoss.MemSetToZero();
        // Keep the loss accumulated so far in this interval.
        if (oldRows is not null) _rowLoss.View.SubView(0, oldRows.Length).CopyFromCPU(oldRows);
        _capacity = batch;
    }
}
