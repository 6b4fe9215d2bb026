using ILGPU;

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
}
