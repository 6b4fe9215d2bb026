using ILGPU;
using ILGPU.Runtime;

namespace PoissonFlow.Kernels.Device;

/// <summary>
/// Launch shapes for the training kernels. On the CPU emulator both the launch cost and the per-element cost depend
/// strongly on the shape (measured on this 2-core machine under load: a 1-element launch took ~0.05-0.3 ms with
/// groups of 1-4 threads against 3-35 ms with warp-sized groups of 32), so kernels there run as one single-thread
/// group per core, each thread looping over a large share of the work. On CUDA this is <see cref="ComputeDevice.GridStride"/>.
/// </summary>
internal static class LaunchShapes
{
    /// <summary>Grid-stride shape over <paramref name="count"/> items: the device's GPU shape, or one thread per core on the CPU.</summary>
    public static KernelConfig FewThreads(this ComputeDevice device, long count) =>
        device.IsCuda ? device.GridStride(count) : new KernelConfig(device.Accelerator.NumMultiprocessors, 1);
}
