using ILGPU;
using ILGPU.Runtime;
using PoissonFlow.Kernels;
using PoissonFlow.Kernels.Device;
using PoissonFlow.Network;

namespace PoissonFlow.Sampling;

/// <summary>
/// Integrates the PFGM ODE dx/dz = v_x / (v_z + 1e-5) for a batch of points, backward (decode: hemisphere to data)
/// or forward (encode: data to hemisphere), with the field from any <see cref="IFieldPredictor"/>. All state lives on
/// the device in buffers allocated once for this batch shape; each RK stage is one field evaluation plus one fused
/// kernel, and an adaptive RK45 attempt adds one combine kernel and one read of B error sums. One step size serves the
/// whole batch, as in the official code. Not thread-safe: one integration at a time.
/// </summary>
public sealed class PfgmOde : IDisposable
{
    private const int StageSlots = 7;

    private readonly ComputeDevice _device;
    private readonly OdeSteps _steps;
    private readonly Elementwise _elementwise;
    private readonly MemoryBuffer1D<float, Stride1D.Dense> _stages;
    private readonly MemoryBuffer1D<float, Stride1D.Dense> _field;
    private readonly MemoryBuffer1D<float, Stride1D.Dense> _z;
    private readonly MemoryBuffer1D<float, Stride1D.Dense> _rowSums;
    private readonly MemoryBuffer1D<float, Stride1D.Dense> _stage;
    private readonly float[] _hostRows;
    private MemoryBuffer1D<float, Stride1D.Dense> _x;
    private MemoryBuffer1D<float, Stride1D.Dense> _xNew;
    private int _launches;
    private int _evaluations;
    private int _hostReads;
    private Action<double>? _progress;
    private CancellationToken _cancellation;
    private double _logZFrom, _logZSpan;

    /// <summary>Allocates the state of a batch of <paramref name="batch"/> points of dimension <paramref name="dim"/>.</summary>
    /// <exception cref="ArgumentException">A non-positive size.</exception>
    public PfgmOde(ComputeDevice device, int batch, int dim)
    {
        if (batch <= 0 || dim <= 0) throw new ArgumentException($"ODE: batch {batch} and dim {dim} must be positive");
        _device = device;
        Batch = batch;
        Dim = dim;
        _steps = OdeSteps.For(device);
        _elementwise = Elementwise.For(device);
        var accelerator = device.Accelerator;
        long n = (long)batch * dim;
        _stages = accelerator.Allocate1D<float>(StageSlots * n);
        _field = accelerator.Allocate1D<float>((long)batch * (dim + 1));
        _z = accelerator.Allocate1D<float>(batch);
        _rowSums = accelerator.Allocate1D<float>(batch);
        _stage = accelerator.Allocate1D<float>(n);
        _x = accelerator.Allocate1D<float>(n);
        _xNew = accelerator.Allocate1D<float>(n);
        _hostRows = new float[batch];
    }

    /// <summary>Points per batch.</summary>
    public int Batch { get; }

    /// <summary>N, the data dimension.</summary>
    public int Dim { get; }

    /// <summary>Backward ODE from z_max to z_min: hemisphere points to samples, in place.</summary>
    /// <param name="predictor">The field.</param>
    /// <param name="points">B x N points on the device, updated in place.</param>
    /// <param name="options">Solver settings.</param>
    /// <param name="progress">Called after every step with the fraction of the ln z range covered (0 to 1).</param>
    /// <param name="cancellation">Checked before every step; cancelling leaves <paramref name="points"/> as they were.</param>
    public OdeResult Decode(IFieldPredictor predictor, ArrayView<float> points, PfgmOdeOptions options,
        Action<double>? progress = null, CancellationToken cancellation = default) =>
        Integrate(predictor, points, options.ZMax, options.ZMin, options, progress, cancellation);

    /// <summary>Forward ODE from z_min to z_max: data points to their hemisphere codes, in place.</summary>
    /// <param name="predictor">The field.</param>
    /// <param name="points">B x N points on the device, updated in place.</param>
    /// <param name="options">Solver settings.</param>
    /// <param name="progress">Called after every step with the fraction of the ln z range covered (0 to 1).</param>
    /// <param name="cancellation">Checked before every step; cancelling leaves <paramref name="points"/> as they were.</param>
    public OdeResult Encode(IFieldPredictor predictor, ArrayView<float> points, PfgmOdeOptions options,
        Action<double>? progress = null, CancellationToken cancellation = default) =>
        Integrate(predictor, points, options.ZMin, options.ZMax, options, progress, cancellation);

