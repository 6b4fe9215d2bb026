using ILGPU;
using ILGPU.Runtime;
using PoissonFlow.Kernels.Device;

namespace PoissonFlow.Kernels.Image;

// Inverted dropout: out = keep ? in / (1 - rate) : 0, with the keep decisions drawn from Philox4x32-10 at counter
// (PurposeDropout, layer, element / 4, step) under the seed (see Philox). Nothing is stored: the backward pass redraws
// the same mask from the same counters, din = keep ? dout / (1 - rate) : 0 (written, =). Each thread handles the four
// elements of one Philox block (one generator call per four elements). The views may alias.

/// <summary>Inverted dropout with a counter-based mask (no mask buffer), forward and backward.</summary>
public sealed class Dropout
{
    /// <summary>Philox purpose word of dropout masks (distinct from the perturbation purposes 1..4).</summary>
    public const uint PurposeDropout = 8;

    private readonly ComputeDevice _device;
    private readonly Action<AcceleratorStream, KernelConfig, ArrayView<float>, ArrayView<float>, DropoutMask> _apply;

    private Dropout(ComputeDevice device)
    {
        _device = device;
        _apply = device.Accelerator.LoadKernel<ArrayView<float>, ArrayView<float>, DropoutMask>(ApplyKernel);
    }

    /// <summary>This device's instance (kernels compiled once per device).</summary>
    public static Dropout For(ComputeDevice device) => device.Operation(d => new Dropout(d));

    /// <summary>
    /// output = input masked and scaled by 1 / (1 - rate). <paramref name="layer"/> tells the dropout layers of one
    /// network apart; <paramref name="step"/> is the training step, so every step draws a fresh mask.
    /// </summary>
    public void Forward(ArrayView<float> input, ArrayView<float> output, float rate, ulong seed, uint layer, uint step) =>
        Apply(input, output, rate, seed, layer, step);

    /// <summary>dInput = dOutput masked and scaled exactly as the forward call with the same arguments (written).</summary>
    public void Backward(ArrayView<float> dOutput, ArrayView<float> dInput, float rate, ulong seed, uint layer, uint step) =>
        Apply(dOutput, dInput, rate, seed, layer, step);

    /// <summary>The mask factor of element <paramref name="index"/>: 1 / (1 - rate) when kept, else 0 (host reference, float64).</summary>
    public static double MaskReference(long index, float rate, ulong seed, uint layer, uint step)
    {
        var block = Philox.Generate(seed, PurposeDropout, layer, (uint)(index >> 2), step);
        uint bits = (index & 3) switch { 0 => block.X0, 1 => block.X1, 2 => block.X2, _ => block.X3 };
        return Philox.UniformClosedZero(bits) >= rate ? 1.0 / (1.0 - rate) : 0.0;
    }

    /// <summary>
    /// Float64 reference of both passes (the mask is diagonal, so the backward pass is the same map):
    /// values[i] * <see cref="MaskReference"/>(i).
    /// </summary>
    public static double[] ApplyReference(ReadOnlySpan<double> values, float rate, ulong seed, uint layer, uint step)
    {
        var result = new double[values.Length];
        for (int i = 0; i < result.Length; i++) result[i] = values[i] * MaskReference(i, rate, seed, layer, step);
        return result;
    }

    private void Apply(ArrayView<float> source, ArrayView<float> target, float rate, ulong seed, uint layer, uint step)
    {
        if (!(rate >= 0f && rate < 1f)) throw new ArgumentException($"dropout: rate {rate} must be in [0, 1)");
        if (source.Length != target.Length) throw new ArgumentException($"dropout: lengths differ ({source.Length} and {target.Length})");
        if (source.Length > 4L * uint.MaxValue) throw new ArgumentException($"dropout: {source.Length} elements exceed the Philox block counter");
        var mask = new DropoutMask(rate, 1f / (1f - rate), seed, layer, step);
        _apply(_device.Accelerator.DefaultStream, _device.GridStride((source.Length + 3) / 4), source, target, mask);
    }

    [GpuKernel]
    internal static void ApplyKernel(ArrayView<float> source, ArrayView<float> target, DropoutMask mask)
    {
        long blocks = (source.Length + 3) / 4;
        for (long b = Grid.GlobalIndex.X; b < blocks; b += Grid.DimX * Group.DimX)
        {
            var bits = Philox.Generate(mask.Seed, PurposeDropout, mask.Layer, (uint)b, mask.Step);
            long i = 4 * b;
            target[i] = Philox.UniformClosedZero(bits.X0) >= mask.Rate ? source[i] * mask.Scale : 0f;
            if (i + 1 < source.Length) target[i + 1] = Philox.UniformClosedZero(bits.X1) >= mask.Rate ? source[i + 1] * mask.Scale : 0f;
            if (i + 2 < source.Length) target[i + 2] = Philox.UniformClosedZero(bits.X2) >= mask.Rate ? source[i + 2] * mask.Scale : 0f;
            if (i + 3 < source.Length) target[i + 3] = Philox.UniformClosedZero(bits.X3) >= mask.Rate ? source[i + 3] * mask.Scale : 0f;
        }
    }
}

/// <summary>The parameters of one dropout mask, passed to the kernel as one struct.</summary>
internal readonly struct DropoutMask
{
    public DropoutMask(float rate, float scale, ulong seed, uint layer, uint step)
    {
        Rate = rate;
        Scale = scale;
        Seed = seed;
        Layer = layer;
        Step = step;
    }

    public float Rate { get; }

    public float Scale { get; }

    public ulong Seed { get; }

    public uint Layer { get; }

    public uint Step { get; }
}
