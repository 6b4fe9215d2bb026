using PoissonFlow.Kernels;
using static PoissonFlow.Tests.FiniteDifference;

namespace PoissonFlow.Tests;

public sealed class SoftmaxCrossEntropyTests
{
    [TestCase(1, 2)]
    [TestCase(37, 10)]
    public void ForwardBackwardMatchesReferenceAndFiniteDifferences(int rows, int classes)
    {
        var rng = new Random(rows * 31 + classes);
        var logits = Numerics.Uniform(rng, rows * classes, -6f, 6f);
        if (rows > 2)
        {
            // Rows whose exp would overflow (and underflow) float32 without the max subtraction.
            for (int c = 0; c < classes; c++)
            {
                logits[c] = 95f + c;
                logits[classes + c] = -120f - 3 * c;
            }
        }

        var labels = Enumerable.Range(0, rows).Select(_ => rng.Next(classes)).ToArray();
        var initialLoss = Numerics.Uniform(rng, rows, 0.5f, 2f); // the kernel adds to what is there
        const float scale = 0.375f;
        var device = TestDevice.Cpu;
        using var logitsBuffer = device.Accelerator.Allocate1D(logits);
        using var labelBuffer = device.Accelerator.Allocate1D(labels);
        using var lossBuffer = device.Accelerator.Allocate1D(initialLoss);
        using var gradientBuffer = device.Accelerator.Allocate1D(Numerics.Poison(rows * classes));
        var op = SoftmaxCrossEntropy.For(device);
        op.ForwardBackward(logitsBuffer.View, labelBuffer.View, lossBuffer.View, gradientBuffer.View, rows, classes, scale);
        var (loss, gradient) = SoftmaxCrossEntropy.Reference(logits.Wide(), labels, rows, classes, scale);
        // log-sum-exp of |x| <= ~130 in float32: the max is exact and log(sum) (sum in [1, classes]) carries a few
        // ulps, so the loss is good to ~1e-5 absolute; +initial keeps that.
        Numerics.AssertClose(lossBuffer.GetAsArray1D(), loss.Select((l, r) => initialLoss[r] + scale * l).ToArray(), 1e-6, 2e-5, "row loss");
        var kernelGradient = gradientBuffer.GetAsArray1D();
        // softmax probabilities in [0, 1] from one exp and one reciprocal: ~1e-7 relative, times scale.
        Numerics.AssertClose(kernelGradient, gradient, 1e-5, 1e-6, "dLogits vs reference");
        double Total(double[] x) => SoftmaxCrossEntropy.Reference(x, labels, rows, classes, scale).RowLoss.Sum() * scale;
        // Central differences of the float64 loss (h = 1e-5: truncation ~1e-10) against the float32 gradient.
        Numerics.AssertClose(kernelGradient, Gradient(Total, logits.Wide()), 1e-4, 1e-5, "dLogits vs finite differences");

        using var evalLoss = device.Accelerator.Allocate1D(Numerics.Poison(rows));
        op.Forward(logitsBuffer.View, labelBuffer.View, evalLoss.View, rows, classes);
        Numerics.AssertClose(evalLoss.GetAsArray1D(), loss, 1e-6, 2e-5, "forward-only row loss");
    }

    [Test]
    public void OutOfRangeLabelGivesNaNRowOnly()
    {
        var logits = new[] { 1f, 2f, 3f, 0.5f, -1f, 2f };
        var device = TestDevice.Cpu;
        using var logitsBuffer = device.Accelerator.Allocate1D(logits);
        using var labelBuffer = device.Accelerator.Allocate1D(new[] { 2, 3 });
        using var lossBuffer = device.Accelerator.Allocate1D(new float[2]);
        using var gradientBuffer = device.Accelerator.Allocate1D(Numerics.Poison(6));
        SoftmaxCrossEntropy.For(device).ForwardBackward(logitsBuffer.View, labelBuffer.View, lossBuffer.View, gradientBuffer.View, 2, 3, 1f);
        var loss = lossBuffer.GetAsArray1D();
        var gradient = gradientBuffer.GetAsArray1D();
        Assert.That(loss[0], Is.EqualTo(Math.Log(Math.Exp(-2) + Math.Exp(-1) + 1)).Within(1e-6));
        Assert.That(float.IsNaN(loss[1]) && gradient.Skip(3).All(float.IsNaN), "row with label 3 of 3 classes");
        Assert.That(gradient.Take(3).Sum(), Is.EqualTo(0).Within(1e-6), "softmax - onehot sums to zero");
    }

    [Test]
    public void RejectsShortViews()
    {
        var device = TestDevice.Cpu;
        using var logits = device.Accelerator.Allocate1D<float>(8);
        using var labels = device.Accelerator.Allocate1D<int>(3);
        using var loss = device.Accelerator.Allocate1D<float>(4);
        var op = SoftmaxCrossEntropy.For(device);
        Assert.That(() => op.Forward(logits.View, labels.View, loss.View, 4, 2), Throws.ArgumentException.With.Message.Contains("labels"));
        Assert.That(() => op.Forward(logits.View, labels.View, loss.View, 3, 3), Throws.ArgumentException.With.Message.Contains("logits"));
        Assert.That(() => op.Forward(logits.View, labels.View, loss.View, 3, 1), Throws.ArgumentException.With.Message.Contains("2 classes"));
    }
}
