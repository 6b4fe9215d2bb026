using ILGPU;
using ILGPU.Runtime;
using PoissonFlow.Kernels;
using PoissonFlow.Kernels.Device;
using PoissonFlow.Kernels.Image;

namespace PoissonFlow.Network.UNet;

/// <summary>
/// The DDPM residual block at one resolution, forward and backward on the device:
/// h = conv0(silu(GN0(x))) + e[n, c]; h = conv1(dropout(silu(GN1(h)))); y = (shortcut(x) + h) * scale,
/// where e is the block's embedding projection Dense(silu(emb)) (computed by the caller's linear layer, one value per
/// sample and channel), shortcut is a 1x1 conv when the channel count changes (else the identity) and scale is 1 or
/// 1/sqrt(2). Activations are allocated once for the batch size; parameter gradients accumulate (+=).
/// </summary>
public sealed class ResBlock : IDisposable
{
    private readonly ComputeDevice _device;
    private readonly Conv2dShape _conv0, _conv1, _shortcut;
    private readonly GroupNormShape _norm0, _norm1;
    private readonly float _dropout, _scale;
    private readonly ulong _seed;
    private readonly uint _layer;
    private readonly DeviceArena _arena;
    private readonly ArrayView<float> _h0, _mean0, _rstd0, _h1, _h2, _mean1, _rstd1, _h3, _h4, _skip, _g4, _gSkip, _g3, _g0;
    private readonly ParameterSlots _slots;
    private ArrayView<float> _input;
    private uint _step;

    /// <summary>Creates a block and allocates its activations for <paramref name="batch"/> images of size x size.</summary>
    /// <param name="device">Device to run on.</param>
    /// <param name="batch">Batch size.</param>
    /// <param name="inChannels">Input channels.</param>
    /// <param name="outChannels">Output channels.</param>
    /// <param name="size">Image height and width at this level.</param>
    /// <param name="embeddingChannels">Width of the embedding the block's Dense layer reads (4 nf).</param>
    /// <param name="dropout">Dropout rate before the second conv (0 disables it).</param>
    /// <param name="skipRescale">Divide the residual sum by sqrt(2).</param>
    /// <param name="seed">Dropout seed.</param>
    /// <param name="layer">Index that tells this block's dropout mask apart from the other blocks'.</param>
    /// <param name="training">False for an inference-only block: no gradient buffers, and <see cref="Backward"/> throws.</param>
    public ResBlock(ComputeDevice device, int batch, int inChannels, int outChannels, int size, int embeddingChannels,
        float dropout, bool skipRescale, ulong seed, uint layer, bool training = true)
    {
        _device = device;
        _arena = new DeviceArena(device);
        InChannels = inChannels;
        OutChannels = outChannels;
        EmbeddingChannels = embeddingChannels;
        _conv0 = new Conv2dShape(batch, inChannels, size, size, outChannels, 3, 1);
        _conv1 = new Conv2dShape(batch, outChannels, size, size, outChannels, 3, 1);
        _shortcut = new Conv2dShape(batch, inChannels, size, size, outChannels, 1, 1);
        _norm0 = new GroupNormShape(batch, inChannels, size * size, GroupNorm.DefaultGroups(inChannels));
        _norm1 = new GroupNormShape(batch, outChannels, size * size, GroupNorm.DefaultGroups(outChannels));
        _dropout = dropout;
        _scale = skipRescale ? ResidualAdd.SkipRescale : 1f;
        _seed = seed;
        _layer = layer;
        long inLength = _conv0.InputLength, outLength = _conv0.OutputLength;
        _h0 = Allocate(inLength);
        _mean0 = Allocate(_norm0.Rows);
        _rstd0 = Allocate(_norm0.Rows);
        _h1 = Allocate(outLength);
        _h2 = Allocate(outLength);
        _mean1 = Allocate(_norm1.Rows);
        _rstd1 = Allocate(_norm1.Rows);
        _h3 = dropout > 0 ? Allocate(outLength) : _h2;
        _h4 = Allocate(outLength);
        _skip = HasShortcutConv ? Allocate(outLength) : default;
        Training = training;
        if (training)
        {
            _g4 = Allocate(outLength);
            _gSkip = Allocate(outLength);
            _g3 = Allocate(outLength);
            _g0 = Allocate(inLength);
        }

        _slots = new ParameterSlots(ParameterShapes("", inChannels, outChannels, embeddingChannels), "res block");
    }

