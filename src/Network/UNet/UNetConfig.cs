using System.Text.Json;
using System.Text.Json.Serialization;
using PoissonFlow.Kernels;

namespace PoissonFlow.Network.UNet;

/// <summary>One named parameter tensor of a network, in the order its values sit in the parameter buffer.</summary>
/// <param name="Name">Dotted path, e.g. <c>down1.block0.conv0.weight</c>.</param>
/// <param name="Shape">Dimensions (PyTorch conventions: conv [out, in, k, k], linear [out, in]).</param>
public sealed record ParameterShape(string Name, int[] Shape)
{
    /// <summary>Number of values.</summary>
    public long Length => Shape.Aggregate(1L, (product, dim) => product * dim);
}

/// <summary>
/// Configuration of the compact DDPM-style U-Net for PFGM (anchors.md section 3): sinusoidal embedding of z through
/// Linear(nf, 4nf), SiLU, Linear(4nf, 4nf); a 3x3 input conv; per level, <see cref="ResBlocksPerLevel"/> residual blocks
/// (GroupNorm, SiLU, conv3x3, + Dense(silu(emb)) per channel, GroupNorm, SiLU, dropout, conv3x3, 1x1 shortcut when the
/// channel count changes) and a stride-2 3x3 downsampling conv between levels; two middle blocks; a decoder with one more
/// block per level, each reading the concatenated skip, and nearest-2x upsampling + conv3x3 between levels; then
/// GroupNorm, SiLU and a 3x3 conv to C + 1 channels (the last one spatially averaged into the z-field).
/// At each level listed in <see cref="AttentionLevels"/> every residual block (encoder and decoder) is followed by a
/// single-head self-attention block (DDPM's AttnBlock, <see cref="AttentionBlock"/>), and when any level attends, so
/// does the middle, between its two blocks. GroupNorm groups are min(C/4, 32).
/// </summary>
public sealed class UNetConfig
{
    private static readonly JsonSerializerOptions s_json = new()
    {
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        Converters = { new JsonStringEnumConverter(JsonNamingPolicy.SnakeCaseLower, allowIntegerValues: false) },
        // A misspelt field must not silently fall back to its default.
        UnmappedMemberHandling = JsonUnmappedMemberHandling.Disallow,
    };

    /// <summary>Image channels C (1 for MNIST, 3 for CIFAR-10).</summary>
    public required int ImageChannels { get; init; }

    /// <summary>Image height and width (square images).</summary>
    public required int ImageSize { get; init; }

    /// <summary>Base channel count nf.</summary>
    public required int BaseChannels { get; init; }

    /// <summary>Channel multiplier per resolution level, e.g. (1, 2, 2): level i has nf * multiplier[i] channels.</summary>
    public required IReadOnlyList<int> ChannelMultipliers { get; init; }

    /// <summary>Residual blocks per level in the encoder (the decoder has one more per level).</summary>
    public required int ResBlocksPerLevel { get; init; }

    /// <summary>
    /// Resolution levels (0 = full size) whose residual blocks are each followed by self-attention; empty for none.
    /// Any attention level also puts one between the two middle blocks.
    /// </summary>
    public IReadOnlyList<int> AttentionLevels { get; init; } = [];

    /// <summary>Whether the middle of the network attends (exactly when some level does).</summary>
    [JsonIgnore]
    public bool MiddleAttention => AttentionLevels.Count > 0;

    /// <summary>The names <see cref="Preset"/> accepts.</summary>
    public static IReadOnlyList<string> PresetNames { get; } = ["tiny", "small"];

    /// <summary>Dropout rate inside the residual blocks.</summary>
    public float Dropout { get; init; } = 0.1f;

    /// <summary>Divide each residual sum by sqrt(2) (NCSN++ skip_rescale); DDPM does not.</summary>
    public bool SkipRescale { get; init; }

