using PoissonFlow.Kernels.Device;
using PoissonFlow.Network;

namespace PoissonFlow.Sampling.Models;

/// <summary>
/// A trained PFGM model for applications: loaded from a checkpoint that carries a <see cref="SamplingCard"/>, it
/// draws samples, encodes data to latents on the plane z = z_max (forward ODE), decodes latents (backward ODE) and
/// interpolates between data points through their latents. It holds device memory: dispose it.
/// <para>
/// One call at a time: a call made while another is running on the same model (from any thread, or from a progress
/// callback) is refused with an <see cref="InvalidOperationException"/> instead of corrupting the shared buffers;
/// use one model per thread for parallel work. Long calls take an <see cref="IProgress{T}"/>, reported after every
/// ODE step, and a <see cref="CancellationToken"/>, checked before every ODE step.
/// </para>
/// </summary>
public sealed class PfgmModel : IDisposable
{
    private const int MaxCachedSamplers = 4;

    private readonly ComputeDevice _device;
    private readonly bool _ownsDevice;
    private readonly ITrainableNetwork _predictor;
    private readonly Dictionary<int, PfgmSampler> _samplers = [];
    private int _busy;
    private bool _disposed;

    private PfgmModel(string path, CheckpointInfo info, SamplingCard card, ComputeDevice device, bool ownsDevice, ITrainableNetwork predictor)
    {
        Path = path;
        ModelType = info.ModelType;
        TrainingStep = info.Step;
        Card = card;
        _device = device;
        _ownsDevice = ownsDevice;
        _predictor = predictor;
    }

    /// <summary>The checkpoint file the model came from.</summary>
    public string Path { get; }

    /// <summary>The network's model-type tag (e.g. <c>mlp</c>, <c>unet</c>).</summary>
    public string ModelType { get; }

    /// <summary>The optimiser step at which the checkpoint was written.</summary>
    public long TrainingStep { get; }

    /// <summary>What the checkpoint says about sampling: data shape, prior, z_min, pixel range.</summary>
    public SamplingCard Card { get; }

    /// <summary>Shape of one data point: [N] for points, [C, H, W] for images.</summary>
    public IReadOnlyList<int> DataShape => Card.DataShape;

    /// <summary>Values per data point.</summary>
    public int Dim => Card.Dim;

    /// <summary>Whether the model makes images (which <see cref="SampleSet.SavePng"/> can draw) rather than points.</summary>
    public bool IsImageModel => Card.DataShape.Length >= 2;

    /// <summary>The accelerator the model runs on (CUDA or CPU; never Auto).</summary>
    public DeviceKind Device => _device.Kind;

    /// <summary>A one-line description of the device, for logs.</summary>
    public string DeviceDescription => _device.Description;

    /// <summary>
    /// Loads a model from <paramref name="path"/> onto a device of its own: <see cref="DeviceKind.Auto"/> takes CUDA
    /// when present and the CPU accelerator otherwise. The file is checked before any device is created.
    /// </summary>
    /// <exception cref="FileNotFoundException">There is no file at <paramref name="path"/>.</exception>
    /// <exception cref="MissingSamplingCardException">The checkpoint has no sampling card (older version, or raw training state).</exception>
    /// <exception cref="UnknownModelTypeException">The checkpoint holds a model type this version does not know.</exception>
    /// <exception cref="CheckpointException">The file is unreadable, not a PoissonFlow checkpoint, or inconsistent.</exception>
    /// <exception cref="DeviceUnavailableException"><see cref="DeviceKind.Cuda"/> was asked for and no CUDA device exists.</exception>
    public static PfgmModel Load(string path, DeviceKind device = DeviceKind.Auto) =>
        Load(path, () => ComputeDevice.Create(device), ownsDevice: true);

    /// <summary>Loads a model onto an existing device, which stays the caller's (it is not disposed with the model).</summary>
    /// <exception cref="FileNotFoundException">There is no file at <paramref name="path"/>.</exception>
    /// <exception cref="MissingSamplingCardException">The checkpoint has no sampling card (older version, or raw training state).</exception>
    /// <exception cref="UnknownModelTypeException">The checkpoint holds a model type this version does not know.</exception>
    /// <exception cref="CheckpointException">The file is unreadable, not a PoissonFlow checkpoint, or inconsistent.</exception>
    public static PfgmModel Load(string path, ComputeDevice device)
    {
        ArgumentNullException.ThrowIfNull(device);
        return Load(path, () => device, ownsDevice: false);
    }

