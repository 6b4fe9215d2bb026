using PoissonFlow.Data;
using PoissonFlow.IO;
using PoissonFlow.Kernels.Device;
using PoissonFlow.Network;
using PoissonFlow.Sampling;
using PoissonFlow.Sampling.Models;

namespace PoissonFlow.Tests;

/// <summary>
/// The application API: a checkpoint with a sampling card loads into a <see cref="PfgmModel"/> whose calls are the
/// samplers' own with the card's settings, split into batches, cancellable, refused when they overlap, and whose
/// failures are typed and write nothing. An untrained (seeded) MLP is enough: the wiring is under test, not quality.
/// </summary>
[NonParallelizable]
public sealed class PfgmModelTests
{
    private static readonly MlpConfig s_config = new(Dim: 2, EmbeddingSize: 8, Hidden: 16, Depth: 2);

    private static readonly SamplingCard s_card = new()
    {
        DataShape = [2],
        Hyper = new PfgmHyperParameters(M: 100, ZMax: 6, UpperNorm: 60),
        PosteriorMeanScale = 0.7,
        ZMin = 0.05,
        Data = "test",
    };

    private static readonly SampleOptions s_euler = new() { Solver = OdeSolver.Euler, Steps = 4, Seed = 11 };
    private static readonly SampleOptions s_rk4 = new() { Solver = OdeSolver.Rk4, Steps = 6 };

    private string _folder = "";
    private string _checkpoint = "";

    [SetUp]
    public void WriteCheckpoint()
    {
        _folder = Directory.CreateTempSubdirectory("pfgm-model-").FullName;
        _checkpoint = Path.Combine(_folder, "model.safetensors");
        using var mlp = new Mlp(TestDevice.Cpu, s_config, seed: 5);
        Checkpoint.Save(_checkpoint, mlp, step: 9, s_card);
    }

    [TearDown]
    public void DeleteFolder() => Directory.Delete(_folder, recursive: true);

    private PfgmModel Load() => PfgmModel.Load(_checkpoint, TestDevice.Cpu);

    /// <summary>The network and ODE settings the card describes, driven directly (what the model must reproduce).</summary>
    private ITrainableNetwork Reference() => new PosteriorMeanNetwork(Mlp.FromCheckpoint(TestDevice.Cpu, _checkpoint), 0.7f);

    private static PfgmOdeOptions Ode(SampleOptions options) => new()
    {
        ZMax = 6, ZMin = 0.05, Gamma = 0, ZExp = 0, Solver = options.Solver, Steps = options.Steps,
    };

    [Test]
    public void Load_reads_the_card_and_describes_the_model()
    {
        using var model = Load();
        Assert.That(model.ModelType, Is.EqualTo(Mlp.TypeTag));
        Assert.That(model.TrainingStep, Is.EqualTo(9));
        Assert.That(model.DataShape, Is.EqualTo(new[] { 2 }));
        Assert.That(model.Dim, Is.EqualTo(2));
        Assert.That(model.IsImageModel, Is.False);
        Assert.That(model.Device, Is.EqualTo(DeviceKind.Cpu));
        Assert.That(model.Card.ToJson(), Is.EqualTo(s_card.ToJson()));
    }

    [Test]
    public void Sample_is_the_sampler_with_the_cards_prior_and_z_range()
    {
        using var model = Load();
        var samples = model.Sample(5, s_euler);
        Assert.That(samples.Count, Is.EqualTo(5));
        Assert.That(samples.Shape, Is.EqualTo(new[] { 2 }));
        Assert.That(samples.Values, Has.Length.EqualTo(10));

        using var network = Reference();
        using var sampler = new PfgmSampler(TestDevice.Cpu, 5, 2);
        var (expected, _) = sampler.Sample(network, Ode(s_euler), upperNorm: 60, seed: 11);
        // Same kernels, inputs and launch shapes on one device: only float reassociation could differ, so 1e-6 percent.
        Assert.That(samples.Values, Is.EqualTo(expected).Within(1e-6).Percent);
        Assert.That(samples.Values.All(float.IsFinite));
    }

    [Test]
    public void Sample_splits_into_batches_and_a_batch_does_not_depend_on_the_count()
    {
        using var model = Load();
        var options = s_euler with { BatchSize = 3 };
        var seven = model.Sample(7, options);
        var three = model.Sample(3, options);
        Assert.That(seven.Count, Is.EqualTo(7));
        // The first batch is the same draw and integration whatever follows it (1e-6 percent: same arithmetic).
        Assert.That(seven.Values.Take(6), Is.EqualTo(three.Values).Within(1e-6).Percent);
        Assert.That(seven.Values[6..12], Is.Not.EqualTo(three.Values), "later batches draw other prior points");
        Assert.That(model.Sample(0, options).Count, Is.Zero);
    }