    /// <summary>
    /// What the sinusoidal embedding (nf features) reads: z itself, as PFGM's DDPM++ configs do (spec section 4,
    /// the default), or ln z.
    /// </summary>
    public EmbeddingInput EmbeddingInput { get; init; } = EmbeddingInput.Z;

    /// <summary>Width of the embedding MLP: 4 nf.</summary>
    [JsonIgnore]
    public int EmbeddingChannels => 4 * BaseChannels;

    /// <summary>
    /// The "tiny" preset of anchors.md section 3 (config A): nf 32, multipliers (1, 2, 2) for 28, 14, 7 pixels, one block
    /// per level, no attention; 1,046,018 parameters for 28x28x1.
    /// </summary>
    public static UNetConfig Tiny(int imageChannels = 1, int imageSize = 28) => new()
    {
        ImageChannels = imageChannels,
        ImageSize = imageSize,
        BaseChannels = 32,
        ChannelMultipliers = [1, 2, 2],
        ResBlocksPerLevel = 1,
    };

    /// <summary>
    /// The "small" preset (anchors.md section 3, config B): nf 64, multipliers (1, 2, 2) for 28, 14, 7 pixels, two blocks
    /// per level, self-attention after every block of the lowest level and in the middle; 6,470,466 parameters for
    /// 28x28x1.
    /// </summary>
    public static UNetConfig Small(int imageChannels = 1, int imageSize = 28) => new()
    {
        ImageChannels = imageChannels,
        ImageSize = imageSize,
        BaseChannels = 64,
        ChannelMultipliers = [1, 2, 2],
        ResBlocksPerLevel = 2,
        AttentionLevels = [2],
    };

    /// <summary>The named preset (<see cref="PresetNames"/>: "tiny" or "small") for images of the given channels and size.</summary>
    /// <exception cref="ArgumentException">The name is unknown (the message lists the valid ones), or the image size does not fit the preset.</exception>
    public static UNetConfig Preset(string name, int imageChannels, int imageSize)
    {
        var config = name?.Trim().ToLowerInvariant() switch
        {
            "tiny" => Tiny(imageChannels, imageSize),
            "small" => Small(imageChannels, imageSize),
            _ => throw new ArgumentException($"unet: unknown preset '{name}'; valid presets: {string.Join(", ", PresetNames)}"),
        };
        config.Validate();
        return config;
    }

    /// <summary>Checks that the configuration describes a buildable network.</summary>
    /// <exception cref="ArgumentException">A field is out of range; the message names it.</exception>
    public void Validate()
    {
        if (ImageChannels <= 0) throw new ArgumentException($"unet: image channels must be positive, got {ImageChannels}");
        if (BaseChannels <= 0 || BaseChannels % 4 != 0) throw new ArgumentException($"unet: base channels must be a positive multiple of 4, got {BaseChannels}");
        if (ChannelMultipliers is null) throw new ArgumentException("unet: channel multipliers are missing");
        if (ChannelMultipliers.Count == 0 || ChannelMultipliers.Any(m => m <= 0))
        {
            throw new ArgumentException($"unet: channel multipliers must be positive and at least one, got ({string.Join(", ", ChannelMultipliers)})");
        }

        if (ResBlocksPerLevel <= 0) throw new ArgumentException($"unet: res blocks per level must be positive, got {ResBlocksPerLevel}");
        if (!(Dropout >= 0f && Dropout < 1f)) throw new ArgumentException($"unet: dropout must be in [0, 1), got {Dropout}");
        if (AttentionLevels is null) throw new ArgumentException("unet: attention levels are missing (use an empty list for none)");
        if (AttentionLevels.Any(l => l < 0 || l >= ChannelMultipliers.Count) || AttentionLevels.Distinct().Count() != AttentionLevels.Count)
        {
            throw new ArgumentException(
                $"unet: attention levels ({string.Join(", ", AttentionLevels)}) must be distinct levels between 0 and {ChannelMultipliers.Count - 1}");
        }

        int factor = 1 << (ChannelMultipliers.Count - 1);
        if (ImageSize <= 0 || ImageSize % factor != 0)
        {
            throw new ArgumentException(
                $"unet: image size {ImageSize} must be a positive multiple of {factor} so that {ChannelMultipliers.Count} levels halve it exactly");
        }
    }