    private static PfgmModel Load(string path, Func<ComputeDevice> createDevice, bool ownsDevice)
    {
        var info = ModelRegistry.ReadInfo(path);
        var card = ModelRegistry.RequireSamplingCard(info, path);
        if (!ModelRegistry.IsKnown(info.ModelType))
        {
            throw new UnknownModelTypeException(
                $"{path}: holds a '{info.ModelType}' model, which this version of PoissonFlow cannot build (it knows {string.Join(", ", ModelRegistry.ModelTypes)})",
                info.ModelType);
        }

        var device = createDevice();
        ITrainableNetwork? network = null;
        try
        {
            network = ModelRegistry.Load(device, path);
            var predictor = ModelRegistry.ForSampling(network, card);
            return new PfgmModel(path, info, card, device, ownsDevice, predictor);
        }
        catch
        {
            network?.Dispose();
            if (ownsDevice) device.Dispose();
            throw;
        }
    }

    /// <summary>Draws <paramref name="count"/> samples: prior points on the plane z = z_max, then the backward ODE.</summary>
    /// <param name="count">Number of samples (0 gives an empty set).</param>
    /// <param name="options">Solver, steps, seed, z_min and batch size; null: the defaults.</param>
    /// <param name="progress">Told after every ODE step how far the call has got.</param>
    /// <param name="cancellationToken">Checked before every ODE step.</param>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="count"/> is negative, or an option is out of range.</exception>
    /// <exception cref="InvalidOperationException">Another call is running on this model, or RK45 could not finish.</exception>
    /// <exception cref="OperationCanceledException">Cancelled; nothing is returned.</exception>
    /// <exception cref="ObjectDisposedException">The model was disposed.</exception>
    public SampleSet Sample(int count, SampleOptions? options = null, IProgress<SamplingProgress>? progress = null,
        CancellationToken cancellationToken = default)
    {
        if (count < 0) throw new ArgumentOutOfRangeException(nameof(count), count, $"sample count must not be negative, got {count}");
        options ??= new SampleOptions();
        options.Validate();
        var ode = OdeOptions(options);
        float upperNorm = (float)Card.Hyper.UpperNorm;
        return Run(nameof(Sample), () =>
        {
            var values = new float[(long)count * Dim];
            ForEachBatch(count, options, SamplingPhase.Sample, progress, cancellationToken, (sampler, first, rows, report) =>
            {
                ulong seed = unchecked(options.Seed + (ulong)first * 0x9E3779B97F4A7C15UL);
                var (batch, _) = sampler.Sample(_predictor, ode, upperNorm, seed, report, cancellationToken);
                batch.CopyTo(values, (long)first * Dim);
            });
            return NewSet(values, count);
        });
    }

    /// <summary>
    /// Encodes data points (at z_min) to their latents on the plane z = z_max with the forward ODE: the inverse of
    /// <see cref="Decode"/> up to the solver's error.
    /// </summary>
    /// <param name="data">Points row after row, a whole number of <see cref="Dim"/>-value rows (images planar, in the model's pixel range).</param>
    /// <param name="options">Solver, steps, z_min and batch size; null: the defaults. The seed is not used.</param>
    /// <param name="progress">Told after every ODE step how far the call has got.</param>
    /// <param name="cancellationToken">Checked before every ODE step.</param>
    /// <returns>The latents, one row per data point.</returns>
    /// <exception cref="ArgumentException">The data is not a whole number of rows, or an option is out of range.</exception>
    /// <exception cref="InvalidOperationException">Another call is running on this model, or RK45 could not finish.</exception>
    /// <exception cref="OperationCanceledException">Cancelled; nothing is returned.</exception>
    /// <exception cref="ObjectDisposedException">The model was disposed.</exception>
    public float[] Encode(float[] data, SampleOptions? options = null, IProgress<SamplingProgress>? progress = null,
        CancellationToken cancellationToken = default)
    {
        int count = Rows(data, nameof(data));
        options ??= new SampleOptions();
        options.Validate();
        var ode = OdeOptions(options);
        return Run(nameof(Encode), () => Transport(data, count, ode, options, SamplingPhase.Encode, progress, cancellationToken));
    }

