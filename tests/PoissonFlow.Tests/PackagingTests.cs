using System.Diagnostics;
using System.IO.Compression;
using System.Xml.Linq;
using PoissonFlow.IO;

namespace PoissonFlow.Tests;

/// <summary>
/// The NuGet packages as an application gets them: packs Kernels, Network, Sampling and the pfgm tool into a local
/// feed in a temporary folder, installs the tool from it and trains a tiny 2-D model with it, then builds a copy of
/// samples/PoissonFlow.SampleApp against the packages (no project references: the copy lies outside the repository)
/// and runs it on that checkpoint. Restores use this machine's NuGet sources and read its package cache as a
/// fallback folder; the packed packages go only to the temporary folder. Minutes, not seconds: filter it out with
/// <c>--filter "TestCategory!=Packaging"</c> while iterating.
/// </summary>
[TestFixture, Category("Packaging"), NonParallelizable]
public sealed class PackagingTests
{
    private static readonly string[] Libraries = ["PoissonFlow.Kernels", "PoissonFlow.Network", "PoissonFlow.Sampling"];
    private const string ToolPackage = "PoissonFlow.Cli";

    private string _temp = "";

    [SetUp]
    public void CreateFolder() => _temp = Directory.CreateTempSubdirectory("pfgm-pack-").FullName;

    [TearDown]
    public void DeleteFolder()
    {
        try
        {
            Directory.Delete(_temp, recursive: true);
        }
        catch (IOException)
        {
            // A build server may still hold a file for a moment; the folder is in the temporary directory anyway.
        }
    }

    [Test]
    public void Packages_install_the_tool_and_build_and_run_the_sample_app()
    {
        string root = RepositoryRoot();
        string feed = Path.Combine(_temp, "feed");
        // A version no cache can hold from an earlier run, so the restores below must take the packages just made.
        string version = $"0.0.0-pack.{DateTime.UtcNow:yyyyMMddHHmmss}";
        WriteNuGetConfig(feed);

        Dotnet(root, "pack", Path.Combine(root, "PoissonFlow.Packages.slnf"), "-c", "Release", $"-p:Version={version}",
            $"-p:PackageOutputPath={feed}", "-p:UseArtifactsOutput=true", $"-p:ArtifactsPath={Path.Combine(_temp, "artifacts")}");
        foreach (string id in Libraries) CheckLibraryPackage(Path.Combine(feed, $"{id}.{version}.nupkg"), id, version);
        CheckToolPackage(Path.Combine(feed, $"{ToolPackage}.{version}.nupkg"));

        // The tool from the feed trains the checkpoint the sample app then samples.
        string tools = Path.Combine(_temp, "tools");
        Dotnet(_temp, "tool", "install", ToolPackage, "--version", version, "--tool-path", tools, "--configfile", Path.Combine(_temp, "NuGet.config"));
        string run = Path.Combine(_temp, "run");
        Run(_temp, Path.Combine(tools, "pfgm"), "train", "--data", "moons", "--out", run, "--steps", "6", "--batch", "16",
            "--ref-batch", "32", "--hidden", "8", "--depth", "1", "--count", "200", "--device", "cpu");
        string checkpoint = Path.Combine(run, "model.safetensors");
        Assert.That(File.Exists(checkpoint), "pfgm train wrote the checkpoint");

        string app = Path.Combine(_temp, "app");
        foreach (string file in new[] { "PoissonFlow.SampleApp.csproj", "Program.cs" })
        {
            Directory.CreateDirectory(app);
            File.Copy(Path.Combine(root, "samples", "PoissonFlow.SampleApp", file), Path.Combine(app, file));
        }

        Dotnet(app, "build", "-c", "Release", $"-p:PoissonFlowVersion={version}", "-o", Path.Combine(app, "out"));
        string assets = File.ReadAllText(Path.Combine(app, "obj", "project.assets.json"));
        Assert.That(assets, Does.Contain($"\"PoissonFlow.Sampling/{version}\"").And.Contain("\"type\": \"package\""));
        Assert.That(assets, Does.Not.Contain("\"type\": \"project\""), "the sample app references packages only");

        string samples = Path.Combine(_temp, "samples.npy");
        string printed = Dotnet(app, Path.Combine(app, "out", "PoissonFlow.SampleApp.dll"), checkpoint, samples, "50");
        Assert.That(printed, Does.Contain("50 samples of shape [2]"));
        var read = Npy.Read(samples);
        Assert.That(read.Shape, Is.EqualTo(new[] { 50, 2 }));
        Assert.That(read.Data.All(float.IsFinite), "every sample is finite");
    }