    /// <summary>Every parameter tensor in buffer order (what a parameter store carves its named views from).</summary>
    public IReadOnlyList<ParameterShape> ParameterShapes()
    {
        Validate();
        var shapes = new List<ParameterShape>();
        int nf = BaseChannels, embedding = EmbeddingChannels;
        void Linear(string name, int input, int output)
        {
            shapes.Add(new($"{name}.weight", [output, input]));
            shapes.Add(new($"{name}.bias", [output]));
        }

        void Conv(string name, int input, int output, int kernel)
        {
            shapes.Add(new($"{name}.weight", [output, input, kernel, kernel]));
            shapes.Add(new($"{name}.bias", [output]));
        }

        void Block(string name, int input, int output) => shapes.AddRange(ResBlock.ParameterShapes($"{name}.", input, output, embedding));
        void Attention(string name, int channels) => shapes.AddRange(AttentionBlock.ParameterShapes($"{name}.", channels));

        Linear("embed.dense0", nf, embedding);
        Linear("embed.dense1", embedding, embedding);
        Conv("conv_in", ImageChannels, nf, 3);
        var skips = new Stack<int>();
        skips.Push(nf);
        int channels = nf, levels = ChannelMultipliers.Count;
        for (int level = 0; level < levels; level++)
        {
            for (int b = 0; b < ResBlocksPerLevel; b++)
            {
                Block($"down{level}.block{b}", channels, nf * ChannelMultipliers[level]);
                channels = nf * ChannelMultipliers[level];
                if (AttentionLevels.Contains(level)) Attention($"down{level}.attn{b}", channels);
                skips.Push(channels);
            }

            if (level < levels - 1)
            {
                Conv($"down{level}.downsample", channels, channels, 3);
                skips.Push(channels);
            }
        }

        Block("mid.block0", channels, channels);
        if (MiddleAttention) Attention("mid.attn", channels);
        Block("mid.block1", channels, channels);
        for (int level = levels - 1; level >= 0; level--)
        {
            for (int b = 0; b <= ResBlocksPerLevel; b++)
            {
                Block($"up{level}.block{b}", channels + skips.Pop(), nf * ChannelMultipliers[level]);
                channels = nf * ChannelMultipliers[level];
                if (AttentionLevels.Contains(level)) Attention($"up{level}.attn{b}", channels);
            }

            if (level > 0) Conv($"up{level}.upsample", channels, channels, 3);
        }

        shapes.Add(new("norm_out.gamma", [channels]));
        shapes.Add(new("norm_out.beta", [channels]));
        Conv("conv_out", channels, ImageChannels + 1, 3);
        return shapes;
    }

    /// <summary>Total number of parameters.</summary>
    public long ParameterCount() => ParameterShapes().Sum(p => p.Length);

    /// <summary>The config as compact JSON with snake_case names (what checkpoints store); <see cref="FromJson"/> inverts it exactly.</summary>
    public string ToJson() => JsonSerializer.Serialize(this, s_json);

    /// <summary>Parses and validates <see cref="ToJson"/>'s output.</summary>
    /// <exception cref="ArgumentException">Malformed JSON, a missing, unknown or mistyped field, or an invalid value; the message names the field.</exception>
    public static UNetConfig FromJson(string json)
    {
        UNetConfig? config;
        try
        {
            config = JsonSerializer.Deserialize<UNetConfig>(json, s_json);
        }
        catch (JsonException e)
        {
            throw new ArgumentException($"unet config JSON: {e.Message}", e);
        }

        if (config is null) throw new ArgumentException("unet config JSON is null");
        config.Validate();
        return config;
    }
}
