using ILGPU;
using ILGPU.Algorithms;
using ILGPU.Runtime;
using PoissonFlow.Kernels.Device;

namespace PoissonFlow.Kernels;

/// <summary>
/// Adam hyperparameters with PFGM's schedule (spec section 4): linear warmup lr * min(step / warmup, 1) (so the first
/// step has lr 0), global gradient-norm clipping, and an EMA of the weights with
/// decay_eff = min(rate, (1 + n) / (10 + n)), n counting EMA updates including the current one.
/// </summary>
/// <param name="LearningRate">Peak learning rate (2e-4 in PFGM).</param>
/// <param name="Beta1">First-moment decay.</param>
/// <param name="Beta2">Second-moment decay.</param>
/// <param name="Epsilon">Added to sqrt(v-hat).</param>
/// <param name="WeightDecay">L2 penalty added to the gradient, as torch.optim.Adam does (0 in PFGM).</param>
/// <param name="WarmupSteps">Linear warmup length; 0 disables warmup.</param>
/// <param name="GradClip">Maximum global gradient norm; 0 or less disables clipping.</param>
/// <param name="EmaRate">EMA rate (0.9999 in PFGM); 0 makes the EMA track the weights.</param>
/// <param name="DecaySteps">After the warmup, decay the learning rate linearly to zero over this many steps (short
/// classifier runs converge better so); 0, PFGM's choice, keeps it constant.</param>
public sealed record AdamOptions(
    float LearningRate = 2e-4f,
    float Beta1 = 0.9f,
    float Beta2 = 0.999f,
    float Epsilon = 1e-8f,
    float WeightDecay = 0f,
    int WarmupSteps = 5000,
    float GradClip = 1f,
    float EmaRate = 0.9999f,
    int DecaySteps = 0)
{
    /// <summary>
    /// The per-step scalars for the update that follows <paramref name="step"/> completed updates (0 for the first),
    /// computed in float64 on the host: the effective learning rate, the bias corrections and the EMA decay.
    /// </summary>
    public AdamScalars ScalarsForStep(long step)
    {
        if (step < 0) throw new ArgumentOutOfRangeException(nameof(step), step, "step must be non-negative");
        double lr = WarmupSteps > 0 ? LearningRate * Math.Min((double)step / WarmupSteps, 1.0) : LearningRate;
        if (DecaySteps > 0) lr *= Math.Max(0.0, 1.0 - (double)Math.Max(0, step - WarmupSteps) / DecaySteps);
        double t = step + 1;
        double biasCorrection1 = 1.0 - Math.Pow(Beta1, t);
        double biasCorrection2 = 1.0 - Math.Pow(Beta2, t);
        double emaDecay = Math.Min(EmaRate, (1.0 + t) / (10.0 + t));
        return new AdamScalars(
            (float)lr, Beta1, Beta2, Epsilon, WeightDecay,
            StepSize: (float)(lr / biasCorrection1),
            InverseSqrtBiasCorrection2: (float)(1.0 / Math.Sqrt(biasCorrection2)),
            GradClip,
            EmaDecay: (float)emaDecay,
            Step: (int)Math.Min(step, int.MaxValue));
    }
}

/// <summary>The scalars one Adam launch needs; see <see cref="AdamOptions.ScalarsForStep"/>.</summary>
/// <param name="LearningRate">Effective (warmed-up) learning rate.</param>
/// <param name="Beta1">First-moment decay.</param>
/// <param name="Beta2">Second-moment decay.</param>
/// <param name="Epsilon">Added to the bias-corrected sqrt(v).</param>
/// <param name="WeightDecay">L2 coefficient added to the gradient.</param>
/// <param name="StepSize">lr / (1 - beta1^t).</param>
/// <param name="InverseSqrtBiasCorrection2">1 / sqrt(1 - beta2^t).</param>
/// <param name="GradClip">Maximum global norm, or 0 or less for none.</param>
/// <param name="EmaDecay">EMA decay of this update.</param>
/// <param name="Step">Completed updates before this one (recorded when the gradient is not finite).</param>
public readonly record struct AdamScalars(
    float LearningRate, float Beta1, float Beta2, float Epsilon, float WeightDecay,
    float StepSize, float InverseSqrtBiasCorrection2, float GradClip, float EmaDecay, int Step);

/// <summary>
/// The whole optimiser step in ONE launch over a model's single parameter buffer (llm.c style): finish the global
/// gradient norm from <see cref="GlobalNorm"/>'s partials, clip, Adam with L2 weight decay, zero the gradient for the
/// next accumulation, and update the EMA weights. When the norm is NaN or infinite the launch changes nothing (the
/// weights keep their last finite values and the gradients stay non-finite, so the culprit tensors can be named
/// afterwards) and records the step in a status word, which the host reads whenever it syncs anyway.
/// </summary>
public sealed class Adam
{
    private readonly ComputeDevice _device;
    private readonly Action<AcceleratorStream, KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>,
        ArrayView<float>, ArrayView<float>, ArrayView<int>, AdamScalars> _step;

    private Adam(ComputeDevice device)
    {
        _device = device;
        _step = device.Accelerator.LoadKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>,
            ArrayView<float>, ArrayView<int>, AdamScalars>(StepKernel);
    }

