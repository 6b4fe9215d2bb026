using ILGPU;
using ILGPU.Runtime;
using PoissonFlow.Kernels;
using PoissonFlow.Kernels.Device;
using PoissonFlow.Kernels.Image;

namespace PoissonFlow.Network.UNet;

/// <summary>
/// The compact PFGM U-Net of a <see cref="UNetConfig"/> on the device, forward and backward, from the images and the
/// embedding activations silu(emb) [batch, 4 nf] to the (N + 1)-vector field prediction per sample. The embedding MLP
/// itself (sinusoidal features of z, Linear, SiLU, Linear: the <c>embed.dense0/1</c> slots of the parameter layout) is
/// the caller's; each residual block's Dense(silu(emb)) runs here through <see cref="Linear"/>. Self-attention blocks
/// follow the residual blocks of the configured levels and sit between the middle blocks (<see cref="UNetConfig.AttentionLevels"/>).
/// Activations and their gradients are allocated once for the batch size; parameter gradients accumulate (+=).
/// An inference-only network (<c>training: false</c>) allocates no gradients and runs without dropout.
/// </summary>
public sealed class UNet : IDisposable
{
    private readonly ComputeDevice _device;
    private readonly DeviceArena _arena;
    private readonly ParameterSlots _slots;
    private readonly List<Stage> _encoder = [], _middle = [], _decoder = [];
    private readonly List<ResBlock> _blocks = [];
    private readonly List<AttentionBlock> _attentions = [];
    private readonly Conv2dShape _convIn, _convOut;
    private readonly GroupNormShape _normOut;
    private readonly Tensor _stem, _normOutAct, _convOutAct;
    private readonly ArrayView<float> _normOutMean, _normOutRstd, _dEmbeddingPart;
    private ArrayView<float> _images, _embedding;

    /// <summary>
    /// Builds the network for <paramref name="batch"/> images and allocates its activations; <paramref name="seed"/>
    /// keys the dropout masks. With <paramref name="training"/> false there are no gradient buffers and no dropout
    /// (what sampling runs), and <see cref="Backward"/> throws.
    /// </summary>
    public UNet(ComputeDevice device, UNetConfig config, int batch, ulong seed, bool training = true)
    {
        config.Validate();
        if (batch <= 0) throw new ArgumentException($"unet: batch must be positive, got {batch}");
        _device = device;
        _arena = new DeviceArena(device);
        _slots = new ParameterSlots(config.ParameterShapes(), "unet");
        Config = config;
        Batch = batch;
        Training = training;
        int nf = config.BaseChannels, size = config.ImageSize, levels = config.ChannelMultipliers.Count;
        _convIn = new Conv2dShape(batch, config.ImageChannels, size, size, nf, 3, 1);
        _stem = NewTensor(_convIn.OutputLength);
        var skips = new Stack<Tensor>();
        skips.Push(_stem);
        var current = _stem;
        int channels = nf;
        for (int level = 0; level < levels; level++)
        {
            int width = nf * config.ChannelMultipliers[level];
            for (int b = 0; b < config.ResBlocksPerLevel; b++)
            {
                current = AddBlock(_encoder, $"down{level}.block{b}", current, null, channels, width, size, seed);
                channels = width;
                if (config.AttentionLevels.Contains(level)) current = AddAttention(_encoder, $"down{level}.attn{b}", current, channels, size);
                skips.Push(current);
            }

            if (level < levels - 1)
            {
                var shape = new Conv2dShape(batch, channels, size, size, channels, 3, 2);
                var output = NewTensor(shape.OutputLength);
                _encoder.Add(new Stage { Name = $"down{level}.downsample", Input = current, Output = output, Conv = shape });
                current = output;
                size /= 2;
                skips.Push(current);
            }
        }

        current = AddBlock(_middle, "mid.block0", current, null, channels, channels, size, seed);
        if (config.MiddleAttention) current = AddAttention(_middle, "mid.attn", current, channels, size);
        current = AddBlock(_middle, "mid.block1", current, null, channels, channels, size, seed);
        for (int level = levels - 1; level >= 0; level--)
        {
            int width = nf * config.ChannelMultipliers[level];
            for (int b = 0; b <= config.ResBlocksPerLevel; b++)
            {
                var skip = skips.Pop();
                int skipChannels = (int)(skip.Value.Length / ((long)batch * size * size));
                current = AddBlock(_decoder, $"up{level}.block{b}", current, skip, channels, width, size, seed, skipChannels);
                channels = width;
                if (config.AttentionLevels.Contains(level)) current = AddAttention(_decoder, $"up{level}.attn{b}", current, channels, size);
            }

            if (level > 0)
            {
                var upsampled = NewTensor(4 * current.Value.Length);
                var shape = new Conv2dShape(batch, channels, 2 * size, 2 * size, channels, 3, 1);
                var output = NewTensor(shape.OutputLength);
                _decoder.Add(new Stage { Name = $"up{level}.upsample", Input = current, Output = output, Conv = shape, Upsampled = upsampled });
                current = output;
                size *= 2;
            }
        }

        _normOut = new GroupNormShape(batch, channels, size * size, GroupNorm.DefaultGroups(channels));
        _normOutAct = NewTensor(_normOut.Length);
        _normOutMean = Allocate(_normOut.Rows);
        _normOutRstd = Allocate(_normOut.Rows);
        _convOut = new Conv2dShape(batch, channels, size, size, config.ImageChannels + 1, 3, 1);
        _convOutAct = NewTensor(_convOut.OutputLength);
        _dEmbeddingPart = training ? Allocate((long)batch * config.EmbeddingChannels) : default;
        Last = current;
    }

