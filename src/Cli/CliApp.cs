using System.Reflection;
using PoissonFlow.Cli.Commands;
using PoissonFlow.Data;
using PoissonFlow.IO;
using PoissonFlow.Kernels.Device;
using PoissonFlow.Network;

namespace PoissonFlow.Cli;

/// <summary>Entry point of the pfgm tool: dispatches sub-commands and turns user errors into one line and exit code 2.</summary>
public static class CliApp
{
    /// <summary>Exit code of a successful run.</summary>
    public const int ExitSuccess = 0;

    /// <summary>Exit code of an unexpected failure (a bug): the message and stack trace go to stderr.</summary>
    public const int ExitInternalError = 1;

    /// <summary>Exit code of a problem the user can fix, reported as one line <c>pfgm: ...</c> on stderr.</summary>
    public const int ExitUserError = 2;

    /// <summary>Every sub-command. Adding one is one line here plus its class in Commands/.</summary>
    public static IReadOnlyList<CliCommand> Commands { get; } =
    [
        new FieldCommand(),
        new BenchCommand(),
        new TrainCommand(),
        new SampleCommand(),
        new EvalCommand(),
        new TrainFeaturesCommand(),
        new DemoCommand(),
    ];

    /// <summary>Options every command accepts, listed under "global options" in help.</summary>
    public static IReadOnlyList<CliOption> GlobalOptions { get; } =
    [
        new("device", "auto|cuda|cpu", "where kernels run (default auto: CUDA when present, else the CPU emulator)"),
        new("help", null, "show this command's help"),
    ];

    /// <summary>The tool's version, from the assembly.</summary>
    public static string Version
    {
        get
        {
            var assembly = typeof(CliApp).Assembly;
            string? informational = assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion;
            // Drop the "+commit" build metadata the SDK appends.
            return informational?.Split('+')[0] ?? assembly.GetName().Version?.ToString() ?? "unknown";
        }
    }

    /// <summary>Runs the tool with the given arguments on the real console and returns the process exit code.</summary>
    public static int Run(string[] args) => Run(args, new CliEnvironment());

    /// <summary>Runs the tool in <paramref name="environment"/> (tests redirect output and share a device).</summary>
    public static int Run(string[] args, CliEnvironment environment) => Run(args, environment, Commands);

    /// <summary>Runs the tool with a given command set (tests add commands that fail on purpose).</summary>
    internal static int Run(string[] args, CliEnvironment environment, IReadOnlyList<CliCommand> commands)
    {
        ArgumentNullException.ThrowIfNull(args);
        ArgumentNullException.ThrowIfNull(environment);
        try
        {
            return Dispatch(args, environment, commands);
        }
        catch (Exception ex) when (DescribeUserError(ex) is { } message)
        {
            environment.Error.WriteLine($"pfgm: {message}");
            return ExitUserError;
        }
        catch (Exception ex)
        {
            environment.Error.WriteLine($"pfgm: internal error: {OneLine(ex.Message)} ({ex.GetType().Name}); please report it with the details below");
            environment.Error.WriteLine(ex.ToString());
            return ExitInternalError;
        }
        finally
        {
            environment.Out.Flush();
            environment.Error.Flush();
        }
    }

    /// <summary>
    /// The one-line message for an exception a user can cause and fix (bad option, bad or missing file, no GPU,
    /// disk full), or null for an unexpected one.
    /// </summary>
    public static string? DescribeUserError(Exception ex) => ex switch
    {
        UserErrorException or NpyFormatException or DatasetException or InvalidDataException or DeviceUnavailableException
            or CheckpointException or ArgumentException or FileNotFoundException or DirectoryNotFoundException or UnauthorizedAccessException => OneLine(ex.Message),
        IOException when AtomicFile.IsDiskFull(ex) => "no space left on device: " + OneLine(ex.Message),
        IOException => OneLine(ex.Message),
        _ => null,
    };

