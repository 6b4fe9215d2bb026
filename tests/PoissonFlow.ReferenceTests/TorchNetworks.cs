using PoissonFlow.Kernels;
using PoissonFlow.Network;
using PoissonFlow.Network.UNet;
using TorchSharp;
using TorchSharp.Modules;
using Linear = TorchSharp.Modules.Linear;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace PoissonFlow.Reference;

/// <summary>
/// The PFGM field networks written as ordinary TorchSharp modules, for libtorch autograd to check our hand-written
/// backward passes against, and for the benchmarks to race. Parameter names and shapes equal ours (the names of
/// <see cref="Mlp"/> and <see cref="UNetConfig.ParameterShapes"/>), so <see cref="TorchSafeTensors.LoadInto"/> fills
/// them straight from a checkpoint written by <see cref="Checkpoint"/>. Both take the flat inputs of
/// <see cref="ITrainableNetwork"/>: points [B, N] and z [B], and return the prediction [B, N + 1].
/// Shared, as a linked file, by the reference tests and the benchmarks.
/// </summary>
public static class TorchLayers
{
    /// <summary>PFGM's get_positional_embedding of z (or ln z): [sin(z w), cos(z w)], w_k = exp(-k ln(10000) / (half - 1)).</summary>
    public static Tensor Sinusoidal(Tensor z, int size, EmbeddingInput input)
    {
        int half = size / 2;
        var value = input == EmbeddingInput.LogZ ? z.clamp_min(1e-10).log() : z;
        var frequencies = exp(arange(half, z.dtype, z.device) * (-Math.Log(10000.0) / (half - 1)));
        var angle = value.unsqueeze(1) * frequencies.unsqueeze(0);
        return cat([angle.sin(), angle.cos()], 1);
    }

    /// <summary>PFGM's loss: per sample 0.5 * sum of squares (or the mean of squares), averaged over the batch.</summary>
    public static Tensor FieldLoss(Tensor prediction, Tensor target, bool reduceMean)
    {
        var squares = (prediction - target).square();
        var perSample = reduceMean ? squares.mean([1]) : squares.sum([1]) * 0.5;
        return perSample.mean();
    }
}

/// <summary>The field MLP: [x, emb(z)] -> Depth x (Linear + SiLU) -> Linear; parameters <c>layers.{i}.weight/bias</c>.</summary>
public sealed class TorchMlp : nn.Module<Tensor, Tensor, Tensor>
{
    private readonly ModuleList<Linear> _layers;

    /// <summary>Builds the layers of <paramref name="config"/> (float32; PyTorch's default initialisation).</summary>
    public TorchMlp(MlpConfig config) : base("mlp")
    {
        Config = config;
        var layers = new List<Linear>();
        for (int l = 0; l <= config.Depth; l++)
        {
            int input = l == 0 ? config.InputWidth : config.Hidden, output = l == config.Depth ? config.Dim + 1 : config.Hidden;
            layers.Add(nn.Linear(input, output));
        }

        _layers = nn.ModuleList(layers.ToArray());
        register_module("layers", _layers);
    }

    /// <summary>The configuration.</summary>
    public MlpConfig Config { get; }

    /// <inheritdoc />
    public override Tensor forward(Tensor points, Tensor z)
    {
        var x = cat([points, TorchLayers.Sinusoidal(z, Config.EmbeddingSize, Config.EmbeddingInput)], 1);
        for (int l = 0; l < Config.Depth; l++)
        {
            x = _layers[l].call(x);
            if (Config.Activation == Activation.Silu) x = F.silu(x);
        }

        return _layers[Config.Depth].call(x);
    }
}

/// <summary>A module that only names its children (a path segment such as <c>down0</c> or <c>embed</c>).</summary>
public sealed class TorchContainer : nn.Module
{
    /// <summary>Creates an empty container.</summary>
    public TorchContainer(string name) : base(name)
    {
    }

    /// <summary>Registers <paramref name="module"/> under <paramref name="name"/> and returns it.</summary>
    public T Add<T>(string name, T module) where T : nn.Module
    {
        register_module(name, module);
        return module;
    }
}

/// <summary>GroupNorm with affine parameters named <c>gamma</c> / <c>beta</c> as ours are, groups min(C/4, 32), eps 1e-6.</summary>
public sealed class TorchGroupNorm : nn.Module<Tensor, Tensor>
{
    private readonly int _groups;

