using PoissonFlow.Kernels;
using PoissonFlow.Network;

namespace PoissonFlow.Tests;

public sealed class PosteriorMeanNetworkTests
{
    private const float Scale = 0.65f;

    [TestCase(PosteriorMeanForm.Direct)]
    [TestCase(PosteriorMeanForm.Residual)]
    public void Predict_is_the_field_of_the_inner_output_through_the_form(PosteriorMeanForm form)
    {
        var device = TestDevice.Cpu;
        const int batch = 23, dim = 2;
        var rng = new Random(form == PosteriorMeanForm.Direct ? 5 : 6);
        var points = Numerics.Normal(rng, batch * dim).Select((v, i) => v * MathF.Pow(10, i % 3 - 1)).ToArray();
        var z = Numerics.Uniform(rng, batch, 1e-3f, 30f);
        using var network = new PosteriorMeanNetwork(new Mlp(device, new MlpConfig(dim, 8, 16, 2, EmbeddingInput.LogZ), seed: 3), Scale, form);
        using var pointsBuffer = device.Accelerator.Allocate1D(points);
        using var zBuffer = device.Accelerator.Allocate1D(z);
        using var output = device.Accelerator.Allocate1D(Numerics.Poison(batch * (dim + 1)));
        network.Predict(pointsBuffer.View, zBuffer.View, output.View, batch);

        // the inner MLP on the radially scaled inputs, then the form's ȳ, then the normalised field, in float64
        using var scaled = device.Accelerator.Allocate1D(RadialScale.Reference(points, z, batch, dim, Scale).Select(v => (float)v).ToArray());
        using var inner = device.Accelerator.Allocate1D(Numerics.Poison(batch * (dim + 1)));
        network.Inner.Predict(scaled.View, zBuffer.View, inner.View, batch);
        var innerRows = inner.GetAsArray1D();
        var mean = form == PosteriorMeanForm.Residual
            ? RadialScale.SkipReference(points, z, innerRows, batch, dim, Scale).Select(v => (float)v).ToArray()
            : innerRows;
        var expected = PosteriorMeanField.FieldReference(mean, points, z, batch, dim);
        // float32 chain (scaling, MLP, skip, normalisation) against float64 after the MLP: the field has norm √2 and
        // divides by |(ȳ - x, z)| >= z >= 1e-3, so the MLP's own rounding (~1e-6 of values up to ~40) can grow to ~1e-4
        Numerics.AssertClose(output.GetAsArray1D(), expected, rtol: 1e-3, atol: 2e-4, $"{form} field");
    }

    [TestCase(PosteriorMeanForm.Direct)]
    [TestCase(PosteriorMeanForm.Residual)]
    public void Training_target_is_what_the_inner_output_is_compared_with(PosteriorMeanForm form)
    {
        var device = TestDevice.Cpu;
        const int batch = 17, dim = 2;
        var rng = new Random(11);
        var points = Numerics.Normal(rng, batch * dim, 3f);
        var z = Numerics.Uniform(rng, batch, 1e-3f, 30f);
        var mean = Numerics.Uniform(rng, batch * dim);
        using var network = new PosteriorMeanNetwork(new Mlp(device, new MlpConfig(dim, 8, 16, 2, EmbeddingInput.LogZ), seed: 3), Scale, form);
        using var pointsBuffer = device.Accelerator.Allocate1D(points);
        using var zBuffer = device.Accelerator.Allocate1D(z);
        using var meanBuffer = device.Accelerator.Allocate1D(mean);
        using var target = device.Accelerator.Allocate1D(Numerics.Poison(batch * (dim + 1)));
        network.TrainingTarget(meanBuffer.View, pointsBuffer.View, zBuffer.View, target.View, batch);
        var expected = form == PosteriorMeanForm.Residual
            ? RadialScale.ResidualReference(points, z, mean, batch, dim, Scale)
            : Enumerable.Range(0, batch * (dim + 1)).Select(k => k % (dim + 1) == dim ? 0.0 : mean[k / (dim + 1) * dim + k % (dim + 1)]).ToArray();
        // a copy, or the residual kernel's few ulps on values of order 1
        Numerics.AssertClose(target.GetAsArray1D(), expected, rtol: 1e-5, atol: 1e-6, $"{form} target");
    }

    [TestCase(PosteriorMeanForm.Residual)]
    [TestCase(PosteriorMeanForm.Direct)]
    [TestCase(null)]
    public void The_sampling_card_carries_the_form_and_an_older_card_means_direct(PosteriorMeanForm? form)
    {
        var card = new SamplingCard
        {
            DataShape = [2], Hyper = new PoissonFlow.Data.PfgmHyperParameters(274, 26.3, 525), PosteriorMeanScale = Scale, MeanForm = form, ZMin = 0.01,
        };
        var read = SamplingCard.FromJson(card.ToJson());
        Assert.That(read.MeanForm, Is.EqualTo(form));
        using var network = ModelRegistry.ForSampling(new Mlp(TestDevice.Cpu, new MlpConfig(2, 8, 16, 1), seed: 1), read);
        Assert.That(network, Is.TypeOf<PosteriorMeanNetwork>());
        Assert.That(((PosteriorMeanNetwork)network).Form, Is.EqualTo(form ?? PosteriorMeanForm.Direct));
    }

    [Test]
    public void An_unknown_form_is_rejected()
    {
        using var inner = new Mlp(TestDevice.Cpu, new MlpConfig(2, 8, 16, 1), seed: 1);
        Assert.That(() => new PosteriorMeanNetwork(inner, Scale, (PosteriorMeanForm)7), Throws.ArgumentException.With.Message.Contains("form"));
    }
}
