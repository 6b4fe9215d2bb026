using PoissonFlow.Kernels;
using TorchSharp;
using static TorchSharp.torch;

namespace PoissonFlow.Reference;

/// <summary>
/// The empirical Poisson field written with libtorch, in two formulations: the official broadcast code of
/// Poisson_flow/losses.py (spec section 3) and a tuned one (cdist + log_softmax + mm) that never forms the
/// B x M x N differences. Works in the dtype of its inputs: float64 for reference tests, float32 for benchmarks.
/// Shared, as a linked file, by the reference tests and the benchmarks.
/// </summary>
public static class TorchField
{
    /// <summary>
    /// Tuned formulation. <paramref name="points"/> is B x N, <paramref name="extra"/> holds B values (z for PFGM,
    /// r for PFGM++), <paramref name="data"/> is M x N. Returns B x <see cref="FieldOptions.OutputWidth"/>, laid out
    /// like <see cref="PoissonField"/>'s output. Temporaries: two B x M tensors, no B x M x N one.
    /// </summary>
    public static Tensor Tuned(Tensor points, Tensor extra, Tensor data, FieldOptions options)
    {
        long dim = points.shape[1];
        using var scope = NewDisposeScope();
        // The data sit at 0 in the extra coordinates, so those add z^2 (or r^2) to every squared distance.
        var squaredDistance = cdist(points, data).pow_(2).add_(extra.square().unsqueeze(1));
        double exponent = options.Kind == FieldKind.Pfgm ? dim + 1 : dim + options.ExtraDims;
        // Weights proportional to d^-exponent, normalised over the reference set in the log domain.
        var weights = nn.functional.log_softmax(squaredDistance.log_().mul_(-exponent / 2), 1).exp_();
        var mean = mm(weights, data);
        if (options.Kind == FieldKind.PfgmPlusPlus) return mean.MoveToOuterDisposeScope();

        // E = sum_j w_j (q_j - p) with sum_j w_j = 1: x part mean - x, extra part -z.
        var field = cat([mean.sub_(points), extra.neg().unsqueeze(1)], 1);
        var norm = field.norm(1, keepdim: true);
        return field.mul_(Math.Sqrt(dim)).div_(norm.add_(options.Gamma)).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// The official PFGM target, line for line as in Poisson_flow/losses.py (including its 1e-7 epsilons and the
    /// min-ratio stability trick). Creates five B x M x (N+1) temporaries, at most two alive at once (freed as
    /// eagerly as Python's reference counting would): see <see cref="OfficialTemporaryCount"/>.
    /// </summary>
    public static Tensor OfficialPfgm(Tensor points, Tensor extra, Tensor data, float gamma)
    {
        long count = data.shape[0], dim = points.shape[1];
        using var scope = NewDisposeScope();
        var perturbed = cat([points, extra.unsqueeze(1)], 1).unsqueeze(1);
        var real = cat([data, zeros(count, 1, data.dtype, data.device)], 1);

        var difference = perturbed - real;
        var squared = difference.pow(2);
        difference.Dispose();
        var distance = squared.sum(-1).sqrt_();
        squared.Dispose();

        var ratio = (distance.min(1, keepdim: true).values / (distance + 1e-7)).pow(dim + 1).unsqueeze(2);
        var coefficient = ratio / (ratio.sum(1, keepdim: true) + 1e-7);

        var difference2 = perturbed - real;
        var towardData = -difference2;
        difference2.Dispose();
        var weighted = coefficient * towardData;
        towardData.Dispose();
        var direction = weighted.sum(1);
        weighted.Dispose();

        var norm = direction.norm(1);
        return (direction / (norm.view(-1, 1) + gamma) * Math.Sqrt(dim)).MoveToOuterDisposeScope();
    }

    /// <summary>B x M x (N+1) temporaries the official formula creates, in total and alive at its peak.</summary>
    public static (int Created, int PeakAlive) OfficialTemporaryCount => (5, 2);
}
