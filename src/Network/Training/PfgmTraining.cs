using ILGPU;
using ILGPU.Runtime;
using PoissonFlow.Data;
using PoissonFlow.Kernels;

namespace PoissonFlow.Network.Training;

/// <summary>What the network is trained to predict.</summary>
public enum PfgmTarget
{
    /// <summary>The normalised field √N E/(|E| + γ) (the official PFGM target).</summary>
    Field,

    /// <summary>(ȳ, 0) with ȳ the posterior mean: the "x − y" form, for <see cref="PosteriorMeanNetwork"/>.</summary>
    PosteriorMean,
}

/// <summary>Settings of a PFGM training run on a point set.</summary>
/// <param name="Hyper">M, z_max, upper_norm, σ, τ (see <see cref="PfgmHyperParameters.ForData"/>).</param>
/// <param name="Batch">B, the perturbed points per step (the first B rows of the reference batch).</param>
/// <param name="ReferenceBatch">M_ref, the clean points the empirical field is computed over (includes the B originals).</param>
/// <param name="Gamma">γ of the normalised field target.</param>
/// <param name="RestrictM">The official restrict_M: points with z0 &lt; σ/2 draw m from [0, 0.7 M).</param>
/// <param name="Seed">Seed of the reference-batch choice and the perturbations.</param>
/// <param name="Target">The normalised field, or the posterior mean.</param>
public sealed record PfgmTrainingOptions(PfgmHyperParameters Hyper, int Batch, int ReferenceBatch, float Gamma = 5f,
    bool RestrictM = true, ulong Seed = 0, PfgmTarget Target = PfgmTarget.Field);

/// <summary>
/// The PFGM training step on a point set (spec §2-§4): draw a reference batch of clean points, perturb its first B
/// rows, compute the empirical-field target over the whole reference batch with the fused kernel, and take one
/// <see cref="Trainer"/> step (forward, loss, backward, clip + Adam + EMA). The data set is uploaded to the device
/// once; each step draws its reference rows there (<see cref="RowGather"/>, Philox keyed by the seed and the step),
/// so a step copies nothing from the host, and every random draw of step s depends only on (seed, s): a run resumed
/// from a checkpoint at step s continues exactly as the uninterrupted one. Buffers are allocated once.
/// </summary>
public sealed class PfgmTraining : IDisposable
{
    private readonly int _dim;
    private readonly MemoryBuffer1D<float, Stride1D.Dense> _dataset;
    private readonly MemoryBuffer1D<int, Stride1D.Dense> _rows;
    private readonly RowGather _gather;
    private readonly PoissonField _field;
    private readonly Perturbation _perturbation;
    private readonly PfgmPerturbationOptions _perturbationOptions;
    private readonly MemoryBuffer1D<float, Stride1D.Dense> _reference, _points, _z, _zNetwork, _target, _mean;

    /// <summary>Prepares training of <paramref name="trainer"/>'s network on <paramref name="data"/>.</summary>
    public PfgmTraining(Trainer trainer, PointSet data, PfgmTrainingOptions options)
    {
        ArgumentNullException.ThrowIfNull(trainer);
        ArgumentNullException.ThrowIfNull(data);
        if (data.Dim != trainer.Network.Dim) throw new ArgumentException($"training: the data have {data.Dim} coordinates, the network expects {trainer.Network.Dim}");
        if (options.Batch < 1 || options.ReferenceBatch < options.Batch)
        {
            throw new ArgumentException($"training: need 1 <= batch <= reference batch, got batch {options.Batch}, reference {options.ReferenceBatch}");
        }

        Trainer = trainer;
        Options = options;
        _dim = data.Dim;
        _field = PoissonField.For(trainer.Network.Device);
        _perturbation = Perturbation.For(trainer.Network.Device);
        var hyper = options.Hyper;
        _perturbationOptions = new PfgmPerturbationOptions(hyper.M, (float)hyper.Sigma, (float)hyper.Tau, options.RestrictM);
        var accelerator = trainer.Network.Device.Accelerator;
        int dim = data.Dim;
        _reference = accelerator.Allocate1D<float>((long)options.ReferenceBatch * dim);
        _points = accelerator.Allocate1D<float>((long)options.Batch * dim);
        _z = accelerator.Allocate1D<float>(options.Batch);
        _zNetwork = accelerator.Allocate1D<float>(options.Batch);
        _target = accelerator.Allocate1D<float>((long)options.Batch * (dim + 1));
        _mean = accelerator.Allocate1D<float>((long)options.Batch * dim);
        _rows = accelerator.Allocate1D<int>(options.ReferenceBatch);
        _gather = RowGather.For(trainer.Network.Device);
        _dataset = accelerator.Allocate1D(data.Data);
    }

    /// <summary>The trainer (network, optimiser, EMA).</summary>
    public Trainer Trainer { get; }

    /// <summary>The settings.</summary>
    public PfgmTrainingOptions Options { get; }

    /// <summary>One training step; returns the trainer's latest read loss.</summary>
    public float Step()
    {
        int dim = _dim, batch = Options.Batch, count = Options.ReferenceBatch;
        // Reference batch: M_ref rows drawn with replacement on the device (duplicates are harmless here).
        _gather.DrawAndGather(_dataset.View, _rows.View, _reference.View, count, dim, Options.Seed, (uint)Trainer.StepCount);
        // The first B clean rows are perturbed; the field over all M_ref rows (their originals included) is the target.
        _perturbation.Pfgm(_reference.View.SubView(0, (long)batch * dim), _points.View, _z.View, _zNetwork.View, batch, dim,
            _perturbationOptions, Options.Seed, (uint)Trainer.StepCount);
        if (Options.Target == PfgmTarget.Field)
        {
            _field.Compute(_points.View, _z.View, _reference.View, _target.View, batch, count, dim, FieldOptions.Pfgm(Options.Gamma));
        }
        else
        {
            // PFGM's weights |(x, z) - (y, 0)|^-(N+1) are the PFGM++ ones with D = 1 and r = z.
            _field.Compute(_points.View, _z.View, _reference.View, _mean.View, batch, count, dim, FieldOptions.PfgmPlusPlus(1));
            PosteriorMeanField.For(Trainer.Network.Device).Target(_mean.View, _target.View, batch, dim);
        }

        return Trainer.Step(_points.View, _zNetwork.View, _target.View, batch);
    }

    /// <inheritdoc />
    public void Dispose()
    {
        _dataset.Dispose();
        _rows.Dispose();
        _reference.Dispose();
        _points.Dispose();
        _z.Dispose();
        _zNetwork.Dispose();
        _target.Dispose();
        _mean.Dispose();
    }
}
