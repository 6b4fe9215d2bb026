using ILGPU;
using ILGPU.Runtime;
using PoissonFlow.Kernels.Device;

namespace PoissonFlow.Network.UNet;

/// <summary>
/// Named slots of a flat parameter buffer (in <see cref="ParameterShape"/> order) and the parameter and gradient views
/// a layer is bound to: the layer asks for <c>Value("conv0.weight")</c> and <c>Gradient("conv0.weight")</c>.
/// </summary>
internal sealed class ParameterSlots
{
    private readonly Dictionary<string, (long Offset, long Length)> _slots = [];
    private readonly string _owner;
    private ArrayView<float> _parameters, _gradients;

    public ParameterSlots(IEnumerable<ParameterShape> shapes, string owner)
    {
        _owner = owner;
        long offset = 0;
        foreach (var shape in shapes)
        {
            _slots[shape.Name] = (offset, shape.Length);
            offset += shape.Length;
        }

        Count = offset;
    }

    /// <summary>Total values.</summary>
    public long Count { get; }

    /// <summary>The offset and length of a named slot.</summary>
    public (long Offset, long Length) Slot(string name) =>
        _slots.TryGetValue(name, out var slot) ? slot : throw new ArgumentException($"{_owner}: no parameter named '{name}'");

    /// <summary>Binds the parameter and gradient views (each <see cref="Count"/> long).</summary>
    public void Bind(ArrayView<float> parameters, ArrayView<float> gradients)
    {
        if (parameters.Length != Count || gradients.Length != Count)
        {
            throw new ArgumentException($"{_owner}: parameter and gradient views need {Count} elements, got {parameters.Length} and {gradients.Length}");
        }

        _parameters = parameters;
        _gradients = gradients;
    }

    /// <summary>Throws unless <see cref="Bind"/> has been called.</summary>
    public void RequireBound()
    {
        if (_parameters.Length == 0) throw new InvalidOperationException($"{_owner}: call Bind with the parameter and gradient views first");
    }

    public ArrayView<float> Value(string name) => View(_parameters, name);

    public ArrayView<float> Gradient(string name) => View(_gradients, name);

    /// <summary>The named slot of a host copy of the parameters (for float64 references).</summary>
    public ReadOnlySpan<double> Host(ReadOnlySpan<double> parameters, string name)
    {
        var (offset, length) = Slot(name);
        return parameters.Slice((int)offset, (int)length);
    }

    private ArrayView<float> View(ArrayView<float> all, string name)
    {
        var (offset, length) = Slot(name);
        return all.SubView(offset, length);
    }
}

/// <summary>Device buffers allocated once for a layer's lifetime (activations, saved statistics) and freed together.</summary>
internal sealed class DeviceArena(ComputeDevice device) : IDisposable
{
    private readonly List<MemoryBuffer1D<float, Stride1D.Dense>> _buffers = [];

    public ArrayView<float> Allocate(long length)
    {
        var buffer = device.Accelerator.Allocate1D<float>(length);
        _buffers.Add(buffer);
        return buffer.View;
    }

    public void Dispose()
    {
        foreach (var buffer in _buffers) buffer.Dispose();
        _buffers.Clear();
    }
}
