using System.Buffers.Binary;
using System.Text;
using PoissonFlow.IO;

namespace PoissonFlow.Tests;

/// <summary>
/// .npy reading and writing. Files to read are built byte by byte here exactly as NumPy lays them out (magic,
/// version, little-endian header length, the header dict padded with spaces and '\n' to a multiple of 64), so the
/// reader is checked against the format, not against our own writer.
/// </summary>
public sealed class NpyTests
{
    private string _folder = "";

    [SetUp]
    public void CreateFolder()
    {
        _folder = Path.Combine(Path.GetTempPath(), "pfgm-npy-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(_folder);
    }

    [TearDown]
    public void DeleteFolder() => Directory.Delete(_folder, recursive: true);

    /// <summary>
    /// The bytes NumPy writes: "\x93NUMPY", major, minor, header length (uint16 for 1.0, uint32 for 2.0/3.0),
    /// then the dict text padded with spaces and a final '\n' so the data starts at a multiple of
    /// <paramref name="alignment"/>, then the raw data.
    /// </summary>
    internal static byte[] NumpyFile(string dict, byte[] payload, byte major = 1, int alignment = 64)
    {
        int preamble = major == 1 ? 10 : 12;
        int unpadded = preamble + dict.Length + 1;
        int total = (unpadded + alignment - 1) / alignment * alignment;
        string header = dict + new string(' ', total - unpadded) + "\n";
        var bytes = new List<byte> { 0x93, (byte)'N', (byte)'U', (byte)'M', (byte)'P', (byte)'Y', major, 0 };
        var length = new byte[major == 1 ? 2 : 4];
        if (major == 1) BinaryPrimitives.WriteUInt16LittleEndian(length, (ushort)header.Length);
        else BinaryPrimitives.WriteUInt32LittleEndian(length, (uint)header.Length);
        bytes.AddRange(length);
        bytes.AddRange(major == 3 ? Encoding.UTF8.GetBytes(header) : Encoding.Latin1.GetBytes(header));
        bytes.AddRange(payload);
        return [.. bytes];
    }

    internal static byte[] Float32Bytes(float[] values, bool bigEndian = false)
    {
        var bytes = new byte[values.Length * 4];
        for (int i = 0; i < values.Length; i++)
        {
            if (bigEndian) BinaryPrimitives.WriteSingleBigEndian(bytes.AsSpan(i * 4), values[i]);
            else BinaryPrimitives.WriteSingleLittleEndian(bytes.AsSpan(i * 4), values[i]);
        }

        return bytes;
    }

    internal static byte[] Float64Bytes(double[] values, bool bigEndian = false)
    {
        var bytes = new byte[values.Length * 8];
        for (int i = 0; i < values.Length; i++)
        {
            if (bigEndian) BinaryPrimitives.WriteDoubleBigEndian(bytes.AsSpan(i * 8), values[i]);
            else BinaryPrimitives.WriteDoubleLittleEndian(bytes.AsSpan(i * 8), values[i]);
        }

        return bytes;
    }

    private string Save(string name, byte[] bytes)
    {
        string path = Path.Combine(_folder, name);
        File.WriteAllBytes(path, bytes);
        return path;
    }

    private string[] FolderContents() => Directory.GetFileSystemEntries(_folder).Select(Path.GetFileName).ToArray()!;

    [TestCase(new[] { 3, 2 })]
    [TestCase(new[] { 7 })]
    [TestCase(new int[0])]
    [TestCase(new[] { 2, 3, 4 })]
    [TestCase(new[] { 0, 5 })]
    public void WriteThenReadGivesTheSameArray(int[] shape)
    {
        int count = shape.Aggregate(1, (a, b) => a * b);
        var values = Numerics.Normal(new Random(count + shape.Length), count, scale: 3f);
        string path = Path.Combine(_folder, "a.npy");
        Npy.Write(path, values, shape);
        var read = Npy.Read(path);
        Assert.That(read.Shape, Is.EqualTo(shape));
        // Bit-exact: float32 is stored and read back without conversion.
        Assert.That(read.Data, Is.EqualTo(values));
        Assert.That(FolderContents(), Is.EqualTo(new[] { "a.npy" }), "no temporary file left behind");
    }

    [Test]
    public void WrittenBytesAreWhatNumpyWrites()
    {
        var values = new[] { 1.5f, -2.25f, 3f, 0.1f, -7f, 1e-20f };
        string path = Path.Combine(_folder, "e.npy");
        Npy.Write(path, values, 3, 2);
        // NumPy >= 1.23 adds 21 - len(str(shape[0])) spaces of room before the alignment padding.
        string dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (3, 2), }" + new string(' ', 20);
        var expected = NumpyFile(dict, Float32Bytes(values));
        var actual = File.ReadAllBytes(path);
        Assert.That(actual, Is.EqualTo(expected));
        int headerLength = BinaryPrimitives.ReadUInt16LittleEndian(actual.AsSpan(8));
        Assert.That((10 + headerLength) % 64, Is.Zero, "data starts on a 64-byte boundary");
        Assert.That(actual[10 + headerLength - 1], Is.EqualTo((byte)'\n'));
    }