    /// <summary>Creates the layer (gamma 1, beta 0: TorchSharp's own GroupNorm leaves them uninitialised).</summary>
    public TorchGroupNorm(int channels) : base("group_norm")
    {
        _groups = GroupNormGroups(channels);
        register_parameter("gamma", new Parameter(ones(channels)));
        register_parameter("beta", new Parameter(zeros(channels)));
    }

    /// <summary>The group count our GroupNorm uses (src/Kernels/Image/GroupNorm.cs DefaultGroups).</summary>
    public static int GroupNormGroups(int channels) => Math.Clamp(channels / 4, 1, 32);

    /// <inheritdoc />
    /// <remarks>The parameters are looked up by name: module.to(dtype) replaces them, so a field would go stale.</remarks>
    public override Tensor forward(Tensor x) => F.group_norm(x, _groups, get_parameter("gamma"), get_parameter("beta"), 1e-6);
}

/// <summary>
/// The DDPM residual block of src/Network/UNet/ResBlock.cs: h = conv0(silu(GN0(x))) + embed(silu(emb))[:, :, None, None];
/// h = conv1(dropout(silu(GN1(h)))); y = (shortcut(x) + h) * scale.
/// </summary>
public sealed class TorchResBlock : nn.Module<Tensor, Tensor, Tensor>
{
    private readonly TorchGroupNorm _norm0, _norm1;
    private readonly Conv2d _conv0, _conv1;
    private readonly Conv2d? _shortcut;
    private readonly Linear _embed;
    private readonly double _dropout, _scale;

    /// <summary>Creates the block.</summary>
    public TorchResBlock(int inChannels, int outChannels, int embeddingChannels, double dropout, bool skipRescale) : base("res_block")
    {
        _norm0 = new TorchGroupNorm(inChannels);
        _conv0 = nn.Conv2d(inChannels, outChannels, 3, padding: 1);
        _embed = nn.Linear(embeddingChannels, outChannels);
        _norm1 = new TorchGroupNorm(outChannels);
        _conv1 = nn.Conv2d(outChannels, outChannels, 3, padding: 1);
        register_module("norm0", _norm0);
        register_module("conv0", _conv0);
        register_module("embed", _embed);
        register_module("norm1", _norm1);
        register_module("conv1", _conv1);
        if (inChannels != outChannels)
        {
            _shortcut = nn.Conv2d(inChannels, outChannels, 1);
            register_module("shortcut", _shortcut);
        }

        _dropout = dropout;
        _scale = skipRescale ? 1 / Math.Sqrt(2) : 1;
    }

    /// <summary>x [B, Cin, H, W] and the embedding activation silu(emb) [B, 4 nf].</summary>
    public override Tensor forward(Tensor x, Tensor embedding)
    {
        var h = _conv0.call(F.silu(_norm0.call(x))) + _embed.call(embedding).unsqueeze(2).unsqueeze(3);
        h = F.silu(_norm1.call(h));
        if (_dropout > 0) h = F.dropout(h, _dropout, training);
        h = _conv1.call(h);
        var skip = _shortcut is null ? x : _shortcut.call(x);
        var sum = skip + h;
        return _scale == 1 ? sum : sum * _scale;
    }
}

/// <summary>
/// DDPM's AttnBlock (src/Network/UNet/AttentionBlock.cs): h = GroupNorm(x) (no SiLU); [q, k, v] = the channel thirds
/// of one 1x1 conv <c>qkv</c> to 3C channels; a = softmax over positions j of q_i . k_j / sqrt(C), applied to v;
/// y = (x + proj_out(a)) * scale.
/// </summary>
public sealed class TorchAttention : nn.Module<Tensor, Tensor>
{
    private readonly TorchGroupNorm _norm;
    private readonly Conv2d _qkv, _projection;
    private readonly int _channels;
    private readonly double _scale;

    /// <summary>Creates the block for <paramref name="channels"/> channels.</summary>
    public TorchAttention(int channels, bool skipRescale) : base("attention")
    {
        _channels = channels;
        _norm = new TorchGroupNorm(channels);
        _qkv = nn.Conv2d(channels, 3 * channels, 1);
        _projection = nn.Conv2d(channels, channels, 1);
        register_module("norm", _norm);
        register_module("qkv", _qkv);
        register_module("proj_out", _projection);
        _scale = skipRescale ? 1 / Math.Sqrt(2) : 1;
    }