    /// <summary>
    /// Integrates the B x N <paramref name="points"/> (on the device, updated in place) from z = <paramref name="zFrom"/>
    /// to z = <paramref name="zTo"/> (either direction) with <paramref name="options"/>.Solver. Every step first checks
    /// <paramref name="cancellation"/> and afterwards reports the fraction of the ln z range covered to
    /// <paramref name="progress"/> (neither waits for the device).
    /// </summary>
    /// <exception cref="ArgumentException">Bad options, sizes or z range.</exception>
    /// <exception cref="InvalidOperationException">RK45 could not reach the end (step too small or too many attempts).</exception>
    /// <exception cref="OperationCanceledException">Cancelled between steps; <paramref name="points"/> is unchanged.</exception>
    public OdeResult Integrate(IFieldPredictor predictor, ArrayView<float> points, double zFrom, double zTo, PfgmOdeOptions options,
        Action<double>? progress = null, CancellationToken cancellation = default)
    {
        ArgumentNullException.ThrowIfNull(predictor);
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        if (predictor.Dim != Dim) throw new ArgumentException($"ODE: the predictor has dimension {predictor.Dim}, the sampler {Dim}");
        if (points.Length != (long)Batch * Dim) throw new ArgumentException($"ODE: {points.Length} values for a batch of {Batch}x{Dim}");
        if (!(zFrom > 0) || !(zTo > 0) || !double.IsFinite(zFrom) || !double.IsFinite(zTo) || zFrom == zTo)
        {
            throw new ArgumentException($"ODE: z range [{zFrom}, {zTo}] must be two different positive numbers");
        }

        _launches = _evaluations = _hostReads = 0;
        cancellation.ThrowIfCancellationRequested();
        _progress = progress;
        _cancellation = cancellation;
        _logZFrom = Math.Log(zFrom);
        _logZSpan = Math.Log(zTo) - _logZFrom;
        int accepted, rejected;
        try
        {
            Copy(points, _x.View);
            (accepted, rejected) = options.Solver switch
            {
                OdeSolver.Euler => FixedGrid(predictor, zFrom, zTo, options, heun: false),
                OdeSolver.Heun => FixedGrid(predictor, zFrom, zTo, options, heun: true),
                OdeSolver.Rk4 => RungeKutta4(predictor, zFrom, zTo, options),
                OdeSolver.Rk45 or OdeSolver.Rk45Fixed => DormandPrince45(predictor, zFrom, zTo, options),
                _ => throw new ArgumentException($"ODE: unknown solver {options.Solver}"),
            };
        }
        finally
        {
            _progress = null;
            _cancellation = default;
        }

        Copy(_x.View, points);
        return new OdeResult(_evaluations, accepted, rejected, _launches, _hostReads);
    }

    /// <summary>Throws when cancellation was requested: called before every step, so no step is left half done.</summary>
    private void BeforeStep() => _cancellation.ThrowIfCancellationRequested();

    /// <summary>Reports how much of the ln z range lies behind the state after a step at <paramref name="z"/>.</summary>
    private void AfterStep(double z) => _progress?.Invoke(Math.Clamp((Math.Log(z) - _logZFrom) / _logZSpan, 0, 1));

    /// <summary>
    /// Euler or Heun on the geometric grid z_i = zFrom (zTo/zFrom)^(i/N), each step linear in ln z (as the official
    /// ODE solvers) or in z (as the official PC predictor); Heun's last step is Euler only, as in the official code.
    /// </summary>
    private (int, int) FixedGrid(IFieldPredictor predictor, double zFrom, double zTo, PfgmOdeOptions options, bool heun)
    {
        int steps = options.Steps;
        double ratio = zTo / zFrom;
        double ZAt(int i) => i == steps ? zTo : zFrom * Math.Pow(ratio, (double)i / steps);
        bool inZ = options.EulerVariable == EulerVariable.Z;
        double stepInLogZ = Math.Log(ratio) / steps;
        var x = _x.View;
        FillZ(zFrom);
        for (int i = 0; i < steps; i++)
        {
            BeforeStep();
            double z = ZAt(i), zNext = ZAt(i + 1);
            // In z: dx/dz times dz. In ln z: the drift z dx/dz times dt.
            double step = inZ ? zNext - z : stepInLogZ;
            double scale = inZ ? 1 : z, scaleNext = inZ ? 1 : zNext;
            Evaluate(predictor, x);
            if (heun && i < steps - 1)
            {
                Stage(0, x, _stage.View, Drift(z, scale, options), StageCombination.Create([], [], step, zNext));
                Evaluate(predictor, _stage.View);
                Stage(1, x, x, Drift(zNext, scaleNext, options), StageCombination.Create([step / 2], [0], step / 2, zNext));
            }
            else
            {
                Stage(0, x, x, Drift(z, scale, options), StageCombination.Create([], [], step, zNext));
            }

            AfterStep(zNext);
        }

        return (steps, 0);
    }

