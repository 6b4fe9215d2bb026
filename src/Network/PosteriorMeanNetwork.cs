using ILGPU;
using ILGPU.Runtime;
using PoissonFlow.Kernels;
using PoissonFlow.Kernels.Device;

namespace PoissonFlow.Network;

/// <summary>
/// The PFGM field network for low-dimensional data, in the "x − y" form (<see cref="PosteriorMeanField"/>): the
/// inner network predicts the posterior mean ȳ(x, z) (trained on the target (ȳ, 0) that
/// <see cref="Training.PfgmTraining"/> builds with <see cref="Training.PfgmTarget.PosteriorMean"/>), and
/// <see cref="Predict"/> turns it into the normalised field √N (ȳ − x, −z)/|(ȳ − x, z)| the samplers integrate.
/// In 2-D the field's v_z is tiny wherever |x| ≫ z (a large share of the heavy-tailed prior), and a network fitted to
/// the field directly gets its sign and size wrong there; ȳ stays inside the data's hull everywhere. The x input first
/// goes through <see cref="RadialScale"/> (x / √(|x|² + z² + c²)), so the inner network sees bounded inputs although
/// points lie up to hundreds of data scales away. Parameters, checkpoints and the model type are the inner network's;
/// the scale c is a setting of the run and must be the same when sampling.
/// </summary>
public sealed class PosteriorMeanNetwork : ITrainableNetwork
{
    private readonly RadialScale _scaleOp;
    private readonly PosteriorMeanField _fieldOp;
    private MemoryBuffer1D<float, Stride1D.Dense>? _scaled, _mean;

    /// <summary>Wraps <paramref name="inner"/> (owned: disposed with this) with scale <paramref name="scale"/>.</summary>
    public PosteriorMeanNetwork(ITrainableNetwork inner, float scale)
    {
        ArgumentNullException.ThrowIfNull(inner);
        if (!(scale > 0) || !float.IsFinite(scale)) throw new ArgumentException($"radial scale must be positive and finite, got {scale}");
        Inner = inner;
        Scale = scale;
        _scaleOp = RadialScale.For(inner.Device);
        _fieldOp = PosteriorMeanField.For(inner.Device);
    }

    /// <summary>The wrapped network.</summary>
    public ITrainableNetwork Inner { get; }

    /// <summary>c, the scale near the data.</summary>
    public float Scale { get; }

    /// <inheritdoc />
    public int Dim => Inner.Dim;

    /// <inheritdoc />
    public ComputeDevice Device => Inner.Device;

    /// <inheritdoc />
    public string ModelType => Inner.ModelType;

    /// <inheritdoc />
    public string ConfigJson => Inner.ConfigJson;

    /// <inheritdoc />
    public ParameterStore Parameters => Inner.Parameters;

    /// <inheritdoc />
    public int OutputWidth => Inner.OutputWidth;

    /// <summary>The normalised PFGM field from the predicted posterior mean (see the class summary).</summary>
    public void Predict(ArrayView<float> points, ArrayView<float> z, ArrayView<float> output, int batch)
    {
        long needed = (long)batch * OutputWidth;
        if (_mean is null || _mean.Length < needed)
        {
            _mean?.Dispose();
            _mean = Device.Accelerator.Allocate1D<float>(needed);
        }

        var mean = _mean.View.SubView(0, needed);
        Inner.Predict(ScaleInput(points, z, batch), z, mean, batch);
        _fieldOp.Field(mean, points, z, output, batch, Dim);
    }

    /// <summary>The inner network's raw prediction (ȳ, then an unused value) with the live weights, for training.</summary>

    /// <inheritdoc />
    public ArrayView<float> ForwardTraining(ArrayView<float> points, ArrayView<float> z, int batch) =>
        Inner.ForwardTraining(ScaleInput(points, z, batch), z, batch);

    /// <inheritdoc />
    public void Backward(ArrayView<float> dPrediction, int batch) => Inner.Backward(dPrediction, batch);

    /// <inheritdoc />
    public void SetTrainingStep(long step) => Inner.SetTrainingStep(step);

    /// <inheritdoc />
    public void Dispose()
    {
        _scaled?.Dispose();
        _mean?.Dispose();
        Inner.Dispose();
    }

    private ArrayView<float> ScaleInput(ArrayView<float> points, ArrayView<float> z, int batch)
    {
        long needed = (long)batch * Dim;
        if (_scaled is null || _scaled.Length < needed)
        {
            _scaled?.Dispose();
            _scaled = Device.Accelerator.Allocate1D<float>(needed);
        }

        var view = _scaled.View.SubView(0, needed);
        _scaleOp.Apply(points, z, view, batch, Dim, Scale);
        return view;
    }
}
