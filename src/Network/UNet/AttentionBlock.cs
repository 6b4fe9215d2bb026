using ILGPU;
using PoissonFlow.Kernels;
using PoissonFlow.Kernels.Device;
using PoissonFlow.Kernels.Image;

namespace PoissonFlow.Network.UNet;

/// <summary>
/// DDPM's AttnBlock at one resolution, forward and backward on the device:
/// h = GroupNorm(x); [q, k, v] = one 1x1 conv of h to 3C channels; a = softmax(q^T k / sqrt(C)) applied to v over the
/// H * W positions (<see cref="SelfAttention"/>); y = (x + proj_out(a)) * scale, proj_out a 1x1 conv and scale 1 or
/// 1/sqrt(2) (NCSN++'s skip_rescale, as the residual blocks). Activations are allocated once for the batch size;
/// parameter gradients accumulate (+=).
/// </summary>
public sealed class AttentionBlock : IDisposable
{
    private readonly ComputeDevice _device;
    private readonly DeviceArena _arena;
    private readonly ParameterSlots _slots;
    private readonly GroupNormShape _norm;
    private readonly Conv2dShape _qkvConv, _projection;
    private readonly SelfAttentionShape _attention;
    private readonly float _scale;
    private readonly ArrayView<float> _normed, _mean, _rstd, _qkv, _probabilities, _attended, _projected;
    private readonly ArrayView<float> _dBranch, _dAttended, _dScores, _dQkv, _dNormed;
    private ArrayView<float> _input;

    /// <summary>Creates a block for <paramref name="batch"/> maps of <paramref name="channels"/> x size x size.</summary>
    /// <param name="device">Device to run on.</param>
    /// <param name="batch">Batch size.</param>
    /// <param name="channels">Channels C (in and out).</param>
    /// <param name="size">Height and width at this level.</param>
    /// <param name="skipRescale">Divide the residual sum by sqrt(2).</param>
    /// <param name="training">False for an inference-only block: no gradient buffers, and <see cref="Backward"/> throws.</param>
    public AttentionBlock(ComputeDevice device, int batch, int channels, int size, bool skipRescale, bool training = true)
    {
        _device = device;
        _arena = new DeviceArena(device);
        Channels = channels;
        Training = training;
        _norm = new GroupNormShape(batch, channels, size * size, GroupNorm.DefaultGroups(channels));
        _qkvConv = new Conv2dShape(batch, channels, size, size, 3 * channels, 1, 1);
        _projection = new Conv2dShape(batch, channels, size, size, channels, 1, 1);
        _attention = new SelfAttentionShape(batch, channels, size * size);
        _scale = skipRescale ? ResidualAdd.SkipRescale : 1f;
        long length = _projection.OutputLength;
        _normed = _arena.Allocate(length);
        _mean = _arena.Allocate(_norm.Rows);
        _rstd = _arena.Allocate(_norm.Rows);
        _qkv = _arena.Allocate(_attention.QkvLength);
        _probabilities = _arena.Allocate(_attention.ProbabilitiesLength);
        _attended = _arena.Allocate(length);
        _projected = _arena.Allocate(length);
        if (training)
        {
            _dBranch = _arena.Allocate(length);
            _dAttended = _arena.Allocate(length);
            _dScores = _arena.Allocate(_attention.ProbabilitiesLength);
            _dQkv = _arena.Allocate(_attention.QkvLength);
            _dNormed = _arena.Allocate(length);
        }

        _slots = new ParameterSlots(ParameterShapes("", channels), "attention block");
    }

    /// <summary>Channels C.</summary>
    public int Channels { get; }

    /// <summary>Whether the block holds the buffers of a backward pass.</summary>
    public bool Training { get; }

    /// <summary>Number of parameters: 4 C^2 + 6 C.</summary>
    public long ParameterCount => _slots.Count;

    /// <summary>Elements of the input (and output) tensor.</summary>
    public long Length => _projection.OutputLength;

