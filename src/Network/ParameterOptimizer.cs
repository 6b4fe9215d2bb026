using ILGPU;
using ILGPU.Runtime;
using PoissonFlow.Kernels;

namespace PoissonFlow.Network;

/// <summary>
/// The optimiser update of one <see cref="ParameterStore"/>, shared by every network that trains on the device: the
/// global gradient-norm partials, then the single fused clip+Adam+zero-grad+EMA launch. A non-finite gradient norm
/// leaves the weights alone and records the step in a device status word, read only when the host asks
/// (<see cref="DivergedStep"/>), so an update is launches only.
/// </summary>
public sealed class ParameterOptimizer : IDisposable
{
    private readonly GlobalNorm _norm;
    private readonly Adam _adam;
    private readonly MemoryBuffer1D<float, Stride1D.Dense> _normPartials;
    private readonly MemoryBuffer1D<int, Stride1D.Dense> _status;

    /// <summary>Creates the optimiser for <paramref name="store"/> (which it does not own).</summary>
    public ParameterOptimizer(ParameterStore store, AdamOptions options)
    {
        ArgumentNullException.ThrowIfNull(store);
        Store = store;
        Options = options;
        var device = store.Device;
        _norm = GlobalNorm.For(device);
        _adam = Adam.For(device);
        _normPartials = device.Accelerator.Allocate1D<float>(_norm.PartialCount);
        _status = device.Accelerator.Allocate1D(new[] { -1 });
    }

    /// <summary>The parameters it updates.</summary>
    public ParameterStore Store { get; }

    /// <summary>Adam, warmup, clipping and EMA settings.</summary>
    public AdamOptions Options { get; }

    /// <summary>Completed updates (what the warmup, bias corrections and EMA count).</summary>
    public long StepCount { get; internal set; }

    /// <summary>Applies the accumulated gradients (and zeroes them); no synchronisation.</summary>
    public void Update()
    {
        var gradients = Store.View(ParameterBuffer.Gradients);
        _norm.SumOfSquaresPartials(gradients, _normPartials.View);
        _adam.Step(Store.View(ParameterBuffer.Weights), gradients, Store.View(ParameterBuffer.AdamM), Store.View(ParameterBuffer.AdamV),
            Store.View(ParameterBuffer.Ema), _normPartials.View, _status.View, Options.ScalarsForStep(StepCount));
        StepCount++;
    }

    /// <summary>The first update whose gradient norm was not finite, or -1 (synchronises).</summary>
    public int DivergedStep() => _status.GetAsArray1D()[0];

    /// <summary>The tensors whose gradients hold NaN or infinity (a diverged update leaves them in place; synchronises).</summary>
    public IReadOnlyList<string> NonFiniteGradientTensors()
    {
        var gradients = Store.Download(ParameterBuffer.Gradients);
        return Store.Tensors
            .Where(t => gradients.AsSpan((int)t.Offset, (int)t.Length).ToArray().Any(v => !float.IsFinite(v)))
            .Select(t => t.Name).ToList();
    }

    /// <summary>Sets the step counter and clears the divergence status (when a checkpoint is restored).</summary>
    internal void Restore(long stepCount)
    {
        StepCount = stepCount;
        _status.CopyFromCPU(new[] { -1 });
    }

    /// <inheritdoc />
    public void Dispose()
    {
        _normPartials.Dispose();
        _status.Dispose();
    }
}
