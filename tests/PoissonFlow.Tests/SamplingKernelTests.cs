using PoissonFlow.Kernels;

namespace PoissonFlow.Tests;

/// <summary>Each fused ODE-step kernel and the prior kernel against their float64 references, outputs poisoned with NaN.</summary>
public sealed class SamplingKernelTests
{
    private const int Batch = 5, Dim = 37, Slots = 7;

    private static double[] D(float[] v) => v.Select(x => (double)x).ToArray();

    /// <summary>
    /// Runs the per-row kernels with 1 lane per row (the CPU shape) and with a 32-lane warp per row and shuffle
    /// reductions (the CUDA shape for long rows), which the CPU emulator also executes.
    /// </summary>
    [TearDown]
    public void RestoreLanes() => OdeSteps.For(TestDevice.Cpu).LanesPerRowOverride = null;

    private static void UseLanes(int lanes) => OdeSteps.For(TestDevice.Cpu).LanesPerRowOverride = lanes;

    /// <summary>A field row with |v_x| &lt; sqrt(N) (as a normalised field has), so the substitution's n1 &lt; 1.</summary>
    private static float[] RandomField(Random rng)
    {
        var field = Numerics.Uniform(rng, Batch * (Dim + 1), -0.9f, 0.9f);
        for (int b = 0; b < Batch; b++) field[b * (Dim + 1) + Dim] = -0.5f - rng.NextSingle(); // v_z < 0 points toward z = 0
        return field;
    }

    [TestCase(0.5f, 5f, 1, TestName = "DriftStage with the z-substitution")]
    [TestCase(0.5f, 5f, 32, TestName = "DriftStage with the z-substitution, warp per row")]
    [TestCase(8f, 5f, 1, TestName = "DriftStage above z_exp (network v_z)")]
    [TestCase(0.5f, 0f, 1, TestName = "DriftStage with gamma 0 (no substitution)")]
    public void DriftStageMatchesReference(float zStage, float gamma, int lanes)
    {
        UseLanes(lanes);
        var rng = new Random(11);
        var device = TestDevice.Cpu;
        var field = RandomField(rng);
        var stages = Numerics.Uniform(rng, Slots * Batch * Dim);
        var baseState = Numerics.Uniform(rng, Batch * Dim, -3f, 3f);
        var drift = new DriftSettings(zStage, zStage, gamma, 5f);
        // Rotated slots and a new stage in slot 2, as the Dormand-Prince slot rotation produces.
        var combination = StageCombination.Create([0.3, -0.7, 1.1], [4, 6, 0], 0.45, 0.123);
        const int outSlot = 2;

        using var fieldBuffer = device.Accelerator.Allocate1D(field);
        using var stageBuffer = device.Accelerator.Allocate1D(stages);
        using var baseBuffer = device.Accelerator.Allocate1D(baseState);
        using var nextBuffer = device.Accelerator.Allocate1D(Numerics.Poison(Batch * Dim));
        using var zBuffer = device.Accelerator.Allocate1D(Numerics.Poison(Batch));
        OdeSteps.For(device).DriftStage(fieldBuffer.View, stageBuffer.View, outSlot, baseBuffer.View, nextBuffer.View,
            zBuffer.View, Batch, Dim, drift, combination);

        var expectedDrift = OdeSteps.DriftReference(D(field), Batch, Dim, drift);
        var expectedNext = OdeSteps.CombineReference(D(stages), D(baseState), expectedDrift, combination);
        var actualStages = stageBuffer.GetAsArray1D();
        // Drift: a norm over 37 values, a few divisions and sqrt in float32: a few ulps of the O(1..10) drift.
        Numerics.AssertClose(actualStages.AsSpan(outSlot * Batch * Dim, Batch * Dim), expectedDrift, 1e-5, 1e-6, "drift");
        // Combination: 4 float32 multiply-adds of O(1) terms on top of the drift's error.
        Numerics.AssertClose(nextBuffer.GetAsArray1D(), expectedNext, 1e-5, 1e-5, "next stage input");
        Assert.That(zBuffer.GetAsArray1D(), Is.All.EqualTo(0.123f), "z of the next evaluation");
        // The other slots are inputs only.
        for (int s = 0; s < Slots; s++)
        {
            if (s == outSlot) continue;
            Assert.That(actualStages.AsSpan(s * Batch * Dim, Batch * Dim).ToArray(), Is.EqualTo(stages.AsSpan(s * Batch * Dim, Batch * Dim).ToArray()), $"slot {s} changed");
        }
    }

