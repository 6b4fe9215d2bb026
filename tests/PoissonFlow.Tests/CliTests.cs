using PoissonFlow.Cli;
using PoissonFlow.Data;
using PoissonFlow.IO;
using PoissonFlow.Kernels.Device;

namespace PoissonFlow.Tests;

/// <summary>The pfgm framework: dispatch, help, version, option parsing and the mapping of errors to exit codes.</summary>
public sealed class CliTests
{
    [Test]
    public void HelpListsEveryCommand()
    {
        var result = CliHarness.Run("--help");
        Assert.That(result.ExitCode, Is.EqualTo(0));
        foreach (var command in CliApp.Commands) Assert.That(result.Out, Does.Contain($"  {command.Name}  ").Or.Contain($"  {command.Name} "));
        Assert.That(result.Out, Does.Contain("--device auto|cuda|cpu"));
        Assert.That(result.Error, Is.Empty);
    }

    [Test]
    public void CommandHelpListsItsOptions()
    {
        foreach (var command in CliApp.Commands)
        {
            var result = CliHarness.Run(command.Name, "--help");
            Assert.That(result.ExitCode, Is.EqualTo(0), command.Name);
            foreach (var option in command.Options) Assert.That(result.Out, Does.Contain(option.Syntax), command.Name);
            Assert.That(result.Out, Does.Contain("--device"));
            Assert.That(CliHarness.Run("help", command.Name).Out, Is.EqualTo(result.Out), "pfgm help NAME is the same");
            Assert.That(CliHarness.Run(command.Name, "-h").Out, Is.EqualTo(result.Out), "-h is --help");
        }
    }

    [Test]
    public void VersionIsPrinted()
    {
        var result = CliHarness.Run("--version");
        Assert.That(result.ExitCode, Is.EqualTo(0));
        Assert.That(result.Out.Trim(), Is.EqualTo($"pfgm {CliApp.Version}"));
        Assert.That(CliApp.Version, Does.Match(@"^\d+\.\d+\.\d+"));
    }

    [Test]
    public void NoCommandIsAUserError()
    {
        var result = CliHarness.Run();
        result.AssertUserError("no command given");
        Assert.That(result.Out, Does.Contain("commands:"), "the overview is shown to help");
    }

    [Test]
    public void UnknownCommandIsNamed() => CliHarness.Run("trian").AssertUserError("unknown command 'trian'", "field");

    [Test]
    public void UnknownOptionIsNamed() =>
        CliHarness.Run("field", "--pionts", "p.npy").AssertUserError("unknown option '--pionts'", "pfgm field");

    [Test]
    public void BadDeviceIsNamed() =>
        CliHarness.Run("field", "--device", "tpu").AssertUserError("--device", "'tpu'", "auto, cuda or cpu");

    [Test]
    public void GlobalOptionsMayComeBeforeTheCommand() =>
        CliHarness.Run("--device", "tpu", "field").AssertUserError("--device", "'tpu'");

    [Test]
    public void CudaAskedButAbsentIsOneLine()
    {
        if (ComputeDevice.CudaAvailable()) Assert.Ignore("this machine has CUDA");
        var commands = new CliCommand[] { new UsesDeviceCommand() };
        CliHarness.Run(commands, "probe", "--device", "cuda").AssertUserError("CUDA was requested", "--device cpu");
    }

    [Test]
    public void UnexpectedExceptionIsExitCode1WithTheMessage()
    {
        var commands = new CliCommand[] { new ThrowingCommand(new InvalidOperationException("kernel state broken")) };
        var result = CliHarness.Run(commands, "throw");
        Assert.That(result.ExitCode, Is.EqualTo(CliApp.ExitInternalError));
        Assert.That(result.Error, Does.StartWith("pfgm: internal error: kernel state broken (InvalidOperationException)"));
        Assert.That(result.Error, Does.Contain("at "), "the stack trace follows for the bug report");
    }

    private static IEnumerable<TestCaseData> MappedExceptions()
    {
        yield return new TestCaseData(new UserErrorException("--x is wrong")).SetArgDisplayNames("UserError");
        yield return new TestCaseData(new NpyFormatException("a.npy: not a NumPy .npy file")).SetArgDisplayNames("Npy");
        yield return new TestCaseData(new DeviceUnavailableException("CUDA was requested")).SetArgDisplayNames("Device");
        yield return new TestCaseData(new DatasetException("d.csv: row 3 has 2 columns, expected 3")).SetArgDisplayNames("Dataset");
        yield return new TestCaseData(new InvalidDataException("config.json: not a valid RunConfig JSON file")).SetArgDisplayNames("InvalidData");
        yield return new TestCaseData(new ArgumentException("shape (2, 3) holds 6 values")).SetArgDisplayNames("Argument");
        yield return new TestCaseData(new FileNotFoundException("Could not find file '/x/y'")).SetArgDisplayNames("FileNotFound");
        yield return new TestCaseData(new DirectoryNotFoundException("folder '/x' does not exist")).SetArgDisplayNames("DirectoryNotFound");
        yield return new TestCaseData(new IOException("cannot write 'e.npy': broken pipe")).SetArgDisplayNames("IO");
        yield return new TestCaseData(new UnauthorizedAccessException("cannot write 'e.npy': permission denied")).SetArgDisplayNames("Access");
    }

    [TestCaseSource(nameof(MappedExceptions))]
    public void UserCausedExceptionsAreOneLineAndExitCode2(Exception exception)
    {
        var commands = new CliCommand[] { new ThrowingCommand(exception) };
        CliHarness.Run(commands, "throw").AssertUserError(exception.Message);
    }

