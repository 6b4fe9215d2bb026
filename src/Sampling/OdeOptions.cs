namespace PoissonFlow.Sampling;

/// <summary>The integrator of the PFGM ODE.</summary>
public enum OdeSolver
{
    /// <summary>Forward Euler on the geometric z grid (see <see cref="PfgmOdeOptions.EulerVariable"/>); NFE = Steps.</summary>
    Euler,

    /// <summary>Heun on the geometric z grid, last step Euler only (the official improved_euler); NFE = 2 Steps - 1.</summary>
    Heun,

    /// <summary>Classical 4th-order Runge-Kutta in t = ln z with uniform steps (a geometric z grid); NFE = 4 Steps.</summary>
    Rk4,

    /// <summary>Adaptive Dormand-Prince 5(4) in t = ln z with scipy's error norm and step-size controller (the official default).</summary>
    Rk45,

    /// <summary>Dormand-Prince's 5th-order solution with Steps fixed steps and no error control (convergence studies).</summary>
    Rk45Fixed,
}

/// <summary>The variable an Euler or Heun step is linear in; both use the grid z_i = z_max (z_min/z_max)^(i/Steps).</summary>
public enum EulerVariable
{
    /// <summary>
    /// Steps of equal dt in t = ln z with the drift z dx/dz: x += (t_{i+1} - t_i) z_i dx/dz. This is what the official
    /// ODE solvers forward_euler and improved_euler do (Poisson_flow sampling.py, ForwardEulerPredictor and
    /// ImprovedEulerPredictor with methods.py Poisson.ode returning z dx/dz).
    /// </summary>
    LogZ,

    /// <summary>
    /// Steps in z itself: x += (z_{i+1} - z_i) dx/dz, i.e. dx/dt (e^dt - 1). This is the official euler_maruyama
    /// predictor of the PC sampler (noise-free for PFGM), and what the spec's section 5 describes.
    /// </summary>
    Z,
}

/// <summary>Options of the PFGM ODE (spec section 5). Defaults are the official CIFAR-10 settings.</summary>
public sealed record PfgmOdeOptions
{
    /// <summary>z of the prior hemisphere (top of the backward ODE).</summary>
    public double ZMax { get; init; } = 40;

    /// <summary>z where the backward ODE stops (bottom).</summary>
    public double ZMin { get; init; } = 1e-3;

    /// <summary>Below this z the network's v_z is rebuilt from |v_x| (CIFAR 5, CelebA 1, LSUN 0.1).</summary>
    public double ZExp { get; init; } = 5;

    /// <summary>gamma of the field normalisation; 0 disables the z-substitution.</summary>
    public double Gamma { get; init; } = 5;

    /// <summary>The integrator.</summary>
    public OdeSolver Solver { get; init; } = OdeSolver.Rk45;

    /// <summary>What Euler and Heun steps are linear in (default: as the official forward_euler/improved_euler).</summary>
    public EulerVariable EulerVariable { get; init; } = EulerVariable.LogZ;

    /// <summary>Number of steps of the fixed-grid solvers (official sampling.N = 100).</summary>
    public int Steps { get; init; } = 100;

    /// <summary>Relative tolerance of RK45 (official 1e-4).</summary>
    public double RelativeTolerance { get; init; } = 1e-4;

    /// <summary>Absolute tolerance of RK45 (official 1e-4).</summary>
    public double AbsoluteTolerance { get; init; } = 1e-4;

    /// <summary>
    /// How many copies of the z channel enter RK45's error norm per sample. The official state carries z as one
    /// extra H x W image channel, so H*W reproduces it exactly; 1 counts z once.
    /// </summary>
    public int ZChannelCopies { get; init; } = 1;

    /// <summary>RK45 gives up (with an exception) after this many step attempts.</summary>
    public int MaxStepAttempts { get; init; } = 100_000;

    /// <summary>RK45's first step in |t|; null selects it as scipy's select_initial_step does.</summary>
    public double? FirstStep { get; init; }

    /// <summary>Throws an <see cref="ArgumentException"/> naming the first invalid setting.</summary>
    public void Validate()
    {
        if (!(ZMin > 0) || !(ZMax > ZMin) || !double.IsFinite(ZMax)) throw new ArgumentException($"ODE: need 0 < z_min < z_max, got z_min {ZMin}, z_max {ZMax}");
        if (!(Gamma >= 0)) throw new ArgumentException($"ODE: gamma must be >= 0, got {Gamma}");
        if (double.IsNaN(ZExp)) throw new ArgumentException("ODE: z_exp is NaN");
        if (Steps < 1) throw new ArgumentException($"ODE: steps must be >= 1, got {Steps}");
        if (!(RelativeTolerance > 0) || !(AbsoluteTolerance > 0)) throw new ArgumentException($"ODE: tolerances must be positive, got rtol {RelativeTolerance}, atol {AbsoluteTolerance}");
        if (ZChannelCopies < 0) throw new ArgumentException($"ODE: z channel copies must be >= 0, got {ZChannelCopies}");
        if (MaxStepAttempts < 1) throw new ArgumentException($"ODE: max step attempts must be >= 1, got {MaxStepAttempts}");
        if (FirstStep is { } h && !(h > 0)) throw new ArgumentException($"ODE: the first step must be positive, got {h}");
    }
}

/// <summary>What one integration cost.</summary>
/// <param name="FunctionEvaluations">Field evaluations (network forward passes over the batch).</param>
/// <param name="AcceptedSteps">Steps taken (all steps for fixed-grid solvers).</param>
/// <param name="RejectedSteps">RK45 attempts rejected by the error test.</param>
/// <param name="StepKernelLaunches">Sampler kernels launched (excluding the predictor's own).</param>
/// <param name="HostReads">Device-to-host reads of the error norm (one per RK45 attempt).</param>
public sealed record OdeResult(int FunctionEvaluations, int AcceptedSteps, int RejectedSteps, int StepKernelLaunches, int HostReads);