    /// <summary>Decodes latents on the plane z = z_max to data points (at z_min) with the backward ODE.</summary>
    /// <param name="latents">Latents row after row, a whole number of <see cref="Dim"/>-value rows.</param>
    /// <param name="options">Solver, steps, z_min and batch size; null: the defaults. The seed is not used.</param>
    /// <param name="progress">Told after every ODE step how far the call has got.</param>
    /// <param name="cancellationToken">Checked before every ODE step.</param>
    /// <exception cref="ArgumentException">The latents are not a whole number of rows, or an option is out of range.</exception>
    /// <exception cref="InvalidOperationException">Another call is running on this model, or RK45 could not finish.</exception>
    /// <exception cref="OperationCanceledException">Cancelled; nothing is returned.</exception>
    /// <exception cref="ObjectDisposedException">The model was disposed.</exception>
    public SampleSet Decode(float[] latents, SampleOptions? options = null, IProgress<SamplingProgress>? progress = null,
        CancellationToken cancellationToken = default)
    {
        int count = Rows(latents, nameof(latents));
        options ??= new SampleOptions();
        options.Validate();
        var ode = OdeOptions(options);
        return Run(nameof(Decode), () => NewSet(Transport(latents, count, ode, options, SamplingPhase.Decode, progress, cancellationToken), count));
    }

    /// <summary>
    /// Interpolates between two data points through their latents: encodes both, mixes the latents linearly
    /// ((1 - t) a + t b for <paramref name="count"/> values of t evenly spaced from 0 to 1) and decodes the mixtures.
    /// </summary>
    /// <param name="from">The first data point (<see cref="Dim"/> values).</param>
    /// <param name="to">The second data point (<see cref="Dim"/> values).</param>
    /// <param name="count">Points along the path, both ends included (at least 2).</param>
    /// <param name="options">Solver, steps, z_min and batch size; null: the defaults. The seed is not used.</param>
    /// <param name="progress">Told after every ODE step how far the call has got (an encode phase, then a decode phase).</param>
    /// <param name="cancellationToken">Checked before every ODE step.</param>
    /// <exception cref="ArgumentException">A point does not have <see cref="Dim"/> values, <paramref name="count"/> is below 2, or an option is out of range.</exception>
    /// <exception cref="InvalidOperationException">Another call is running on this model, or RK45 could not finish.</exception>
    /// <exception cref="OperationCanceledException">Cancelled; nothing is returned.</exception>
    /// <exception cref="ObjectDisposedException">The model was disposed.</exception>
    public SampleSet Interpolate(float[] from, float[] to, int count, SampleOptions? options = null,
        IProgress<SamplingProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(from);
        ArgumentNullException.ThrowIfNull(to);
        if (from.Length != Dim || to.Length != Dim) throw new ArgumentException($"interpolate: both points need {Dim} values, got {from.Length} and {to.Length}");
        if (count < 2) throw new ArgumentOutOfRangeException(nameof(count), count, $"interpolate: count must be at least 2 (both ends), got {count}");
        options ??= new SampleOptions();
        options.Validate();
        var ode = OdeOptions(options);
        return Run(nameof(Interpolate), () =>
        {
            // Both ends in one batch: with RK45 they then share one step-size sequence.
            var ends = Transport([.. from, .. to], 2, ode, options, SamplingPhase.Encode, progress, cancellationToken);
            var latents = new float[(long)count * Dim];
            for (int k = 0; k < count; k++)
            {
                float t = (float)k / (count - 1);
                for (int i = 0; i < Dim; i++) latents[(long)k * Dim + i] = (1 - t) * ends[i] + t * ends[Dim + i];
            }

            return NewSet(Transport(latents, count, ode, options, SamplingPhase.Decode, progress, cancellationToken), count);
        });
    }

    /// <summary>
    /// Frees the network, the sampler buffers and (when the model created it) the device. A model cannot be disposed
    /// while one of its calls runs: cancel the call and let it return first.
    /// </summary>
    /// <exception cref="InvalidOperationException">A call is still running on this model.</exception>
    public void Dispose()
    {
        if (_disposed) return;
        if (Interlocked.CompareExchange(ref _busy, 1, 0) != 0)
        {
            throw new InvalidOperationException("PfgmModel: cannot dispose while a call is running on it; cancel the call and let it return first");
        }

        try
        {
            foreach (var sampler in _samplers.Values) sampler.Dispose();
            _samplers.Clear();
            _predictor.Dispose();
            if (_ownsDevice) _device.Dispose();
            _disposed = true;
        }
        finally
        {
            Volatile.Write(ref _busy, 0);
        }
    }

