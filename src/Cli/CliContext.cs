using PoissonFlow.Kernels.Device;

namespace PoissonFlow.Cli;

/// <summary>
/// What a command runs with: the output writers, the clock and the compute device, created on first use (so a
/// command that fails validation never pays for creating one). Disposes the device it created.
/// </summary>
public sealed class CliContext : IDisposable
{
    private readonly CliEnvironment _environment;
    private ComputeDevice? _device;
    private bool _ownsDevice;

    internal CliContext(CliEnvironment environment, DeviceKind deviceKind)
    {
        _environment = environment;
        DeviceKind = deviceKind;
    }

    /// <summary>Normal output.</summary>
    public TextWriter Out => _environment.Out;

    /// <summary>Error output (warnings; errors are reported by the framework).</summary>
    public TextWriter Error => _environment.Error;

    /// <summary>True when stdout is an interactive terminal.</summary>
    public bool OutputIsTerminal => _environment.OutputIsTerminal;

    /// <summary>The clock for timings and progress.</summary>
    public TimeProvider Clock => _environment.Clock;

    /// <summary>The device kind asked for with <c>--device</c> (auto by default).</summary>
    public DeviceKind DeviceKind { get; }

    /// <summary>The compute device, created on first access.</summary>
    /// <exception cref="DeviceUnavailableException">CUDA was asked for and none is present.</exception>
    public ComputeDevice Device
    {
        get
        {
            if (_device is not null) return _device;
            var shared = _environment.SharedDevice;
            if (shared is not null && (DeviceKind == DeviceKind.Auto || DeviceKind == shared.Kind))
            {
                _device = shared;
            }
            else
            {
                _device = ComputeDevice.Create(DeviceKind);
                _ownsDevice = true;
            }

            return _device;
        }
    }

    /// <summary>A progress reporter for <paramref name="totalSteps"/> steps writing to <see cref="Out"/>.</summary>
    public ProgressReporter Progress(long totalSteps, string unit = "step") =>
        new(Out, totalSteps, OutputIsTerminal, Clock, unit: unit);

    /// <inheritdoc />
    public void Dispose()
    {
        if (_ownsDevice) _device?.Dispose();
        _device = null;
    }
}
