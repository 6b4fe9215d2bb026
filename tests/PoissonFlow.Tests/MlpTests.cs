using PoissonFlow.Kernels;
using PoissonFlow.Kernels.Device;
using PoissonFlow.Network;
using static PoissonFlow.Tests.FiniteDifference;

namespace PoissonFlow.Tests;

/// <summary>A batch of (points, z, target) on the host and the device.</summary>
internal sealed class FieldBatch : IDisposable
{
    public FieldBatch(int seed, int batch, int dim, Func<float[], float, float[]>? target = null, ComputeDevice? device = null)
    {
        var rng = new Random(seed);
        Batch = batch;
        Points = Numerics.Uniform(rng, batch * dim);
        Z = Numerics.Uniform(rng, batch, 0.05f, 3f);
        target ??= (_, _) => Numerics.Uniform(rng, dim + 1);
        Target = Enumerable.Range(0, batch).SelectMany(b => target(Points[(b * dim)..((b + 1) * dim)], Z[b])).ToArray();
        var accelerator = (device ?? TestDevice.Cpu).Accelerator;
        PointsBuffer = accelerator.Allocate1D(Points);
        ZBuffer = accelerator.Allocate1D(Z);
        TargetBuffer = accelerator.Allocate1D(Target);
    }

    public int Batch { get; }

    public float[] Points { get; }

    public float[] Z { get; }

    public float[] Target { get; }

    public MemoryBuffer1D<float, Stride1D.Dense> PointsBuffer { get; }

    public MemoryBuffer1D<float, Stride1D.Dense> ZBuffer { get; }

    public MemoryBuffer1D<float, Stride1D.Dense> TargetBuffer { get; }

    /// <summary>A smooth field to learn: depends on both coordinates and on z.</summary>
    public static float[] SmoothField(float[] x, float z) => [-x[0] * z, MathF.Sin(2 * x[1]), 0.5f - 0.3f * z];

    public float Step(Trainer trainer) => trainer.Step(PointsBuffer.View, ZBuffer.View, TargetBuffer.View, Batch);

    public void Dispose()
    {
        PointsBuffer.Dispose();
        ZBuffer.Dispose();
        TargetBuffer.Dispose();
    }
}

public sealed class MlpTests
{
    private static readonly MlpConfig s_small = new(Dim: 2, EmbeddingSize: 8, Hidden: 16, Depth: 2, OutputInitScale: 1f);

    [TestCase(GemmVariant.Coarse, false)]
    [TestCase(GemmVariant.Tiled, true)]
    public void LossGradientMatchesFiniteDifferencesOfFloat64ReferenceForEveryParameter(GemmVariant variant, bool reduceMean) =>
        CheckGradients(TestDevice.Cpu, variant, reduceMean);

    [Test, Category("Cuda")]
    public void CudaLossGradientMatchesFiniteDifferencesOfFloat64Reference()
    {
        using var device = TestDevice.CudaOrIgnore();
        // XMath.Exp is ex2.approx on CUDA: SiLU is ~1e-6 relative off, inside the tolerances below.
        CheckGradients(device, GemmVariant.Tiled, reduceMean: false);
        CheckGradients(device, GemmVariant.Coarse, reduceMean: true);
    }