    /// <summary>The configuration.</summary>
    public UNetConfig Config { get; }

    /// <summary>Batch size the activations were allocated for.</summary>
    public int Batch { get; }

    /// <summary>Whether the network holds the buffers of a backward pass (and applies dropout).</summary>
    public bool Training { get; }

    /// <summary>Total parameters (the layout of <see cref="UNetConfig.ParameterShapes"/>).</summary>
    public long ParameterCount => _slots.Count;

    /// <summary>Values per sample of the prediction: C * H * W + 1.</summary>
    public int PredictionLength => Config.ImageChannels * Config.ImageSize * Config.ImageSize + 1;

    private Tensor Last { get; }

    /// <summary>The offset and length of a named parameter in the buffers passed to <see cref="Bind"/>.</summary>
    public (long Offset, long Length) Slot(string name) => _slots.Slot(name);

    /// <summary>Points the network at its parameter and gradient buffers (each <see cref="ParameterCount"/> long).</summary>
    public void Bind(ArrayView<float> parameters, ArrayView<float> gradients)
    {
        _slots.Bind(parameters, gradients);
        foreach (var stage in _encoder.Concat(_middle).Concat(_decoder))
        {
            if (stage.Block is { } block)
            {
                var (blockOffset, _) = Slot($"{stage.Name}.norm0.gamma");
                block.Bind(parameters.SubView(blockOffset, block.ParameterCount), gradients.SubView(blockOffset, block.ParameterCount));
            }
            else if (stage.Attention is { } attention)
            {
                var (offset, _) = Slot($"{stage.Name}.norm.gamma");
                attention.Bind(parameters.SubView(offset, attention.ParameterCount), gradients.SubView(offset, attention.ParameterCount));
            }
        }
    }

    /// <summary>
    /// prediction [batch, C*H*W + 1] from images [batch, C, H, W] and embedding = silu(emb) [batch, 4 nf]. Both inputs
    /// must stay unchanged until <see cref="Backward"/>; <paramref name="step"/> selects the dropout masks.
    /// </summary>
    public void Forward(ArrayView<float> images, ArrayView<float> embedding, ArrayView<float> prediction, uint step)
    {
        _slots.RequireBound();
        Require(images, _convIn.InputLength, "images");
        Require(embedding, (long)Batch * Config.EmbeddingChannels, "embedding");
        Require(prediction, (long)Batch * PredictionLength, "prediction");
        _images = images;
        _embedding = embedding;
        var conv = Conv2d.For(_device);
        conv.Forward(_convIn, images, P("conv_in.weight"), P("conv_in.bias"), _stem.Value);
        foreach (var stage in _encoder.Concat(_middle).Concat(_decoder)) ForwardStage(stage, step);
        GroupNorm.For(_device).Forward(_normOut, Last.Value, P("norm_out.gamma"), P("norm_out.beta"), _normOutAct.Value, _normOutMean, _normOutRstd, silu: true);
        conv.Forward(_convOut, _normOutAct.Value, P("conv_out.weight"), P("conv_out.bias"), _convOutAct.Value);
        FieldHead.For(_device).Forward(_convOutAct.Value, prediction, Batch, _convOut.OutChannels, _convOut.OutHeight * _convOut.OutWidth);
    }

