using System.Text.Json;
using System.Text.Json.Serialization;
using PoissonFlow.Kernels;

namespace PoissonFlow.Network;

/// <summary>
/// Shape of the PFGM field MLP: input [x (N), emb(z) (E)] -> <see cref="Depth"/> hidden layers of width
/// <see cref="Hidden"/> with <see cref="Activation"/> -> N + 1 outputs (the x field, then the z field).
/// </summary>
/// <param name="Dim">N, the data dimension.</param>
/// <param name="EmbeddingSize">E, the sinusoidal embedding size of z (even, at least 4).</param>
/// <param name="Hidden">Width of every hidden layer.</param>
/// <param name="Depth">Number of hidden layers (at least 1).</param>
/// <param name="EmbeddingInput">Embed z itself (PFGM's default) or ln z.</param>
/// <param name="Activation">Hidden-layer activation.</param>
/// <param name="OutputInitScale">Multiplies the output layer's initial weights (its bias starts at 0): a small
/// first prediction keeps the first updates gentle, as DDPM++ does with its zero-scaled output conv.</param>
public sealed record MlpConfig(
    int Dim,
    int EmbeddingSize = 64,
    int Hidden = 128,
    int Depth = 3,
    EmbeddingInput EmbeddingInput = EmbeddingInput.Z,
    Activation Activation = Activation.Silu,
    float OutputInitScale = 0.1f)
{
    private static readonly JsonSerializerOptions s_json = new()
    {
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        Converters = { new JsonStringEnumConverter(JsonNamingPolicy.SnakeCaseLower) },
    };

    /// <summary>Width of the first layer's input, N + E.</summary>
    public int InputWidth => Dim + EmbeddingSize;

    /// <summary>Throws when a field is out of range; the message names the field.</summary>
    public void Validate()
    {
        if (Dim <= 0) throw new ArgumentException($"mlp config: dim must be positive, got {Dim}");
        if (EmbeddingSize < 4 || EmbeddingSize % 2 != 0) throw new ArgumentException($"mlp config: embedding size must be even and at least 4, got {EmbeddingSize}");
        if (Hidden <= 0) throw new ArgumentException($"mlp config: hidden width must be positive, got {Hidden}");
        if (Depth < 1) throw new ArgumentException($"mlp config: depth (hidden layers) must be at least 1, got {Depth}");
        if (!float.IsFinite(OutputInitScale) || OutputInitScale < 0) throw new ArgumentException($"mlp config: output init scale must be finite and non-negative, got {OutputInitScale}");
    }

    /// <summary>The config as compact JSON with snake_case names (what checkpoints store).</summary>
    public string ToJson() => JsonSerializer.Serialize(this, s_json);

    /// <summary>Parses <see cref="ToJson"/>'s output.</summary>
    /// <exception cref="JsonException">Malformed JSON.</exception>
    public static MlpConfig FromJson(string json) =>
        JsonSerializer.Deserialize<MlpConfig>(json, s_json) ?? throw new JsonException("mlp config JSON is null");
}
