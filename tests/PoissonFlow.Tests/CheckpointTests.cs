using System.Buffers.Binary;
using System.Text;
using System.Text.Json;
using PoissonFlow.Kernels;
using PoissonFlow.Network;

namespace PoissonFlow.Tests;

public sealed class CheckpointTests
{
    private static readonly MlpConfig s_config = new(Dim: 2, EmbeddingSize: 8, Hidden: 16, Depth: 2);
    private static readonly TrainerOptions s_options = new(new AdamOptions(LearningRate: 1e-2f, WarmupSteps: 4, EmaRate: 0.9f), LossInterval: 5);
    private string _folder = "";

    [SetUp]
    public void CreateFolder() => _folder = Directory.CreateTempSubdirectory("pfgm-checkpoint-").FullName;

    [TearDown]
    public void DeleteFolder() => Directory.Delete(_folder, recursive: true);

    private static float[][] State(Trainer trainer) =>
        Enum.GetValues<ParameterBuffer>().Select(b => trainer.Network.Parameters.Download(b)).ToArray();

    [Test]
    public void SaveThenLoadRestoresEveryBufferAndTheStep()
    {
        var device = TestDevice.Cpu;
        using var data = new FieldBatch(1, 8, 2, FieldBatch.SmoothField);
        using var mlp = new Mlp(device, s_config, seed: 1);
        using var trainer = new Trainer(mlp, s_options);
        for (int i = 0; i < 3; i++) data.Step(trainer);
        string path = Path.Combine(_folder, "a.safetensors");
        Checkpoint.Save(path, trainer);
        using var other = new Mlp(device, s_config, seed: 2);
        using var otherTrainer = new Trainer(other, s_options);
        Checkpoint.Load(path, otherTrainer);
        Assert.That(otherTrainer.StepCount, Is.EqualTo(3));
        var expected = State(trainer);
        var actual = State(otherTrainer);
        for (int b = 0; b < expected.Length; b++) Assert.That(actual[b], Is.EqualTo(expected[b]), $"buffer {(ParameterBuffer)b}");
        Assert.That(Directory.GetFiles(_folder), Has.Length.EqualTo(1), "no temporary file is left behind");

        // Weights-only loading for sampling builds the model from the file's config.
        using var sampler = Mlp.FromCheckpoint(device, path);
        Assert.That(sampler.Config, Is.EqualTo(s_config));
        Assert.That(sampler.Parameters.Download(ParameterBuffer.Ema), Is.EqualTo(expected[(int)ParameterBuffer.Ema]));
    }

    [Test]
    public void TenStepsSavedLoadedAndTenMoreEqualTwentyUninterruptedStepsBitForBit()
    {
        var device = TestDevice.Cpu;
        // A new batch every step, reproducible from the step number.
        var batches = Enumerable.Range(0, 20).Select(i => new FieldBatch(100 + i, 8, 2, FieldBatch.SmoothField)).ToArray();
        try
        {
            string path = Path.Combine(_folder, "resume.safetensors");
            using var mlp = new Mlp(device, s_config, seed: 7);
            using var trainer = new Trainer(mlp, s_options);
            for (int i = 0; i < 10; i++) batches[i].Step(trainer);
            Checkpoint.Save(path, trainer);
            for (int i = 10; i < 20; i++) batches[i].Step(trainer);

            using var resumed = new Mlp(device, s_config, seed: 99);
            using var resumedTrainer = new Trainer(resumed, s_options);
            Checkpoint.Load(path, resumedTrainer);
            for (int i = 10; i < 20; i++) batches[i].Step(resumedTrainer);

            var expected = State(trainer);
            var actual = State(resumedTrainer);
            for (int b = 0; b < expected.Length; b++) Assert.That(actual[b], Is.EqualTo(expected[b]), $"buffer {(ParameterBuffer)b} after 20 steps");
            Assert.That(resumedTrainer.LastLoss, Is.EqualTo(trainer.LastLoss));
        }
        finally
        {
            foreach (var b in batches) b.Dispose();
        }
    }