    /// <summary>Classical RK4 in t = ln z with uniform steps.</summary>
    private (int, int) RungeKutta4(IFieldPredictor predictor, double zFrom, double zTo, PfgmOdeOptions options)
    {
        int steps = options.Steps;
        double t0 = Math.Log(zFrom), t1 = Math.Log(zTo), h = (t1 - t0) / steps;
        var x = _x.View;
        var stage = _stage.View;
        FillZ(zFrom);
        for (int i = 0; i < steps; i++)
        {
            BeforeStep();
            double t = t0 + (t1 - t0) * i / steps;
            double z = Math.Exp(t), zHalf = Math.Exp(t + h / 2), zEnd = i == steps - 1 ? zTo : Math.Exp(t + h);
            Evaluate(predictor, x);
            Stage(0, x, stage, Drift(z, z, options), StageCombination.Create([], [], h / 2, zHalf));
            Evaluate(predictor, stage);
            Stage(1, x, stage, Drift(zHalf, zHalf, options), StageCombination.Create([], [], h / 2, zHalf));
            Evaluate(predictor, stage);
            Stage(2, x, stage, Drift(zHalf, zHalf, options), StageCombination.Create([], [], h, zEnd));
            Evaluate(predictor, stage);
            Stage(3, x, x, Drift(zEnd, zEnd, options), StageCombination.Create([h / 6, h / 3, h / 3], [0, 1, 2], h / 6, zEnd));
            AfterStep(zEnd);
        }

        return (steps, 0);
    }

    /// <summary>
    /// Dormand-Prince 5(4) in t = ln z, as scipy's RK45: RMS error norm over all components (the z channel, whose drift
    /// is z = e^t, is handled on the host because it is the same for every sample), controller with safety 0.9 and
    /// factors in [0.2, 10], first step from scipy's select_initial_step. Stage slots rotate so that the last stage of
    /// an accepted step becomes the first of the next (FSAL) without a copy.
    /// </summary>
    private (int, int) DormandPrince45(IFieldPredictor predictor, double zFrom, double zTo, PfgmOdeOptions options)
    {
        double t = Math.Log(zFrom), tEnd = Math.Log(zTo), direction = Math.Sign(tEnd - t);
        bool adaptive = options.Solver == OdeSolver.Rk45;
        int offset = 0;
        int Slot(int j) => (j + offset) % StageSlots;

        FillZ(zFrom);
        Evaluate(predictor, _x.View);
        Stage(Slot(0), _x.View, _x.View, Drift(zFrom, zFrom, options), StageCombination.StoreOnly);
        double zState = zFrom; // the z channel: integrated like the rest, only its error matters
        double hAbs = adaptive
            ? options.FirstStep ?? SelectInitialStep(predictor, t, tEnd, direction, options, Slot(0), Slot(1))
            : Math.Abs(tEnd - t) / options.Steps;

        int accepted = 0, rejected = 0, attempts = 0;
        while (direction * (t - tEnd) < 0)
        {
            double minStep = 10 * Math.Abs(Math.BitIncrement(Math.Abs(t)) - Math.Abs(t));
            if (adaptive && hAbs < minStep) hAbs = minStep;
            bool stepRejected = false;
            while (true)
            {
                BeforeStep();
                if (++attempts > options.MaxStepAttempts)
                {
                    throw new InvalidOperationException($"RK45 gave up after {options.MaxStepAttempts} step attempts at z = {Math.Exp(t):G6}");
                }

                if (adaptive && hAbs < minStep)
                {
                    throw new InvalidOperationException($"RK45 step size {hAbs:G3} became too small at z = {Math.Exp(t):G6}: the field is not smooth enough for rtol {options.RelativeTolerance}");
                }

                double tNew = t + hAbs * direction;
                if (direction * (tNew - tEnd) > 0 || (!adaptive && accepted == options.Steps - 1)) tNew = tEnd;
                double h = tNew - t;
                double errorNorm = Attempt(predictor, t, h, zState, Slot, options, adaptive, out double zNew);
                if (!adaptive || errorNorm < 1)
                {
                    if (adaptive)
                    {
                        double factor = errorNorm == 0
                            ? DormandPrince.MaxFactor
                            : Math.Min(DormandPrince.MaxFactor, DormandPrince.Safety * Math.Pow(errorNorm, -1.0 / (DormandPrince.ErrorEstimatorOrder + 1)));
                        if (stepRejected) factor = Math.Min(1, factor);
                        hAbs = Math.Abs(h) * factor;
                    }

                    (_x, _xNew) = (_xNew, _x);
                    offset = Slot(6);
                    t = tNew;
                    zState = zNew;
                    accepted++;
                    AfterStep(Math.Exp(t));
                    break;
                }

                hAbs = Math.Abs(h) * Math.Max(DormandPrince.MinFactor, DormandPrince.Safety * Math.Pow(errorNorm, -1.0 / (DormandPrince.ErrorEstimatorOrder + 1)));
                stepRejected = true;
                rejected++;
            }
        }

        return (accepted, rejected);
    }

