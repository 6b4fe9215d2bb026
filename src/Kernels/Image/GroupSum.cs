using ILGPU;
using ILGPU.Runtime;
using PoissonFlow.Kernels.Device;

namespace PoissonFlow.Kernels.Image;

/// <summary>
/// Sum across the threads of one group through shared memory (a tree of halving strides). Used by the per-row
/// reductions of the image layers, which run one group per row: 256 threads on CUDA; one thread on the CPU emulator,
/// where the tree is empty and each barrier has a single participant, so a row costs no synchronisation there.
/// </summary>
internal static class GroupSum
{
    /// <summary>Largest group size the reductions support (the shared scratch length).</summary>
    internal const int MaxGroupSize = 256;

    /// <summary>
    /// Returns the sum of <paramref name="value"/> over the group's threads to every thread. The group size must be a
    /// power of two no larger than <paramref name="scratch"/>'s length, and every thread of the group must call it.
    /// </summary>
    internal static float Sum(ArrayView<float> scratch, float value)
    {
        int thread = Group.IdxX;
        scratch[thread] = value;
        Group.Barrier();
        for (int stride = Group.DimX / 2; stride > 0; stride >>= 1)
        {
            if (thread < stride) scratch[thread] += scratch[thread + stride];
            Group.Barrier();
        }

        float total = scratch[0];
        // Nobody may overwrite the scratch (next call) before everyone has read the total.
        Group.Barrier();
        return total;
    }

    /// <summary>
    /// Launch shape for one thread group per row, grid-striding over rows: <paramref name="threads"/> when set, else
    /// 256 on CUDA and 1 on the CPU emulator (whose barriers are very slow).
    /// </summary>
    internal static KernelConfig RowConfig(ComputeDevice device, int rows, int threads)
    {
        int groupSize = threads > 0 ? threads : device.IsCuda ? MaxGroupSize : 1;
        int groups = Math.Min(rows, device.Accelerator.NumMultiprocessors * (device.IsCuda ? 16 : 1));
        return new KernelConfig(groups, groupSize);
    }
}
