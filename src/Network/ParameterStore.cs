using ILGPU;
using ILGPU.Runtime;
using PoissonFlow.Kernels.Device;

namespace PoissonFlow.Network;

/// <summary>One of the five parallel buffers of a <see cref="ParameterStore"/>.</summary>
public enum ParameterBuffer
{
    /// <summary>The trained weights.</summary>
    Weights,

    /// <summary>Gradients, accumulated by backward passes and zeroed by the optimiser step.</summary>
    Gradients,

    /// <summary>Adam's first moment.</summary>
    AdamM,

    /// <summary>Adam's second moment.</summary>
    AdamV,

    /// <summary>Exponential moving average of the weights (what sampling normally uses).</summary>
    Ema,
}

/// <summary>
/// Declares one parameter tensor: its name (PyTorch style, e.g. <c>layers.0.weight</c>), shape, and initial values
/// drawn uniformly from [<paramref name="InitCenter"/> - <paramref name="InitBound"/>, <paramref name="InitCenter"/> +
/// <paramref name="InitBound"/>] (bound 0 gives the constant center: zeros, or ones for a normalisation's gain).
/// </summary>
/// <param name="Name">Unique name, also the checkpoint tensor name.</param>
/// <param name="Shape">Dimensions, row-major.</param>
/// <param name="InitBound">Half-width of the uniform initialisation.</param>
/// <param name="InitCenter">Center of the uniform initialisation.</param>
public sealed record ParameterSpec(string Name, int[] Shape, float InitBound, float InitCenter = 0f);

/// <summary>A parameter tensor's place in the store's buffers.</summary>
/// <param name="Name">Unique name.</param>
/// <param name="Shape">Dimensions, row-major.</param>
/// <param name="Offset">First element in every buffer (a multiple of <see cref="ParameterStore.Alignment"/>).</param>
/// <param name="Length">Number of elements (the product of the shape).</param>
public sealed record ParameterTensor(string Name, int[] Shape, long Offset, long Length);

/// <summary>
/// llm.c-style parameter memory: weights, gradients, Adam's m and v, and the EMA weights each live in ONE device
/// buffer, and every tensor is a named view at the same offset in all five. Whole-model operations (gradient norm,
/// the fused Adam+EMA step, zeroing, checkpoints) are therefore single launches or single copies over a buffer,
/// whatever the layer count. Tensors start on <see cref="Alignment"/>-float boundaries by default (256 bytes, so
/// vectorised GPU loads stay aligned); the padding stays zero in every buffer and is inert under Adam. A network whose
/// layers address one flat, unpadded layout (the U-Net) asks for alignment 1.
/// </summary>
public sealed class ParameterStore : IDisposable
{
    /// <summary>Alignment of every tensor's offset, in floats.</summary>
    public const int Alignment = 64;

    private readonly MemoryBuffer1D<float, Stride1D.Dense>[] _buffers;
    private readonly Dictionary<string, ParameterTensor> _byName;

    /// <summary>
    /// Lays out <paramref name="specs"/> with each tensor's offset a multiple of <paramref name="alignment"/> floats and
    /// allocates the five buffers (all zero until <see cref="Initialize"/>).
    /// </summary>
    /// <exception cref="ArgumentException">A name repeats, a shape is empty or not positive, or the alignment is not positive.</exception>
    public ParameterStore(ComputeDevice device, IReadOnlyList<ParameterSpec> specs, int alignment = Alignment)
    {
        if (alignment <= 0) throw new ArgumentException($"parameter store: alignment must be positive, got {alignment}");
        Device = device;
        Specs = specs;
        var tensors = new List<ParameterTensor>(specs.Count);
        _byName = new Dictionary<string, ParameterTensor>(StringComparer.Ordinal);
        long offset = 0;
        foreach (var spec in specs)
        {
            if (spec.Shape.Length == 0 || spec.Shape.Any(d => d <= 0))
            {
                throw new ArgumentException($"parameter '{spec.Name}' has shape [{string.Join(", ", spec.Shape)}]: every dimension must be positive");
            }

            long length = spec.Shape.Aggregate(1L, (a, d) => a * d);
            var tensor = new ParameterTensor(spec.Name, spec.Shape, offset, length);
            if (!_byName.TryAdd(spec.Name, tensor)) throw new ArgumentException($"parameter name '{spec.Name}' is used twice");
            tensors.Add(tensor);
            offset += (length + alignment - 1) / alignment * alignment;
        }

        Tensors = tensors;
        Count = offset;
        ParameterCount = tensors.Sum(t => t.Length);
        _buffers = new MemoryBuffer1D<float, Stride1D.Dense>[5];
        for (int i = 0; i < _buffers.Length; i++)
        {
            _buffers[i] = device.Accelerator.Allocate1D<float>(Math.Max(1, Count));
            _buffers[i].MemSetToZero();
        }
    }