    /// <summary>Runs <paramref name="body"/> as the only call on this model, refusing overlap.</summary>
    private T Run<T>(string operation, Func<T> body)
    {
        if (Interlocked.CompareExchange(ref _busy, 1, 0) != 0)
        {
            throw new InvalidOperationException(
                $"PfgmModel.{operation}: another call is still running on this model; calls on one model must not overlap (wait for it, or load one model per thread)");
        }

        try
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            return body();
        }
        finally
        {
            Volatile.Write(ref _busy, 0);
        }
    }

    /// <summary>Integrates <paramref name="input"/> forward (encode) or backward (decode) batch by batch.</summary>
    private float[] Transport(float[] input, int count, PfgmOdeOptions ode, SampleOptions options, SamplingPhase phase,
        IProgress<SamplingProgress>? progress, CancellationToken cancellation)
    {
        var output = new float[(long)count * Dim];
        ForEachBatch(count, options, phase, progress, cancellation, (sampler, first, rows, report) =>
        {
            var batch = input.AsSpan(first * Dim, rows * Dim).ToArray();
            var (result, _) = phase == SamplingPhase.Encode
                ? sampler.Encode(_predictor, batch, ode, report, cancellation)
                : sampler.Decode(_predictor, batch, ode, report, cancellation);
            result.CopyTo(output, (long)first * Dim);
        });
        return output;
    }

    /// <summary>Splits <paramref name="count"/> rows into batches and runs <paramref name="body"/> on each with its sampler.</summary>
    private void ForEachBatch(int count, SampleOptions options, SamplingPhase phase, IProgress<SamplingProgress>? progress,
        CancellationToken cancellation, Action<PfgmSampler, int, int, Action<double>?> body)
    {
        int batchSize = Math.Min(count, options.BatchSize ?? (IsImageModel ? 64 : 1024));
        if (count == 0) return;
        int batches = (count + batchSize - 1) / batchSize;
        for (int b = 0; b < batches; b++)
        {
            cancellation.ThrowIfCancellationRequested();
            int first = b * batchSize, rows = Math.Min(batchSize, count - first);
            int index = b;
            Action<double>? report = progress is null ? null : fraction => progress.Report(new SamplingProgress(phase, index, batches, fraction));
            body(SamplerFor(rows), first, rows, report);
        }
    }

    /// <summary>A sampler for batches of <paramref name="rows"/>, kept for later calls (a few sizes at most).</summary>
    private PfgmSampler SamplerFor(int rows)
    {
        if (_samplers.TryGetValue(rows, out var sampler)) return sampler;
        if (_samplers.Count >= MaxCachedSamplers)
        {
            foreach (var old in _samplers.Values) old.Dispose();
            _samplers.Clear();
        }

        sampler = new PfgmSampler(_device, rows, Dim);
        _samplers[rows] = sampler;
        return sampler;
    }

    /// <summary>The ODE settings of the card with the call's solver choices.</summary>
    private PfgmOdeOptions OdeOptions(SampleOptions options)
    {
        double zMin = options.ZMin ?? Card.ZMin;
        if (!(zMin < Card.Hyper.ZMax))
        {
            throw new ArgumentOutOfRangeException(nameof(options), zMin, $"sample options: z_min {zMin} must be below the model's z_max {Card.Hyper.ZMax}");
        }

        return new PfgmOdeOptions
        {
            ZMax = Card.Hyper.ZMax,
            ZMin = zMin,
            Gamma = Card.SamplerGamma,
            ZExp = Card.SamplerZExp,
            Solver = options.Solver,
            Steps = options.Steps,
            RelativeTolerance = options.Tolerance,
            AbsoluteTolerance = options.Tolerance,
            // The official image state carries z as one H x W channel, so it counts H*W times in RK45's error norm.
            ZChannelCopies = IsImageModel ? Card.DataShape[^1] * Card.DataShape[^2] : 1,
        };
    }

    private int Rows(float[] values, string name)
    {
        ArgumentNullException.ThrowIfNull(values, name);
        if (values.Length % Dim != 0)
        {
            throw new ArgumentException($"{values.Length} values are not a whole number of rows of {Dim} (shape [{string.Join(", ", DataShape)}])", name);
        }

        return values.Length / Dim;
    }

    private SampleSet NewSet(float[] values, int count) => new(values, count, [.. Card.DataShape], Card.PixelRange);
}