    [Test]
    public void WriteOneDimensionalAndScalarHeaders()
    {
        string vectorPath = Path.Combine(_folder, "v.npy"), scalarPath = Path.Combine(_folder, "s.npy");
        Npy.Write(vectorPath, new[] { 1f, 2f, 3f, 4f }, 4);
        Npy.Write(scalarPath, new[] { 9f });
        // A scalar has no growing axis, so NumPy adds no spare room there.
        var vector = NumpyFile("{'descr': '<f4', 'fortran_order': False, 'shape': (4,), }" + new string(' ', 20), Float32Bytes([1f, 2f, 3f, 4f]));
        var scalar = NumpyFile("{'descr': '<f4', 'fortran_order': False, 'shape': (), }", Float32Bytes([9f]));
        Assert.That(File.ReadAllBytes(vectorPath), Is.EqualTo(vector));
        Assert.That(File.ReadAllBytes(scalarPath), Is.EqualTo(scalar));
    }

    [Test]
    public void ReadsFloat64AndConvertsToFloat32()
    {
        var values = new[] { 0.1, -2.5, 1e-3, 123456.789, -0.0, 3.0 };
        string path = Save("f8.npy", NumpyFile("{'descr': '<f8', 'fortran_order': False, 'shape': (3, 2), }", Float64Bytes(values)));
        var array = Npy.Read(path);
        Assert.That(array.Shape, Is.EqualTo(new[] { 3, 2 }));
        Assert.That(array.Data, Is.EqualTo(values.Select(v => (float)v).ToArray()));
    }

    [TestCase((byte)2)]
    [TestCase((byte)3)]
    public void ReadsFormatVersions2And3(byte major)
    {
        var values = new[] { 1f, 2f, 3f, 4f, 5f, 6f };
        string path = Save("v.npy", NumpyFile("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", Float32Bytes(values), major));
        var array = Npy.Read(path);
        Assert.That(array.Shape, Is.EqualTo(new[] { 2, 3 }));
        Assert.That(array.Data, Is.EqualTo(values));
    }

    [Test]
    public void ReadsBigEndianFloat32AndFloat64()
    {
        var singles = new[] { 1.25f, -3.5f, 1e10f };
        var doubles = new[] { 0.5, -1e-5, 42.0 };
        var f4 = Npy.Read(Save("b4.npy", NumpyFile("{'descr': '>f4', 'fortran_order': False, 'shape': (3,), }", Float32Bytes(singles, bigEndian: true))));
        var f8 = Npy.Read(Save("b8.npy", NumpyFile("{'descr': '>f8', 'fortran_order': False, 'shape': (3,), }", Float64Bytes(doubles, bigEndian: true))));
        Assert.That(f4.Data, Is.EqualTo(singles));
        Assert.That(f8.Data, Is.EqualTo(doubles.Select(v => (float)v).ToArray()));
    }

    [Test]
    public void ReadsOneDimensionalAndZeroDimensionalArrays()
    {
        var vector = Npy.Read(Save("v.npy", NumpyFile("{'descr': '<f4', 'fortran_order': False, 'shape': (4,), }", Float32Bytes([1f, 2f, 3f, 4f]))));
        var scalar = Npy.Read(Save("s.npy", NumpyFile("{'descr': '<f8', 'fortran_order': False, 'shape': (), }", Float64Bytes([2.5]))));
        Assert.That(vector.Shape, Is.EqualTo(new[] { 4 }));
        Assert.That(vector.Data, Is.EqualTo(new[] { 1f, 2f, 3f, 4f }));
        Assert.That(scalar.Shape, Is.Empty);
        Assert.That(scalar.Data, Is.EqualTo(new[] { 2.5f }));
    }