    [Test]
    public void DriftStageUpdatesInPlace()
    {
        var rng = new Random(12);
        var device = TestDevice.Cpu;
        var field = RandomField(rng);
        var stages = Numerics.Uniform(rng, 2 * Batch * Dim);
        var x = Numerics.Uniform(rng, Batch * Dim, -3f, 3f);
        var drift = new DriftSettings(0.2f, 0.2f, 5f, 5f);
        var combination = StageCombination.Create([0.25], [0], 0.25, 0.1);
        using var fieldBuffer = device.Accelerator.Allocate1D(field);
        using var stageBuffer = device.Accelerator.Allocate1D(stages);
        using var xBuffer = device.Accelerator.Allocate1D(x);
        using var zBuffer = device.Accelerator.Allocate1D(Numerics.Poison(Batch));
        OdeSteps.For(device).DriftStage(fieldBuffer.View, stageBuffer.View, 1, xBuffer.View, xBuffer.View, zBuffer.View, Batch, Dim, drift, combination);
        var expected = OdeSteps.CombineReference(D(stages), D(x), OdeSteps.DriftReference(D(field), Batch, Dim, drift), combination);
        // Same arithmetic as above: a few float32 multiply-adds.
        Numerics.AssertClose(xBuffer.GetAsArray1D(), expected, 1e-5, 1e-5, "in-place Heun update");
    }

    [TestCase(1)]
    [TestCase(32)]
    public void DriftErrorMatchesReference(int lanes)
    {
        UseLanes(lanes);
        var rng = new Random(13);
        var device = TestDevice.Cpu;
        var field = RandomField(rng);
        var stages = Numerics.Uniform(rng, Slots * Batch * Dim);
        var yOld = Numerics.Uniform(rng, Batch * Dim, -3f, 3f);
        var yNew = Numerics.Uniform(rng, Batch * Dim, -3f, 3f);
        var drift = new DriftSettings(0.3f, 0.3f, 5f, 5f);
        // Error weights of the size h E_j has for h ~ 0.1.
        var weights = StageCombination.Create([-1.2e-4, 0, 4.3e-4, -3.7e-3, 5.1e-3, -4.2e-3], [3, 4, 5, 6, 0, 1], 2.5e-3, 0);
        const float rtol = 1e-4f, atol = 1e-4f;
        using var fieldBuffer = device.Accelerator.Allocate1D(field);
        using var stageBuffer = device.Accelerator.Allocate1D(stages);
        using var oldBuffer = device.Accelerator.Allocate1D(yOld);
        using var newBuffer = device.Accelerator.Allocate1D(yNew);
        using var rowBuffer = device.Accelerator.Allocate1D(Numerics.Poison(Batch));
        OdeSteps.For(device).DriftError(fieldBuffer.View, stageBuffer.View, 2, oldBuffer.View, newBuffer.View, rowBuffer.View,
            Batch, Dim, drift, weights, rtol, atol);
        var newStage = OdeSteps.DriftReference(D(field), Batch, Dim, drift);
        var expected = OdeSteps.ErrorReference(D(stages), newStage, D(yOld), D(yNew), Batch, Dim, weights, rtol, atol);
        // The scaled error is a difference of terms ~1e-3 over a scale ~1e-4: cancellation costs ~1e-6 relative
        // of the largest term per element, squared sums of 37 elements; 1e-4 relative is ample and still fails a wrong weight.
        Numerics.AssertClose(rowBuffer.GetAsArray1D(), expected, 1e-4, 1e-4, "row error sums");
        Numerics.AssertClose(stageBuffer.GetAsArray1D().AsSpan(2 * Batch * Dim, Batch * Dim), newStage, 1e-5, 1e-6, "stored stage 7");
    }