    /// <summary>One Dormand-Prince attempt of signed step h from t: fills stages 2..7 and y_new; returns the error norm.</summary>
    private double Attempt(IFieldPredictor predictor, double t, double h, double zState, Func<int, int> slot,
        PfgmOdeOptions options, bool readError, out double zNew)
    {
        var c = DormandPrince.C;
        var a = DormandPrince.A;
        Span<double> zs = stackalloc double[7];
        for (int j = 0; j < 7; j++) zs[j] = Math.Exp(t + c[j] * h);
        Span<double> weights = stackalloc double[7];
        Span<int> slots = stackalloc int[7];
        for (int j = 0; j < 7; j++) slots[j] = slot(j);

        weights[0] = h * a[1][0];
        _steps.Combine(_stages.View, _x.View, _stage.View, _z.View, Batch, Dim, StageCombination.Create(weights[..1], slots[..1], 0, zs[1]));
        _launches++;
        for (int s = 1; s <= 5; s++)
        {
            Evaluate(predictor, _stage.View);
            for (int j = 0; j < s; j++) weights[j] = h * a[s + 1][j];
            var next = s < 5 ? _stage.View : _xNew.View;
            Stage(slots[s], _x.View, next, Drift(zs[s], zs[s], options), StageCombination.Create(weights[..s], slots[..s], h * a[s + 1][s], zs[s + 1]));
        }

        Evaluate(predictor, _xNew.View);
        var e = DormandPrince.E;
        for (int j = 0; j < 6; j++) weights[j] = h * e[j];
        float rtol = (float)options.RelativeTolerance, atol = (float)options.AbsoluteTolerance;
        _steps.DriftError(_field.View, _stages.View, slots[6], _x.View, _xNew.View, _rowSums.View, Batch, Dim,
            Drift(zs[6], zs[6], options), StageCombination.Create(weights[..6], slots[..6], h * e[6], 0), rtol, atol);
        _launches++;

        // The z channel (drift e^t, identical for every sample): new value and error in float64 on the host.
        double zIncrement = 0, zError = 0;
        for (int j = 0; j < 7; j++)
        {
            zIncrement += a[6].ElementAtOrDefault(j) * zs[j];
            zError += e[j] * zs[j];
        }

        zNew = zState + h * zIncrement;
        if (!readError) return 0;

        double zScaled = h * zError / (options.AbsoluteTolerance + options.RelativeTolerance * Math.Max(Math.Abs(zState), Math.Abs(zNew)));
        return Math.Sqrt((ReadRowSums() + (double)Batch * options.ZChannelCopies * zScaled * zScaled) / ComponentCount(options));
    }

