using System.Text.Json.Serialization;
using ILGPU;
using ILGPU.Runtime;
using PoissonFlow.Kernels;
using PoissonFlow.Kernels.Device;

namespace PoissonFlow.Network;

/// <summary>How the inner network's output becomes the posterior mean ȳ.</summary>
[JsonConverter(typeof(JsonStringEnumConverter<PosteriorMeanForm>))]
public enum PosteriorMeanForm
{
    /// <summary>The inner network outputs ȳ itself.</summary>
    Direct,

    /// <summary>
    /// The inner network outputs a residual F and ȳ = k x + s F, with k = c²/(c² + z²) and s = √(|x|² + z² + c²) the
    /// length the inputs are divided by (<see cref="RadialScale.Skip"/>; EDM's c_skip with σ = z, σ_data = c). Near the
    /// plane and the data ȳ ≈ x (the Poisson kernel is symmetric), so F ≈ 0 there: the network no longer has to
    /// rebuild the identity through the radial scaling, which the direct form gets wrong by several hundredths of the
    /// data scale, more than the z the sampler stops at. Far above the data ȳ ≈ its centre and F ≈ 0 too; far out
    /// sideways F ≈ −x/|x| is a bounded direction.
    /// </summary>
    Residual,
}

/// <summary>
/// The PFGM field network for low-dimensional data, in the "x − y" form (<see cref="PosteriorMeanField"/>): the
/// inner network predicts the posterior mean ȳ(x, z) (trained on the target (ȳ, 0) that
/// <see cref="Training.PfgmTraining"/> builds with <see cref="Training.PfgmTarget.PosteriorMean"/>), and
/// <see cref="Predict"/> turns it into the normalised field √N (ȳ − x, −z)/|(ȳ − x, z)| the samplers integrate.
/// In 2-D the field's v_z is tiny wherever |x| ≫ z (a large share of the heavy-tailed prior), and a network fitted to
/// the field directly gets its sign and size wrong there; ȳ stays inside the data's hull everywhere. The x input first
/// goes through <see cref="RadialScale"/> (x / √(|x|² + z² + c²)), so the inner network sees bounded inputs although
/// points lie up to hundreds of data scales away. With <see cref="PosteriorMeanForm.Residual"/> the inner network
/// predicts the residual of a skip connection instead of ȳ itself. Parameters, checkpoints and the model type are the
/// inner network's; the scale c and the form are settings of the run and must be the same when sampling.
/// </summary>
public sealed class PosteriorMeanNetwork : ITrainableNetwork
{
    private readonly RadialScale _scaleOp;
    private readonly PosteriorMeanField _fieldOp;
    private MemoryBuffer1D<float, Stride1D.Dense>? _scaled, _mean;

    /// <summary>Wraps <paramref name="inner"/> (owned: disposed with this) with scale <paramref name="scale"/>, the direct form.</summary>
    public PosteriorMeanNetwork(ITrainableNetwork inner, float scale)
        : this(inner, scale, PosteriorMeanForm.Direct)
    {
    }

    /// <summary>Wraps <paramref name="inner"/> (owned: disposed with this) with scale <paramref name="scale"/> and <paramref name="form"/>.</summary>
    public PosteriorMeanNetwork(ITrainableNetwork inner, float scale, PosteriorMeanForm form)
    {
        ArgumentNullException.ThrowIfNull(inner);
        if (!(scale > 0) || !float.IsFinite(scale)) throw new ArgumentException($"radial scale must be positive and finite, got {scale}");
        if (!Enum.IsDefined(form)) throw new ArgumentException($"unknown posterior-mean form {form}");
        Inner = inner;
        Scale = scale;
        Form = form;
        _scaleOp = RadialScale.For(inner.Device);
        _fieldOp = PosteriorMeanField.For(inner.Device);
    }

    /// <summary>The wrapped network.</summary>
    public ITrainableNetwork Inner { get; }

    /// <summary>c, the scale near the data.</summary>
    public float Scale { get; }

    /// <summary>Whether the inner network predicts ȳ or the residual of the skip connection.</summary>
    public PosteriorMeanForm Form { get; }

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
        var mean = Ensure(ref _mean, (long)batch * OutputWidth);
        Inner.Predict(ScaleInput(points, z, batch), z, mean, batch);
        if (Form == PosteriorMeanForm.Residual) _scaleOp.Skip(points, z, mean, mean, batch, Dim, Scale);
        _fieldOp.Field(mean, points, z, output, batch, Dim);
    }

    /// <summary>
    /// The inner network's raw output with the live weights, for training against <see cref="TrainingTarget"/>: (ȳ, 0)
    /// in the direct form, (F, 0) with F = (ȳ − k x)/s in the residual form. The residual's loss is the error of ȳ in
    /// units of s (EDM's loss weight 1/c_out²): near the data an error counts against the data scale c, far away
    /// against the distance, which is also about how much an error there moves the sample in the end.
    /// </summary>
    public ArrayView<float> ForwardTraining(ArrayView<float> points, ArrayView<float> z, int batch) =>
        Inner.ForwardTraining(ScaleInput(points, z, batch), z, batch);

    /// <inheritdoc />
    public void Backward(ArrayView<float> dPrediction, int batch) => Inner.Backward(dPrediction, batch);

    /// <summary>
    /// Writes the target rows (batch x (dim + 1)) that <see cref="ForwardTraining"/> is compared with, from the
    /// posterior means <paramref name="mean"/> (batch x dim) of the perturbed <paramref name="points"/> at <paramref name="z"/>.
    /// </summary>
    public void TrainingTarget(ArrayView<float> mean, ArrayView<float> points, ArrayView<float> z, ArrayView<float> target, int batch)
    {
        if (Form == PosteriorMeanForm.Residual) _scaleOp.Residual(points, z, mean, target, batch, Dim, Scale);
        else _fieldOp.Target(mean, target, batch, Dim);
    }

    /// <inheritdoc />
    public void SetTrainingStep(long step) => Inner.SetTrainingStep(step);

    /// <inheritdoc />
    public void Dispose()
    {
        _scaled?.Dispose();
        _mean?.Dispose();
        Inner.Dispose();
    }

    private ArrayView<float> Ensure(ref MemoryBuffer1D<float, Stride1D.Dense>? buffer, long length)
    {
        if (buffer is null || buffer.Length < length)
        {
            buffer?.Dispose();
            buffer = Device.Accelerator.Allocate1D<float>(length);
        }

        return buffer.View.SubView(0, length);
    }

    private ArrayView<float> ScaleInput(ArrayView<float> points, ArrayView<float> z, int batch)
    {
        var view = Ensure(ref _scaled, (long)batch * Dim);
        _scaleOp.Apply(points, z, view, batch, Dim, Scale);
        return view;
    }
}
