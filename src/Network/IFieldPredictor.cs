using ILGPU;

namespace PoissonFlow.Network;

/// <summary>
/// Anything that predicts the normalised PFGM field at a batch of augmented points: a trained network, or an exact
/// empirical field in tests. Samplers integrate the ODE through this interface.
/// </summary>
public interface IFieldPredictor
{
    /// <summary>N, the data dimension (the field has N+1 components).</summary>
    int Dim { get; }

    /// <summary>
    /// Writes the predicted field for B points: <paramref name="points"/> is B x N, <paramref name="z"/> holds the B
    /// extra coordinates, <paramref name="output"/> receives B x (N+1) values (the x components, then z). Queued on the
    /// device's default stream.
    /// </summary>
    void Predict(ArrayView<float> points, ArrayView<float> z, ArrayView<float> output, int batch);
}