    [Test]
    public void Encode_and_decode_are_the_samplers_and_round_trip_like_it()
    {
        using var model = Load();
        var data = Numerics.Uniform(new Random(3), 8, -1, 1);
        var latents = model.Encode(data, s_rk4);
        var back = model.Decode(latents, s_rk4);

        using var network = Reference();
        using var sampler = new PfgmSampler(TestDevice.Cpu, 4, 2);
        var (expectedLatents, _) = sampler.Encode(network, data, Ode(s_rk4));
        var trip = sampler.RoundTrip(network, data, Ode(s_rk4));
        // Same arithmetic as the sampler driven directly: 1e-6 percent.
        Assert.That(latents, Is.EqualTo(expectedLatents).Within(1e-6).Percent);
        var (max, _) = PfgmSampler.RoundTripError(data, back.Values, 2);
        Assert.That(max, Is.EqualTo(trip.MaxError).Within(1e-5), "the model's round trip moves the points as far as the sampler's");
        Assert.That(latents.Select(Math.Abs).Max(), Is.GreaterThan(data.Select(Math.Abs).Max()), "latents lie out on the prior plane");
    }

    [Test]
    public void Interpolate_decodes_linear_mixtures_of_the_two_latents()
    {
        using var model = Load();
        float[] a = [0.4f, -0.3f], b = [-0.5f, 0.6f];
        var path = model.Interpolate(a, b, 5, s_rk4);
        Assert.That(path.Count, Is.EqualTo(5));

        var ends = model.Encode([.. a, .. b], s_rk4);
        var middle = ends.Take(2).Zip(ends.Skip(2), (x, y) => 0.5f * x + 0.5f * y).ToArray();
        var expected = model.Decode([.. ends.Take(2), .. middle, .. ends.Skip(2)], s_rk4);
        // Fixed-grid RK4 integrates each row independently of its batch: 1e-5 absolute for the mixing order.
        Assert.That(path[0].ToArray(), Is.EqualTo(expected[0].ToArray()).Within(1e-5));
        Assert.That(path[2].ToArray(), Is.EqualTo(expected[1].ToArray()).Within(1e-5));
        Assert.That(path[4].ToArray(), Is.EqualTo(expected[2].ToArray()).Within(1e-5));
        Assert.That(() => model.Interpolate(a, b, 1), Throws.InstanceOf<ArgumentOutOfRangeException>().With.Message.Contains("at least 2"));
        Assert.That(() => model.Interpolate(a, [1f], 3), Throws.ArgumentException.With.Message.Contains("2 values"));
    }

    [Test]
    public void Progress_rises_to_one_per_batch_and_cancellation_stops_between_steps()
    {
        using var model = Load();
        var reports = new List<SamplingProgress>();
        model.Sample(4, s_euler with { BatchSize = 2 }, new SyncProgress(reports.Add));
        Assert.That(reports, Has.Count.EqualTo(2 * s_euler.Steps), "one report per ODE step of each batch");
        Assert.That(reports.Select(r => r.Fraction), Is.Ordered.Ascending);
        Assert.That(reports[^1].Fraction, Is.EqualTo(1).Within(1e-12));
        Assert.That(reports.All(r => r.Phase == SamplingPhase.Sample && r.Batches == 2));

        using var cancellation = new CancellationTokenSource();
        int steps = 0;
        var cancelAfterTwo = new SyncProgress(_ => { if (++steps == 2) cancellation.Cancel(); });
        Assert.That(() => model.Sample(4, s_euler, cancelAfterTwo, cancellation.Token), Throws.InstanceOf<OperationCanceledException>());
        Assert.That(steps, Is.EqualTo(2), "no step runs after the cancellation");

        // The model stays usable and gives what an uninterrupted call gives (1e-6 percent: same arithmetic).
        using var fresh = Load();
        Assert.That(model.Sample(4, s_euler).Values, Is.EqualTo(fresh.Sample(4, s_euler).Values).Within(1e-6).Percent);
    }

    [Test]
    public void Overlapping_calls_and_dispose_during_a_call_are_refused()
    {
        var model = Load();
        Exception? sameThread = null, otherThread = null, dispose = null;
        model.Sample(2, s_euler, new SyncProgress(_ =>
        {
            if (sameThread is not null) return;
            sameThread = Catch(() => model.Sample(2, s_euler));
            otherThread = Task.Run(() => Catch(() => model.Encode([0f, 0f], s_euler))).Result;
            dispose = Catch(model.Dispose);
        }));
        Assert.That(sameThread, Is.InstanceOf<InvalidOperationException>().With.Message.Contains("another call is still running"));
        Assert.That(otherThread, Is.InstanceOf<InvalidOperationException>().With.Message.Contains("another call is still running"));
        Assert.That(dispose, Is.InstanceOf<InvalidOperationException>().With.Message.Contains("cannot dispose while a call is running"));

        model.Dispose();
        model.Dispose();
        Assert.That(() => model.Sample(1), Throws.InstanceOf<ObjectDisposedException>());
    }

