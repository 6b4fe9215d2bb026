using PoissonFlow.Kernels;
using PoissonFlow.Kernels.Device;
using PoissonFlow.Reference;
using static TorchSharp.torch;

namespace PoissonFlow.ReferenceTests;

/// <summary>
/// Our fused <see cref="PoissonField"/> (float32, ILGPU CPU accelerator) against libtorch's tuned formulation in
/// float64 on identical random inputs; and that tuned formulation against the official broadcast code, so the
/// reference itself is tied to Poisson_flow/losses.py.
/// </summary>
public sealed class PoissonFieldReferenceTests
{
    private const int Batch = 16, Count = 300, Dim = 784;
    private ComputeDevice? _device;

    [OneTimeTearDown]
    public void DisposeDevice() => _device?.Dispose();

    private static IEnumerable<TestCaseData> Cases()
    {
        // PFGM: z spread over the training range of the official code's perturbation (spec section 2).
        yield return new TestCaseData(FieldOptions.Pfgm(), 0.05f, 40f).SetName("Pfgm_16x300x784");
        // PFGM++ D = 128: r = sigma sqrt(D) with sigma from 0.05 to 20, from nearly one-hot to nearly uniform weights.
        yield return new TestCaseData(FieldOptions.PfgmPlusPlus(128), 0.05f * MathF.Sqrt(128), 20f * MathF.Sqrt(128))
            .SetName("PfgmPlusPlus_D128_16x300x784");
    }

    [TestCaseSource(nameof(Cases))]
    public void KernelMatchesLibtorchInFloat64(FieldOptions options, float extraLow, float extraHigh)
    {
        var (points, extra, data) = Inputs(seed: 1234, extraLow, extraHigh);
        _device ??= ComputeDevice.Create(DeviceKind.Cpu);

        float[] actual = PoissonField.For(_device).Compute(points, extra, data, Batch, Count, Dim, options);
        double[] expected = TunedFloat64(points, extra, data, options);

        // float32 kernel vs float64: d^2 summed over 784 terms carries ~1e-6 relative error, which the exponent
        // (N+D)/2 ~ 400 amplifies in the log-weights; 1e-4 per row leaves room for that and nothing more.
        double error = MaxRowRelativeError(actual, expected, options.OutputWidth(Dim));
        TestContext.Out.WriteLine($"{options.Kind}: max row relative error {error:E2}");
        Assert.That(error, Is.LessThanOrEqualTo(1e-4));
    }

    [Test]
    public void TunedFormulationMatchesTheOfficialBroadcastCode()
    {
        var (points, extra, data) = Inputs(seed: 99, 0.05f, 40f);
        double[] tuned = TunedFloat64(points, extra, data, FieldOptions.Pfgm());
        using var scope = NewDisposeScope();
        double[] official = TorchField.OfficialPfgm(
            ToFloat64(points, Batch, Dim), ToFloat64(extra, Batch), ToFloat64(data, Count, Dim), 5f).data<double>().ToArray();
        // Both float64; they differ only by the official 1e-7 epsilons, which move each weight by ~(N+1) 1e-7 / d ~ 1e-6.
        double error = MaxRowRelativeError(official.Select(v => (float)v).ToArray(), tuned, Dim + 1);
        TestContext.Out.WriteLine($"official vs tuned: max row relative error {error:E2}");
        Assert.That(error, Is.LessThanOrEqualTo(1e-5));
    }

    /// <summary>Fresh random inputs in the data range [-1, 1], and extra coordinates uniform in [low, high).</summary>
    private static (float[] Points, float[] Extra, float[] Data) Inputs(int seed, float extraLow, float extraHigh)
    {
        var rng = new Random(seed);
        float[] Uniform(int n, float lo, float hi) => Enumerable.Range(0, n).Select(_ => lo + (hi - lo) * rng.NextSingle()).ToArray();
        float[] data = Uniform(Count * Dim, -1f, 1f);
        // Half the points are perturbed copies of reference rows (as in training, where the reference batch holds
        // the originals), half lie anywhere: both peaked and spread weights are exercised.
        float[] points = Uniform(Batch * Dim, -1f, 1f);
        for (int i = 0; i < Batch / 2; i++)
        {
            for (int k = 0; k < Dim; k++) points[i * Dim + k] = data[i * Dim + k] + 0.3f * (points[i * Dim + k]);
        }

        return (points, Uniform(Batch, extraLow, extraHigh), data);
    }

    private static double[] TunedFloat64(float[] points, float[] extra, float[] data, FieldOptions options)
    {
        using var scope = NewDisposeScope();
        return TorchField.Tuned(ToFloat64(points, Batch, Dim), ToFloat64(extra, Batch), ToFloat64(data, Count, Dim), options)
            .data<double>().ToArray();
    }

    private static Tensor ToFloat64(float[] values, params long[] shape) => tensor(values, shape).to_type(ScalarType.Float64);

    /// <summary>max over rows of |actual_i - expected_i| / |expected_i| (L2 norms); NaN (an unwritten output) fails it.</summary>
    private static double MaxRowRelativeError(float[] actual, double[] expected, int width)
    {
        Assert.That(actual, Has.Length.EqualTo(expected.Length), "output length");
        double worst = 0;
        for (int row = 0; row < expected.Length / width; row++)
        {
            double diff = 0, norm = 0;
            for (int k = row * width; k < (row + 1) * width; k++)
            {
                diff += (actual[k] - expected[k]) * (actual[k] - expected[k]);
                norm += expected[k] * expected[k];
            }

            double error = Math.Sqrt(diff / norm);
            if (double.IsNaN(error)) return double.PositiveInfinity;
            worst = Math.Max(worst, error);
        }

        return worst;
    }
}
