using PoissonFlow.Network.UNet;

namespace PoissonFlow.Tests;

public sealed class UNetConfigTests
{
    /// <summary>
    /// Closed-form count of the DDPM-style U-Net, written independently of <see cref="UNetConfig.ParameterShapes"/>:
    /// embedding MLP, input conv, encoder blocks and downsamplers, two middle blocks, decoder blocks over the
    /// concatenated skips and upsamplers, output norm and conv; an attention block (norm, qkv, proj_out: 4 C^2 + 6 C) after
    /// every block of an attention level and one in the middle when any level attends.
    /// </summary>
    private static long ExpectedCount(int imageChannels, int nf, int[] multipliers, int blocks, int[]? attention = null)
    {
        attention ??= [];
        long embedding = 4L * nf;
        long Attention(int level, long c) => attention.Contains(level) ? 4 * c * c + 6 * c : 0;
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
                total += Attention(i, channels);
                skips.Add(channels);
            }

            if (i < multipliers.Length - 1)
            {
                total += 9 * channels * channels + channels;
                skips.Add(channels);
            }
        }

        total += 2 * Block(channels, channels) + (attention.Length > 0 ? 4 * channels * channels + 6 * channels : 0);
        for (int i = multipliers.Length - 1; i >= 0; i--)
        {
            for (int b = 0; b <= blocks; b++)
            {
                long skip = skips[^1];
                skips.RemoveAt(skips.Count - 1);
                total += Block(channels + skip, nf * multipliers[i]);
                channels = nf * multipliers[i];
                total += Attention(i, channels);
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

    [Test]
    public void SmallPresetHasItsParameterCount()
    {
        var small = UNetConfig.Small();
        long count = small.ParameterCount();
        TestContext.Out.WriteLine($"tiny 28x28x1: {UNetConfig.Tiny().ParameterCount():N0} parameters; small 28x28x1: {count:N0}; small 32x32x3: {UNetConfig.Small(3, 32).ParameterCount():N0}");
        Assert.That(count, Is.EqualTo(ExpectedCount(1, 64, [1, 2, 2], 2, [2])));
        Assert.That(count, Is.EqualTo(6_470_466));
        // anchors.md section 3 quotes 6.34M for config B with a third embedding linear (+65,792) and attention in the
        // encoder and middle only (3 blocks of 66,304); attention after every decoder block too (DDPM's original
        // placement, 6 blocks) gives ours, 2% more.
        Assert.That(count, Is.EqualTo(6.34e6).Within(3).Percent);
        Assert.That(small.ParameterShapes().Count(s => s.Name.EndsWith(".qkv.weight", StringComparison.Ordinal)), Is.EqualTo(6), "2 encoder + middle + 3 decoder");
        Assert.That(UNetConfig.Small(3, 32).ParameterCount(), Is.EqualTo(ExpectedCount(3, 64, [1, 2, 2], 2, [2])));
    }

    [Test]
    public void PresetsByName()
    {
        Assert.That(UNetConfig.Preset("tiny", 1, 28).ToJson(), Is.EqualTo(UNetConfig.Tiny().ToJson()));
        Assert.That(UNetConfig.Preset(" Small ", 3, 32).ToJson(), Is.EqualTo(UNetConfig.Small(3, 32).ToJson()));
        Assert.That(UNetConfig.Tiny().ParameterCount(), Is.EqualTo(1_046_018));
        Assert.That(() => UNetConfig.Preset("huge", 1, 28), Throws.ArgumentException.With.Message.Contains("unknown preset 'huge'; valid presets: tiny, small"));
        Assert.That(() => UNetConfig.Preset("small", 1, 30), Throws.ArgumentException.With.Message.Contains("image size 30"));
    }

    [TestCase(3, 32, new[] { 1, 2, 2 }, 1, new int[0])]
    [TestCase(1, 64, new[] { 1, 2, 2 }, 2, new int[0])]
    [TestCase(3, 16, new[] { 1, 2, 2, 2 }, 2, new[] { 1 })]
    [TestCase(1, 16, new[] { 1, 2 }, 2, new[] { 0, 1 })]
    public void ParameterShapesMatchTheClosedFormAndHaveUniqueNames(int imageChannels, int nf, int[] multipliers, int blocks, int[] attention)
    {
        var config = new UNetConfig
        {
            ImageChannels = imageChannels,
            ImageSize = 32,
            BaseChannels = nf,
            ChannelMultipliers = multipliers,
            ResBlocksPerLevel = blocks,
            AttentionLevels = attention,
        };
        var shapes = config.ParameterShapes();
        Assert.That(shapes.Sum(s => s.Length), Is.EqualTo(ExpectedCount(imageChannels, nf, multipliers, blocks, attention)));
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
        Assert.That(() => new UNetConfig { ImageChannels = 1, ImageSize = 28, BaseChannels = 32, ChannelMultipliers = [1, 2], ResBlocksPerLevel = 1, AttentionLevels = [1, 1] }.Validate(),
            Throws.ArgumentException.With.Message.Contains("attention levels (1, 1) must be distinct levels between 0 and 1"));
    }
}
