using PoissonFlow.Network.UNet;

namespace PoissonFlow.Tests;

public sealed class UNetConfigTests
{
    /// <summary>
    /// Closed-form count of the DDPM-style U-Net, written independently of <see cref="UNetConfig.ParameterShapes"/>:
    /// embedding MLP, input conv, encoder blocks and downsamplers, two middle blocks, decoder blocks over the
    /// concatenated skips and upsamplers, output norm and conv.
    /// </summary>
    private static long ExpectedCount(int imageChannels, int nf, int[] multipliers, int blocks)
    {
        long embedding = 4L * nf;
        long Block(long input, long output) =>
            2 * input + 9 * input * output + output + embedding * output + output + 2 * output + 9 * output * output + output
            + (input != output ? input * output + output : 0);
        long total = nf * embedding + embedding + embedding * embedding + embedding + 9L * imageChannels * nf + nf;
        var skips = new List<long> { nf };
        long channels = nf;
        for (int i = 0; i < multipliers.Length; i++)
        {
            for (int b = 0; b < blocks; b++)
            {
                total += Block(channels, nf * multipliers[i]);
                channels = nf * multipliers[i];
                skips.Add(channels);
            }

            if (i < multipliers.Length - 1)
            {
                total += 9 * channels * channels + channels;
                skips.Add(channels);
            }
        }

        total += 2 * Block(channels, channels);
        for (int i = multipliers.Length - 1; i >= 0; i--)
        {
            for (int b = 0; b <= blocks; b++)
            {
                long skip = skips[^1];
                skips.RemoveAt(skips.Count - 1);
                total += Block(channels + skip, nf * multipliers[i]);
                channels = nf * multipliers[i];
            }

            if (i > 0) total += 9 * channels * channels + channels;
        }

        return total + 2 * channels + 9 * channels * (imageChannels + 1) + imageChannels + 1;
    }

    [Test]
    public void TinyPresetHasTheAnchoredParameterCount()
    {
        var tiny = UNetConfig.Tiny();
        long count = tiny.ParameterCount();
        Assert.That(count, Is.EqualTo(ExpectedCount(1, 32, [1, 2, 2], 1)));
        // anchors.md section 3 quotes 1.06M for config A; this network (two embedding linears, no attention) has
        // 1,046,018, 1.3% less: that count matches ours plus one more 4nf x 4nf linear (16,512).
        Assert.That(count, Is.EqualTo(1.06e6).Within(2).Percent);
    }

    [TestCase(3, 32, new[] { 1, 2, 2 }, 1)]
    [TestCase(1, 64, new[] { 1, 2, 2 }, 2)]
    [TestCase(3, 16, new[] { 1, 2, 2, 2 }, 2)]
    public void ParameterShapesMatchTheClosedFormAndHaveUniqueNames(int imageChannels, int nf, int[] multipliers, int blocks)
    {
        var config = new UNetConfig
        {
            ImageChannels = imageChannels,
            ImageSize = 32,
            BaseChannels = nf,
            ChannelMultipliers = multipliers,
            ResBlocksPerLevel = blocks,
        };
        var shapes = config.ParameterShapes();
        Assert.That(shapes.Sum(s => s.Length), Is.EqualTo(ExpectedCount(imageChannels, nf, multipliers, blocks)));
        Assert.That(shapes.Select(s => s.Name), Is.Unique);
        Assert.That(shapes[^2].Shape, Is.EqualTo(new[] { imageChannels + 1, nf * multipliers[0], 3, 3 }), "conv_out emits C + 1 channels");
    }

    [Test]
    public void ValidationNamesTheBadField()
    {
        Assert.That(() => UNetConfig.Tiny(imageSize: 30).Validate(), Throws.ArgumentException.With.Message.Contains("image size 30 must be a positive multiple of 4"));
        Assert.That(() => new UNetConfig { ImageChannels = 1, ImageSize = 28, BaseChannels = 30, ChannelMultipliers = [1], ResBlocksPerLevel = 1 }.Validate(),
            Throws.ArgumentException.With.Message.Contains("base channels"));
        Assert.That(() => new UNetConfig { ImageChannels = 1, ImageSize = 28, BaseChannels = 32, ChannelMultipliers = [], ResBlocksPerLevel = 1 }.Validate(),
            Throws.ArgumentException.With.Message.Contains("channel multipliers"));
    }
}