    [Test]
    public void ReadsHeadersInOtherSpellings()
    {
        // Old NumPy aligned to 16 bytes; hand-written headers may reorder keys, use double quotes, drop the
        // trailing comma or carry Python 2 long literals.
        var values = Float32Bytes([1f, 2f, 3f, 4f, 5f, 6f]);
        var a = Npy.Read(Save("a.npy", NumpyFile("{'shape': (2, 3), 'fortran_order': False, 'descr': '<f4'}", values, alignment: 16)));
        var b = Npy.Read(Save("b.npy", NumpyFile("{\"descr\": \"<f4\", \"fortran_order\": False, \"shape\": (2L, 3L)}", values)));
        Assert.That(a.Shape, Is.EqualTo(new[] { 2, 3 }));
        Assert.That(b.Shape, Is.EqualTo(new[] { 2, 3 }));
        Assert.That(b.Data, Is.EqualTo(a.Data));
    }

    private static NpyFormatException ReadFails(string path) => Assert.Throws<NpyFormatException>(() => Npy.Read(path))!;

    [Test]
    public void MissingFileIsNamed()
    {
        string path = Path.Combine(_folder, "absent.npy");
        var error = ReadFails(path);
        Assert.That(error.Message, Does.Contain(path).And.Contain("not found"));
    }

    [Test]
    public void TextFileIsNotAnNpy()
    {
        string path = Save("notes.npy", Encoding.ASCII.GetBytes("x,y\n1,2\n"));
        Assert.That(ReadFails(path).Message, Does.Contain(path).And.Contain("not a NumPy .npy file"));
    }

    [Test]
    public void EmptyFileIsNotAnNpy()
    {
        string path = Save("empty.npy", []);
        Assert.That(ReadFails(path).Message, Does.Contain(path).And.Contain("not a NumPy .npy file"));
    }

    [Test]
    public void TruncatedDataIsReported()
    {
        var full = NumpyFile("{'descr': '<f4', 'fortran_order': False, 'shape': (3, 2), }", Float32Bytes([1f, 2f, 3f, 4f, 5f, 6f]));
        string path = Save("cut.npy", full[..^5]);
        Assert.That(ReadFails(path).Message, Does.Contain(path).And.Contain("truncated data").And.Contain("24 bytes").And.Contain("19"));
    }

    [Test]
    public void TruncatedFloat64DataIsReported()
    {
        var full = NumpyFile("{'descr': '<f8', 'fortran_order': False, 'shape': (2,), }", Float64Bytes([1.0, 2.0]));
        string path = Save("cut8.npy", full[..^1]);
        Assert.That(ReadFails(path).Message, Does.Contain(path).And.Contain("truncated data"));
    }

    [Test]
    public void TruncatedHeaderIsReported()
    {
        var full = NumpyFile("{'descr': '<f4', 'fortran_order': False, 'shape': (3, 2), }", []);
        string path = Save("head.npy", full[..30]);
        Assert.That(ReadFails(path).Message, Does.Contain(path).And.Contain("truncated .npy header"));
    }

    [Test]
    public void TrailingBytesAreReported()
    {
        var full = NumpyFile("{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }", Float32Bytes([1f, 2f, 3f]));
        string path = Save("long.npy", full);
        Assert.That(ReadFails(path).Message, Does.Contain(path).And.Contain("unexpected bytes after"));
    }

    [TestCase("<i8")]
    [TestCase("<f2")]
    [TestCase("|u1")]
    [TestCase("<c8")]
    public void UnsupportedDtypeIsNamed(string descr)
    {
        string path = Save("int.npy", NumpyFile($"{{'descr': '{descr}', 'fortran_order': False, 'shape': (2,), }}", new byte[16]));
        Assert.That(ReadFails(path).Message, Does.Contain(path).And.Contain("unsupported dtype").And.Contain($"'{descr}'"));
    }

    [Test]
    public void StructuredDtypeIsUnsupported()
    {
        string path = Save("rec.npy", NumpyFile("{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (2,), }", new byte[8]));
        Assert.That(ReadFails(path).Message, Does.Contain(path).And.Contain("unsupported dtype"));
    }

    [Test]
    public void FortranOrderIsRejected()
    {
        string path = Save("f.npy", NumpyFile("{'descr': '<f4', 'fortran_order': True, 'shape': (3, 2), }", new byte[24]));
        Assert.That(ReadFails(path).Message, Does.Contain(path).And.Contain("Fortran"));
    }

