using PoissonFlow.Kernels;
using PoissonFlow.Sampling;

namespace PoissonFlow.Tests;

/// <summary>The sampler's kernels on a real GPU (warp-per-row reductions, CUDA math); ignored without CUDA.</summary>
[Category("Cuda")]
public sealed class SamplingCudaTests
{
    [Test]
    public void DriftStageWithWarpPerRowMatchesReference()
    {
        using var device = TestDevice.CudaOrIgnore();
        const int batch = 9, dim = 96;
        var rng = new Random(31);
        var field = Numerics.Uniform(rng, batch * (dim + 1), -0.9f, 0.9f);
        for (int b = 0; b < batch; b++) field[b * (dim + 1) + dim] = -0.5f - rng.NextSingle();
        var stages = Numerics.Uniform(rng, 3 * batch * dim);
        var baseState = Numerics.Uniform(rng, batch * dim, -3f, 3f);
        var drift = new DriftSettings(0.5f, 0.5f, 5f, 5f);
        var combination = StageCombination.Create([0.3, -0.7], [2, 0], 0.45, 0.25);
        using var fieldBuffer = device.Accelerator.Allocate1D(field);
        using var stageBuffer = device.Accelerator.Allocate1D(stages);
        using var baseBuffer = device.Accelerator.Allocate1D(baseState);
        using var nextBuffer = device.Accelerator.Allocate1D(Numerics.Poison(batch * dim));
        using var zBuffer = device.Accelerator.Allocate1D(Numerics.Poison(batch));
        OdeSteps.For(device).DriftStage(fieldBuffer.View, stageBuffer.View, 1, baseBuffer.View, nextBuffer.View, zBuffer.View, batch, dim, drift, combination);
        var expectedDrift = OdeSteps.DriftReference(field.Select(v => (double)v).ToArray(), batch, dim, drift);
        var expected = OdeSteps.CombineReference(stages.Select(v => (double)v).ToArray(), baseState.Select(v => (double)v).ToArray(), expectedDrift, combination);
        // As on the CPU, plus a different summation order of the 96-term norm (shuffle tree): still a few ulps.
        Numerics.AssertClose(nextBuffer.GetAsArray1D(), expected, 1e-5, 1e-5, "next stage input on CUDA");
    }

    [Test]
    public void Rk45DecodeMatchesReferenceOnCuda()
    {
        using var device = TestDevice.CudaOrIgnore();
        const int batch = 8, dim = 2;
        var field = new PointChargeField(dim, [-1.0, 0.2, 1.0, -0.3], [1.0, 2.0], 5);
        using var points = device.Accelerator.Allocate1D<float>(batch * dim);
        Prior.For(device).Pfgm(points.View, batch, dim, 10f, 50f, seed: 4);
        var start = points.GetAsArray1D();
        using var sampler = new PfgmSampler(device, batch, dim);
        var (end, _) = sampler.Decode(field, start, new PfgmOdeOptions { ZMax = 10, ZMin = 1e-2 });
        var reference = SamplingReference.Integrate(field, start, 10, 1e-2, 5, 5);
        // The CPU test's bound (observed 1.7e-4 there with rtol = atol = 1e-4).
        Assert.That(SamplingReference.MaxRowError(end, reference, dim), Is.LessThan(1e-3));
    }
}