    /// <summary>scipy's select_initial_step for the RK45 error order 4; f0 is in slot <paramref name="f0Slot"/>.</summary>
    private double SelectInitialStep(IFieldPredictor predictor, double t0, double tEnd, double direction, PfgmOdeOptions options, int f0Slot, int scratchSlot)
    {
        double rtol = options.RelativeTolerance, atol = options.AbsoluteTolerance;
        double z0 = Math.Exp(t0);
        double zWeight = (double)Batch * options.ZChannelCopies;
        double count = ComponentCount(options);
        var y0 = _x.View;
        long n = (long)Batch * Dim;
        var f0 = _stages.View.SubView(f0Slot * n, n);
        double zScale = atol + rtol * z0;

        double d0 = Math.Sqrt((ScaledSquares(y0, y0, y0, 1, 0, options) + zWeight * Square(z0 / zScale)) / count);
        double d1 = Math.Sqrt((ScaledSquares(y0, f0, f0, 1, 0, options) + zWeight * Square(z0 / zScale)) / count);
        double h0 = d0 < 1e-5 || d1 < 1e-5 ? 1e-6 : 0.01 * d0 / d1;
        h0 = Math.Min(h0, Math.Abs(tEnd - t0));

        double t1 = t0 + h0 * direction, z1 = Math.Exp(t1);
        _steps.Combine(_stages.View, y0, _stage.View, _z.View, Batch, Dim, StageCombination.Create([h0 * direction], [f0Slot], 0, z1));
        _launches++;
        Evaluate(predictor, _stage.View);
        Stage(scratchSlot, _stage.View, _stage.View, Drift(z1, z1, options), StageCombination.StoreOnly);
        var f1 = _stages.View.SubView(scratchSlot * n, n);
        double d2 = Math.Sqrt((ScaledSquares(y0, f1, f0, (float)(1 / h0), (float)(-1 / h0), options)
            + zWeight * Square((z1 - z0) / h0 / zScale)) / count);

        double h1 = d1 <= 1e-15 && d2 <= 1e-15
            ? Math.Max(1e-6, h0 * 1e-3)
            : Math.Pow(0.01 / Math.Max(d1, d2), 1.0 / (DormandPrince.ErrorEstimatorOrder + 1));
        return Math.Min(Math.Min(100 * h0, h1), Math.Abs(tEnd - t0));
    }

    private double ScaledSquares(ArrayView<float> y, ArrayView<float> u, ArrayView<float> w, float cu, float cw, PfgmOdeOptions options)
    {
        _steps.ScaledNorm(y, u, w, _rowSums.View, Batch, Dim, cu, cw, (float)options.RelativeTolerance, (float)options.AbsoluteTolerance);
        _launches++;
        return ReadRowSums();
    }

    private double ReadRowSums()
    {
        _rowSums.View.CopyToCPU(_hostRows);
        _hostReads++;
        double sum = 0;
        foreach (float v in _hostRows) sum += v;
        return sum;
    }

    private double ComponentCount(PfgmOdeOptions options) => (double)Batch * (Dim + options.ZChannelCopies);

    private static double Square(double v) => v * v;

    private void Evaluate(IFieldPredictor predictor, ArrayView<float> points)
    {
        predictor.Predict(points, _z.View, _field.View, Batch);
        _evaluations++;
    }

    private void Stage(int slot, ArrayView<float> baseState, ArrayView<float> next, DriftSettings drift, StageCombination combination)
    {
        _steps.DriftStage(_field.View, _stages.View, slot, baseState, next, _z.View, Batch, Dim, drift, combination);
        _launches++;
    }

    private void Copy(ArrayView<float> source, ArrayView<float> target) =>
        ((ArrayView1D<float, Stride1D.Dense>)source).CopyTo(_device.Accelerator.DefaultStream, (ArrayView1D<float, Stride1D.Dense>)target);

    private void FillZ(double z)
    {
        _elementwise.Fill(_z.View, (float)z);
        _launches++;
    }

    private static DriftSettings Drift(double z, double scale, PfgmOdeOptions options) =>
        new((float)z, (float)scale, (float)options.Gamma, (float)options.ZExp);

    /// <inheritdoc />
    public void Dispose()
    {
        _stages.Dispose();
        _field.Dispose();
        _z.Dispose();
        _rowSums.Dispose();
        _stage.Dispose();
        _x.Dispose();
        _xNew.Dispose();
    }
}
