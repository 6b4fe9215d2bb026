using System.Text.Json;
using System.Text.Json.Serialization;
using PoissonFlow.Data;

namespace PoissonFlow.Network;

/// <summary>
/// Everything a sampler needs to know about a trained model besides its weights, stored in the checkpoint's
/// metadata (key <c>pfgm_sampling</c>) so that a checkpoint alone is enough to draw samples: the data's shape and
/// range, the PFGM hyper-parameters the network was trained with (the prior plane and radius clip), the network's
/// output form and where the backward ODE should stop.
/// </summary>
public sealed record SamplingCard
{
    /// <summary>The metadata key the card is stored under.</summary>
    public const string MetadataKey = "pfgm_sampling";

    private static readonly JsonSerializerOptions Json = new()
    {
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
    };

    /// <summary>Shape of one data point: [N] for points, [C, H, W] for images.</summary>
    public required int[] DataShape { get; init; }

    /// <summary>The PFGM hyper-parameters of training (z_max and the upper norm define the prior).</summary>
    public required PfgmHyperParameters Hyper { get; init; }

    /// <summary>
    /// When set, the network predicts the posterior mean and is wrapped in a <see cref="PosteriorMeanNetwork"/> with
    /// this radial scale c; when null, it predicts the normalised field directly.
    /// </summary>
    public double? PosteriorMeanScale { get; init; }

    /// <summary>Where the backward ODE stops (the z of the final samples).</summary>
    public required double ZMin { get; init; }

    /// <summary>
    /// γ of the sampler's z-substitution (spec §5) the model was trained for; null: 0 (off) for posterior-mean
    /// networks, whose field needs no substitution, and the official 5 otherwise.
    /// </summary>
    public double? Gamma { get; init; }

    /// <summary>
    /// Below this z the sampler rebuilds the network's v_z (spec §5: CIFAR 5, CelebA 1, LSUN 0.1); null: 0 (never)
    /// for posterior-mean networks and the official 5 otherwise.
    /// </summary>
    public double? ZExp { get; init; }

    /// <summary>γ the sampler uses: <see cref="Gamma"/>, or its default for the network's output form.</summary>
    [JsonIgnore]
    public double SamplerGamma => Gamma ?? (PosteriorMeanScale is null ? 5 : 0);

    /// <summary>z_exp the sampler uses: <see cref="ZExp"/>, or its default for the network's output form.</summary>
    [JsonIgnore]
    public double SamplerZExp => ZExp ?? (PosteriorMeanScale is null ? 5 : 0);

    /// <summary>
    /// The data range of images ([-1, 1] after the spec's scaling), used to map samples back to pixels; null for
    /// point data.
    /// </summary>
    public double[]? PixelRange { get; init; }

    /// <summary>The data set the model was trained on (a built-in name or a path), for the record.</summary>
    public string Data { get; init; } = "";

    /// <summary>N, the number of values per data point.</summary>
    [JsonIgnore]
    public int Dim => DataShape.Aggregate(1, (product, d) => product * d);

    /// <summary>Checks that the card describes a usable sampler.</summary>
    /// <exception cref="ArgumentException">A field is out of range; the message names it.</exception>
    public void Validate()
    {
        if (DataShape is null || DataShape.Length is < 1 or > 3 || DataShape.Any(d => d <= 0))
        {
            throw new ArgumentException($"sampling card: data shape must be [N] or [C, H, W] with positive sizes, got [{string.Join(", ", DataShape ?? [])}]");
        }

        if (Hyper is null) throw new ArgumentException("sampling card: the PFGM hyper-parameters are missing");
        if (!(Hyper.ZMax > 0) || !(Hyper.UpperNorm > 0)) throw new ArgumentException($"sampling card: z_max and upper_norm must be positive, got {Hyper.ZMax} and {Hyper.UpperNorm}");
        if (!(ZMin > 0) || !(ZMin < Hyper.ZMax)) throw new ArgumentException($"sampling card: z_min must be in (0, z_max), got {ZMin}");
        if (PosteriorMeanScale is { } c && !(c > 0 && double.IsFinite(c))) throw new ArgumentException($"sampling card: posterior-mean scale must be positive, got {c}");
        if (Gamma is { } gamma && !(gamma >= 0 && double.IsFinite(gamma))) throw new ArgumentException($"sampling card: gamma must be >= 0, got {gamma}");
        if (ZExp is { } zExp && !(zExp >= 0 && double.IsFinite(zExp))) throw new ArgumentException($"sampling card: z_exp must be >= 0, got {zExp}");
        if (PixelRange is not null && (PixelRange.Length != 2 || !(PixelRange[0] < PixelRange[1])))
        {
            throw new ArgumentException($"sampling card: pixel range must be [low, high] with low < high, got [{string.Join(", ", PixelRange)}]");
        }
    }

    /// <summary>The card as JSON (snake_case names).</summary>
    public string ToJson() => JsonSerializer.Serialize(this, Json);

    /// <summary>Parses and validates a card.</summary>
    /// <exception cref="ArgumentException">The JSON is malformed or the card invalid; the message says which.</exception>
    public static SamplingCard FromJson(string json)
    {
        SamplingCard? card;
        try
        {
            card = JsonSerializer.Deserialize<SamplingCard>(json, Json);
        }
        catch (JsonException e)
        {
            throw new ArgumentException($"sampling card: not valid JSON: {e.Message}", e);
        }

        if (card is null) throw new ArgumentException("sampling card: empty");
        card.Validate();
        return card;
    }
}
