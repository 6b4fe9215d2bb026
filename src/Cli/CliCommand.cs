namespace PoissonFlow.Cli;

/// <summary>
/// A sub-command of pfgm. Adding a command means one class deriving from this (in Commands/) and one line in
/// <see cref="CliApp.Commands"/>. Parsing, <c>--help</c>, <c>--device</c> and error reporting are handled for it.
/// </summary>
public abstract class CliCommand
{
    /// <summary>The word that selects it: "field" in <c>pfgm field</c>.</summary>
    public abstract string Name { get; }

    /// <summary>One line for the command list of <c>pfgm --help</c>.</summary>
    public abstract string Summary { get; }

    /// <summary>The usage line(s) shown by <c>pfgm NAME --help</c>, e.g. "pfgm field --points P.npy ...".</summary>
    public abstract string Usage { get; }

    /// <summary>The options it accepts (the global ones are added by the framework).</summary>
    public abstract IReadOnlyList<CliOption> Options { get; }

    /// <summary>Names positional arguments for help ("TARGET"); null when the command takes none (any is an error).</summary>
    public virtual string? Positionals => null;

    /// <summary>Extra help paragraphs printed after the options (formulas, examples); empty by default.</summary>
    public virtual string Details => "";

    /// <summary>
    /// Runs the command. Throws <see cref="UserErrorException"/> (or another mapped exception) for a problem the
    /// user can fix; returns the exit code otherwise (0 on success).
    /// </summary>
    public abstract int Execute(CliContext context, ParsedArgs args);
}