    /// <summary>
    /// From dPrediction: the parameter gradients (accumulated), dEmbedding [batch, 4 nf], the gradient with respect
    /// to the embedding input (written), for the caller's embedding MLP, and, when <paramref name="dImages"/> is not
    /// empty, the gradient with respect to the images [batch, C, H, W] (written; one more launch).
    /// </summary>
    public void Backward(ArrayView<float> dPrediction, ArrayView<float> dEmbedding, ArrayView<float> dImages = default)
    {
        if (!Training) throw new InvalidOperationException("unet: built for inference only, it has no backward pass");
        Require(dPrediction, (long)Batch * PredictionLength, "dPrediction");
        Require(dEmbedding, (long)Batch * Config.EmbeddingChannels, "dEmbedding");
        if (dImages.Length > 0) Require(dImages, _convIn.InputLength, "dImages");
        var conv = Conv2d.For(_device);
        Elementwise.For(_device).Fill(dEmbedding, 0f);
        FieldHead.For(_device).Backward(dPrediction, _convOutAct.Gradient, Batch, _convOut.OutChannels, _convOut.OutHeight * _convOut.OutWidth);
        conv.BackwardWeights(_convOut, _normOutAct.Value, _convOutAct.Gradient, G("conv_out.weight"), G("conv_out.bias"));
        conv.BackwardInput(_convOut, _convOutAct.Gradient, P("conv_out.weight"), _normOutAct.Gradient);
        GroupNorm.For(_device).Backward(_normOut, Last.Value, P("norm_out.gamma"), P("norm_out.beta"), _normOutMean, _normOutRstd,
            _normOutAct.Gradient, Last.Gradient, G("norm_out.gamma"), G("norm_out.beta"), silu: true);
        var stages = _encoder.Concat(_middle).Concat(_decoder).ToList();
        for (int i = stages.Count - 1; i >= 0; i--) BackwardStage(stages[i], dEmbedding);
        AddSkipGradient(_stem);
        conv.BackwardWeights(_convIn, _images, _stem.Gradient, G("conv_in.weight"), G("conv_in.bias"));
        if (dImages.Length > 0) conv.BackwardInput(_convIn, _stem.Gradient, P("conv_in.weight"), dImages);
    }

    /// <summary>
    /// Float64 reference of <see cref="Forward"/> composed from the kernels' references (parameters laid out as
    /// <see cref="UNetConfig.ParameterShapes"/>; dropout draws the device's Philox masks).
    /// </summary>
    public double[] ForwardReference(double[] images, double[] embedding, double[] parameters, uint step)
    {
        ReadOnlySpan<double> Param(string name) => _slots.Host(parameters, name);
        var values = new Dictionary<Tensor, double[]> { [_stem] = Conv2d.ForwardReference(_convIn, images, Param("conv_in.weight"), Param("conv_in.bias")) };
        foreach (var stage in _encoder.Concat(_middle).Concat(_decoder))
        {
            var input = values[stage.Input];
            if (stage.Attention is { } attention)
            {
                var (offset, _) = Slot($"{stage.Name}.norm.gamma");
                values[stage.Output] = attention.ForwardReference(input, parameters.AsSpan((int)offset, (int)attention.ParameterCount));
                continue;
            }

            if (stage.Block is { } block)
            {
                if (stage.Skip is { } skip)
                {
                    int spatial = (int)(input.Length / Batch / stage.Channels);
                    input = ChannelConcat.ForwardReference(input, values[skip], Batch, stage.Channels, stage.SkipChannels, spatial);
                }

                var bias = Linear.ForwardReference(embedding, Param($"{stage.Name}.embed.weight"), Param($"{stage.Name}.embed.bias"),
                    Batch, Config.EmbeddingChannels, block.OutChannels, Activation.None, out _);
                var (blockOffset, _) = Slot($"{stage.Name}.norm0.gamma");
                values[stage.Output] = block.ForwardReference(input, bias, parameters.AsSpan((int)blockOffset, (int)block.ParameterCount), step);
                continue;
            }

            if (stage.Upsampled is not null)
            {
                input = Upsample2x.ForwardReference(input, Batch * stage.Conv.InChannels, stage.Conv.Height / 2, stage.Conv.Width / 2);
            }

            values[stage.Output] = Conv2d.ForwardReference(stage.Conv, input, Param($"{stage.Name}.weight"), Param($"{stage.Name}.bias"));
        }

        var normed = GroupNorm.ForwardReference(_normOut, values[Last], Param("norm_out.gamma"), Param("norm_out.beta"), silu: true).Output;
        var output = Conv2d.ForwardReference(_convOut, normed, Param("conv_out.weight"), Param("conv_out.bias"));
        return FieldHead.ForwardReference(output, Batch, _convOut.OutChannels, _convOut.OutHeight * _convOut.OutWidth);
    }

