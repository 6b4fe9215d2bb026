using System.Collections.Concurrent;
using System.Reflection;
using System.Runtime.InteropServices;
using System.Runtime.Loader;
using ILGPU;
using ILGPU.Runtime;
using ILGPU.Runtime.CPU;
using ILGPU.Runtime.Cuda;

namespace PoissonFlow.Kernels.Device;

/// <summary>
/// The one place that creates the ILGPU context and accelerator. Owns them, caches loaded kernels
/// per operation (loading a kernel is a compile, never done per call), and chooses launch shapes
/// that suit the accelerator: many groups on CUDA, one coarse group per core on the CPU emulator.
/// </summary>
public sealed class ComputeDevice : IDisposable
{
    /// <summary>Threads per group for element-wise kernels on CUDA.</summary>
    public const int CudaGroupSize = 256;

    private static int s_resolverInstalled;
    private readonly ConcurrentDictionary<Type, object> _operations = new();
    private bool _disposed;

    private ComputeDevice(Context context, Accelerator accelerator)
    {
        Context = context;
        Accelerator = accelerator;
    }

    /// <summary>The ILGPU context that owns <see cref="Accelerator"/>.</summary>
    public Context Context { get; }

    /// <summary>The accelerator every kernel of this device runs on.</summary>
    public Accelerator Accelerator { get; }

    /// <summary>True when this device is an NVIDIA GPU.</summary>
    public bool IsCuda => Accelerator.AcceleratorType == AcceleratorType.Cuda;

    /// <summary>The kind of accelerator in use (never <see cref="DeviceKind.Auto"/>).</summary>
    public DeviceKind Kind => IsCuda ? DeviceKind.Cuda : DeviceKind.Cpu;

    /// <summary>A one-line description for logs: the device name and its key limits.</summary>
    public string Description => IsCuda
        ? $"CUDA {Accelerator.Name} ({Accelerator.NumMultiprocessors} SMs, {Accelerator.MemorySize / (1024.0 * 1024 * 1024):F0} GiB)"
        : $"ILGPU CPU accelerator ({Accelerator.NumMultiprocessors} cores, warp {Accelerator.WarpSize}, emulated: slow)";

    /// <summary>Parses the CLI spelling of a device kind: auto, cuda or cpu.</summary>
    /// <exception cref="ArgumentException">The text is none of the three.</exception>
    public static DeviceKind ParseKind(string text) => text.Trim().ToLowerInvariant() switch
    {
        "auto" => DeviceKind.Auto,
        "cuda" or "gpu" => DeviceKind.Cuda,
        "cpu" => DeviceKind.Cpu,
        _ => throw new ArgumentException($"unknown device '{text}': expected auto, cuda or cpu"),
    };

    /// <summary>True when at least one CUDA device is visible to ILGPU.</summary>
    public static bool CudaAvailable()
    {
        InstallLibcudaResolver();
        using var context = Context.Create(builder => builder.Cuda());
        return context.GetCudaDevices().Count > 0;
    }

    /// <summary>
    /// Creates a device. <see cref="DeviceKind.Auto"/> picks CUDA when present, else the CPU accelerator;
    /// <see cref="DeviceKind.Cuda"/> without a GPU throws instead of falling back silently.
    /// </summary>
    /// <exception cref="DeviceUnavailableException">CUDA was requested and no CUDA device exists.</exception>
    public static ComputeDevice Create(DeviceKind kind = DeviceKind.Auto)
    {
        InstallLibcudaResolver();
        // The CPU device emulates 32-wide warps and groups of up to 256 threads (so 16x16 tiles work),
        // with one multiprocessor per core so that independent groups run in parallel.
        var cpuDevice = new CPUDevice(
            numThreadsPerWarp: 32,
            numWarpsPerMultiprocessor: 8,
            numMultiprocessors: Math.Max(1, Environment.ProcessorCount));
        var context = Context.Create(builder =>
        {
            builder.EnableAlgorithms().Optimize(OptimizationLevel.O1);
            if (kind != DeviceKind.Cpu) builder.Cuda();
            builder.CPU(cpuDevice);
        });
        try
        {
            bool hasCuda = context.GetCudaDevices().Count > 0;
            if (kind == DeviceKind.Cuda && !hasCuda)
            {
                throw new DeviceUnavailableException(
                    "CUDA was requested but no CUDA device is visible (no NVIDIA driver or libcuda found); use --device cpu or auto");
            }

            Accelerator accelerator = kind != DeviceKind.Cpu && hasCuda
                ? context.CreateCudaAccelerator(0)
                : context.CreateCPUAccelerator(0, CPUAcceleratorMode.Parallel);
            return new ComputeDevice(context, accelerator);
        }
        catch
        {
            context.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Returns this device's instance of an operation (a class holding loaded kernels and their launchers),
    /// creating it on first use. Kernels therefore compile once per device.
    /// </summary>
    public T Operation<T>(Func<ComputeDevice, T> create) where T : class
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        return (T)_operations.GetOrAdd(typeof(T), _ => create(this));
    }

    /// <summary>
    /// Launch shape for a grid-stride loop over <paramref name="count"/> items: enough groups to fill a GPU, and on
    /// the CPU emulator one single-thread group per core. Measured on the 2-core CI machine: a launch with warp-sized
    /// groups of 32 cost 3-35 ms against 0.05-0.3 ms with groups of 1-4 threads, so on the CPU few threads each doing
    /// a large share of the work is by far the fastest shape. Kernels that need a whole warp per group (shuffles)
    /// must not use this shape on the CPU.
    /// </summary>
    public KernelConfig GridStride(long count)
    {
        if (IsCuda)
        {
            long groups = Math.Clamp((count + CudaGroupSize - 1) / CudaGroupSize, 1, Accelerator.NumMultiprocessors * 16L);
            return new KernelConfig((int)groups, CudaGroupSize);
        }

        return new KernelConfig(Accelerator.NumMultiprocessors, 1);
    }

    /// <summary>Blocks until all work queued on the default stream has finished.</summary>
    public void Synchronize() => Accelerator.Synchronize();

    /// <inheritdoc />
    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        foreach (var op in _operations.Values)
        {
            if (op is IDisposable disposable) disposable.Dispose();
        }

        _operations.Clear();
        Accelerator.Dispose();
        Context.Dispose();
    }

    /// <summary>
    /// ILGPU imports the driver as "cuda", which .NET probes as libcuda.so but never libcuda.so.1; a machine
    /// with only the versioned name (a driver-only install, most containers) would silently show no GPU.
    /// The handler runs only after normal probing fails, so it cannot clash with ILGPU's own WSL resolver.
    /// </summary>
    private static void InstallLibcudaResolver()
    {
        if (!OperatingSystem.IsLinux() || Interlocked.Exchange(ref s_resolverInstalled, 1) == 1) return;
        AssemblyLoadContext.Default.ResolvingUnmanagedDll += static (Assembly _, string name) =>
            name == "cuda" && NativeLibrary.TryLoad("libcuda.so.1", out var handle) ? handle : IntPtr.Zero;
    }
}