    [Test]
    public void FileIsStandardSafetensors()
    {
        var device = TestDevice.Cpu;
        using var mlp = new Mlp(device, s_config, seed: 1);
        string path = Path.Combine(_folder, "format.safetensors");
        Checkpoint.Save(path, mlp, step: 12);
        // Parse by hand, independently of SafeTensorsFile: u64 LE header size, JSON header, data packed in order.
        var bytes = File.ReadAllBytes(path);
        long headerLength = (long)BinaryPrimitives.ReadUInt64LittleEndian(bytes);
        Assert.That(headerLength % 8, Is.EqualTo(0), "header padded to 8 bytes");
        using var header = JsonDocument.Parse(Encoding.UTF8.GetString(bytes, 8, (int)headerLength));
        var metadata = header.RootElement.GetProperty("__metadata__");
        Assert.That(metadata.GetProperty("model_type").GetString(), Is.EqualTo("mlp"));
        Assert.That(metadata.GetProperty("step").GetString(), Is.EqualTo("12"));
        Assert.That(MlpConfig.FromJson(metadata.GetProperty("model_config").GetString()!), Is.EqualTo(s_config));
        var offsets = header.RootElement.EnumerateObject().Where(p => p.Name != "__metadata__")
            .Select(p => (p.Name, Begin: p.Value.GetProperty("data_offsets")[0].GetInt64(), End: p.Value.GetProperty("data_offsets")[1].GetInt64(),
                Dtype: p.Value.GetProperty("dtype").GetString())).OrderBy(t => t.Begin).ToList();
        Assert.That(offsets.Select(o => o.Dtype), Is.All.EqualTo("F32"));
        for (int i = 1; i < offsets.Count; i++) Assert.That(offsets[i].Begin, Is.EqualTo(offsets[i - 1].End), "tensors packed without gaps");
        Assert.That(8 + headerLength + offsets[^1].End, Is.EqualTo(bytes.Length));
        var weight = offsets.Single(o => o.Name == "layers.1.weight");
        var stored = new float[(weight.End - weight.Begin) / 4];
        Buffer.BlockCopy(bytes, (int)(8 + headerLength + weight.Begin), stored, 0, stored.Length * 4);
        Assert.That(stored, Is.EqualTo(mlp.Parameters.Slice(mlp.Parameters.Download(ParameterBuffer.Weights), mlp.Parameters.Tensor("layers.1.weight"))));
    }

    /// <summary>Writes a good checkpoint, damages it, and checks the load fails with a clear message and changes nothing.</summary>
    [TestCase("truncated", "truncated")]
    [TestCase("cut-header", "truncated")]
    [TestCase("bad-json", "bad header")]
    [TestCase("missing-tensor", "missing tensor 'adam_v.layers.1.bias'")]
    [TestCase("wrong-shape", "tensor 'layers.0.weight' has shape [16, 11]")]
    [TestCase("other-config", "hidden")]
    [TestCase("other-model", "'unet'")]
    [TestCase("weights-only", "no optimiser state")]
    public void BadCheckpointIsRejectedWithAClearMessageAndNothingChanges(string damage, string expectedMessage)
    {
        var device = TestDevice.Cpu;
        using var mlp = new Mlp(device, s_config, seed: 1);
        using var trainer = new Trainer(mlp, s_options);
        string path = Path.Combine(_folder, $"{damage}.safetensors");
        Checkpoint.Save(path, trainer);
        var good = SafeTensorsFile.Read(path);
        var tensors = good.Names.Select(n => new NamedTensor(n, Shape(good, n), good.Get(n, Shape(good, n)))).ToList();
        var metadata = good.Metadata.ToDictionary(p => p.Key, p => p.Value);
        switch (damage)
        {
            case "truncated":
                File.WriteAllBytes(path, File.ReadAllBytes(path)[..^10]);
                break;
            case "cut-header":
                File.WriteAllBytes(path, File.ReadAllBytes(path)[..40]);
                break;
            case "bad-json":
                var bytes = File.ReadAllBytes(path);
                bytes[8] = (byte)'[';
                bytes[9] = (byte)'}';
                File.WriteAllBytes(path, bytes);
                break;
            case "missing-tensor":
                SafeTensorsFile.Write(path, tensors.Where(t => t.Name != "adam_v.layers.1.bias").ToList(), metadata);
                break;
            case "wrong-shape":
                SafeTensorsFile.Write(path, tensors.Select(t => t.Name == "layers.0.weight" ? t with { Shape = [16, 11], Data = new float[176] } : t).ToList(), metadata);
                break;
            case "other-config":
                metadata["model_config"] = (s_config with { Hidden = 32 }).ToJson();
                SafeTensorsFile.Write(path, tensors, metadata);
                break;
            case "other-model":
                metadata["model_type"] = "unet";
                SafeTensorsFile.Write(path, tensors, metadata);
                break;
            case "weights-only":
                Checkpoint.Save(path, mlp);
                break;
        }

        var before = State(trainer);
        var error = Assert.Throws<CheckpointException>(() => Checkpoint.Load(path, trainer));
        Assert.That(error!.Message, Does.Contain(path).And.Contain(expectedMessage));
        var after = State(trainer);
        for (int b = 0; b < before.Length; b++) Assert.That(after[b], Is.EqualTo(before[b]), $"buffer {(ParameterBuffer)b} unchanged");
        Assert.That(trainer.StepCount, Is.EqualTo(0));
    }

