using PoissonFlow.Cli;
using PoissonFlow.Cli.Images;
using PoissonFlow.Network.UNet;

namespace PoissonFlow.Tests.Images;

/// <summary>The --model names map to the U-Net presets (or the MLP) for the run's image shape, or to a one-line error.</summary>
public sealed class ImageModelsTests
{
    private static ImageRunConfig Config(string model, int size = 8) => new() { Model = model, Channels = 1, Height = size, Width = size };

    [Test]
    public void Presets_build_for_the_image_shape()
    {
        using var small = (UNetNetwork)ImageModels.Create(TestDevice.Cpu, Config("small"));
        Assert.That(small.Config.ToJson(), Is.EqualTo(UNetConfig.Small(1, 8).ToJson()));
        Assert.That(small.Dim, Is.EqualTo(64));
        using var tiny = (UNetNetwork)ImageModels.Create(TestDevice.Cpu, Config("tiny", 12));
        Assert.That(tiny.Config.ToJson(), Is.EqualTo(UNetConfig.Tiny(1, 12).ToJson()));
    }

    [Test]
    public void Unknown_names_and_unfit_sizes_are_user_errors()
    {
        Assert.That(() => ImageModels.CheckName("huge"), Throws.TypeOf<UserErrorException>().With.Message.Contains("tiny, small, mlp"));
        Assert.That(() => ImageModels.Create(TestDevice.Cpu, Config("tiny", 10)), Throws.TypeOf<UserErrorException>().With.Message.Contains("multiple of 4"));
        Assert.That(() => ImageModels.Create(TestDevice.Cpu, Config("tiny") with { Width = 4 }), Throws.TypeOf<UserErrorException>().With.Message.Contains("square"));
    }
}
