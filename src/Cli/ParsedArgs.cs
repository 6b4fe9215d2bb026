using System.Globalization;

namespace PoissonFlow.Cli;

/// <summary>
/// The options and positional arguments of one command line, checked against the command's declared options,
/// with typed getters whose errors name the option (<c>--B expects an integer, got 'x'</c>).
/// </summary>
public sealed class ParsedArgs
{
    private readonly Dictionary<string, string?> _values;

    private ParsedArgs(string command, Dictionary<string, string?> values, List<string> positionals)
    {
        Command = command;
        _values = values;
        Positionals = positionals;
    }

    /// <summary>The command these arguments belong to, for messages ("field").</summary>
    public string Command { get; }

    /// <summary>Arguments that are not options, in order.</summary>
    public IReadOnlyList<string> Positionals { get; }

    /// <summary>
    /// Parses <c>--name value</c>, <c>--name=value</c> and <c>--flag</c> against <paramref name="options"/>.
    /// An unknown or repeated option, a missing value, or a positional where none is accepted is a
    /// <see cref="UserErrorException"/> naming it.
    /// </summary>
    public static ParsedArgs Parse(string command, IReadOnlyList<string> args, IReadOnlyList<CliOption> options, bool acceptsPositionals)
    {
        var byName = options.ToDictionary(o => o.Name, StringComparer.Ordinal);
        var values = new Dictionary<string, string?>(StringComparer.Ordinal);
        var positionals = new List<string>();
        for (int i = 0; i < args.Count; i++)
        {
            string arg = args[i] == "-h" && byName.ContainsKey("help") ? "--help" : args[i];
            if (!arg.StartsWith("--", StringComparison.Ordinal) || arg.Length == 2)
            {
                if (!acceptsPositionals || arg == "--")
                {
                    throw new UserErrorException($"unexpected argument '{arg}' for 'pfgm {command}' (see 'pfgm {command} --help')");
                }

                positionals.Add(arg);
                continue;
            }

            string name = arg[2..];
            string? inlineValue = null;
            int equals = name.IndexOf('=', StringComparison.Ordinal);
            if (equals >= 0)
            {
                inlineValue = name[(equals + 1)..];
                name = name[..equals];
            }

            if (!byName.TryGetValue(name, out var option))
            {
                throw new UserErrorException($"unknown option '--{name}' for 'pfgm {command}' (see 'pfgm {command} --help')");
            }

            if (values.ContainsKey(name)) throw new UserErrorException($"option --{name} is given more than once");
            if (option.IsFlag)
            {
                if (inlineValue is not null) throw new UserErrorException($"option --{name} is a flag and takes no value");
                values[name] = null;
                continue;
            }

            if (inlineValue is null)
            {
                // A following "--x" is the next option, not a value; negative numbers ("-1") are values.
                if (i + 1 >= args.Count || args[i + 1].StartsWith("--", StringComparison.Ordinal))
                {
                    throw new UserErrorException($"option --{name} needs a value ({option.Syntax})");
                }

                inlineValue = args[++i];
            }

            values[name] = inlineValue;
        }

        return new ParsedArgs(command, values, positionals);
    }

    /// <summary>True when the option was given.</summary>
    public bool Has(string name) => _values.ContainsKey(name);

    /// <summary>True when the flag was given.</summary>
    public bool GetFlag(string name) => _values.ContainsKey(name);

    /// <summary>The option's text, or <paramref name="fallback"/> when absent.</summary>
    public string? GetString(string name, string? fallback = null) => _values.TryGetValue(name, out var v) ? v : fallback;

    /// <summary>The option's text; a <see cref="UserErrorException"/> when absent or empty.</summary>
    public string GetRequiredString(string name)
    {
        if (!_values.TryGetValue(name, out var value) || value is null)
        {
            throw new UserErrorException($"missing required option --{name} (see 'pfgm {Command} --help')");
        }

        if (value.Length == 0) throw new UserErrorException($"option --{name} is empty");
        return value;
    }

    /// <summary>An integer option in [min, max], or <paramref name="fallback"/> when absent.</summary>
    public int GetInt(string name, int fallback, int min = int.MinValue, int max = int.MaxValue) =>
        Has(name) ? GetRequiredInt(name, min, max) : fallback;

    /// <summary>A required integer option in [min, max].</summary>
    public int GetRequiredInt(string name, int min = int.MinValue, int max = int.MaxValue)
    {
        string text = GetRequiredString(name);
        if (!int.TryParse(text, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out int value))
        {
            throw new UserErrorException($"option --{name} expects an integer, got '{text}'");
        }

        CheckRange(name, value, min, max);
        return value;
    }

    /// <summary>A finite float option in [min, max], or <paramref name="fallback"/> when absent.</summary>
    public float GetFloat(string name, float fallback, float min = float.MinValue, float max = float.MaxValue)
    {
        if (!Has(name)) return fallback;
        string text = GetRequiredString(name);
        if (!float.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out float value) || !float.IsFinite(value))
        {
            throw new UserErrorException($"option --{name} expects a finite number, got '{text}'");
        }

        CheckRange(name, value, min, max);
        return value;
    }

    /// <summary>
    /// The path of an output file, checked before any work is done: its folder must exist and it must not be a
    /// folder itself (the file is later written atomically).
    /// </summary>
    public string GetOutputPath(string name)
    {
        string path = GetRequiredString(name);
        string full = Path.GetFullPath(path);
        string folder = Path.GetDirectoryName(full) ?? ".";
        if (Directory.Exists(full)) throw new UserErrorException($"--{name} {path}: is a folder, expected a file name");
        if (!Directory.Exists(folder)) throw new UserErrorException($"--{name} {path}: the folder '{folder}' does not exist");
        return path;
    }

    private static void CheckRange(string name, int value, int min, int max)
    {
        if (value < min || value > max) throw OutOfRange(name, value, min, max, min != int.MinValue, max != int.MaxValue);
    }

    private static void CheckRange(string name, float value, float min, float max)
    {
        if (value < min || value > max) throw OutOfRange(name, value, min, max, min != float.MinValue, max != float.MaxValue);
    }

    private static UserErrorException OutOfRange(string name, double value, double min, double max, bool hasMin, bool hasMax)
    {
        static string F(double v) => v.ToString("G7", CultureInfo.InvariantCulture);
        string range = hasMin && hasMax ? $"between {F(min)} and {F(max)}" : hasMin ? $"at least {F(min)}" : $"at most {F(max)}";
        return new UserErrorException($"option --{name} must be {range}, got {F(value)}");
    }
}
