using PoissonFlow.Kernels;

namespace PoissonFlow.Tests;

public sealed class GlobalNormTests
{
    [TestCase(1)]
    [TestCase(3001)]
    public void PartialsSumToTheSquaredNorm(int length)
    {
        var values = Numerics.Uniform(new Random(length), length);
        var device = TestDevice.Cpu;
        var norm = GlobalNorm.For(device);
        using var vb = device.Accelerator.Allocate1D(values);
        using var pb = device.Accelerator.Allocate1D(Numerics.Poison(norm.PartialCount));
        norm.SumOfSquaresPartials(vb.View, pb.View);
        double sum = pb.GetAsArray1D().Sum(v => (double)v);
        double expected = GlobalNorm.Reference(values.Select(v => (double)v).ToArray());
        // Float32 sums of <= 3001 squares <= 1: relative error ~ 1e-7 * sqrt(3001) per partial.
        Assert.That(Math.Sqrt(sum), Is.EqualTo(expected).Within(1e-5 * expected));
    }
}

public sealed class AdamTests
{
    /// <summary>Warmup, clipping (active: the norm of 1000 U(-1,1) values is ~18 > 0.5), weight decay and EMA all on.</summary>
    private static readonly AdamOptions s_options = new(LearningRate: 0.05f, WeightDecay: 0.01f, WarmupSteps: 3, GradClip: 0.5f, EmaRate: 0.9f);

    [Test]
    public void SixStepsMatchFloat64Reference()
    {
        const int n = 1000;
        var rng = new Random(5);
        var p = Numerics.Uniform(rng, n);
        var m = new float[n];
        var v = new float[n];
        var device = TestDevice.Cpu;
        var norm = GlobalNorm.For(device);
        using var pb = device.Accelerator.Allocate1D(p);
        using var gb = device.Accelerator.Allocate1D<float>(n);
        using var mb = device.Accelerator.Allocate1D(m);
        using var vb = device.Accelerator.Allocate1D(v);
        using var eb = device.Accelerator.Allocate1D(p);
        using var partials = device.Accelerator.Allocate1D<float>(norm.PartialCount);
        using var status = device.Accelerator.Allocate1D(new[] { -1 });
        double[] rp = p.Select(x => (double)x).ToArray(), rm = new double[n], rv = new double[n], re = (double[])rp.Clone();
        for (int step = 0; step < 6; step++)
        {
            // Step 2 uses tiny gradients so clipping is off for it (norm < 0.5): both branches run.
            var g = Numerics.Uniform(rng, n, step == 2 ? -1e-3f : -1f, step == 2 ? 1e-3f : 1f);
            gb.CopyFromCPU(g);
            norm.SumOfSquaresPartials(gb.View, partials.View);
            Adam.For(device).Step(pb.View, gb.View, mb.View, vb.View, eb.View, partials.View, status.View, s_options.ScalarsForStep(step));
            var rg = g.Select(x => (double)x).ToArray();
            Assert.That(Adam.Reference(rp, rg, rm, rv, re, s_options, step), Is.True);
            // Float32 state vs float64 over a few steps: each update is ~1e-6 relative off, errors add per step.
            string at = $"step {step}";
            Numerics.AssertClose(pb.GetAsArray1D(), rp, 2e-5, 2e-6, $"{at}: parameters");
            Numerics.AssertClose(mb.GetAsArray1D(), rm, 2e-5, 1e-8, $"{at}: m");
            Numerics.AssertClose(vb.GetAsArray1D(), rv, 2e-5, 1e-10, $"{at}: v");
            Numerics.AssertClose(eb.GetAsArray1D(), re, 2e-5, 2e-6, $"{at}: ema");
            Assert.That(gb.GetAsArray1D(), Is.All.EqualTo(0f), $"{at}: gradients are zeroed for the next accumulation");
        }

        Assert.That(status.GetAsArray1D()[0], Is.EqualTo(-1));
    }

    [Test]
    public void FirstStepHasZeroLearningRateDuringWarmup()
    {
        var s = s_options.ScalarsForStep(0);
        Assert.Multiple(() =>
        {
            Assert.That(s.LearningRate, Is.EqualTo(0f));
            Assert.That(s_options.ScalarsForStep(1).LearningRate, Is.EqualTo(0.05f / 3).Within(1e-9));
            Assert.That(s_options.ScalarsForStep(10).LearningRate, Is.EqualTo(0.05f));
            // n = 1 update: min(0.9, 2/11).
            Assert.That(s.EmaDecay, Is.EqualTo(2f / 11).Within(1e-7));
        });
    }

    [Test]
    public void LinearDecayReachesZeroAfterWarmupPlusDecaySteps()
    {
        var options = s_options with { DecaySteps = 8 };
        Assert.Multiple(() =>
        {
            Assert.That(options.ScalarsForStep(3).LearningRate, Is.EqualTo(0.05f), "warmup ends at full rate");
            Assert.That(options.ScalarsForStep(7).LearningRate, Is.EqualTo(0.025f).Within(1e-9), "half way through the decay");
            Assert.That(options.ScalarsForStep(11).LearningRate, Is.EqualTo(0f));
            Assert.That(options.ScalarsForStep(50).LearningRate, Is.EqualTo(0f), "stays at zero");
        });
    }

    [Test]
    public void NonFiniteGradientChangesNothingAndRecordsTheStep()
    {
        const int n = 100;
        var rng = new Random(9);
        var p = Numerics.Uniform(rng, n);
        var g = Numerics.Uniform(rng, n);
        g[37] = float.NaN;
        var device = TestDevice.Cpu;
        var norm = GlobalNorm.For(device);
        using var pb = device.Accelerator.Allocate1D(p);
        using var gb = device.Accelerator.Allocate1D(g);
        using var mb = device.Accelerator.Allocate1D<float>(n);
        using var vb = device.Accelerator.Allocate1D<float>(n);
        using var partials = device.Accelerator.Allocate1D<float>(norm.PartialCount);
        using var status = device.Accelerator.Allocate1D(new[] { -1 });
        mb.MemSetToZero();
        vb.MemSetToZero();
        norm.SumOfSquaresPartials(gb.View, partials.View);
        Adam.For(device).Step(pb.View, gb.View, mb.View, vb.View, default, partials.View, status.View, s_options.ScalarsForStep(41));
        Assert.Multiple(() =>
        {
            Assert.That(status.GetAsArray1D()[0], Is.EqualTo(41));
            Assert.That(pb.GetAsArray1D(), Is.EqualTo(p));
            Assert.That(float.IsNaN(gb.GetAsArray1D()[37]), Is.True, "the bad gradient stays for diagnosis");
        });
    }
}
