using System.Globalization;

namespace PoissonFlow.Network.Features;

/// <summary>
/// Shape of the feature classifier: an MLP Input -> Hidden[0] -> ... -> Hidden[^1] -> Classes with SiLU after every
/// hidden layer. The last hidden layer's activations are the feature space (<see cref="FeatureSize"/> values).
/// </summary>
public sealed class ClassifierConfig : IEquatable<ClassifierConfig>
{
    /// <summary>The default: 784 -> 256 -> 128 -> 10 (features: 128 values).</summary>
    public static ClassifierConfig Default { get; } = new(784, [256, 128], 10);

    /// <summary>Creates a config; <see cref="Validate"/> checks it.</summary>
    public ClassifierConfig(int input, IReadOnlyList<int> hidden, int classes)
    {
        Input = input;
        Hidden = hidden.ToArray();
        Classes = classes;
    }

    /// <summary>Values per input image (784 for 28x28).</summary>
    public int Input { get; }

    /// <summary>Widths of the hidden layers, first to last.</summary>
    public IReadOnlyList<int> Hidden { get; }

    /// <summary>Number of classes (logits).</summary>
    public int Classes { get; }

    /// <summary>Width of the feature space: the last hidden layer.</summary>
    public int FeatureSize => Hidden[^1];

    /// <summary>Number of affine layers (hidden plus output).</summary>
    public int Layers => Hidden.Count + 1;

    /// <summary>The widest activation (sizes the ping-pong buffers).</summary>
    public int MaxWidth => Math.Max(Hidden.Max(), Classes);

    /// <summary>Input width of layer <paramref name="layer"/>.</summary>
    public int LayerInput(int layer) => layer == 0 ? Input : Hidden[layer - 1];

    /// <summary>Output width of layer <paramref name="layer"/>.</summary>
    public int LayerOutput(int layer) => layer == Hidden.Count ? Classes : Hidden[layer];

    /// <summary>Throws when a width is out of range; the message names it.</summary>
    /// <exception cref="ArgumentException">A width is not positive, there is no hidden layer, or fewer than 2 classes.</exception>
    public void Validate()
    {
        if (Input <= 0) throw new ArgumentException($"classifier config: input width must be positive, got {Input}");
        if (Hidden.Count == 0 || Hidden.Any(h => h <= 0)) throw new ArgumentException($"classifier config: needs at least one hidden layer of positive width, got [{string.Join(", ", Hidden)}]");
        if (Classes < 2) throw new ArgumentException($"classifier config: needs at least 2 classes, got {Classes}");
    }

    /// <summary>The architecture as text, e.g. <c>mlp 784-256-128-10 silu</c> (what the features file records).</summary>
    public override string ToString() => $"mlp {string.Join('-', new[] { Input }.Concat(Hidden).Append(Classes))} silu";

    /// <summary>Parses <see cref="ToString"/>'s output.</summary>
    /// <exception cref="FormatException">Not of the form <c>mlp W0-W1-...-Wn silu</c> with at least one hidden width.</exception>
    public static ClassifierConfig Parse(string text)
    {
        var parts = text.Split(' ', StringSplitOptions.RemoveEmptyEntries);
        if (parts.Length != 3 || parts[0] != "mlp" || parts[2] != "silu") throw new FormatException($"architecture '{text}' is not 'mlp W0-...-Wn silu'");
        var widths = parts[1].Split('-').Select(w => int.TryParse(w, NumberStyles.None, CultureInfo.InvariantCulture, out int v) ? v : -1).ToArray();
        if (widths.Length < 3 || widths.Any(w => w <= 0)) throw new FormatException($"architecture '{text}': widths must be at least three positive integers");
        var config = new ClassifierConfig(widths[0], widths[1..^1], widths[^1]);
        config.Validate();
        return config;
    }

    /// <inheritdoc />
    public bool Equals(ClassifierConfig? other) => other is not null && ToString() == other.ToString();

    /// <inheritdoc />
    public override bool Equals(object? obj) => Equals(obj as ClassifierConfig);

    /// <inheritdoc />
    public override int GetHashCode() => ToString().GetHashCode(StringComparison.Ordinal);
}