    /// <summary>Every library package carries the dll, its XML docs, the README, MIT and no repository.</summary>
    private static void CheckLibraryPackage(string path, string id, string version)
    {
        Assert.That(File.Exists(path), $"{path} was packed");
        using var zip = ZipFile.OpenRead(path);
        var entries = zip.Entries.Select(e => e.FullName).ToList();
        Assert.That(entries, Does.Contain($"lib/net10.0/{id}.dll").And.Contain($"lib/net10.0/{id}.xml").And.Contain("README.md"));
        var metadata = Nuspec(zip);
        Assert.That(Value(metadata, "version"), Is.EqualTo(version));
        Assert.That(Value(metadata, "license"), Is.EqualTo("MIT"));
        Assert.That(Value(metadata, "readme"), Is.EqualTo("README.md"));
        Assert.That(Value(metadata, "description"), Is.Not.Empty);
        Assert.That(metadata.Elements().Where(e => e.Name.LocalName == "repository"), Is.Empty, "no repository metadata");
    }

    private static void CheckToolPackage(string path)
    {
        Assert.That(File.Exists(path), $"{path} was packed");
        using var zip = ZipFile.OpenRead(path);
        var entries = zip.Entries.Select(e => e.FullName).ToList();
        Assert.That(entries, Has.Some.EndsWith("DotnetToolSettings.xml"));
        Assert.That(entries, Has.Some.EndsWith("/pfgm.dll"));
        var packageTypes = Nuspec(zip).Descendants().Where(e => e.Name.LocalName == "packageType").Select(e => (string?)e.Attribute("name"));
        Assert.That(packageTypes, Does.Contain("DotnetTool"));
    }

    private static XElement Nuspec(ZipArchive zip)
    {
        using var stream = zip.Entries.Single(e => e.FullName.EndsWith(".nuspec", StringComparison.Ordinal)).Open();
        return XDocument.Load(stream).Root!.Elements().Single(e => e.Name.LocalName == "metadata");
    }

    private static string Value(XElement metadata, string name) =>
        metadata.Elements().SingleOrDefault(e => e.Name.LocalName == name)?.Value ?? "";

    /// <summary>
    /// A NuGet.config next to the temporary projects: the local feed on top of the sources this machine's user
    /// configuration already names, packages extracted into the temporary folder, and the machine's caches read as
    /// fallback folders so nothing already there is downloaded again.
    /// </summary>
    private void WriteNuGetConfig(string feed)
    {
        Directory.CreateDirectory(feed);
        string machineCache = Environment.GetEnvironmentVariable("NUGET_PACKAGES")
            ?? Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".nuget", "packages");
        var fallbacks = new[] { machineCache, "/opt/nuget/packages" }.Where(Directory.Exists)
            .Select((folder, i) => new XElement("add", new XAttribute("key", $"machine{i}"), new XAttribute("value", folder)));
        var config = new XElement("configuration",
            new XElement("packageSources", new XElement("add", new XAttribute("key", "local-feed"), new XAttribute("value", feed))),
            new XElement("config", new XElement("add", new XAttribute("key", "globalPackagesFolder"), new XAttribute("value", Path.Combine(_temp, "packages")))),
            new XElement("fallbackPackageFolders", fallbacks));
        config.Save(Path.Combine(_temp, "NuGet.config"));
    }

    private static string RepositoryRoot()
    {
        for (var folder = new DirectoryInfo(TestContext.CurrentContext.TestDirectory); folder is not null; folder = folder.Parent)
        {
            if (File.Exists(Path.Combine(folder.FullName, "PoissonFlow.sln"))) return folder.FullName;
        }

        Assert.Fail("the repository root (PoissonFlow.sln) is not above the test directory");
        return "";
    }

    private static string Dotnet(string workingDirectory, params string[] arguments) => Run(workingDirectory, "dotnet", arguments);

    /// <summary>Runs a process to completion (10 minutes at most) and fails the test with its output when it fails.</summary>
    private static string Run(string workingDirectory, string program, params string[] arguments)
    {
        var start = new ProcessStartInfo(program)
        {
            WorkingDirectory = workingDirectory,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        foreach (string argument in arguments) start.ArgumentList.Add(argument);
        // No lingering build servers from the test, and none of the test host's MSBuild settings.
        start.Environment["MSBUILDDISABLENODEREUSE"] = "1";
        start.Environment["DOTNET_CLI_TELEMETRY_OPTOUT"] = "1";
        start.Environment["DOTNET_NOLOGO"] = "1";
        foreach (string inherited in new[] { "MSBuildExtensionsPath", "MSBuildSDKsPath", "MSBUILD_EXE_PATH", "MSBuildLoadMicrosoftTargetsReadOnly" })
        {
            start.Environment.Remove(inherited);
        }

        using var process = Process.Start(start)!;
        var output = process.StandardOutput.ReadToEndAsync();
        var error = process.StandardError.ReadToEndAsync();
        if (!process.WaitForExit(TimeSpan.FromMinutes(10)))
        {
            process.Kill(entireProcessTree: true);
            Assert.Fail($"{program} {string.Join(' ', arguments)} did not finish in 10 minutes");
        }

        string text = output.Result + error.Result;
        Assert.That(process.ExitCode, Is.Zero, $"{program} {string.Join(' ', arguments)} failed:\n{text}");
        return text;
    }
}
