namespace PoissonFlow.Cli;

/// <summary>One option a command accepts, for parsing and for its <c>--help</c> text.</summary>
/// <param name="Name">The name without the leading dashes: "points" for <c>--points</c>.</param>
/// <param name="ValueName">The placeholder of its value in help ("P.npy"); null for a flag that takes no value.</param>
/// <param name="Help">One line saying what it does, including its default when it has one.</param>
public sealed record CliOption(string Name, string? ValueName, string Help)
{
    /// <summary>True for a flag (present or absent, no value).</summary>
    public bool IsFlag => ValueName is null;

    /// <summary>The option as typed: "--points P.npy" or "--flag".</summary>
    public string Syntax => IsFlag ? $"--{Name}" : $"--{Name} {ValueName}";
}
