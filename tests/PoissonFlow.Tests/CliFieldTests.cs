using System.Text;
using PoissonFlow.Cli.Commands;
using PoissonFlow.IO;
using PoissonFlow.Kernels;

namespace PoissonFlow.Tests;

/// <summary>
/// <c>pfgm field</c> and <c>pfgm bench field</c> end to end, in-process: every bad input is one stderr line naming
/// the option or file, exit code 2, and no output file; good input gives the field of a float64 reference.
/// </summary>
public sealed class CliFieldTests
{
    private const int Batch = 3, Count = 5, Dim = 4;
    private string _folder = "";
    private string _points = "", _data = "", _z = "", _r = "", _out = "";

    [SetUp]
    public void CreateInputs()
    {
        _folder = Path.Combine(Path.GetTempPath(), "pfgm-field-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(_folder);
        var rng = new Random(17);
        _points = Save("points.npy", Numerics.Normal(rng, Batch * Dim), Batch, Dim);
        _data = Save("data.npy", Numerics.Uniform(rng, Count * Dim), Count, Dim);
        _z = Save("z.npy", Numerics.Uniform(rng, Batch, 0.2f, 2f), Batch);
        _r = Save("r.npy", Numerics.Uniform(rng, Batch, 0.2f, 2f), Batch);
        _out = Path.Combine(_folder, "E.npy");
    }

    [TearDown]
    public void DeleteFolder() => Directory.Delete(_folder, recursive: true);

    private string Save(string name, float[] values, params int[] shape)
    {
        string path = Path.Combine(_folder, name);
        Npy.Write(path, values, shape);
        return path;
    }

    private string[] Pfgm(params string[] extra) =>
        ["field", "--points", _points, "--data", _data, "--z", _z, "--out", _out, .. extra];

    private string[] PlusPlus(params string[] extra) =>
        ["field", "--points", _points, "--data", _data, "--r", _r, "--D", "3", "--out", _out, .. extra];

    /// <summary>Runs a failing command line and checks the one-line error, exit code 2 and that no output remains.</summary>
    private void AssertRejected(string[] args, params string[] fragments)
    {
        CliHarness.Run(args).AssertUserError(fragments);
        Assert.That(File.Exists(_out), Is.False, "no output file after a failure");
        Assert.That(Directory.GetFiles(_folder).Where(f => Path.GetFileName(f).StartsWith('.')), Is.Empty, "no temporary file left");
    }

    [Test]
    public void MissingPointsFileIsNamed()
    {
        string missing = Path.Combine(_folder, "absent.npy");
        AssertRejected(["field", "--points", missing, "--data", _data, "--z", _z, "--out", _out], "--points", missing, "file not found");
    }

    [Test]
    public void MissingDataFileIsNamed()
    {
        string missing = Path.Combine(_folder, "absent.npy");
        AssertRejected(["field", "--points", _points, "--data", missing, "--z", _z, "--out", _out], "--data", missing, "file not found");
    }

    [Test]
    public void NotAnNpyIsNamed()
    {
        string text = Path.Combine(_folder, "points.csv");
        File.WriteAllText(text, "1,2,3\n4,5,6\n");
        AssertRejected(["field", "--points", text, "--data", _data, "--z", _z, "--out", _out], "--points", text, "not a NumPy .npy file");
    }

    [Test]
    public void WrongDtypeIsNamed()
    {
        var ints = NpyTests.NumpyFile("{'descr': '<i4', 'fortran_order': False, 'shape': (5, 4), }", new byte[80]);
        File.WriteAllBytes(_data, ints);
        AssertRejected(Pfgm(), "--data", _data, "unsupported dtype '<i4'");
    }

    [Test]
    public void MismatchedDimensionIsNamed()
    {
        Save("data.npy", Numerics.Uniform(new Random(1), Count * (Dim + 1)), Count, Dim + 1);
        AssertRejected(Pfgm(), "--data", _data, "N=5", "--points", "N=4");
    }

    [Test]
    public void PointsMustBeTwoDimensional()
    {
        Save("points.npy", Numerics.Uniform(new Random(1), Batch * Dim), Batch * Dim);
        AssertRejected(Pfgm(), "--points", _points, "expected a 2-D array", "(12,)");
    }

    [Test]
    public void EmptyDataIsRejected()
    {
        Save("data.npy", [], 0, Dim);
        AssertRejected(Pfgm(), "--data", _data, "empty", "(0, 4)");
    }

    [Test]
    public void WrongZLengthIsNamed()
    {
        Save("z.npy", [0.5f, 1f], 2);
        AssertRejected(Pfgm(), "--z", _z, "shape (2,)", "expected (3,)", "row of --points");
    }

    [Test]
    public void WrongRLengthIsNamed()
    {
        Save("r.npy", [0.5f, 1f, 1f, 2f], 2, 2);
        AssertRejected(PlusPlus(), "--r", _r, "shape (2, 2)", "expected (3,)");
    }

    [Test]
    public void ColumnVectorZIsAccepted()
    {
        // (B, 1) is a common way to store one value per row; it is read like (B,). Needs the field kernel.
        Save("z.npy", [0.5f, 1f, 1.5f], Batch, 1);
        var result = CliHarness.Run(Pfgm());
        Assert.That(result.ExitCode, Is.EqualTo(0), result.Error);
    }

    [Test]
    public void NaNInPointsIsNamedWithItsPosition()
    {
        var values = Numerics.Normal(new Random(2), Batch * Dim);
        values[6] = float.NaN;
        Save("points.npy", values, Batch, Dim);
        AssertRejected(Pfgm(), "--points", _points, "NaN", "[1, 2]", "finite");
    }

    [Test]
    public void InfinityInDataIsNamed()
    {
        var values = Numerics.Uniform(new Random(3), Count * Dim);
        values[^1] = float.NegativeInfinity;
        Save("data.npy", values, Count, Dim);
        AssertRejected(Pfgm(), "--data", _data, "-Inf", "[4, 3]");
    }

    [Test]
    public void Float64OverflowBecomesInfinityAndIsRejected()
    {
        // 1e300 does not fit float32: the conversion gives +Inf, which the finite check must catch.
        var doubles = NpyTests.Float64Bytes([0.5, 1e300, 1.0]);
        File.WriteAllBytes(_z, NpyTests.NumpyFile("{'descr': '<f8', 'fortran_order': False, 'shape': (3,), }", doubles));
        AssertRejected(Pfgm(), "--z", _z, "+Inf", "index 1");
    }

    [Test]
    public void NegativeZIsRejected()
    {
        Save("z.npy", [0.5f, -1f, 1f], Batch);
        AssertRejected(Pfgm(), "--z", _z, "negative", "index 1");
    }

    [Test]
    public void BothZAndRAreRejected() =>
        AssertRejected([.. Pfgm(), "--r", _r, "--D", "3"], "exactly one of --z", "--r");

    [Test]
    public void NeitherZNorRIsRejected() =>
        AssertRejected(["field", "--points", _points, "--data", _data, "--out", _out], "exactly one of --z", "--r");

    [TestCase("0")]
    [TestCase("-4")]
    public void ExtraDimensionsBelowOneAreRejected(string d)
    {
        string[] args = ["field", "--points", _points, "--data", _data, "--r", _r, "--D", d, "--out", _out];
        AssertRejected(args, "--D must be at least 1", $"got {d}");
    }

    [Test]
    public void RWithoutDIsRejected() =>
        AssertRejected(["field", "--points", _points, "--data", _data, "--r", _r, "--out", _out], "missing required option --D");

    [Test]
    public void DWithZIsRejected() => AssertRejected(Pfgm("--D", "4"), "--D applies only to PFGM++");

    [Test]
    public void GammaWithRIsRejected() => AssertRejected(PlusPlus("--gamma", "2"), "--gamma applies only to PFGM");

    [Test]
    public void NegativeGammaIsRejected() => AssertRejected(Pfgm("--gamma", "-1"), "--gamma must be at least 0");

    [Test]
    public void MissingOutIsRejected() =>
        AssertRejected(["field", "--points", _points, "--data", _data, "--z", _z], "missing required option --out");

    [Test]
    public void OutputIntoAMissingFolderIsNamed()
    {
        string bad = Path.Combine(_folder, "no-such-folder", "E.npy");
        CliHarness.Run(["field", "--points", _points, "--data", _data, "--z", _z, "--out", bad])
            .AssertUserError("--out", bad, "does not exist");
    }

    [Test]
    public void FailureLeavesAnExistingOutputUntouched()
    {
        File.WriteAllText(_out, "previous result");
        Save("z.npy", [0.5f, 1f], 2);
        CliHarness.Run(Pfgm()).AssertUserError("--z");
        Assert.That(File.ReadAllText(_out), Is.EqualTo("previous result"));
    }

    // ---- successful runs: these need the PoissonField kernel ----

    [Test]
    public void PfgmFieldIsWrittenAndMatchesTheReference()
    {
        var result = CliHarness.Run(Pfgm("--gamma", "2.5", "--device", "cpu"));
        Assert.That(result.ExitCode, Is.EqualTo(0), result.Error);
        Assert.That(result.Error, Is.Empty);
        Assert.That(result.Out, Does.Contain("wrote").And.Contain("(3, 5)"));
        var field = Npy.Read(_out);
        Assert.That(field.Shape, Is.EqualTo(new[] { Batch, Dim + 1 }));
        // The kernel itself is tested in PoissonFieldTests; here the files must carry its result unchanged.
        var expected = PoissonField.Reference(Npy.Read(_points).Data, Npy.Read(_z).Data, Npy.Read(_data).Data, Batch, Count, Dim, FieldOptions.Pfgm(2.5f));
        // float32 kernel against float64: |target| < sqrt(N) = 2; the distances are O(1) and the exponent (N+1)/2 is
        // small, so float32 rounding stays near 1e-6 relative; 1e-4 leaves room for a different summation order.
        Numerics.AssertClose(field.Data, expected, rtol: 1e-4, atol: 1e-4, "pfgm field");
        Assert.That(Directory.GetFiles(_folder).Where(f => Path.GetFileName(f).StartsWith('.')), Is.Empty, "no temporary file left");
    }

    [Test]
    public void PlusPlusPosteriorMeanIsWrittenAndMatchesTheReference()
    {
        var result = CliHarness.Run(PlusPlus());
        Assert.That(result.ExitCode, Is.EqualTo(0), result.Error);
        var field = Npy.Read(_out);
        Assert.That(field.Shape, Is.EqualTo(new[] { Batch, Dim }));
        var expected = PoissonField.Reference(Npy.Read(_points).Data, Npy.Read(_r).Data, Npy.Read(_data).Data, Batch, Count, Dim, FieldOptions.PfgmPlusPlus(3));
        // A convex combination of data in [-1, 1]; float32 softmax weights are accurate to ~1e-6 here.
        Numerics.AssertClose(field.Data, expected, rtol: 1e-4, atol: 1e-4, "pfgm++ posterior mean");
    }

    [Test]
    public void Float64InputsGiveTheSameFieldAsFloat32()
    {
        var points = Npy.Read(_points).Data;
        var asDoubles = NpyTests.Float64Bytes(points.Select(v => (double)v).ToArray());
        string points64 = Path.Combine(_folder, "points64.npy");
        File.WriteAllBytes(points64, NpyTests.NumpyFile("{'descr': '<f8', 'fortran_order': False, 'shape': (3, 4), }", asDoubles));
        string out32 = Path.Combine(_folder, "E32.npy");
        Assert.That(CliHarness.Run(Pfgm()).ExitCode, Is.EqualTo(0));
        File.Move(_out, out32);
        var result = CliHarness.Run(["field", "--points", points64, "--data", _data, "--z", _z, "--out", _out]);
        Assert.That(result.ExitCode, Is.EqualTo(0), result.Error);
        // Same float32 values reach the kernel, so the outputs are identical.
        Assert.That(Npy.Read(_out).Data, Is.EqualTo(Npy.Read(out32).Data));
    }

    [Test]
    public void BenchFieldReportsTimeThroughputAndTraffic()
    {
        var result = CliHarness.Run("bench", "field", "--B", "4", "--M", "8", "--N", "6", "--repeats", "2", "--device", "cpu");
        Assert.That(result.ExitCode, Is.EqualTo(0), result.Error);
        Assert.That(result.Out, Does.Contain("device: ILGPU CPU accelerator"));
        Assert.That(result.Out, Does.Contain("B=4 M=8 N=6"));
        Assert.That(result.Out, Does.Contain("time per call: mean"));
        Assert.That(result.Out, Does.Contain("GFLOP/s"));
        // 4 (B N + B + M N + B (N+1)) = 4 (24 + 4 + 48 + 28) = 416 bytes.
        Assert.That(result.Out, Does.Contain("memory: 416 bytes"));
    }

    [Test]
    public void BenchSummaryUsesTheStatedFormulas()
    {
        var summary = BenchSummary.Field(128, 4096, 784, FieldOptions.Pfgm(), [0.004, 0.002, 0.003]);
        Assert.That(summary.MeanSeconds, Is.EqualTo(0.003).Within(1e-15));
        Assert.That(summary.MinSeconds, Is.EqualTo(0.002));
        Assert.That(summary.MedianSeconds, Is.EqualTo(0.003));
        Assert.That(summary.Flops, Is.EqualTo(5.0 * 128 * 4096 * 784));
        Assert.That(summary.Bytes, Is.EqualTo(4.0 * (128 * 784 + 128 + 4096 * 784 + 128 * 785)));
        Assert.That(summary.GflopsPerSecond, Is.EqualTo(5.0 * 128 * 4096 * 784 / 0.003 / 1e9).Within(1e-9));
        var plusPlus = BenchSummary.Field(2, 3, 5, FieldOptions.PfgmPlusPlus(8), [1.0, 3.0]);
        Assert.That(plusPlus.Bytes, Is.EqualTo(4.0 * (2 * 5 + 2 + 3 * 5 + 2 * 5)));
        Assert.That(plusPlus.MedianSeconds, Is.EqualTo(2.0));
    }

    [Test]
    public void BenchNeedsAKnownTarget()
    {
        CliHarness.Run("bench").AssertUserError("exactly one target");
        CliHarness.Run("bench", "conv").AssertUserError("unknown benchmark target 'conv'");
        CliHarness.Run("bench", "field", "--B", "0").AssertUserError("--B must be at least 1");
        CliHarness.Run("bench", "field", "--repeats", "x").AssertUserError("--repeats expects an integer");
    }

    [Test]
    public void BenchRejectsSizesThatCannotBeAllocated() =>
        CliHarness.Run("bench", "field", "--M", "2000000000", "--N", "100").AssertUserError("exceed");

    [Test]
    public void HeaderTextInErrorIsReadable()
    {
        // A header the parser cannot read is quoted in the message so the user sees what was wrong.
        var bytes = NpyTests.NumpyFile("{'descr': '<f4', 'fortran_order': False, 'shape': [3, 4], }", new byte[48]);
        File.WriteAllBytes(_points, bytes);
        AssertRejected(Pfgm(), "--points", _points, "bad .npy header", "'shape': [3, 4]");
        Assert.That(Encoding.ASCII.GetString(bytes), Does.Contain("[3, 4]"));
    }
}
