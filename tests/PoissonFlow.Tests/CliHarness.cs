using PoissonFlow.Cli;

namespace PoissonFlow.Tests;

/// <summary>What one in-process run of pfgm returned and printed.</summary>
internal sealed record CliResult(int ExitCode, string Out, string Error)
{
    /// <summary>Asserts a user error: exit code 2 and exactly one line "pfgm: ..." on stderr containing every fragment.</summary>
    public void AssertUserError(params string[] fragments)
    {
        Assert.That(ExitCode, Is.EqualTo(CliApp.ExitUserError), $"exit code; stderr: {Error}");
        string[] lines = Error.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.That(lines, Has.Length.EqualTo(1), $"exactly one stderr line, got: {Error}");
        Assert.That(lines[0], Does.StartWith("pfgm: "));
        foreach (string fragment in fragments) Assert.That(lines[0], Does.Contain(fragment));
    }
}

/// <summary>
/// Runs pfgm in-process with its output captured in strings (never the global Console, so nothing leaks between
/// tests) and with the shared CPU test device (creating a device per run would cost seconds).
/// </summary>
internal static class CliHarness
{
    public static CliResult Run(params string[] args) => Run(CliApp.Commands, args);

    public static CliResult Run(IReadOnlyList<CliCommand> commands, params string[] args)
    {
        var output = new StringWriter { NewLine = "\n" };
        var error = new StringWriter { NewLine = "\n" };
        var environment = new CliEnvironment
        {
            Out = output,
            Error = error,
            OutputIsTerminal = false,
            SharedDevice = TestDevice.Cpu,
        };
        int code = CliApp.Run(args, environment, commands);
        return new CliResult(code, output.ToString(), error.ToString());
    }
}
