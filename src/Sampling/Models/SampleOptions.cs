namespace PoissonFlow.Sampling.Models;

/// <summary>How <see cref="PfgmModel"/> integrates the PFGM ODE for one call. The defaults are the official sampler's.</summary>
public sealed record SampleOptions
{
    /// <summary>The integrator (default: adaptive RK45, as the official sampler).</summary>
    public OdeSolver Solver { get; init; } = OdeSolver.Rk45;

    /// <summary>Steps of the fixed-grid solvers (Euler, Heun, RK4, fixed RK45); must be positive for every solver.</summary>
    public int Steps { get; init; } = 100;

    /// <summary>Relative and absolute tolerance of adaptive RK45 (official 1e-4).</summary>
    public double Tolerance { get; init; } = 1e-4;

    /// <summary>Seed of the prior draw: the same seed, count, batch size and options give the same samples on one device.</summary>
    public ulong Seed { get; init; }

    /// <summary>Where the backward ODE stops; null: the z_min the model was trained for (its sampling card).</summary>
    public double? ZMin { get; init; }

    /// <summary>
    /// Points integrated together (device memory grows with it); null: up to 1024 points or 64 images at a time.
    /// Adaptive RK45 takes one step size per batch, so results depend on the batch size.
    /// </summary>
    public int? BatchSize { get; init; }

    /// <summary>Throws an <see cref="ArgumentOutOfRangeException"/> naming the first invalid setting.</summary>
    /// <exception cref="ArgumentOutOfRangeException">A setting is out of range; the message names it.</exception>
    public void Validate()
    {
        if (Steps <= 0) throw new ArgumentOutOfRangeException(nameof(Steps), Steps, $"sample options: steps must be positive, got {Steps}");
        if (!(Tolerance > 0) || !double.IsFinite(Tolerance)) throw new ArgumentOutOfRangeException(nameof(Tolerance), Tolerance, $"sample options: tolerance must be positive, got {Tolerance}");
        if (ZMin is { } zMin && !(zMin > 0 && double.IsFinite(zMin))) throw new ArgumentOutOfRangeException(nameof(ZMin), zMin, $"sample options: z_min must be positive, got {zMin}");
        if (BatchSize is { } batch && batch <= 0) throw new ArgumentOutOfRangeException(nameof(BatchSize), batch, $"sample options: batch size must be positive, got {batch}");
        if (!Enum.IsDefined(Solver)) throw new ArgumentOutOfRangeException(nameof(Solver), Solver, $"sample options: unknown solver {Solver}");
    }
}

/// <summary>Which ODE a <see cref="PfgmModel"/> call is integrating.</summary>
public enum SamplingPhase
{
    /// <summary>The backward ODE from fresh prior draws (<see cref="PfgmModel.Sample"/>).</summary>
    Sample,

    /// <summary>The forward ODE from data to the plane z = z_max (<see cref="PfgmModel.Encode"/>).</summary>
    Encode,

    /// <summary>The backward ODE from given latents (<see cref="PfgmModel.Decode"/>).</summary>
    Decode,
}

/// <summary>Progress of a long <see cref="PfgmModel"/> call, reported after every ODE step.</summary>
/// <param name="Phase">The ODE being integrated.</param>
/// <param name="Batch">Index of the batch being integrated (0-based).</param>
/// <param name="Batches">Number of batches of this phase.</param>
/// <param name="BatchFraction">Share of this batch's ln z range already integrated, 0 to 1.</param>
public readonly record struct SamplingProgress(SamplingPhase Phase, int Batch, int Batches, double BatchFraction)
{
    /// <summary>Share of the phase done, 0 to 1 (batches count equally).</summary>
    public double Fraction => Batches == 0 ? 1 : (Batch + BatchFraction) / Batches;
}