    /// <inheritdoc />
    public override Tensor forward(Tensor x)
    {
        long batch = x.shape[0], height = x.shape[2], width = x.shape[3];
        var qkv = _qkv.call(_norm.call(x)).reshape(batch, 3 * _channels, height * width);
        var q = qkv.narrow(1, 0, _channels);
        var k = qkv.narrow(1, _channels, _channels);
        var v = qkv.narrow(1, 2 * _channels, _channels);
        var probabilities = softmax(bmm(q.transpose(1, 2), k) * (1 / Math.Sqrt(_channels)), 2);
        var attended = bmm(v, probabilities.transpose(1, 2)).reshape(batch, _channels, height, width);
        var sum = x + _projection.call(attended);
        return _scale == 1 ? sum : sum * _scale;
    }
}

/// <summary>
/// The PFGM U-Net of a <see cref="UNetConfig"/> (src/Network/UNet/UNet.cs with its embedding MLP): emb =
/// dense1(silu(dense0(sinusoidal(z, nf)))); conv_in; per level its residual blocks (each followed by attention at
/// the attention levels) and a stride-2 downsampling conv between levels, every output kept for the decoder; the
/// middle block, attention (when any level attends), block; per level (deepest first) one block more, each reading
/// [h, skip] concatenated along channels (and followed by attention at the attention levels), and nearest-2x
/// upsampling + conv between levels; GroupNorm, SiLU, conv_out to C + 1 channels; the prediction is the first C
/// channels flattened and the spatial mean of the last.
/// </summary>
public sealed class TorchUNet : nn.Module<Tensor, Tensor, Tensor>
{
    private readonly Linear _dense0, _dense1;
    private readonly Conv2d _convIn, _convOut;
    private readonly TorchGroupNorm _normOut;
    private readonly List<Stage> _stages = [];

    /// <summary>Builds the network of <paramref name="config"/> (float32).</summary>
    public TorchUNet(UNetConfig config) : base("unet")
    {
        config.Validate();
        Config = config;
        int nf = config.BaseChannels, embedding = config.EmbeddingChannels, levels = config.ChannelMultipliers.Count;
        var embed = Add(new TorchContainer("embed"), "embed");
        _dense0 = embed.Add("dense0", nn.Linear(nf, embedding));
        _dense1 = embed.Add("dense1", nn.Linear(embedding, embedding));
        _convIn = Add(nn.Conv2d(config.ImageChannels, nf, 3, padding: 1), "conv_in");
        void Block(TorchContainer parent, string name, int input, int output, StageKind kind) =>
            _stages.Add(new(parent.Add(name, new TorchResBlock(input, output, embedding, config.Dropout, config.SkipRescale)), kind));
        void Attention(TorchContainer parent, string name, int channels) =>
            _stages.Add(new(parent.Add(name, new TorchAttention(channels, config.SkipRescale)), StageKind.Attention));

        var skips = new Stack<int>();
        skips.Push(nf);
        int channels = nf;
        for (int level = 0; level < levels; level++)
        {
            var down = Add(new TorchContainer($"down{level}"), $"down{level}");
            int width = nf * config.ChannelMultipliers[level];
            for (int b = 0; b < config.ResBlocksPerLevel; b++)
            {
                Block(down, $"block{b}", channels, width, StageKind.Block);
                channels = width;
                if (config.AttentionLevels.Contains(level)) Attention(down, $"attn{b}", channels);
                _stages[^1] = _stages[^1] with { Push = true };
                skips.Push(channels);
            }

            if (level < levels - 1)
            {
                _stages.Add(new(down.Add("downsample", nn.Conv2d(channels, channels, 3, stride: 2, padding: 1)), StageKind.Downsample, Push: true));
                skips.Push(channels);
            }
        }

        var mid = Add(new TorchContainer("mid"), "mid");
        Block(mid, "block0", channels, channels, StageKind.Block);
        if (config.MiddleAttention) Attention(mid, "attn", channels);
        Block(mid, "block1", channels, channels, StageKind.Block);
        for (int level = levels - 1; level >= 0; level--)
        {
            var up = Add(new TorchContainer($"up{level}"), $"up{level}");
            int width = nf * config.ChannelMultipliers[level];
            for (int b = 0; b <= config.ResBlocksPerLevel; b++)
            {
                Block(up, $"block{b}", channels + skips.Pop(), width, StageKind.ConcatBlock);
                channels = width;
                if (config.AttentionLevels.Contains(level)) Attention(up, $"attn{b}", channels);
            }

            if (level > 0) _stages.Add(new(up.Add("upsample", nn.Conv2d(channels, channels, 3, padding: 1)), StageKind.Upsample));
        }

        _normOut = Add(new TorchGroupNorm(channels), "norm_out");
        _convOut = Add(nn.Conv2d(channels, config.ImageChannels + 1, 3, padding: 1), "conv_out");
    }