    [Test]
    public void MultiLineMessagesAreJoinedIntoOneLine() =>
        CliHarness.Run([new ThrowingCommand(new UserErrorException("first\nsecond"))], "throw").AssertUserError("first second");

    [Test]
    public void DiskFullIsNamed()
    {
        var full = new IOException("cannot write 'e.npy': No space left on device", 28);
        CliHarness.Run([new ThrowingCommand(full)], "throw").AssertUserError("no space left on device", "e.npy");
    }

    [Test]
    public void ParsesValuesFlagsAndEqualsSyntax()
    {
        CliOption[] options = [new("n", "N", ""), new("rate", "R", ""), new("fast", null, ""), new("name", "S", "")];
        var args = ParsedArgs.Parse("t", ["--n", "12", "--rate=0.5", "--fast", "--name", "-x"], options, acceptsPositionals: false);
        Assert.That(args.GetRequiredInt("n"), Is.EqualTo(12));
        Assert.That(args.GetFloat("rate", 1f), Is.EqualTo(0.5f));
        Assert.That(args.GetFlag("fast"), Is.True);
        Assert.That(args.GetString("name"), Is.EqualTo("-x"), "a single-dash word is a value");
        Assert.That(args.GetInt("absent", 7), Is.EqualTo(7));
        Assert.That(args.Has("absent"), Is.False);
    }

    private static string ParseError(string[] argv, bool positionals = false, Action<ParsedArgs>? use = null)
    {
        CliOption[] options = [new("n", "N", ""), new("rate", "R", ""), new("fast", null, "")];
        var error = Assert.Throws<UserErrorException>(() =>
        {
            var args = ParsedArgs.Parse("t", argv, options, positionals);
            use?.Invoke(args);
        })!;
        return error.Message;
    }

    [Test]
    public void ParseErrorsNameTheOption()
    {
        Assert.That(ParseError(["--n"]), Does.Contain("--n needs a value"));
        Assert.That(ParseError(["--n", "--fast"]), Does.Contain("--n needs a value"));
        Assert.That(ParseError(["--n", "1", "--n", "2"]), Does.Contain("--n is given more than once"));
        Assert.That(ParseError(["--fast=yes"]), Does.Contain("--fast is a flag"));
        Assert.That(ParseError(["stray"]), Does.Contain("unexpected argument 'stray'"));
        Assert.That(ParseError(["--n", "x1"], use: a => a.GetRequiredInt("n")), Does.Contain("--n expects an integer, got 'x1'"));
        Assert.That(ParseError(["--n", "0"], use: a => a.GetRequiredInt("n", min: 1)), Does.Contain("--n must be at least 1, got 0"));
        Assert.That(ParseError(["--n", "9"], use: a => a.GetInt("n", 1, min: 1, max: 5)), Does.Contain("--n must be between 1 and 5, got 9"));
        Assert.That(ParseError(["--rate", "NaN"], use: a => a.GetFloat("rate", 1f)), Does.Contain("--rate expects a finite number"));
        Assert.That(ParseError(["--rate", "-1"], use: a => a.GetFloat("rate", 1f, min: 0f)), Does.Contain("--rate must be at least 0, got -1"));
        Assert.That(ParseError([], use: a => a.GetRequiredString("n")), Does.Contain("missing required option --n"));
    }

    [Test]
    public void PositionalsAreKeptWhenAccepted()
    {
        CliOption[] options = [new("n", "N", "")];
        var args = ParsedArgs.Parse("t", ["field", "--n", "3", "extra"], options, acceptsPositionals: true);
        Assert.That(args.Positionals, Is.EqualTo(new[] { "field", "extra" }));
    }

    [Test]
    public void RunWithoutEnvironmentWritesToTheConsole()
    {
        // The plain entry point uses the real console: swap it for the duration (tests are not run in parallel).
        var previousOut = Console.Out;
        var previousError = Console.Error;
        var output = new StringWriter();
        var error = new StringWriter();
        try
        {
            Console.SetOut(output);
            Console.SetError(error);
            Assert.That(CliApp.Run(["--version"]), Is.EqualTo(0));
            Assert.That(CliApp.Run(["nonsense"]), Is.EqualTo(2));
        }
        finally
        {
            Console.SetOut(previousOut);
            Console.SetError(previousError);
        }

        Assert.That(output.ToString(), Does.Contain("pfgm "));
        Assert.That(error.ToString().Trim(), Does.StartWith("pfgm: unknown command 'nonsense'"));
    }

    /// <summary>A command that throws the exception it was given, to check the error mapping.</summary>
    private sealed class ThrowingCommand(Exception exception) : CliCommand
    {
        public override string Name => "throw";
        public override string Summary => "throws";
        public override string Usage => "pfgm throw";
        public override IReadOnlyList<CliOption> Options => [];
        public override int Execute(CliContext context, ParsedArgs args) => throw exception;
    }

    /// <summary>A command that only asks for the device.</summary>
    private sealed class UsesDeviceCommand : CliCommand
    {
        public override string Name => "probe";
        public override string Summary => "creates the device";
        public override string Usage => "pfgm probe";
        public override IReadOnlyList<CliOption> Options => [];
        public override int Execute(CliContext context, ParsedArgs args)
        {
            context.Out.WriteLine(context.Device.Description);
            return 0;
        }
    }
}