    /// <summary>
    /// The block's parameter tensors in buffer order, names prefixed with <paramref name="prefix"/>: norm (gamma, beta),
    /// qkv (the stacked q, k, v 1x1 conv, [3C, C, 1, 1] and [3C]) and proj_out ([C, C, 1, 1] and [C]).
    /// </summary>
    public static IEnumerable<ParameterShape> ParameterShapes(string prefix, int channels)
    {
        yield return new($"{prefix}norm.gamma", [channels]);
        yield return new($"{prefix}norm.beta", [channels]);
        yield return new($"{prefix}qkv.weight", [3 * channels, channels, 1, 1]);
        yield return new($"{prefix}qkv.bias", [3 * channels]);
        yield return new($"{prefix}proj_out.weight", [channels, channels, 1, 1]);
        yield return new($"{prefix}proj_out.bias", [channels]);
    }

    /// <summary>Points the block at its slice of the network's parameter and gradient buffers (laid out as <see cref="ParameterShapes"/>).</summary>
    public void Bind(ArrayView<float> parameters, ArrayView<float> gradients) => _slots.Bind(parameters, gradients);

    /// <summary>output = block(input); the input view must stay unchanged until <see cref="Backward"/>. Seven launches.</summary>
    public void Forward(ArrayView<float> input, ArrayView<float> output)
    {
        _slots.RequireBound();
        _input = input;
        var conv = Conv2d.For(_device);
        GroupNorm.For(_device).Forward(_norm, input, P("norm.gamma"), P("norm.beta"), _normed, _mean, _rstd, silu: false);
        conv.Forward(_qkvConv, _normed, P("qkv.weight"), P("qkv.bias"), _qkv);
        SelfAttention.For(_device).Forward(_attention, _qkv, _probabilities, _attended);
        conv.Forward(_projection, _attended, P("proj_out.weight"), P("proj_out.bias"), _projected);
        ResidualAdd.For(_device).Forward(input, _projected, output, _scale);
    }

    /// <summary>From dOutput: dInput (written) and the parameter gradients (accumulated).</summary>
    public void Backward(ArrayView<float> dOutput, ArrayView<float> dInput)
    {
        _slots.RequireBound();
        if (!Training) throw new InvalidOperationException("attention block: built for inference only, it has no backward pass");
        var conv = Conv2d.For(_device);
        // The shortcut's share goes to _dBranch first as well: dInput is written by the GroupNorm backward below.
        ResidualAdd.For(_device).Backward(dOutput, _dBranch, _dBranch, _scale);
        conv.BackwardWeights(_projection, _attended, _dBranch, G("proj_out.weight"), G("proj_out.bias"));
        conv.BackwardInput(_projection, _dBranch, P("proj_out.weight"), _dAttended);
        SelfAttention.For(_device).Backward(_attention, _qkv, _probabilities, _dAttended, _dScores, _dQkv);
        conv.BackwardWeights(_qkvConv, _normed, _dQkv, G("qkv.weight"), G("qkv.bias"));
        conv.BackwardInput(_qkvConv, _dQkv, P("qkv.weight"), _dNormed);
        GroupNorm.For(_device).Backward(_norm, _input, P("norm.gamma"), P("norm.beta"), _mean, _rstd, _dNormed, dInput,
            G("norm.gamma"), G("norm.beta"), silu: false);
        Elementwise.For(_device).Axpy(_dBranch, dInput, 1f);
    }

    /// <summary>Float64 reference of <see cref="Forward"/> composed from the kernels' references (parameters laid out as <see cref="ParameterShapes"/>).</summary>
    public double[] ForwardReference(ReadOnlySpan<double> input, ReadOnlySpan<double> parameters)
    {
        var p = parameters;
        ReadOnlySpan<double> Slot(ReadOnlySpan<double> all, string name) => _slots.Host(all, name);
        var normed = GroupNorm.ForwardReference(_norm, input, Slot(p, "norm.gamma"), Slot(p, "norm.beta"), silu: false).Output;
        var qkv = Conv2d.ForwardReference(_qkvConv, normed, Slot(p, "qkv.weight"), Slot(p, "qkv.bias"));
        var attended = SelfAttention.ForwardReference(_attention, qkv).Output;
        var projected = Conv2d.ForwardReference(_projection, attended, Slot(p, "proj_out.weight"), Slot(p, "proj_out.bias"));
        return ResidualAdd.ForwardReference(input, projected, _scale);
    }

    /// <inheritdoc />
    public void Dispose() => _arena.Dispose();

    private ArrayView<float> P(string name) => _slots.Value(name);

    private ArrayView<float> G(string name) => _slots.Gradient(name);
}
