using ILGPU;
using ILGPU.Runtime;
using PoissonFlow.Kernels;
using PoissonFlow.Kernels.Device;
using PoissonFlow.Network;

namespace PoissonFlow.Sampling;

/// <summary>How far a forward-then-backward trip moved the points.</summary>
/// <param name="MaxError">Largest Euclidean distance between a start point and its round trip.</param>
/// <param name="RmsError">Root mean square of those distances.</param>
/// <param name="Encode">Cost of the forward (encode) integration.</param>
/// <param name="Decode">Cost of the backward (decode) integration.</param>
public sealed record RoundTripResult(double MaxError, double RmsError, OdeResult Encode, OdeResult Decode);

/// <summary>
/// PFGM sampling for batches of one shape: draws the prior on the hemisphere z = z_max and integrates the backward
/// ODE to z_min with any <see cref="IFieldPredictor"/>; also encodes data to the hemisphere and measures round trips.
/// Buffers are allocated once in the constructor and reused by every call.
/// </summary>
public sealed class PfgmSampler : IDisposable
{
    private readonly ComputeDevice _device;
    private readonly MemoryBuffer1D<float, Stride1D.Dense> _points;

    /// <summary>A sampler for batches of <paramref name="batch"/> points of dimension <paramref name="dim"/>.</summary>
    public PfgmSampler(ComputeDevice device, int batch, int dim)
    {
        _device = device;
        Ode = new PfgmOde(device, batch, dim);
        _points = device.Accelerator.Allocate1D<float>((long)batch * dim);
    }

    /// <summary>The ODE integrator (its buffers are this sampler's).</summary>
    public PfgmOde Ode { get; }

    /// <summary>Points per batch.</summary>
    public int Batch => Ode.Batch;

    /// <summary>N, the data dimension.</summary>
    public int Dim => Ode.Dim;

    /// <summary>
    /// Draws one batch into <paramref name="output"/> (B x N on the device): the PFGM prior at z_max with radii clipped
    /// to [1, <paramref name="upperNorm"/>], then the backward ODE.
    /// </summary>
    /// <param name="predictor">The field.</param>
    /// <param name="output">B x N values on the device.</param>
    /// <param name="options">Solver settings.</param>
    /// <param name="upperNorm">The prior's radius clip.</param>
    /// <param name="seed">Seed of the prior draw.</param>
    /// <param name="progress">Called after every ODE step with the fraction of the ln z range covered.</param>
    /// <param name="cancellation">Checked before every ODE step.</param>
    public OdeResult Sample(IFieldPredictor predictor, ArrayView<float> output, PfgmOdeOptions options, float upperNorm, ulong seed,
        Action<double>? progress = null, CancellationToken cancellation = default)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        if (!(upperNorm >= 1)) throw new ArgumentException($"sampler: upper norm must be at least 1 (the lower clip), got {upperNorm}");
        Prior.For(_device).Pfgm(output, Batch, Dim, (float)options.ZMax, upperNorm, seed);
        return Ode.Decode(predictor, output, options, progress, cancellation);
    }

    /// <summary>Host convenience: one batch of samples as a B x N array, with the ODE's cost.</summary>
    /// <param name="predictor">The field.</param>
    /// <param name="options">Solver settings.</param>
    /// <param name="upperNorm">The prior's radius clip.</param>
    /// <param name="seed">Seed of the prior draw.</param>
    /// <param name="progress">Called after every ODE step with the fraction of the ln z range covered.</param>
    /// <param name="cancellation">Checked before every ODE step.</param>
    public (float[] Samples, OdeResult Result) Sample(IFieldPredictor predictor, PfgmOdeOptions options, float upperNorm = 3000f, ulong seed = 0,
        Action<double>? progress = null, CancellationToken cancellation = default)
    {
        var result = Sample(predictor, _points.View, options, upperNorm, seed, progress, cancellation);
        return (_points.GetAsArray1D(), result);
    }

    /// <summary>Encodes B x N host points (at z_min) to the hemisphere at z_max; returns the codes.</summary>
    /// <param name="predictor">The field.</param>
    /// <param name="points">B x N data points.</param>
    /// <param name="options">Solver settings.</param>
    /// <param name="progress">Called after every ODE step with the fraction of the ln z range covered.</param>
    /// <param name="cancellation">Checked before every ODE step.</param>
    public (float[] Codes, OdeResult Result) Encode(IFieldPredictor predictor, float[] points, PfgmOdeOptions options,
        Action<double>? progress = null, CancellationToken cancellation = default)
    {
        CopyIn(points);
        var result = Ode.Encode(predictor, _points.View, options, progress, cancellation);
        return (_points.GetAsArray1D(), result);
    }

    /// <summary>Decodes B x N host hemisphere points (at z_max) to z_min; returns the samples.</summary>
    /// <param name="predictor">The field.</param>
    /// <param name="codes">B x N points on the plane z = z_max.</param>
    /// <param name="options">Solver settings.</param>
    /// <param name="progress">Called after every ODE step with the fraction of the ln z range covered.</param>
    /// <param name="cancellation">Checked before every ODE step.</param>
    public (float[] Samples, OdeResult Result) Decode(IFieldPredictor predictor, float[] codes, PfgmOdeOptions options,
        Action<double>? progress = null, CancellationToken cancellation = default)
    {
        CopyIn(codes);
        var result = Ode.Decode(predictor, _points.View, options, progress, cancellation);
        return (_points.GetAsArray1D(), result);
    }

    /// <summary>Encodes <paramref name="points"/> forward to z_max, decodes them back to z_min and measures the distance moved.</summary>
    public RoundTripResult RoundTrip(IFieldPredictor predictor, float[] points, PfgmOdeOptions options)
    {
        CopyIn(points);
        var encode = Ode.Encode(predictor, _points.View, options);
        var decode = Ode.Decode(predictor, _points.View, options);
        var back = _points.GetAsArray1D();
        var (max, rms) = RoundTripError(points, back, Dim);
        return new RoundTripResult(max, rms, encode, decode);
    }

    /// <summary>Largest and RMS Euclidean distance between corresponding rows of two B x N arrays.</summary>
    public static (double Max, double Rms) RoundTripError(ReadOnlySpan<float> start, ReadOnlySpan<float> end, int dim)
    {
        if (start.Length != end.Length || dim <= 0 || start.Length % dim != 0)
        {
            throw new ArgumentException($"round trip: {start.Length} and {end.Length} values are not matching rows of {dim}");
        }

        double max = 0, sumSquares = 0;
        int rows = start.Length / dim;
        for (int b = 0; b < rows; b++)
        {
            double d2 = 0;
            for (int i = b * dim; i < (b + 1) * dim; i++) d2 += (double)(end[i] - start[i]) * (end[i] - start[i]);
            max = Math.Max(max, Math.Sqrt(d2));
            sumSquares += d2;
        }

        return (max, Math.Sqrt(sumSquares / rows));
    }

    private void CopyIn(float[] points)
    {
        ArgumentNullException.ThrowIfNull(points);
        if (points.Length != (long)Batch * Dim) throw new ArgumentException($"sampler: {points.Length} values for a batch of {Batch}x{Dim}");
        _points.View.CopyFromCPU(points);
    }

    /// <inheritdoc />
    public void Dispose()
    {
        _points.Dispose();
        Ode.Dispose();
    }
}
