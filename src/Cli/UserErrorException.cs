namespace PoissonFlow.Cli;

/// <summary>
/// A problem the user can fix (a bad option, a wrong file): the tool prints its message as one line
/// <c>pfgm: &lt;message&gt;</c> on stderr and exits with code 2. The message names the option or file.
/// </summary>
public sealed class UserErrorException : Exception
{
    /// <summary>Creates the exception with a one-line message naming the option or file and the problem.</summary>
    public UserErrorException(string message) : base(message) { }

    /// <summary>Creates the exception with the underlying cause.</summary>
    public UserErrorException(string message, Exception inner) : base(message, inner) { }
}
