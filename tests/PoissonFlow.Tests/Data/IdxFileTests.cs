using System.Buffers.Binary;
using System.IO.Compression;
using PoissonFlow.Data;

namespace PoissonFlow.Tests.Data;

public sealed class IdxFileTests
{
    private string _folder = "";

    [SetUp]
    public void CreateFolder() => _folder = Directory.CreateTempSubdirectory("pfgm-idx-").FullName;

    [TearDown]
    public void DeleteFolder() => Directory.Delete(_folder, recursive: true);

    /// <summary>An IDX byte image: magic 0x000008RR, big-endian dims, then the data.</summary>
    private static byte[] Idx(int[] dims, byte[] data, int type = 0x08)
    {
        var bytes = new byte[4 + 4 * dims.Length + data.Length];
        BinaryPrimitives.WriteUInt32BigEndian(bytes, (uint)(type << 8 | dims.Length));
        for (int d = 0; d < dims.Length; d++) BinaryPrimitives.WriteUInt32BigEndian(bytes.AsSpan(4 + 4 * d), (uint)dims[d]);
        data.CopyTo(bytes, 4 + 4 * dims.Length);
        return bytes;
    }

    private static byte[] Gzip(byte[] content)
    {
        using var output = new MemoryStream();
        using (var gzip = new GZipStream(output, CompressionLevel.Optimal, leaveOpen: true)) gzip.Write(content);
        return output.ToArray();
    }

    private string Write(string name, byte[] content)
    {
        string path = Path.Combine(_folder, name);
        File.WriteAllBytes(path, content);
        return path;
    }

    private static byte[] RandomBytes(int count, int seed)
    {
        var data = new byte[count];
        new Random(seed).NextBytes(data);
        return data;
    }

    [Test]
    public void Plain_and_gzip_images_scale_bytes_to_minus_one_one()
    {
        var data = RandomBytes(3 * 4 * 5, 1);
        data[0] = 0;
        data[1] = 255;
        foreach (var content in new[] { Idx([3, 4, 5], data), Gzip(Idx([3, 4, 5], data)) })
        {
            var images = IdxFile.ReadImages(Write("img", content));
            Assert.That((images.Count, images.Height, images.Width), Is.EqualTo((3, 4, 5)));
            Assert.That(images.Pixels[0], Is.EqualTo(-1f));
            Assert.That(images.Pixels[1], Is.EqualTo(1f));
            for (int i = 0; i < data.Length; i++) Assert.That(images.Pixels[i], Is.EqualTo(data[i] / 127.5 - 1).Within(1e-6), $"pixel {i}");
            Assert.That(images.Image(2).ToArray(), Is.EqualTo(images.Pixels.AsSpan(40, 20).ToArray()));
        }
    }

    [Test]
    public void Labels_and_pair_count_check()
    {
        var labels = new byte[] { 3, 1, 4 };
        string labelsPath = Write("lab.gz", Gzip(Idx([3], labels)));
        Assert.That(IdxFile.ReadLabels(labelsPath), Is.EqualTo(labels));
        string imagesPath = Write("img.gz", Gzip(Idx([2, 2, 2], RandomBytes(8, 2))));
        var e = Assert.Throws<DatasetException>(() => IdxFile.ReadPair(imagesPath, labelsPath));
        Assert.That(e!.Message, Does.Contain(labelsPath).And.Contain("3 labels").And.Contain("2 images"));
    }

    [Test]
    public void Truncated_plain_and_gzip_files_name_the_file()
    {
        var full = Idx([2, 3, 3], RandomBytes(18, 3));
        string plain = Write("short", full[..^5]);
        Assert.That(Assert.Throws<DatasetException>(() => IdxFile.ReadImages(plain))!.Message, Does.Contain(plain).And.Contain("truncated"));
        string header = Write("header", full[..9]);
        Assert.That(Assert.Throws<DatasetException>(() => IdxFile.ReadImages(header))!.Message, Does.Contain(header).And.Contain("truncated"));
        var gz = Gzip(Idx([20, 28, 28], RandomBytes(20 * 784, 4)));
        string cut = Write("cut.gz", gz[..(gz.Length / 2)]);
        var e = Assert.Throws<DatasetException>(() => IdxFile.ReadImages(cut));
        Assert.That(e!.Message, Does.StartWith(cut + ":"));
    }

    [Test]
    public void Corrupt_gzip_wrong_magic_rank_and_trailing_bytes_are_rejected()
    {
        var gz = Gzip(Idx([4, 28, 28], RandomBytes(4 * 784, 5)));
        for (int i = 12; i < gz.Length - 8; i++) gz[i] ^= 0x5A; // scramble the deflate stream, keep the gzip signature
        string corrupt = Write("corrupt.gz", gz);
        Assert.That(Assert.Throws<DatasetException>(() => IdxFile.ReadImages(corrupt))!.Message, Does.StartWith(corrupt + ":"));

        string floats = Write("floats", Idx([2], [1, 2], type: 0x0D));
        Assert.That(Assert.Throws<DatasetException>(() => IdxFile.ReadLabels(floats))!.Message, Does.Contain("not an unsigned-byte IDX"));
        string labels = Write("labels", Idx([2], [1, 2]));
        Assert.That(Assert.Throws<DatasetException>(() => IdxFile.ReadImages(labels))!.Message, Does.Contain("rank 1, expected 3"));
        string trailing = Write("trailing", [.. Idx([2], [1, 2]), 7]);
        Assert.That(Assert.Throws<DatasetException>(() => IdxFile.ReadLabels(trailing))!.Message, Does.Contain("1 unexpected bytes"));
        string zero = Write("zero", Idx([0, 2, 2], []));
        Assert.That(Assert.Throws<DatasetException>(() => IdxFile.ReadImages(zero))!.Message, Does.Contain("dimension 0 is 0"));
        string huge = Write("huge", Idx([60000, 60000, 784], []));
        Assert.That(Assert.Throws<DatasetException>(() => IdxFile.ReadImages(huge))!.Message, Does.Contain("more than"));
    }

    [Test]
    public void Missing_files_and_package_say_how_to_install()
    {
        string missing = Path.Combine(_folder, "none.gz");
        Assert.That(Assert.Throws<DatasetException>(() => IdxFile.ReadLabels(missing))!.Message, Does.Contain(missing).And.Contain("no such file"));
        var e = Assert.Throws<DatasetException>(() => IdxFile.ReadFashionMnist("test", Path.Combine(_folder, "nothing")));
        Assert.That(e!.Message, Does.Contain(IdxFile.FashionMnistInstallHint));
        Assert.Throws<DatasetException>(() => IdxFile.FashionMnistPaths("validation"));
    }

    [Test]
    public void Real_fashion_mnist_test_split()
    {
        if (!File.Exists(IdxFile.FashionMnistPaths("test").Images)) Assert.Ignore($"Fashion-MNIST is not installed ({IdxFile.FashionMnistInstallHint})");
        var (images, labels) = IdxFile.ReadFashionMnist("test");
        Assert.That((images.Count, images.Height, images.Width, labels.Length), Is.EqualTo((10_000, 28, 28, 10_000)));
        Assert.That(images.Pixels.Min(), Is.EqualTo(-1f));
        Assert.That(images.Pixels.Max(), Is.EqualTo(1f));
        // Ten balanced classes of 1,000 test images each.
        Assert.That(Enumerable.Range(0, 10).Select(c => labels.Count(l => l == c)), Is.All.EqualTo(1000));
    }
}