    private enum StageKind
    {
        Block,
        ConcatBlock,
        Attention,
        Downsample,
        Upsample,
    }

    /// <summary>The configuration.</summary>
    public UNetConfig Config { get; }

    /// <summary>points [B, C*H*W] (images flattened in NCHW order) and z [B] to the prediction [B, C*H*W + 1].</summary>
    public override Tensor forward(Tensor points, Tensor z)
    {
        int c = Config.ImageChannels, size = Config.ImageSize;
        long batch = points.shape[0];
        var embedding = F.silu(_dense1.call(F.silu(_dense0.call(TorchLayers.Sinusoidal(z, Config.BaseChannels, Config.EmbeddingInput)))));
        var h = _convIn.call(points.reshape(batch, c, size, size));
        var skips = new Stack<Tensor>();
        skips.Push(h);
        foreach (var stage in _stages)
        {
            h = stage.Kind switch
            {
                StageKind.Block => ((TorchResBlock)stage.Module).call(h, embedding),
                StageKind.ConcatBlock => ((TorchResBlock)stage.Module).call(cat([h, skips.Pop()], 1), embedding),
                StageKind.Attention => ((TorchAttention)stage.Module).call(h),
                StageKind.Downsample => ((Conv2d)stage.Module).call(h),
                _ => ((Conv2d)stage.Module).call(F.interpolate(h, scale_factor: [2.0, 2.0], mode: InterpolationMode.Nearest)),
            };
            if (stage.Push) skips.Push(h);
        }

        var output = _convOut.call(F.silu(_normOut.call(h)));
        var field = output.narrow(1, 0, c).reshape(batch, -1);
        var zField = output.select(1, c).mean([1, 2]).unsqueeze(1);
        return cat([field, zField], 1);
    }

    private T Add<T>(T module, string name) where T : nn.Module
    {
        register_module(name, module);
        return module;
    }

    /// <summary>One step of the forward pass; <see cref="Push"/>: its output is kept for a decoder concat.</summary>
    private sealed record Stage(nn.Module Module, StageKind Kind, bool Push = false);
}

/// <summary>
/// Our <see cref="Trainer"/>'s update in stock libtorch pieces: torch.optim.Adam (its update
/// p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps) with L2 weight decay is our kernel's), the linear warmup
/// as a LambdaLR factor min(step / warmup, 1) (so the first step has lr 0, like ours), clip_grad_norm_ (factor
/// max / (norm + 1e-6), capped at 1: ours), and the EMA with decay min(rate, (1 + t) / (10 + t)).
/// </summary>
public sealed class TorchPfgmTrainer : IDisposable
{
    private readonly nn.Module<Tensor, Tensor, Tensor> _network;
    private readonly Parameter[] _parameters;
    private readonly optim.Optimizer _optimizer;
    private readonly optim.lr_scheduler.LRScheduler _warmup;
    private readonly AdamOptions _options;
    private readonly bool _reduceMean;

    /// <summary>Creates the optimiser over all of <paramref name="network"/>'s parameters; the EMA starts equal to them.</summary>
    public TorchPfgmTrainer(nn.Module<Tensor, Tensor, Tensor> network, AdamOptions options, bool reduceMean = false)
    {
        _network = network;
        _options = options;
        _reduceMean = reduceMean;
        _parameters = network.parameters().ToArray();
        _optimizer = optim.Adam(_parameters, options.LearningRate, options.Beta1, options.Beta2, options.Epsilon, options.WeightDecay);
        int warmup = options.WarmupSteps;
        _warmup = optim.lr_scheduler.LambdaLR(_optimizer, step => warmup > 0 ? Math.Min((double)step / warmup, 1.0) : 1.0);
        Ema = _parameters.Select(p => p.detach().clone()).ToArray();
    }