    private static void CheckGradients(ComputeDevice device, GemmVariant variant, bool reduceMean)
    {
        const int batch = 5;
        using var mlp = new Mlp(device, s_small, seed: 3);
        using var data = new FieldBatch(11, batch, s_small.Dim, device: device);
        using var dPred = device.Accelerator.Allocate1D(Numerics.Poison(batch * 3));
        using var rowLoss = device.Accelerator.Allocate1D<float>(batch);
        rowLoss.MemSetToZero();
        var linear = Linear.For(device);
        linear.Variant = variant;
        try
        {
            var prediction = mlp.ForwardTraining(data.PointsBuffer.View, data.ZBuffer.View, batch);
            FieldLoss.For(device).ForwardBackward(prediction, data.TargetBuffer.View, dPred.View, rowLoss.View, batch, 3, reduceMean);
            mlp.Backward(dPred.View, batch);
            var predicted = ((ArrayView1D<float, Stride1D.Dense>)prediction).GetAsArray1D();
            var gradients = mlp.Parameters.Download(ParameterBuffer.Gradients);
            var weights = mlp.Parameters.Download(ParameterBuffer.Weights).Wide();
            double[] points = data.Points.Wide(), z = data.Z.Wide(), target = data.Target.Wide();
            double Loss(double[] w) =>
                FieldLoss.Reference(Mlp.ForwardReference(s_small, mlp.Parameters, w, points, z, batch), target, batch, 3, reduceMean);

            // Three float32 layers of <= 16-term dot products: ~1e-6 relative.
            Numerics.AssertClose(predicted, Mlp.ForwardReference(s_small, mlp.Parameters, weights, points, z, batch), 1e-5, 1e-5, "prediction");
            var expected = Gradient(Loss, weights);
            double scale = expected.Max(Math.Abs);
            // Float32 backward through three layers vs exact: ~1e-6 of the largest gradient; FD error ~1e-10.
            foreach (var tensor in mlp.Parameters.Tensors)
            {
                Numerics.AssertClose(mlp.Parameters.Slice(gradients, tensor), expected.AsSpan((int)tensor.Offset, (int)tensor.Length).ToArray(),
                    1e-4, 1e-5 * scale, $"{variant}: gradient of {tensor.Name}");
            }
        }
        finally
        {
            linear.Variant = GemmVariant.Auto;
        }
    }

    [TestCase(InferenceWeights.Live)]
    [TestCase(InferenceWeights.Ema)]
    public void PredictMatchesFloat64Reference(InferenceWeights which)
    {
        const int batch = 13;
        var config = s_small with { Depth = 3, EmbeddingInput = EmbeddingInput.LogZ };
        var device = TestDevice.Cpu;
        using var mlp = new Mlp(device, config, seed: 8) { InferenceWeights = which };
        // Make the EMA differ from the weights so the test sees which buffer was used.
        var ema = mlp.Parameters.Download(ParameterBuffer.Ema).Select(v => v * 0.5f).ToArray();
        mlp.Parameters.Upload(ParameterBuffer.Ema, ema);
        using var data = new FieldBatch(4, batch, config.Dim);
        using var output = device.Accelerator.Allocate1D(Numerics.Poison(batch * 3));
        mlp.Predict(data.PointsBuffer.View, data.ZBuffer.View, output.View, batch);
        var weights = mlp.Parameters.Download(which == InferenceWeights.Ema ? ParameterBuffer.Ema : ParameterBuffer.Weights).Wide();
        var expected = Mlp.ForwardReference(config, mlp.Parameters, weights, data.Points.Wide(), data.Z.Wide(), batch);
        Numerics.AssertClose(output.GetAsArray1D(), expected, 1e-5, 1e-5, $"predict with {which} weights");
    }

    [Test]
    public void InitialisationIsDeterministicAndFollowsTheDocumentedBounds()
    {
        var device = TestDevice.Cpu;
        var config = new MlpConfig(Dim: 2, EmbeddingSize: 8, Hidden: 32, Depth: 2, OutputInitScale: 0.1f);
        using var a = new Mlp(device, config, seed: 5);
        using var b = new Mlp(device, config, seed: 5);
        using var c = new Mlp(device, config, seed: 6);
        var wa = a.Parameters.Download(ParameterBuffer.Weights);
        Assert.That(b.Parameters.Download(ParameterBuffer.Weights), Is.EqualTo(wa));
        Assert.That(c.Parameters.Download(ParameterBuffer.Weights), Is.Not.EqualTo(wa));
        var first = a.Parameters.Slice(wa, a.Parameters.Tensor("layers.0.weight"));
        var last = a.Parameters.Slice(wa, a.Parameters.Tensor("layers.2.weight"));
        Assert.Multiple(() =>
        {
            Assert.That(first.Max(Math.Abs), Is.LessThanOrEqualTo(1 / Math.Sqrt(10)).And.GreaterThan(0.8 / Math.Sqrt(10)));
            Assert.That(last.Max(Math.Abs), Is.LessThanOrEqualTo(0.1 / Math.Sqrt(32)).And.GreaterThan(0.08 / Math.Sqrt(32)));
            Assert.That(a.Parameters.Slice(wa, a.Parameters.Tensor("layers.2.bias")), Is.All.EqualTo(0f));
            Assert.That(a.Parameters.Download(ParameterBuffer.Ema), Is.EqualTo(wa));
        });
    }