    [Test]
    public void Bad_arguments_are_refused_by_name_before_any_work()
    {
        using var model = Load();
        Assert.That(() => model.Sample(-1), Throws.InstanceOf<ArgumentOutOfRangeException>().With.Message.Contains("must not be negative, got -1"));
        Assert.That(() => model.Sample(2, s_euler with { Steps = 0 }), Throws.InstanceOf<ArgumentOutOfRangeException>().With.Message.Contains("steps must be positive, got 0"));
        Assert.That(() => model.Sample(2, s_euler with { BatchSize = 0 }), Throws.InstanceOf<ArgumentOutOfRangeException>().With.Message.Contains("batch size"));
        Assert.That(() => model.Sample(2, s_euler with { ZMin = 7 }), Throws.InstanceOf<ArgumentOutOfRangeException>().With.Message.Contains("below the model's z_max 6"));
        Assert.That(() => model.Decode([1f, 2f, 3f]), Throws.ArgumentException.With.Message.Contains("not a whole number of rows of 2"));
    }

    [Test]
    public void Missing_file_missing_card_and_unknown_model_type_are_typed_and_named()
    {
        string missing = Path.Combine(_folder, "nothing.safetensors");
        Assert.That(() => PfgmModel.Load(missing, TestDevice.Cpu), Throws.InstanceOf<FileNotFoundException>().With.Message.Contains(missing));

        string raw = Path.Combine(_folder, "raw.safetensors");
        using (var mlp = new Mlp(TestDevice.Cpu, s_config, seed: 5)) Checkpoint.Save(raw, mlp, step: 1);
        Assert.That(() => PfgmModel.Load(raw, TestDevice.Cpu),
            Throws.InstanceOf<MissingSamplingCardException>().With.Message.Contains(raw).And.Message.Contains("older PoissonFlow version").And.Message.Contains("raw training checkpoint"));

        string other = Path.Combine(_folder, "gan.safetensors");
        SafeTensorsFile.Write(other, [new NamedTensor("w", [2], [1f, 2f])], new Dictionary<string, string>
        {
            ["model_type"] = "gan", ["model_config"] = "{}", [SamplingCard.MetadataKey] = s_card.ToJson(),
        });
        var unknown = Assert.Throws<UnknownModelTypeException>(() => PfgmModel.Load(other, TestDevice.Cpu))!;
        Assert.That(unknown.ModelType, Is.EqualTo("gan"));
        Assert.That(unknown.Message, Does.Contain(other).And.Contain("'gan'").And.Contain(Mlp.TypeTag));
    }

    [Test]
    public void The_registry_knows_both_networks_and_names_bad_configs_and_mismatched_cards()
    {
        Assert.That(ModelRegistry.ModelTypes, Is.EqualTo(new[] { Mlp.TypeTag, PoissonFlow.Network.UNet.UNetNetwork.TypeTag }));
        Assert.That(() => ModelRegistry.Create(TestDevice.Cpu, Mlp.TypeTag, "{not json"), Throws.ArgumentException.With.Message.Contains("not valid JSON"));
        Assert.That(() => ModelRegistry.Create(TestDevice.Cpu, Mlp.TypeTag, """{"dim": 2, "depth": 0}"""), Throws.ArgumentException.With.Message.Contains("depth"));
        Assert.That(() => ModelRegistry.Create(TestDevice.Cpu, "gan", "{}"), Throws.InstanceOf<UnknownModelTypeException>().With.Message.Contains("'gan'"));

        using var network = ModelRegistry.Load(TestDevice.Cpu, _checkpoint);
        Assert.That(network, Is.InstanceOf<Mlp>());
        using var direct = Mlp.FromCheckpoint(TestDevice.Cpu, _checkpoint);
        Assert.That(network.Parameters.Download(ParameterBuffer.Ema), Is.EqualTo(direct.Parameters.Download(ParameterBuffer.Ema)));
        var wrongCard = s_card with { DataShape = [3] };
        Assert.That(() => ModelRegistry.ForSampling(network, wrongCard), Throws.InstanceOf<CheckpointException>().With.Message.Contains("3 values per data point"));
        Assert.That(ModelRegistry.ForSampling(network, s_card with { PosteriorMeanScale = null }), Is.SameAs(network), "a field network is sampled as it is");
    }

    [Test]
    public void Asking_for_cuda_without_a_gpu_is_a_device_error()
    {
        if (ComputeDevice.CudaAvailable()) Assert.Ignore("this machine has a CUDA device");
        Assert.That(() => PfgmModel.Load(_checkpoint, DeviceKind.Cuda), Throws.InstanceOf<DeviceUnavailableException>().With.Message.Contains("CUDA"));
    }