    private static int Dispatch(string[] args, CliEnvironment environment, IReadOnlyList<CliCommand> commands)
    {
        // Global options may also come before the command name: pfgm --device cpu field ...
        var leading = new List<string>();
        int index = 0;
        while (index < args.Length && args[index].StartsWith("--", StringComparison.Ordinal))
        {
            string arg = args[index];
            if (arg is "--help" or "-h") return PrintOverview(environment.Out, commands, ExitSuccess);
            if (arg == "--version")
            {
                environment.Out.WriteLine($"pfgm {Version}");
                return ExitSuccess;
            }

            leading.Add(arg);
            if (!arg.Contains('=', StringComparison.Ordinal) && index + 1 < args.Length) leading.Add(args[++index]);
            index++;
        }

        if (index >= args.Length)
        {
            if (leading.Count == 0)
            {
                PrintOverview(environment.Out, commands, ExitUserError);
                throw new UserErrorException("no command given (see 'pfgm --help')");
            }

            throw new UserErrorException($"no command given after '{string.Join(' ', leading)}' (see 'pfgm --help')");
        }

        string name = args[index];
        if (name is "help" or "-h")
        {
            if (index + 1 < args.Length) return PrintCommandHelp(environment.Out, Find(commands, args[index + 1]));
            return PrintOverview(environment.Out, commands, ExitSuccess);
        }

        var command = Find(commands, name);
        var options = command.Options.Concat(GlobalOptions).ToList();
        var parsed = ParsedArgs.Parse(command.Name, [.. leading, .. args[(index + 1)..]], options, command.Positionals is not null);
        if (parsed.GetFlag("help")) return PrintCommandHelp(environment.Out, command);

        DeviceKind kind;
        try
        {
            kind = ComputeDevice.ParseKind(parsed.GetString("device", "auto")!);
        }
        catch (ArgumentException ex)
        {
            throw new UserErrorException($"--device: {ex.Message}", ex);
        }

        using var context = new CliContext(environment, kind);
        return command.Execute(context, parsed);
    }

    private static CliCommand Find(IReadOnlyList<CliCommand> commands, string name) =>
        commands.FirstOrDefault(c => c.Name == name)
        ?? throw new UserErrorException($"unknown command '{name}' (commands: {string.Join(", ", commands.Select(c => c.Name))}; see 'pfgm --help')");

    private static int PrintOverview(TextWriter output, IReadOnlyList<CliCommand> commands, int exitCode)
    {
        output.WriteLine($"pfgm {Version}: Poisson Flow Generative Models (PFGM, PFGM++) on GPU kernels written in C#");
        output.WriteLine();
        output.WriteLine("usage: pfgm <command> [options]    pfgm <command> --help    pfgm --version");
        output.WriteLine();
        output.WriteLine("commands:");
        int width = commands.Max(c => c.Name.Length);
        foreach (var command in commands) output.WriteLine($"  {command.Name.PadRight(width)}  {command.Summary}");
        output.WriteLine();
        output.WriteLine("global options:");
        WriteOptions(output, GlobalOptions);
        return exitCode;
    }

    private static int PrintCommandHelp(TextWriter output, CliCommand command)
    {
        output.WriteLine($"pfgm {command.Name}: {command.Summary}");
        output.WriteLine();
        output.WriteLine("usage:");
        foreach (string line in command.Usage.Split('\n')) output.WriteLine($"  {line.TrimEnd()}");
        if (command.Options.Count > 0)
        {
            output.WriteLine();
            output.WriteLine("options:");
            WriteOptions(output, command.Options);
        }

        output.WriteLine();
        output.WriteLine("global options:");
        WriteOptions(output, GlobalOptions);
        if (command.Details.Length > 0)
        {
            output.WriteLine();
            output.WriteLine(command.Details.TrimEnd());
        }

        return ExitSuccess;
    }

    private static void WriteOptions(TextWriter output, IReadOnlyList<CliOption> options)
    {
        int width = options.Max(o => o.Syntax.Length);
        foreach (var option in options) output.WriteLine($"  {option.Syntax.PadRight(width)}  {option.Help}");
    }

    private static string OneLine(string message) =>
        string.Join(' ', message.Split(['\r', '\n'], StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries));
}