    /// <summary>Input channels.</summary>
    public int InChannels { get; }

    /// <summary>Output channels.</summary>
    public int OutChannels { get; }

    /// <summary>Width of the embedding read by the block's Dense layer.</summary>
    public int EmbeddingChannels { get; }

    /// <summary>Number of parameters, including the Dense layer the caller applies.</summary>
    public long ParameterCount => _slots.Count;

    /// <summary>Whether the block holds the buffers of a backward pass.</summary>
    public bool Training { get; }

    /// <summary>Elements of the input tensor.</summary>
    public long InputLength => _conv0.InputLength;

    /// <summary>Elements of the output tensor.</summary>
    public long OutputLength => _conv0.OutputLength;

    private bool HasShortcutConv => InChannels != OutChannels;

    /// <summary>
    /// The block's parameter tensors in buffer order, names prefixed with <paramref name="prefix"/>:
    /// norm0, conv0, embed (the Dense layer on the embedding), norm1, conv1, and the 1x1 shortcut when channels change.
    /// </summary>
    public static IEnumerable<ParameterShape> ParameterShapes(string prefix, int inChannels, int outChannels, int embeddingChannels)
    {
        yield return new($"{prefix}norm0.gamma", [inChannels]);
        yield return new($"{prefix}norm0.beta", [inChannels]);
        yield return new($"{prefix}conv0.weight", [outChannels, inChannels, 3, 3]);
        yield return new($"{prefix}conv0.bias", [outChannels]);
        yield return new($"{prefix}embed.weight", [outChannels, embeddingChannels]);
        yield return new($"{prefix}embed.bias", [outChannels]);
        yield return new($"{prefix}norm1.gamma", [outChannels]);
        yield return new($"{prefix}norm1.beta", [outChannels]);
        yield return new($"{prefix}conv1.weight", [outChannels, outChannels, 3, 3]);
        yield return new($"{prefix}conv1.bias", [outChannels]);
        if (inChannels != outChannels)
        {
            yield return new($"{prefix}shortcut.weight", [outChannels, inChannels, 1, 1]);
            yield return new($"{prefix}shortcut.bias", [outChannels]);
        }
    }

    /// <summary>
    /// Points the block at its slice of the network's parameter and gradient buffers (each <see cref="ParameterCount"/>
    /// long, laid out as <see cref="ParameterShapes"/>). The embed slots belong to the caller's Dense layer.
    /// </summary>
    public void Bind(ArrayView<float> parameters, ArrayView<float> gradients) => _slots.Bind(parameters, gradients);

    /// <summary>
    /// output = block(input, embeddingBias) with embeddingBias [batch, OutChannels] = Dense(silu(emb)). The input view
    /// must stay unchanged until <see cref="Backward"/>; <paramref name="step"/> selects the dropout mask.
    /// </summary>
    public void Forward(ArrayView<float> input, ArrayView<float> embeddingBias, ArrayView<float> output, uint step)
    {
        _slots.RequireBound();
        _input = input;
        _step = step;
        var norm = GroupNorm.For(_device);
        var conv = Conv2d.For(_device);
        norm.Forward(_norm0, input, P("norm0.gamma"), P("norm0.beta"), _h0, _mean0, _rstd0, silu: true);
        conv.Forward(_conv0, _h0, P("conv0.weight"), P("conv0.bias"), _h1);
        ChannelBias.For(_device).Forward(_h1, embeddingBias, _h1, _conv0.Batch * OutChannels, _conv0.OutHeight * _conv0.OutWidth);
        norm.Forward(_norm1, _h1, P("norm1.gamma"), P("norm1.beta"), _h2, _mean1, _rstd1, silu: true);
        if (_dropout > 0) Dropout.For(_device).Forward(_h2, _h3, _dropout, _seed, _layer, step);
        conv.Forward(_conv1, _h3, P("conv1.weight"), P("conv1.bias"), _h4);
        var shortcut = input;
        if (HasShortcutConv)
        {
            conv.Forward(_shortcut, input, P("shortcut.weight"), P("shortcut.bias"), _skip);
            shortcut = _skip;
        }

        ResidualAdd.For(_device).Forward(shortcut, _h4, output, _scale);
    }

