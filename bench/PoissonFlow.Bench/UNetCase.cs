using PoissonFlow.Network.UNet;

namespace PoissonFlow.Bench;

/// <summary>One U-Net benchmark case: a named preset at 28 x 28 x 1 and a batch size.</summary>
public sealed record UNetCase(string Preset, int Batch)
{
    /// <summary>The preset's config (its own dropout: the timed step is a real training step).</summary>
    public UNetConfig Config => UNetConfig.Preset(Preset, imageChannels: 1, imageSize: 28);

    /// <summary>FLOPs of one image's forward pass (<see cref="UNetFlops.Forward"/>).</summary>
    public double ForwardFlopsPerImage => UNetFlops.Forward(Config);

    /// <summary>FLOPs of one image's training step (<see cref="UNetFlops.TrainingStep"/>).</summary>
    public double StepFlopsPerImage => UNetFlops.TrainingStep(Config);

    /// <summary>BenchmarkDotNet shows parameters through ToString: preset/batch.</summary>
    public override string ToString() => $"{Preset}/{Batch}";
}

/// <summary>
/// FLOPs of the U-Net per image, counted from the parameter layout (<see cref="UNetConfig.ParameterShapes"/>): a
/// multiply-add is 2 FLOPs; a conv costs 2 x (weight elements) per output pixel, at the resolution its name places it
/// (conv_in / conv_out and level-0 stages at full size, level l at size / 2^l, a downsampling conv at its output
/// size, an upsampling conv at twice its level's size); a dense layer (the embedding MLP, each block's projection)
/// 2 x (weight elements) per image; an attention block's 1x1 convs (qkv, proj_out) count as convs, plus 2 C S^2 for
/// each of its two products (the logits q^T k and the weighted sum of v) over its S = H W positions. Biases,
/// GroupNorm, SiLU, the softmax, the skip concatenation and the resampling copies are left out: ~1-2 % on top.
/// </summary>
public static class UNetFlops
{
    /// <summary>Forward FLOPs per image.</summary>
    public static double Forward(UNetConfig config) => Layers(config).Sum(l => l.Flops);

    /// <summary>
    /// Forward plus backward per image: the backward pass of a conv or dense layer costs twice its forward (input
    /// gradient and weight gradient), except where no input gradient is needed: conv_in (the images) and
    /// embed.dense0 (the fixed sinusoidal features); both libtorch and our network skip those. Adam's ~10 FLOPs per
    /// parameter are per step, not per image, and left out (under 0.1 % at batch 64).
    /// </summary>
    public static double TrainingStep(UNetConfig config) =>
        Layers(config).Sum(l => l.Flops * (l.Name is "conv_in" or "embed.dense0" ? 2 : 3));

    private static IEnumerable<(string Name, double Flops)> Layers(UNetConfig config)
    {
        int levels = config.ChannelMultipliers.Count;
        foreach (var shape in config.ParameterShapes().Where(s => s.Name.EndsWith(".weight", StringComparison.Ordinal)))
        {
            string layer = shape.Name[..^".weight".Length];
            if (shape.Shape.Length == 2)
            {
                yield return (layer, 2.0 * shape.Length);
                continue;
            }

            int size = config.ImageSize >> LevelOf(layer, levels);
            yield return (layer, 2.0 * shape.Length * size * size);
            if (layer.EndsWith(".qkv", StringComparison.Ordinal))
            {
                double positions = (double)size * size;
                yield return (layer + ".products", 2 * (2.0 * shape.Shape[1] * positions * positions));
            }
        }
    }

    /// <summary>How many halvings below the full image size the conv named <paramref name="layer"/> writes its output.</summary>
    private static int LevelOf(string layer, int levels)
    {
        string stage = layer.Split('.')[0];
        if (stage is "conv_in" or "conv_out") return 0;
        if (stage == "mid") return levels - 1;
        int level = stage.StartsWith("down", StringComparison.Ordinal) ? int.Parse(stage[4..])
            : stage.StartsWith("up", StringComparison.Ordinal) ? int.Parse(stage[2..])
            : throw new ArgumentException($"U-Net FLOP count: no resolution known for layer '{layer}'");
        if (layer.EndsWith(".downsample", StringComparison.Ordinal)) return level + 1;
        if (layer.EndsWith(".upsample", StringComparison.Ordinal)) return level - 1;
        return level;
    }
}