    /// <summary>This device's instance (kernels compiled once per device).</summary>
    public static Adam For(ComputeDevice device) => device.Operation(d => new Adam(d));

    /// <summary>
    /// One update of <paramref name="parameters"/> from <paramref name="gradients"/> (zeroed afterwards), the moments
    /// <paramref name="m"/> and <paramref name="v"/>, and the EMA copy <paramref name="ema"/> (empty: no EMA).
    /// <paramref name="normPartials"/> holds the partial sums of squares of the gradients (all of them are summed);
    /// <paramref name="status"/> is one int, left alone on success and set to the step on a non-finite gradient norm
    /// if it is still negative.
    /// </summary>
    public void Step(ArrayView<float> parameters, ArrayView<float> gradients, ArrayView<float> m, ArrayView<float> v,
        ArrayView<float> ema, ArrayView<float> normPartials, ArrayView<int> status, AdamScalars scalars)
    {
        long n = parameters.Length;
        if (gradients.Length != n || m.Length != n || v.Length != n || (ema.Length != 0 && ema.Length != n))
        {
            throw new ArgumentException(
                $"adam: parameters ({n}), gradients ({gradients.Length}), m ({m.Length}), v ({v.Length}) and ema ({ema.Length}) must have equal lengths");
        }

        if (normPartials.Length == 0 || status.Length < 1) throw new ArgumentException("adam: norm partials and a status word are required");
        _step(_device.Accelerator.DefaultStream, _device.GridStride(n), parameters, gradients, m, v, ema, normPartials, status, scalars);
    }

    /// <summary>
    /// Float64 reference of one <see cref="Step"/> (gradient norm computed from <paramref name="gradients"/>). Returns
    /// false, changing nothing, when the norm is not finite. Zeroes the gradients like the kernel.
    /// </summary>
    public static bool Reference(Span<double> parameters, Span<double> gradients, Span<double> m, Span<double> v, Span<double> ema,
        AdamOptions options, long step)
    {
        double norm = GlobalNorm.Reference(gradients);
        if (!double.IsFinite(norm)) return false;
        double lr = options.WarmupSteps > 0 ? options.LearningRate * Math.Min((double)step / options.WarmupSteps, 1.0) : options.LearningRate;
        double t = step + 1;
        double bc1 = 1 - Math.Pow(options.Beta1, t), bc2 = 1 - Math.Pow(options.Beta2, t);
        double decay = Math.Min(options.EmaRate, (1 + t) / (10 + t));
        double clip = options.GradClip > 0 ? Math.Min(1.0, options.GradClip / (norm + 1e-6)) : 1.0;
        for (int i = 0; i < parameters.Length; i++)
        {
            double g = gradients[i] * clip + options.WeightDecay * parameters[i];
            m[i] = options.Beta1 * m[i] + (1 - options.Beta1) * g;
            v[i] = options.Beta2 * v[i] + (1 - options.Beta2) * g * g;
            parameters[i] -= lr / bc1 * m[i] / (Math.Sqrt(v[i]) / Math.Sqrt(bc2) + options.Epsilon);
            gradients[i] = 0;
            if (ema.Length > 0) ema[i] -= (1 - decay) * (ema[i] - parameters[i]);
        }

        return true;
    }

    [GpuKernel]
    internal static void StepKernel(ArrayView<float> parameters, ArrayView<float> gradients, ArrayView<float> m, ArrayView<float> v,
        ArrayView<float> ema, ArrayView<float> normPartials, ArrayView<int> status, AdamScalars s)
    {
        // One thread per group finishes the norm reduction; the group reads it from shared memory.
        var total = SharedMemory.Allocate<float>(1);
        if (Group.IdxX == 0)
        {
            float sum = 0;
            int partials = (int)normPartials.Length;
            for (int i = 0; i < partials; i++) sum += normPartials[i];
            total[0] = sum;
        }

        Group.Barrier();
        float norm = XMath.Sqrt(total[0]);
        if (XMath.IsNaN(norm) || XMath.IsInfinity(norm))
        {
            if (Grid.GlobalIndex.X == 0 && status[0] < 0) status[0] = s.Step;
            return;
        }

        float clip = s.GradClip > 0f ? XMath.Min(1f, s.GradClip / (norm + 1e-6f)) : 1f;
        bool hasEma = ema.Length > 0;
        float oneMinusBeta1 = 1f - s.Beta1, oneMinusBeta2 = 1f - s.Beta2, oneMinusDecay = 1f - s.EmaDecay;
        int n = (int)parameters.Length, stride = Grid.DimX * Group.DimX;
        for (int i = Grid.GlobalIndex.X; i < n; i += stride)
        {
            float p = parameters[i];
            float g = gradients[i] * clip + s.WeightDecay * p;
            float mi = s.Beta1 * m[i] + oneMinusBeta1 * g;
            float vi = s.Beta2 * v[i] + oneMinusBeta2 * g * g;
            p -= s.StepSize * mi / (XMath.Sqrt(vi) * s.InverseSqrtBiasCorrection2 + s.Epsilon);
            m[i] = mi;
            v[i] = vi;
            parameters[i] = p;
            gradients[i] = 0f;
            if (hasEma) ema[i] -= oneMinusDecay * (ema[i] - p);
        }
    }
}