    /// <summary>The device holding the buffers.</summary>
    public ComputeDevice Device { get; }

    /// <summary>The declarations the store was built from.</summary>
    public IReadOnlyList<ParameterSpec> Specs { get; }

    /// <summary>The tensors in declaration order.</summary>
    public IReadOnlyList<ParameterTensor> Tensors { get; }

    /// <summary>Length of each buffer in floats, padding included.</summary>
    public long Count { get; }

    /// <summary>Number of trainable values (padding excluded).</summary>
    public long ParameterCount { get; }

    /// <summary>The whole buffer as one view (for whole-model kernels).</summary>
    public ArrayView<float> View(ParameterBuffer buffer) => _buffers[(int)buffer].View.SubView(0, Count);

    /// <summary>The view of one tensor in one buffer.</summary>
    public ArrayView<float> View(ParameterBuffer buffer, ParameterTensor tensor) => _buffers[(int)buffer].View.SubView(tensor.Offset, tensor.Length);

    /// <summary>The view of the tensor named <paramref name="name"/> in one buffer.</summary>
    public ArrayView<float> View(ParameterBuffer buffer, string name) => View(buffer, Tensor(name));

    /// <summary>The tensor named <paramref name="name"/>.</summary>
    /// <exception cref="KeyNotFoundException">No such tensor.</exception>
    public ParameterTensor Tensor(string name) =>
        _byName.TryGetValue(name, out var tensor) ? tensor : throw new KeyNotFoundException($"no parameter tensor named '{name}'");

    /// <summary>
    /// Deterministic initialisation from <paramref name="seed"/>: each tensor draws from its own SplitMix64 stream
    /// (seeded by the seed and the tensor's name, so adding a tensor does not shift the others), uniform in
    /// [center - bound, center + bound]. Gradients and Adam moments are zeroed and the EMA starts equal to the weights.
    /// </summary>
    public void Initialize(ulong seed)
    {
        var weights = new float[Count];
        foreach (var (spec, tensor) in Specs.Zip(Tensors))
        {
            var rng = new SplitMix64(seed ^ StableHash(tensor.Name));
            for (long i = 0; i < tensor.Length; i++) weights[tensor.Offset + i] = spec.InitCenter + spec.InitBound * (2f * rng.NextFloat() - 1f);
        }

        Upload(ParameterBuffer.Weights, weights);
        Upload(ParameterBuffer.Ema, weights);
        foreach (var buffer in new[] { ParameterBuffer.Gradients, ParameterBuffer.AdamM, ParameterBuffer.AdamV }) _buffers[(int)buffer].MemSetToZero();
        Device.Synchronize();
    }

    /// <summary>Copies a whole buffer to the host (synchronises).</summary>
    public float[] Download(ParameterBuffer buffer)
    {
        var data = new float[Count];
        View(buffer).CopyToCPU(data);
        return data;
    }

    /// <summary>Copies a whole buffer from the host (length <see cref="Count"/>).</summary>
    public void Upload(ParameterBuffer buffer, float[] data)
    {
        if (data.Length != Count) throw new ArgumentException($"upload: got {data.Length} values, the store holds {Count}");
        View(buffer).CopyFromCPU(data);
    }

    /// <summary>One tensor's values copied out of a downloaded buffer.</summary>
    public float[] Slice(float[] buffer, ParameterTensor tensor) => buffer.AsSpan((int)tensor.Offset, (int)tensor.Length).ToArray();

    /// <inheritdoc />
    public void Dispose()
    {
        foreach (var buffer in _buffers) buffer.Dispose();
    }

    /// <summary>FNV-1a of the name: a hash that is the same in every process (string.GetHashCode is randomised).</summary>
    private static ulong StableHash(string text)
    {
        ulong hash = 14695981039346656037UL;
        foreach (char c in text)
        {
            hash ^= c;
            hash *= 1099511628211UL;
        }

        return hash;
    }

    /// <summary>SplitMix64: tiny, fast, and identical on every runtime (System.Random's sequence is not guaranteed).</summary>
    private struct SplitMix64(ulong seed)
    {
        private ulong _state = seed;

        public float NextFloat()
        {
            ulong z = _state += 0x9E3779B97F4A7C15UL;
            z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
            z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
            z ^= z >> 31;
            return (z >> 40) * (1f / (1 << 24));
        }
    }
}
