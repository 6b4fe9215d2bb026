using PoissonFlow.Kernels.Device;

namespace PoissonFlow.Cli;

/// <summary>
/// What a run of the tool talks to: its output streams, whether stdout is a terminal, the clock, and optionally an
/// existing device. The defaults are the real console; tests replace them to run commands in-process.
/// </summary>
public sealed class CliEnvironment
{
    /// <summary>Normal output (results, progress).</summary>
    public TextWriter Out { get; init; } = Console.Out;

    /// <summary>Error output: the one-line <c>pfgm: ...</c> messages.</summary>
    public TextWriter Error { get; init; } = Console.Error;

    /// <summary>True when <see cref="Out"/> is an interactive terminal (progress then updates one line in place).</summary>
    public bool OutputIsTerminal { get; init; } = !Console.IsOutputRedirected;

    /// <summary>The clock for timings and progress.</summary>
    public TimeProvider Clock { get; init; } = TimeProvider.System;

    /// <summary>
    /// A device to use instead of creating one, when <c>--device</c> is auto or names its kind. The run does not
    /// dispose it. Tests pass their shared CPU device here (creating a device costs seconds).
    /// </summary>
    public ComputeDevice? SharedDevice { get; init; }
}
