namespace PoissonFlow.Cli;

/// <summary>Entry point of the pfgm tool: dispatches sub-commands and turns user errors into one line and exit code 2.</summary>
public static class CliApp
{
    /// <summary>Runs the tool with the given arguments and returns the process exit code.</summary>
    public static int Run(string[] args)
    {
        Console.Error.WriteLine("pfgm: no commands yet");
        return args.Length == 0 ? 0 : 2;
    }
}