    /// <summary>The EMA weights, in the order of the network's parameters().</summary>
    public Tensor[] Ema { get; }

    /// <summary>Completed updates.</summary>
    public long StepCount { get; private set; }

    /// <summary>The global gradient norm of the last step, before clipping.</summary>
    public double LastGradientNorm { get; private set; }

    /// <summary>One step: forward, loss, backward, clip, Adam, EMA. Returns the loss before the update.</summary>
    public double Step(Tensor points, Tensor z, Tensor target)
    {
        using var scope = NewDisposeScope();
        _optimizer.zero_grad();
        var loss = TorchLayers.FieldLoss(_network.call(points, z), target, _reduceMean);
        loss.backward();
        LastGradientNorm = _options.GradClip > 0
            ? nn.utils.clip_grad_norm_(_parameters, _options.GradClip)
            : Math.Sqrt(_parameters.Sum(p => p.grad is null ? 0 : p.grad.square().sum().item<double>()));
        _optimizer.step();
        _warmup.step();
        StepCount++;
        double decay = Math.Min(_options.EmaRate, (1.0 + StepCount) / (10.0 + StepCount));
        using (no_grad())
        {
            for (int i = 0; i < _parameters.Length; i++) Ema[i].sub_((Ema[i] - _parameters[i]).mul_(1 - decay));
        }

        return loss.to_type(ScalarType.Float64).item<double>();
    }

    /// <inheritdoc />
    public void Dispose()
    {
        _optimizer.Dispose();
        foreach (var t in Ema) t.Dispose();
    }
}

/// <summary>Puts the same weights into one of our networks and its TorchSharp mirror.</summary>
public static class TorchMirror
{
    /// <summary>
    /// Writes <paramref name="network"/>'s weights with <see cref="Checkpoint.Save(string, ITrainableNetwork, long)"/> to a
    /// temporary file, reads it back with <see cref="TorchSafeTensors"/> and loads it into <paramref name="mirror"/>, which
    /// is first converted to <paramref name="dtype"/>: the path a PyTorch user takes with our checkpoints.
    /// </summary>
    public static void LoadWeights(ITrainableNetwork network, nn.Module mirror, ScalarType dtype)
    {
        string directory = Directory.CreateTempSubdirectory("pfgm-torch-mirror-").FullName;
        try
        {
            string path = Path.Combine(directory, "network.safetensors");
            Checkpoint.Save(path, network);
            var (tensors, _) = TorchSafeTensors.Read(path, dtype);
            mirror.to(dtype);
            TorchSafeTensors.LoadInto(mirror, tensors);
            foreach (var t in tensors.Values) t.Dispose();
        }
        finally
        {
            Directory.Delete(directory, recursive: true);
        }
    }

    /// <summary>
    /// Fresh random weights in every tensor, uploaded as the weights and the EMA, so that no zero-initialised layer
    /// (DDPM zeroes the output conv and each block's second conv) blocks the gradient flow: matrices and kernels
    /// uniform with variance 1 / fan-in (activations keep their size through the layers), GroupNorm gains 1 +- 0.3,
    /// biases and shifts +-0.3. Gradients and Adam moments are zeroed.
    /// </summary>
    public static void RandomizeWeights(ParameterStore store, Random rng)
    {
        var weights = new float[store.Count];
        foreach (var tensor in store.Tensors)
        {
            long fanIn = tensor.Shape.Skip(1).Aggregate(1L, (a, d) => a * d);
            (float center, float half) = tensor.Shape.Length > 1 ? (0f, MathF.Sqrt(3f / fanIn))
                : tensor.Name.EndsWith("gamma", StringComparison.Ordinal) ? (1f, 0.3f) : (0f, 0.3f);
            for (long i = 0; i < tensor.Length; i++) weights[tensor.Offset + i] = center + half * (2 * rng.NextSingle() - 1);
        }

        store.Upload(ParameterBuffer.Weights, weights);
        store.Upload(ParameterBuffer.Ema, weights);
        foreach (var buffer in new[] { ParameterBuffer.Gradients, ParameterBuffer.AdamM, ParameterBuffer.AdamV }) store.Upload(buffer, new float[store.Count]);
    }
}