    [Test]
    public void MissingFileIsAClearError()
    {
        string path = Path.Combine(_folder, "absent.safetensors");
        var error = Assert.Throws<CheckpointException>(() => Checkpoint.ReadInfo(path));
        Assert.That(error!.Message, Does.Contain(path));
    }

    private static int[] Shape(SafeTensorsFile file, string name) => file.Shape(name);

    [Test]
    public void SamplingCardRoundTripsThroughTheCheckpoint()
    {
        using var mlp = new Mlp(TestDevice.Cpu, s_config, seed: 3);
        var card = new SamplingCard
        {
            DataShape = [2],
            Hyper = new PoissonFlow.Data.PfgmHyperParameters(M: 291, ZMax: 26.5, UpperNorm: 530.1),
            PosteriorMeanScale = 0.66,
            ZMin = 0.02,
            Data = "heart",
        };
        string path = Path.Combine(_folder, "card.safetensors");
        Checkpoint.Save(path, mlp, step: 4, card);
        var info = Checkpoint.ReadInfo(path);
        Assert.That(info.Sampling, Is.Not.Null);
        Assert.That(info.Sampling!.ToJson(), Is.EqualTo(card.ToJson()));
        Assert.That(info.Sampling.Hyper, Is.EqualTo(card.Hyper));
        Assert.That(info.Sampling.Dim, Is.EqualTo(2));
        Checkpoint.Save(path, mlp, step: 4);
        Assert.That(Checkpoint.ReadInfo(path).Sampling, Is.Null, "a checkpoint without a card reads back without one");
    }

    [Test]
    public void InvalidSamplingCardIsRefusedBeforeWritingAndNamedWhenRead()
    {
        using var mlp = new Mlp(TestDevice.Cpu, s_config, seed: 3);
        var bad = new SamplingCard { DataShape = [2], Hyper = new PoissonFlow.Data.PfgmHyperParameters(10, 5, 50), ZMin = 7 };
        string path = Path.Combine(_folder, "bad.safetensors");
        Assert.That(() => Checkpoint.Save(path, mlp, 0, bad), Throws.ArgumentException.With.Message.Contains("z_min"));
        Assert.That(File.Exists(path), Is.False);
        Assert.That(() => SamplingCard.FromJson("{\"data_shape\": [2]"), Throws.ArgumentException.With.Message.Contains("not valid JSON"));
        Assert.That(() => SamplingCard.FromJson("{\"data_shape\": [2], \"z_min\": 0.1}"), Throws.ArgumentException.With.Message.Contains("hyper"));
        Assert.That(
            () => SamplingCard.FromJson("{\"data_shape\": [0], \"hyper\": {\"m\": 10, \"z_max\": 5, \"upper_norm\": 50}, \"z_min\": 0.1}"),
            Throws.ArgumentException.With.Message.Contains("data shape"));
    }
}
