using PoissonFlow.Cli.Images;
using PoissonFlow.Data;
using SixLabors.ImageSharp;
using SixLabors.ImageSharp.PixelFormats;

namespace PoissonFlow.Tests.Images;

/// <summary>
/// Image data sources: a folder of PNG/JPEG (resize + centre crop, grey or RGB, bad files skipped with a warning
/// naming them, none readable an error) and IDX files (their own size; a different size or channel count an error).
/// </summary>
public sealed class ImageDataTests
{
    private string _folder = "";

    [SetUp]
    public void CreateFolder() => _folder = Directory.CreateTempSubdirectory("pfgm-images-").FullName;

    [TearDown]
    public void DeleteFolder() => Directory.Delete(_folder, recursive: true);

    /// <summary>A 12 x 4 picture: columns 0-3 red, 4-7 green, 8-11 blue.</summary>
    private string WriteStripes(string name)
    {
        using var image = new Image<Rgb24>(12, 4);
        for (int y = 0; y < 4; y++)
        {
            for (int x = 0; x < 12; x++) image[x, y] = x < 4 ? new Rgb24(255, 0, 0) : x < 8 ? new Rgb24(0, 255, 0) : new Rgb24(0, 0, 255);
        }

        string path = Path.Combine(_folder, name);
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        image.Save(path);
        return path;
    }

    [Test]
    public void A_wide_picture_is_centre_cropped_to_the_requested_square()
    {
        WriteStripes("stripes.png");
        var (rgb, skipped) = ImageFolderReader.Read(_folder, 4, 3, TextWriter.Null);
        Assert.That(skipped, Is.Empty);
        Assert.That(rgb.Count, Is.EqualTo(1));
        Assert.That(rgb.Dim, Is.EqualTo(3 * 16));
        // The shorter side is already 4, so no resampling: the crop is the green middle exactly (planar R, G, B).
        Assert.That(rgb[0][..16].ToArray(), Has.All.EqualTo(-1f), "red plane");
        Assert.That(rgb[0][16..32].ToArray(), Has.All.EqualTo(1f), "green plane");
        Assert.That(rgb[0][32..].ToArray(), Has.All.EqualTo(-1f), "blue plane");

        var (grey, _) = ImageFolderReader.Read(_folder, 4, 1, TextWriter.Null);
        // BT.709 luma of pure green: 0.7152 * 255, then scaled to [-1, 1]; float rounding only.
        Assert.That(grey[0].ToArray(), Has.All.EqualTo(0.7152 * 255 / 127.5 - 1).Within(1e-5));
    }

    [Test]
    public void Bad_files_are_skipped_with_a_warning_naming_each_and_the_rest_are_read()
    {
        WriteStripes("a.png");
        WriteStripes(Path.Combine("sub", "c.png"));
        using (var jpeg = new Image<Rgb24>(6, 6, new Rgb24(128, 128, 128))) jpeg.SaveAsJpeg(Path.Combine(_folder, "b.jpg"));
        var random = new byte[300];
        new Random(3).NextBytes(random);
        File.WriteAllBytes(Path.Combine(_folder, "noise.png"), random);
        File.WriteAllText(Path.Combine(_folder, "text.jpeg"), "not an image at all");
        File.WriteAllBytes(Path.Combine(_folder, "bomb.png"), TestImages.PngHeaderOnly(100_000, 100_000));
        File.WriteAllText(Path.Combine(_folder, "notes.txt"), "ignored: not an image name");

        var warnings = new StringWriter();
        var (images, skipped) = ImageFolderReader.Read(_folder, 4, 1, warnings);
        Assert.That(images.Count, Is.EqualTo(3), warnings.ToString());
        Assert.That(skipped.Select(Path.GetFileName), Is.EquivalentTo(new[] { "bomb.png", "noise.png", "text.jpeg" }));
        string text = warnings.ToString();
        foreach (string name in new[] { "bomb.png", "noise.png", "text.jpeg" }) Assert.That(text, Does.Contain(name).And.Contain("warning: skipped"));
        Assert.That(text, Does.Not.Contain("notes.txt"));
        Assert.That(text, Does.Contain("out of range"), "the bomb is refused from its header, before decoding");
    }

    [Test]
    public void A_folder_with_no_readable_image_is_an_error_naming_a_bad_file()
    {
        File.WriteAllText(Path.Combine(_folder, "x.png"), "garbage");
        var error = Assert.Throws<DatasetException>(() => ImageFolderReader.Read(_folder, 8, 1, TextWriter.Null))!;
        Assert.That(error.Message, Does.Contain("none of its 1").And.Contain("x.png"));
        File.Delete(Path.Combine(_folder, "x.png"));
        Assert.That(() => ImageFolderReader.Read(_folder, 8, 1, TextWriter.Null), Throws.TypeOf<DatasetException>().With.Message.Contains("no .png"));
    }

    [Test]
    public void Idx_files_keep_their_size_and_refuse_another()
    {
        string path = TestImages.WriteIdx(Path.Combine(_folder, "train-images-idx3-ubyte.gz"), 5, 8, seed: 1);
        Assert.That(ImageData.IsImageSource(path), Is.True);
        var data = ImageData.Load(path, null, null, TextWriter.Null);
        Assert.That((data.Channels, data.Height, data.Width, data.Images.Count), Is.EqualTo((1, 8, 8, 5)));
        Assert.That(data.Images.Data, Has.All.InRange(-1f, 1f));
        Assert.That(() => ImageData.Load(path, 12, null, TextWriter.Null), Throws.TypeOf<DatasetException>().With.Message.Contains("8x8"));
        Assert.That(() => ImageData.Load(path, null, 3, TextWriter.Null), Throws.TypeOf<DatasetException>().With.Message.Contains("grey"));
        Assert.That(ImageData.IsImageSource("heart"), Is.False);
        Assert.That(ImageData.IsImageSource(ImageData.FashionMnist), Is.True);
    }
}