    [Test]
    public void CombineMatchesReference()
    {
        var rng = new Random(14);
        var device = TestDevice.Cpu;
        var stages = Numerics.Uniform(rng, Slots * Batch * Dim);
        var baseState = Numerics.Uniform(rng, Batch * Dim, -3f, 3f);
        var combination = StageCombination.Create([0.1, 0.2, -0.3, 0.4, -0.5, 0.6, 0.7], [6, 5, 4, 3, 2, 1, 0], 0, 0.75);
        using var stageBuffer = device.Accelerator.Allocate1D(stages);
        using var baseBuffer = device.Accelerator.Allocate1D(baseState);
        using var nextBuffer = device.Accelerator.Allocate1D(Numerics.Poison(Batch * Dim));
        using var zBuffer = device.Accelerator.Allocate1D(Numerics.Poison(Batch));
        OdeSteps.For(device).Combine(stageBuffer.View, baseBuffer.View, nextBuffer.View, zBuffer.View, Batch, Dim, combination);
        var expected = OdeSteps.CombineReference(D(stages), D(baseState), [], combination);
        // Seven float32 multiply-adds of O(1) terms.
        Numerics.AssertClose(nextBuffer.GetAsArray1D(), expected, 1e-5, 1e-5, "combine");
        Assert.That(zBuffer.GetAsArray1D(), Is.All.EqualTo(0.75f));
    }

    [TestCase(1)]
    [TestCase(32)]
    public void ScaledNormMatchesReference(int lanes)
    {
        UseLanes(lanes);
        var rng = new Random(15);
        var device = TestDevice.Cpu;
        var y = Numerics.Uniform(rng, Batch * Dim, -3f, 3f);
        var u = Numerics.Uniform(rng, Batch * Dim);
        var w = Numerics.Uniform(rng, Batch * Dim);
        using var yBuffer = device.Accelerator.Allocate1D(y);
        using var uBuffer = device.Accelerator.Allocate1D(u);
        using var wBuffer = device.Accelerator.Allocate1D(w);
        using var rowBuffer = device.Accelerator.Allocate1D(Numerics.Poison(Batch));
        OdeSteps.For(device).ScaledNorm(yBuffer.View, uBuffer.View, wBuffer.View, rowBuffer.View, Batch, Dim, 2f, -3f, 1e-3f, 1e-2f);
        var expected = new double[Batch];
        for (int i = 0; i < Batch * Dim; i++) expected[i / Dim] += Math.Pow((2.0 * u[i] - 3.0 * w[i]) / (1e-2 + 1e-3 * Math.Abs(y[i])), 2);
        // A sum of 37 positive float32 squares: relative rounding ~1e-6.
        Numerics.AssertClose(rowBuffer.GetAsArray1D(), expected, 1e-5, 0, "scaled norm");
    }

    [TestCase(1, 3f, 1f, 20f, 1, TestName = "Prior PFGM (D = 1, clipped)")]
    [TestCase(6, 2.5f, 0f, float.PositiveInfinity, 1, TestName = "Prior PFGM++ (D = 6, unclipped)")]
    [TestCase(40, 2.5f, 0f, float.PositiveInfinity, 32, TestName = "Prior PFGM++ (D = 40, warp per row)")]
    public void PriorMatchesReference(int extraDims, float scale, float minRadius, float maxRadius, int lanes)
    {
        UseLanes(lanes);
        // Emulated warp shuffles cost milliseconds each on the CPU accelerator: few rows for the warp shape.
        int batch = lanes == 1 ? 64 : 6;
        const int dim = 5;
        var device = TestDevice.Cpu;
        using var points = device.Accelerator.Allocate1D(Numerics.Poison(batch * dim));
        Prior.For(device).Sample(points.View, batch, dim, extraDims, scale, minRadius, maxRadius, seed: 77);
        var expected = Prior.Reference(batch, dim, extraDims, scale, minRadius, maxRadius, seed: 77);
        // Same random bits; float32 log/cos/sqrt against float64: ~1e-6 relative per Gaussian, and the radius
        // g/|h| amplifies a small |h| (D = 1) by at most its relative error, so 1e-4 relative is generous but tight
        // enough to catch a wrong counter or norm.
        Numerics.AssertClose(points.GetAsArray1D(), expected, 1e-4, 1e-5, "prior");
    }
}