    /// <inheritdoc />
    public void Dispose()
    {
        foreach (var block in _blocks) block.Dispose();
        foreach (var attention in _attentions) attention.Dispose();
        _blocks.Clear();
        _attentions.Clear();
        _arena.Dispose();
    }

    private void ForwardStage(Stage stage, uint step)
    {
        var conv = Conv2d.For(_device);
        if (stage.Attention is { } attention)
        {
            attention.Forward(stage.Input.Value, stage.Output.Value);
            return;
        }

        if (stage.Block is { } block)
        {
            var input = stage.Input.Value;
            if (stage.Skip is { } skip)
            {
                ChannelConcat.For(_device).Forward(stage.Input.Value, skip.Value, stage.Concat, Batch, stage.Channels, stage.SkipChannels, stage.Spatial);
                input = stage.Concat;
            }

            Linear.For(_device).Forward(_embedding, P($"{stage.Name}.embed.weight"), P($"{stage.Name}.embed.bias"), stage.EmbeddingBias,
                default, Batch, Config.EmbeddingChannels, block.OutChannels, Activation.None);
            block.Forward(input, stage.EmbeddingBias, stage.Output.Value, step);
            return;
        }

        var source = stage.Input.Value;
        if (stage.Upsampled is { } upsampled)
        {
            Upsample2x.For(_device).Forward(source, upsampled.Value, Batch * stage.Conv.InChannels, stage.Conv.Height / 2, stage.Conv.Width / 2);
            source = upsampled.Value;
        }

        conv.Forward(stage.Conv, source, P($"{stage.Name}.weight"), P($"{stage.Name}.bias"), stage.Output.Value);
    }

    /// <summary>
    /// One stage backward: its output gradient is complete once the skip gradient (if the output also feeds a decoder
    /// concat) is added; it then writes (=) its input's gradient, which no other stage has written yet.
    /// </summary>
    private void BackwardStage(Stage stage, ArrayView<float> dEmbedding)
    {
        AddSkipGradient(stage.Output);
        var conv = Conv2d.For(_device);
        if (stage.Attention is { } attention)
        {
            attention.Backward(stage.Output.Gradient, stage.Input.Gradient);
            return;
        }

        if (stage.Block is { } block)
        {
            var dInput = stage.Skip is null ? stage.Input.Gradient : stage.ConcatGradient;
            block.Backward(stage.Output.Gradient, dInput, stage.EmbeddingBiasGradient);
            var linear = Linear.For(_device);
            linear.BackwardWeights(_embedding, stage.EmbeddingBiasGradient, G($"{stage.Name}.embed.weight"), G($"{stage.Name}.embed.bias"),
                Batch, Config.EmbeddingChannels, block.OutChannels);
            linear.BackwardInput(stage.EmbeddingBiasGradient, P($"{stage.Name}.embed.weight"), _dEmbeddingPart, default,
                Batch, Config.EmbeddingChannels, block.OutChannels, Activation.None);
            Elementwise.For(_device).Axpy(_dEmbeddingPart, dEmbedding, 1f);
            if (stage.Skip is { } skip)
            {
                ChannelConcat.For(_device).Backward(stage.ConcatGradient, stage.Input.Gradient, skip.SkipGradient, Batch, stage.Channels, stage.SkipChannels, stage.Spatial);
            }

            return;
        }

        var source = stage.Upsampled?.Value ?? stage.Input.Value;
        var dSource = stage.Upsampled?.Gradient ?? stage.Input.Gradient;
        conv.BackwardWeights(stage.Conv, source, stage.Output.Gradient, G($"{stage.Name}.weight"), G($"{stage.Name}.bias"));
        conv.BackwardInput(stage.Conv, stage.Output.Gradient, P($"{stage.Name}.weight"), dSource);
        if (stage.Upsampled is { } upsampled)
        {
            Upsample2x.For(_device).Backward(upsampled.Gradient, stage.Input.Gradient, Batch * stage.Conv.InChannels, stage.Conv.Height / 2, stage.Conv.Width / 2);
        }
    }