    [TestCase("{'descr': '<f4', 'fortran_order': False, }", "'shape' is missing")]
    [TestCase("{'descr': '<f4', 'shape': (2,), }", "'fortran_order' is missing")]
    [TestCase("{'descr': '<f4', 'fortran_order': Maybe, 'shape': (2,), }", "expected True or False")]
    [TestCase("{'descr': '<f4', 'fortran_order': False, 'shape': (2, x), }", "expected a dimension")]
    [TestCase("{'descr': '<f4', 'fortran_order': False, 'shape': (2,), 'extra': 1}", "unexpected key 'extra'")]
    [TestCase("['descr', '<f4']", "expected '{'")]
    [TestCase("{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999,), }", "too large")]
    public void BadHeaderIsReported(string dict, string problem)
    {
        string path = Save("bad.npy", NumpyFile(dict, new byte[8]));
        Assert.That(ReadFails(path).Message, Does.Contain(path).And.Contain("bad .npy header").And.Contain(problem));
    }

    [Test]
    public void UnknownFormatVersionIsReported()
    {
        var bytes = NumpyFile("{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }", new byte[8], major: 2);
        bytes[6] = 4;
        string path = Save("v4.npy", bytes);
        Assert.That(ReadFails(path).Message, Does.Contain(path).And.Contain("version 4.0"));
    }

    [Test]
    public void ShapeThatDoesNotMatchTheDataIsRejectedAndNothingIsWritten()
    {
        string path = Path.Combine(_folder, "x.npy");
        var error = Assert.Throws<ArgumentException>(() => Npy.Write(path, new float[5], 2, 3))!;
        Assert.That(error.Message, Does.Contain("(2, 3)").And.Contain("5"));
        Assert.That(FolderContents(), Is.Empty);
    }

    [Test]
    public void WriteIntoAMissingFolderNamesItAndLeavesNothing()
    {
        string path = Path.Combine(_folder, "nope", "x.npy");
        var error = Assert.Throws<DirectoryNotFoundException>(() => Npy.Write(path, new float[2], 2))!;
        Assert.That(error.Message, Does.Contain(path));
        Assert.That(FolderContents(), Is.Empty);
    }

    [Test]
    public void FailedWriteKeepsThePreviousFileAndLeavesNoTemporary()
    {
        string path = Path.Combine(_folder, "keep.npy");
        File.WriteAllText(path, "old");
        Assert.Throws<InvalidOperationException>(() => AtomicFile.Write(path, stream =>
        {
            stream.Write(new byte[1000]);
            throw new InvalidOperationException("simulated failure half-way");
        }));
        Assert.That(File.ReadAllText(path), Is.EqualTo("old"));
        Assert.That(FolderContents(), Is.EqualTo(new[] { "keep.npy" }));
    }

    [Test]
    public void WriteReplacesAnExistingFile()
    {
        string path = Path.Combine(_folder, "r.npy");
        File.WriteAllText(path, "old contents");
        Npy.Write(path, new[] { 4f, 5f }, 2);
        Assert.That(Npy.Read(path).Data, Is.EqualTo(new[] { 4f, 5f }));
        Assert.That(FolderContents(), Is.EqualTo(new[] { "r.npy" }));
    }

    [Test]
    public void DiskFullIsRecognised()
    {
        // /dev/full fails every write with ENOSPC, as a full disk does.
        if (!File.Exists("/dev/full")) Assert.Ignore("no /dev/full on this system");
        var error = Assert.Catch<IOException>(() =>
        {
            using var stream = new FileStream("/dev/full", FileMode.Open, FileAccess.Write);
            stream.Write(new byte[8192]);
            stream.Flush();
        })!;
        Assert.That(AtomicFile.IsDiskFull(error), Is.True, error.ToString());
        Assert.That(AtomicFile.IsDiskFull(new IOException("other")), Is.False);
    }

    [Test]
    public void NonFiniteValuesAreFound()
    {
        Assert.That(Npy.IndexOfNonFinite([1f, 2f, -3f]), Is.EqualTo(-1));
        Assert.That(Npy.IndexOfNonFinite([1f, float.NaN, float.PositiveInfinity]), Is.EqualTo(1));
        Assert.That(Npy.IndexOfNonFinite([0f, 1f, float.NegativeInfinity]), Is.EqualTo(2));
        Assert.That(Npy.ContainsNonFinite([0f, 1f]), Is.False);
        Assert.That(Npy.ContainsNonFinite([float.NaN]), Is.True);
    }
}
