using ILGPU;
using PoissonFlow.Kernels.Device;

namespace PoissonFlow.Network;

/// <summary>
/// A field network that <see cref="Trainer"/> can optimise and <see cref="Checkpoint"/> can save: its parameters
/// live in one <see cref="ParameterStore"/>, the training forward pass keeps its activations, and the backward pass
/// ACCUMULATES parameter gradients (so micro-batches add up). The MLP and the U-Net (<c>UNetNetwork</c>) implement it.
/// </summary>
public interface ITrainableNetwork : IFieldPredictor, IDisposable
{
    /// <summary>The device the network runs on.</summary>
    ComputeDevice Device { get; }

    /// <summary>Short model-type tag written to checkpoints (e.g. <c>mlp</c>).</summary>
    string ModelType { get; }

    /// <summary>The model configuration as JSON (written to checkpoints; a checkpoint only loads into an equal config).</summary>
    string ConfigJson { get; }

    /// <summary>Weights, gradients, Adam moments and EMA weights.</summary>
    ParameterStore Parameters { get; }

    /// <summary>Values per predicted row: N + 1 for PFGM.</summary>
    int OutputWidth { get; }

    /// <summary>
    /// Tells the network which optimiser step its next <see cref="ForwardTraining"/> belongs to. Stochastic layers
    /// (dropout) key their masks on it, so a run resumed from a checkpoint draws exactly the masks an uninterrupted run
    /// would; micro-batches of one step share the step. <see cref="Trainer"/> calls it before every training forward
    /// pass; networks without randomness ignore it.
    /// </summary>
    void SetTrainingStep(long step)
    {
    }

    /// <summary>
    /// Forward pass with the live weights for <paramref name="batch"/> rows, keeping what <see cref="Backward"/> needs.
    /// Returns the prediction (batch x <see cref="OutputWidth"/>), valid until the next training forward pass.
    /// </summary>
    ArrayView<float> ForwardTraining(ArrayView<float> points, ArrayView<float> z, int batch);

    /// <summary>
    /// Backward pass of the last <see cref="ForwardTraining"/>: <paramref name="dPrediction"/> (batch x
    /// <see cref="OutputWidth"/>) is dLoss/dPrediction; parameter gradients are added to the gradient buffer.
    /// </summary>
    void Backward(ArrayView<float> dPrediction, int batch);
}