    private void AddSkipGradient(Tensor activation)
    {
        if (activation.SkipGradient.Length > 0) Elementwise.For(_device).Axpy(activation.SkipGradient, activation.Gradient, 1f);
    }

    private Tensor AddBlock(List<Stage> stages, string name, Tensor input, Tensor? skip, int channels, int outChannels, int size, ulong seed, int skipChannels = 0)
    {
        var block = new ResBlock(_device, Batch, channels + skipChannels, outChannels, size, Config.EmbeddingChannels,
            Training ? Config.Dropout : 0f, Config.SkipRescale, seed, (uint)_blocks.Count, Training);
        _blocks.Add(block);
        var output = NewTensor(block.OutputLength);
        var stage = new Stage
        {
            Name = name,
            Input = input,
            Output = output,
            Block = block,
            Channels = channels,
            Spatial = size * size,
            EmbeddingBias = Allocate((long)Batch * outChannels),
            EmbeddingBiasGradient = Training ? Allocate((long)Batch * outChannels) : default,
        };
        if (skip is not null)
        {
            stage.Skip = skip;
            stage.SkipChannels = skipChannels;
            stage.Concat = Allocate(block.InputLength);
            if (Training)
            {
                stage.ConcatGradient = Allocate(block.InputLength);
                skip.SkipGradient = Allocate(skip.Value.Length);
            }
        }

        stages.Add(stage);
        return output;
    }

    private Tensor AddAttention(List<Stage> stages, string name, Tensor input, int channels, int size)
    {
        var attention = new AttentionBlock(_device, Batch, channels, size, Config.SkipRescale, Training);
        _attentions.Add(attention);
        var output = NewTensor(attention.Length);
        stages.Add(new Stage { Name = name, Input = input, Output = output, Attention = attention, Channels = channels, Spatial = size * size });
        return output;
    }

    private Tensor NewTensor(long length) => new() { Value = Allocate(length), Gradient = Training ? Allocate(length) : default };

    private ArrayView<float> P(string name) => _slots.Value(name);

    private ArrayView<float> G(string name) => _slots.Gradient(name);

    private ArrayView<float> Allocate(long length) => _arena.Allocate(length);

    private static void Require(ArrayView<float> view, long needed, string what)
    {
        if (view.Length < needed) throw new ArgumentException($"unet: {what} has {view.Length} elements, needs {needed}");
    }

    /// <summary>A tensor of the forward pass with its gradient, and the gradient a decoder concat sends it (if any).</summary>
    private sealed class Tensor
    {
        public ArrayView<float> Value { get; init; }

        public ArrayView<float> Gradient { get; init; }

        public ArrayView<float> SkipGradient { get; set; }
    }

    /// <summary>One step of the network: a residual block (with an optional skip concat), an attention block or a resampling conv.</summary>
    private sealed class Stage
    {
        public required string Name { get; init; }

        public required Tensor Input { get; init; }

        public required Tensor Output { get; init; }

        public ResBlock? Block { get; init; }

        public AttentionBlock? Attention { get; init; }

        public Conv2dShape Conv { get; init; }

        public Tensor? Upsampled { get; init; }

        public int Channels { get; init; }

        public int Spatial { get; init; }

        public ArrayView<float> EmbeddingBias { get; init; }

        public ArrayView<float> EmbeddingBiasGradient { get; init; }

        public Tensor? Skip { get; set; }

        public int SkipChannels { get; set; }

        public ArrayView<float> Concat { get; set; }

        public ArrayView<float> ConcatGradient { get; set; }
    }
}
