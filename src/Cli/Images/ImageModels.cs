using PoissonFlow.Kernels.Device;
using PoissonFlow.Network;
using PoissonFlow.Network.UNet;

namespace PoissonFlow.Cli.Images;

/// <summary>The networks an image run can train, by the name <c>--model</c> gives.</summary>
internal static class ImageModels
{
    /// <summary>Creates the run's network with fresh weights from <paramref name="config"/>'s seed.</summary>
    /// <exception cref="UserErrorException">An unknown model name, or a model that does not fit the image shape.</exception>
    public static ITrainableNetwork Create(ComputeDevice device, ImageRunConfig config)
    {
        try
        {
            return config.Model switch
            {
                "mlp" => new Mlp(device, MlpConfigOf(config), (ulong)config.Seed),
                var preset when UNetConfig.PresetNames.Contains(preset) => new UNetNetwork(device, UNetConfigOf(config), (ulong)config.Seed),
                _ => throw new UserErrorException(
                    $"--model {config.Model}: unknown model; expected one of {string.Join(", ", ImageRunConfig.Models)}"),
            };
        }
        catch (ArgumentException e)
        {
            throw new UserErrorException($"--model {config.Model} does not fit {config.Channels}x{config.Height}x{config.Width} images: {e.Message}", e);
        }
    }

    /// <summary>Checks the model name early (before any data are read).</summary>
    /// <exception cref="UserErrorException">Not one of <see cref="ImageRunConfig.Models"/>.</exception>
    public static void CheckName(string model)
    {
        if (!ImageRunConfig.Models.Contains(model))
        {
            throw new UserErrorException($"--model {model}: unknown model; expected one of {string.Join(", ", ImageRunConfig.Models)}");
        }
    }

    /// <summary>A U-Net preset for the run's channels and (square) size.</summary>
    private static UNetConfig UNetConfigOf(ImageRunConfig config)
    {
        if (config.Height != config.Width) throw new ArgumentException($"the U-Net needs square images, got {config.Height}x{config.Width}");
        return UNetConfig.Preset(config.Model, config.Channels, config.Height);
    }

    /// <summary>The MLP on flattened pixels: z embedded directly, as PFGM's networks take it.</summary>
    private static MlpConfig MlpConfigOf(ImageRunConfig config) => new(config.Dim, EmbeddingSize: 32, Hidden: config.MlpHidden, Depth: config.MlpDepth);
}