    [Test]
    public void TwoWeightedMicroBatchesAccumulateTheFullBatchGradient()
    {
        var device = TestDevice.Cpu;
        using var mlp = new Mlp(device, s_small, seed: 4);
        using var trainer = new Trainer(mlp, new TrainerOptions(new AdamOptions()));
        using var full = new FieldBatch(6, 8, 2, FieldBatch.SmoothField);
        trainer.Accumulate(full.PointsBuffer.View, full.ZBuffer.View, full.TargetBuffer.View, 8);
        var expected = mlp.Parameters.Download(ParameterBuffer.Gradients).Wide();
        mlp.Parameters.Upload(ParameterBuffer.Gradients, new float[mlp.Parameters.Count]);
        for (int half = 0; half < 2; half++)
        {
            trainer.Accumulate(full.PointsBuffer.View.SubView(half * 8, 8), full.ZBuffer.View.SubView(half * 4, 4),
                full.TargetBuffer.View.SubView(half * 12, 12), 4, weight: 0.5f);
        }

        // Same products, summed in two parts instead of one: float32 rounding only.
        double scale = expected.Max(Math.Abs);
        Numerics.AssertClose(mlp.Parameters.Download(ParameterBuffer.Gradients), expected, 1e-5, 1e-6 * scale, "micro-batched gradient");
    }

    [Test]
    public void TrainingReducesTheLossOnAFixedSmoothField()
    {
        var device = TestDevice.Cpu;
        var config = new MlpConfig(Dim: 2, EmbeddingSize: 16, Hidden: 32, Depth: 2);
        using var mlp = new Mlp(device, config, seed: 1);
        using var trainer = new Trainer(mlp, new TrainerOptions(new AdamOptions(LearningRate: 1e-2f, WarmupSteps: 10, EmaRate: 0.99f), LossInterval: 200));
        using var data = new FieldBatch(2, 32, 2, FieldBatch.SmoothField);
        float first = data.Step(trainer);
        for (int i = 1; i < 200; i++) data.Step(trainer);
        float last = trainer.ReadLoss();
        TestContext.Out.WriteLine($"loss {first} -> {last}");
        // Seen: 0.87 -> 0.09 (batch 64); a clear reduction is a factor of 4, far beyond step-to-step noise.
        Assert.That(last, Is.LessThan(0.25f * first), $"loss went from {first} to {last} in 200 steps");
    }

    [Test]
    public void NonFiniteTargetStopsTrainingNamingTheStepAndTensors()
    {
        var device = TestDevice.Cpu;
        using var mlp = new Mlp(device, s_small, seed: 1);
        using var trainer = new Trainer(mlp, new TrainerOptions(new AdamOptions(WarmupSteps: 0), LossInterval: 3));
        using var data = new FieldBatch(2, 8, 2, FieldBatch.SmoothField);
        data.Step(trainer);
        data.Step(trainer);
        var target = (float[])data.Target.Clone();
        target[4] = float.PositiveInfinity;
        data.TargetBuffer.CopyFromCPU(target);
        var weightsBefore = mlp.Parameters.Download(ParameterBuffer.Weights);
        var error = Assert.Throws<TrainingDivergedException>(() => data.Step(trainer));
        Assert.Multiple(() =>
        {
            Assert.That(error!.Step, Is.EqualTo(2));
            Assert.That(error.Message, Does.Contain("step 2").And.Contain("layers.2.weight"));
            Assert.That(error.Tensors, Does.Contain("layers.0.bias"));
            Assert.That(mlp.Parameters.Download(ParameterBuffer.Weights), Is.EqualTo(weightsBefore), "the bad update is not applied");
        });
    }
}