    /// <summary>
    /// From dOutput: dInput (written), dEmbeddingBias [batch, OutChannels] (written; the caller's Dense backward
    /// consumes it) and the parameter gradients (accumulated).
    /// </summary>
    public void Backward(ArrayView<float> dOutput, ArrayView<float> dInput, ArrayView<float> dEmbeddingBias)
    {
        _slots.RequireBound();
        if (!Training) throw new InvalidOperationException("res block: built for inference only, it has no backward pass");
        var norm = GroupNorm.For(_device);
        var conv = Conv2d.For(_device);
        ResidualAdd.For(_device).Backward(dOutput, _gSkip, _g4, _scale);
        conv.BackwardWeights(_conv1, _h3, _g4, G("conv1.weight"), G("conv1.bias"));
        conv.BackwardInput(_conv1, _g4, P("conv1.weight"), _g3);
        if (_dropout > 0) Dropout.For(_device).Backward(_g3, _g3, _dropout, _seed, _layer, _step);
        norm.Backward(_norm1, _h1, P("norm1.gamma"), P("norm1.beta"), _mean1, _rstd1, _g3, _g3, G("norm1.gamma"), G("norm1.beta"), silu: true);
        ChannelBias.For(_device).Backward(_g3, dEmbeddingBias, _conv0.Batch * OutChannels, _conv0.OutHeight * _conv0.OutWidth);
        conv.BackwardWeights(_conv0, _h0, _g3, G("conv0.weight"), G("conv0.bias"));
        conv.BackwardInput(_conv0, _g3, P("conv0.weight"), _g0);
        norm.Backward(_norm0, _input, P("norm0.gamma"), P("norm0.beta"), _mean0, _rstd0, _g0, dInput, G("norm0.gamma"), G("norm0.beta"), silu: true);
        var elementwise = Elementwise.For(_device);
        if (HasShortcutConv)
        {
            conv.BackwardWeights(_shortcut, _input, _gSkip, G("shortcut.weight"), G("shortcut.bias"));
            conv.BackwardInput(_shortcut, _gSkip, P("shortcut.weight"), _g0);
            elementwise.Axpy(_g0, dInput, 1f);
        }
        else
        {
            elementwise.Axpy(_gSkip, dInput, 1f);
        }
    }

    /// <summary>
    /// Float64 reference of <see cref="Forward"/> composed from the kernels' references; <paramref name="parameters"/> is
    /// laid out as <see cref="ParameterShapes"/>; dropout uses the same Philox mask as the device.
    /// </summary>
    public double[] ForwardReference(ReadOnlySpan<double> input, ReadOnlySpan<double> embeddingBias, ReadOnlySpan<double> parameters, uint step)
    {
        var p = parameters;
        ReadOnlySpan<double> Slot(ReadOnlySpan<double> all, string name) => _slots.Host(all, name);
        int spatial = _conv0.OutHeight * _conv0.OutWidth;
        var h0 = GroupNorm.ForwardReference(_norm0, input, Slot(p, "norm0.gamma"), Slot(p, "norm0.beta"), silu: true).Output;
        var h1 = Conv2d.ForwardReference(_conv0, h0, Slot(p, "conv0.weight"), Slot(p, "conv0.bias"));
        h1 = ChannelBias.ForwardReference(h1, embeddingBias, _conv0.Batch * OutChannels, spatial);
        var h2 = GroupNorm.ForwardReference(_norm1, h1, Slot(p, "norm1.gamma"), Slot(p, "norm1.beta"), silu: true).Output;
        if (_dropout > 0) h2 = Dropout.ApplyReference(h2, _dropout, _seed, _layer, step);
        var h4 = Conv2d.ForwardReference(_conv1, h2, Slot(p, "conv1.weight"), Slot(p, "conv1.bias"));
        var shortcut = HasShortcutConv ? Conv2d.ForwardReference(_shortcut, input, Slot(p, "shortcut.weight"), Slot(p, "shortcut.bias")) : input.ToArray();
        return ResidualAdd.ForwardReference(shortcut, h4, _scale);
    }

    /// <inheritdoc />
    public void Dispose() => _arena.Dispose();

    private ArrayView<float> P(string name) => _slots.Value(name);

    private ArrayView<float> G(string name) => _slots.Gradient(name);

    private ArrayView<float> Allocate(long length) => _arena.Allocate(length);
}
