using TorchSharp;
using static TorchSharp.torch;

namespace PoissonFlow.ReferenceTests;

/// <summary>
/// TorchSharp loads and computes on this machine. On Debian 12 this needs the GLIBCXX_3.4.32 patch of
/// build/TorchSharpDebian12.targets; without it the first torch call throws TypeInitializationException.
/// </summary>
public sealed class TorchSharpLoadTests
{
    [Test]
    public void LoadsTheExpectedLibtorch() =>
        Assert.That(__version__, Does.StartWith("2.10"), "libtorch version of libtorch-cpu-linux-x64 2.10.0");

    [Test]
    public void AutogradGivesTheAnalyticGradient()
    {
        var rng = new Random(7);
        double[] x = Enumerable.Range(0, 12).Select(_ => rng.NextDouble() * 4 - 2).ToArray();
        double[] w = Enumerable.Range(0, 12).Select(_ => rng.NextDouble() * 4 - 2).ToArray();
        using var scope = NewDisposeScope();
        var xt = tensor(x, [3, 4], float64).requires_grad_();
        var loss = (xt.pow(3) * tensor(w, [3, 4], float64)).sum();
        loss.backward();
        double[] grad = xt.grad!.data<double>().ToArray();
        // d/dx sum(w x^3) = 3 w x^2; float64 throughout, so agreement to rounding.
        for (int i = 0; i < x.Length; i++)
        {
            Assert.That(grad[i], Is.EqualTo(3 * w[i] * x[i] * x[i]).Within(1e-12), $"gradient element {i}");
        }
    }

    [Test]
    public void CdistMatchesEuclideanDistances()
    {
        // The tuned field reference rests on cdist; check it against a plain loop on fresh random rows.
        var rng = new Random(11);
        const int rows = 5, others = 7, dim = 33;
        double[] a = Enumerable.Range(0, rows * dim).Select(_ => rng.NextDouble() * 2 - 1).ToArray();
        double[] b = Enumerable.Range(0, others * dim).Select(_ => rng.NextDouble() * 2 - 1).ToArray();
        using var scope = NewDisposeScope();
        double[] d = cdist(tensor(a, [rows, dim], float64), tensor(b, [others, dim], float64)).data<double>().ToArray();
        for (int i = 0; i < rows; i++)
        {
            for (int j = 0; j < others; j++)
            {
                double sum = 0;
                for (int k = 0; k < dim; k++) sum += (a[i * dim + k] - b[j * dim + k]) * (a[i * dim + k] - b[j * dim + k]);
                // cdist uses |a|^2 + |b|^2 - 2ab in float64: cancellation costs a few ulps of |a|^2 ~ 11.
                Assert.That(d[i * others + j], Is.EqualTo(Math.Sqrt(sum)).Within(1e-12), $"distance ({i}, {j})");
            }
        }
    }
}
