using PoissonFlow.Data;
using PoissonFlow.IO;

namespace PoissonFlow.Tests.Data;

public sealed class PointSetFilesTests
{
    private string _folder = "";

    [SetUp]
    public void CreateFolder() => _folder = Directory.CreateTempSubdirectory("pfgm-data-").FullName;

    [TearDown]
    public void DeleteFolder() => Directory.Delete(_folder, recursive: true);

    private string WriteFile(string name, string content)
    {
        string path = Path.Combine(_folder, name);
        File.WriteAllText(path, content);
        return path;
    }

    [Test]
    public void Csv_with_header_and_any_column_count_from_two()
    {
        var set = PointSetFiles.Load(WriteFile("a.csv", "x,y,w\n1.5,-2,3e-1\n\n0.25, 4 ,5\n"));
        Assert.Multiple(() =>
        {
            Assert.That(set.Count, Is.EqualTo(2));
            Assert.That(set.Dim, Is.EqualTo(3));
            Assert.That(set.Data, Is.EqualTo(new[] { 1.5f, -2f, 0.3f, 0.25f, 4f, 5f }));
        });
    }

    [Test]
    public void Csv_without_header()
    {
        var set = PointSetFiles.Load(WriteFile("b.csv", "1,2\n3,4\n5,6"));
        Assert.That((set.Count, set.Dim), Is.EqualTo((3, 2)));
        Assert.That(set[2].ToArray(), Is.EqualTo(new[] { 5f, 6f }));
    }

    [TestCase("nan.csv", "x,y\n1,2\n3,NaN\n", "line 3, column 2")]
    [TestCase("inf.csv", "1,2\n-Infinity,4\n", "line 2, column 1")]
    [TestCase("one.csv", "x\n1\n2\n", "at least 2 coordinates")]
    [TestCase("ragged.csv", "1,2\n3,4,5\n", "line 2 has 3 column(s), expected 2")]
    [TestCase("word.csv", "1,2\n3,abc\n", "'abc' is not a number")]
    [TestCase("empty.csv", "", "no data rows")]
    [TestCase("header-only.csv", "x,y\n", "no data rows")]
    public void Bad_csv_files_name_the_file_and_the_problem(string name, string content, string problem)
    {
        string path = WriteFile(name, content);
        var e = Assert.Throws<DatasetException>(() => PointSetFiles.Load(path));
        Assert.That(e!.Message, Does.Contain(path).And.Contain(problem));
    }

    [Test]
    public void Binary_content_in_a_csv_is_unreadable_not_a_crash()
    {
        string path = Path.Combine(_folder, "binary.csv");
        File.WriteAllBytes(path, [0x93, 0x4E, 0x55, 0x4D, 0x50, 0x59, 0x00, 0x01, 0xFF]);
        var e = Assert.Throws<DatasetException>(() => PointSetFiles.Load(path));
        Assert.That(e!.Message, Does.Contain("not a text file"));
    }

    [Test]
    public void Missing_file_and_unsupported_type_are_errors()
    {
        Assert.That(() => PointSetFiles.Load(Path.Combine(_folder, "none.csv")),
            Throws.TypeOf<DatasetException>().With.Message.Contains("no such file"));
        string txt = WriteFile("data.txt", "1,2\n");
        Assert.That(() => PointSetFiles.Load(txt), Throws.TypeOf<DatasetException>().With.Message.Contains("unsupported file type"));
    }

    [Test]
    public void Resolve_takes_a_built_in_name_or_a_file_and_rejects_anything_else()
    {
        Assert.That(PointSetFiles.Resolve("moons", 100, 1).Data, Is.EqualTo(ToyDatasets.Generate("moons", 100, 1).Data));
        Assert.That(PointSetFiles.Resolve(WriteFile("c.csv", "1,2\n"), 100, 1).Count, Is.EqualTo(1));
        Assert.That(() => PointSetFiles.Resolve("spiral", 100, 1),
            Throws.TypeOf<DatasetException>().With.Message.Contains("unknown data set 'spiral'"));
    }

    [Test]
    public void Npy_float32_and_float64_matrices_load()
    {
        string path = Path.Combine(_folder, "a.npy");
        Npy.Write(path, new[] { 1f, 2f, 3f, 4f, 5f, 6f }, 2, 3);
        var set = PointSetFiles.Load(path);
        Assert.That((set.Count, set.Dim), Is.EqualTo((2, 3)));
        Assert.That(set.Data, Is.EqualTo(new[] { 1f, 2f, 3f, 4f, 5f, 6f }));
    }

    [Test]
    public void Npy_with_nan_one_column_wrong_rank_or_garbage_is_an_error_naming_the_file()
    {
        string nan = Path.Combine(_folder, "nan.npy");
        Npy.Write(nan, new[] { 1f, 2f, float.NaN, 4f }, 2, 2);
        Assert.That(() => PointSetFiles.Load(nan), Throws.TypeOf<DatasetException>().With.Message.Contains(nan).And.Message.Contains("row 2, column 1"));
        string one = Path.Combine(_folder, "one.npy");
        Npy.Write(one, new[] { 1f, 2f, 3f }, 3, 1);
        Assert.That(() => PointSetFiles.Load(one), Throws.TypeOf<DatasetException>().With.Message.Contains("at least 2 coordinates"));
        string flat = Path.Combine(_folder, "flat.npy");
        Npy.Write(flat, new[] { 1f, 2f, 3f }, 3);
        Assert.That(() => PointSetFiles.Load(flat), Throws.TypeOf<DatasetException>().With.Message.Contains("expected a 2-D array"));
        string garbage = Path.Combine(_folder, "garbage.npy");
        File.WriteAllText(garbage, "x,y\n1,2\n");
        Assert.That(() => PointSetFiles.Load(garbage), Throws.TypeOf<DatasetException>().With.Message.Contains(garbage).And.Message.Contains("cannot read as .npy"));
    }
}