    [Test]
    public void Points_save_as_npy_and_refuse_png_without_writing()
    {
        using var model = Load();
        var samples = model.Sample(3, s_euler);
        string npy = Path.Combine(_folder, "points.npy"), png = Path.Combine(_folder, "points.png");
        samples.SaveNpy(npy);
        var read = Npy.Read(npy);
        Assert.That(read.Shape, Is.EqualTo(new[] { 3, 2 }));
        Assert.That(read.Data, Is.EqualTo(samples.Values));
        Assert.That(() => samples.SavePng(png), Throws.InvalidOperationException.With.Message.Contains("points, not images"));
        Assert.That(File.Exists(png), Is.False);
    }

    [Test]
    public void Image_sets_draw_a_png_grid_in_the_cards_pixel_range()
    {
        var values = Numerics.Uniform(new Random(4), 3 * 1 * 4 * 5, -1, 1);
        var set = new SampleSet(values, 3, [1, 4, 5], [-1, 1]);
        string path = Path.Combine(_folder, "grid.png");
        set.SavePng(path, columns: 2);
        var (pixels, width, height) = PoissonFlow.Sampling.Imaging.ImageGrid.Render(values, 3, 1, 4, 5, 2, -1, 1);
        var expected = PoissonFlow.Sampling.Imaging.PngEncoder.Encode(pixels, width, height, 1);
        Assert.That(File.ReadAllBytes(path), Is.EqualTo(expected));
        Assert.That(() => new SampleSet(values, 3, [4, 1, 5], [-1, 1]).SavePng(Path.Combine(_folder, "four.png")),
            Throws.InvalidOperationException.With.Message.Contains("4 channels"));
        Assert.That(File.Exists(Path.Combine(_folder, "four.png")), Is.False);
    }

    [Test]
    public void An_image_checkpoint_loads_the_unet_samples_with_the_image_ode_and_draws_a_grid()
    {
        var config = new PoissonFlow.Network.UNet.UNetConfig
        {
            ImageChannels = 1, ImageSize = 8, BaseChannels = 8, ChannelMultipliers = [1, 2], ResBlocksPerLevel = 1, Dropout = 0,
        };
        var card = new SamplingCard
        {
            DataShape = [1, 8, 8],
            Hyper = new PfgmHyperParameters(M: 200, ZMax: 20, UpperNorm: 300),
            ZMin = 0.01,
            PixelRange = [-1, 1],
            Data = "test images",
        };
        string path = Path.Combine(_folder, "unet.safetensors");
        using (var net = new PoissonFlow.Network.UNet.UNetNetwork(TestDevice.Cpu, config, seed: 2)) Checkpoint.Save(path, net, step: 3, card);

        using var model = PfgmModel.Load(path, TestDevice.Cpu);
        Assert.That(model.ModelType, Is.EqualTo(PoissonFlow.Network.UNet.UNetNetwork.TypeTag));
        Assert.That(model.IsImageModel);
        var options = new SampleOptions { Solver = OdeSolver.Euler, Steps = 2, Seed = 4 };
        var images = model.Sample(2, options);

        // The field network predicts the field itself: the official z-substitution (gamma 5, z_exp 5) applies.
        using var network = ModelRegistry.Load(TestDevice.Cpu, path);
        using var sampler = new PfgmSampler(TestDevice.Cpu, 2, 64);
        var ode = new PfgmOdeOptions { ZMax = 20, ZMin = 0.01, Gamma = 5, ZExp = 5, Solver = OdeSolver.Euler, Steps = 2 };
        var (expected, _) = sampler.Sample(network, ode, upperNorm: 300, seed: 4);
        // Same kernels and launch shapes on one device: 1e-6 percent.
        Assert.That(images.Values, Is.EqualTo(expected).Within(1e-6).Percent);

        string png = Path.Combine(_folder, "grid.png");
        images.SavePng(png);
        var bytes = File.ReadAllBytes(png);
        // Two 8x8 tiles side by side with 2-pixel padding: 22 x 12 pixels (IHDR width and height, big-endian).
        Assert.That(System.Buffers.Binary.BinaryPrimitives.ReadInt32BigEndian(bytes.AsSpan(16)), Is.EqualTo(22));
        Assert.That(System.Buffers.Binary.BinaryPrimitives.ReadInt32BigEndian(bytes.AsSpan(20)), Is.EqualTo(12));
    }

    private static Exception? Catch(Action action)
    {
        try
        {
            action();
            return null;
        }
        catch (Exception e)
        {
            return e;
        }
    }

    /// <summary>Reports on the calling thread (Progress&lt;T&gt; would post to the thread pool).</summary>
    private sealed class SyncProgress(Action<SamplingProgress> report) : IProgress<SamplingProgress>
    {
        public void Report(SamplingProgress value) => report(value);
    }
}
