using ILGPU;
using ILGPU.Algorithms;

// Namespace PoissonFlow.Kernels, not .Random: a namespace named Random would shadow System.Random for every
// file under PoissonFlow.Kernels.
namespace PoissonFlow.Kernels;

/// <summary>Four 32-bit words: a Philox counter or one block of its output.</summary>
/// <param name="X0">Word 0.</param>
/// <param name="X1">Word 1.</param>
/// <param name="X2">Word 2.</param>
/// <param name="X3">Word 3.</param>
public readonly record struct PhiloxBlock(uint X0, uint X1, uint X2, uint X3);

/// <summary>
/// Philox4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3", SC'11): a counter-based generator.
/// Output = bijection(counter) keyed by the seed, so any thread can draw the numbers for (purpose, sample, element,
/// step) directly, with no state, and the integers are identical on the host, the CPU accelerator and CUDA (pure
/// 32-bit integer arithmetic). Usable inside kernels: every member is a static method on values.
/// Counter layout used across the library: (purpose, sample index, element block, step); key = the 64-bit seed.
/// </summary>
public static class Philox
{
    private const uint MultiplierA = 0xD2511F53u;
    private const uint MultiplierB = 0xCD9E8D57u;
    private const uint WeylA = 0x9E3779B9u;
    private const uint WeylB = 0xBB67AE85u;

    /// <summary>2^-24: the spacing of the 24-bit uniform grid (exactly representable in float32).</summary>
    private const float TwoToMinus24 = 1f / 16777216f;

    /// <summary>Runs the ten Philox4x32 rounds on <paramref name="counter"/> under the key (<paramref name="key0"/>, <paramref name="key1"/>).</summary>
    public static PhiloxBlock Generate(PhiloxBlock counter, uint key0, uint key1)
    {
        uint c0 = counter.X0, c1 = counter.X1, c2 = counter.X2, c3 = counter.X3;
        uint k0 = key0, k1 = key1;
        // Ten rounds written out: ILGPU 1.5.3 does not unroll loops, and this keeps every value in registers.
        Round(ref c0, ref c1, ref c2, ref c3, k0, k1); k0 += WeylA; k1 += WeylB;
        Round(ref c0, ref c1, ref c2, ref c3, k0, k1); k0 += WeylA; k1 += WeylB;
        Round(ref c0, ref c1, ref c2, ref c3, k0, k1); k0 += WeylA; k1 += WeylB;
        Round(ref c0, ref c1, ref c2, ref c3, k0, k1); k0 += WeylA; k1 += WeylB;
        Round(ref c0, ref c1, ref c2, ref c3, k0, k1); k0 += WeylA; k1 += WeylB;
        Round(ref c0, ref c1, ref c2, ref c3, k0, k1); k0 += WeylA; k1 += WeylB;
        Round(ref c0, ref c1, ref c2, ref c3, k0, k1); k0 += WeylA; k1 += WeylB;
        Round(ref c0, ref c1, ref c2, ref c3, k0, k1); k0 += WeylA; k1 += WeylB;
        Round(ref c0, ref c1, ref c2, ref c3, k0, k1); k0 += WeylA; k1 += WeylB;
        Round(ref c0, ref c1, ref c2, ref c3, k0, k1);
        return new PhiloxBlock(c0, c1, c2, c3);
    }

    /// <summary>
    /// The block for the library's counter layout: (purpose, sample, element block, step), keyed by
    /// <paramref name="seed"/> (low word = key 0, high word = key 1).
    /// </summary>
    public static PhiloxBlock Generate(ulong seed, uint purpose, uint sample, uint block, uint step) =>
        Generate(new PhiloxBlock(purpose, sample, block, step), (uint)seed, (uint)(seed >> 32));

    /// <summary>Uniform float in (0, 1]: the top 24 bits plus one, times 2^-24 (never 0, so log() is safe).</summary>
    public static float UniformOpenZero(uint bits) => ((bits >> 8) + 1u) * TwoToMinus24;

    /// <summary>Uniform float in [0, 1): the top 24 bits times 2^-24 (never 1, so floor(u * n) &lt; n).</summary>
    public static float UniformClosedZero(uint bits) => (bits >> 8) * TwoToMinus24;

    /// <summary>
    /// Box-Muller: two independent standard normals from two words. The radius uses u1 in (0, 1], so it is finite
    /// (at most sqrt(2 * 24 ln 2) = 5.77).
    /// </summary>
    public static void NormalPair(uint bits1, uint bits2, out float normal0, out float normal1)
    {
        float radius = XMath.Sqrt(-2f * XMath.Log(UniformOpenZero(bits1)));
        float angle = 2f * MathF.PI * UniformClosedZero(bits2);
        normal0 = radius * XMath.Cos(angle);
        normal1 = radius * XMath.Sin(angle);
    }

    /// <summary>Four standard normals from one block (two Box-Muller pairs: words 0,1 and words 2,3).</summary>
    public static void Normals(PhiloxBlock block, out float n0, out float n1, out float n2, out float n3)
    {
        NormalPair(block.X0, block.X1, out n0, out n1);
        NormalPair(block.X2, block.X3, out n2, out n3);
    }

    /// <summary>One of the four normals of a block, chosen by <paramref name="lane"/> (0..3).</summary>
    public static float Normal(PhiloxBlock block, int lane)
    {
        Normals(block, out float n0, out float n1, out float n2, out float n3);
        return lane == 0 ? n0 : lane == 1 ? n1 : lane == 2 ? n2 : n3;
    }

    /// <summary>
    /// Normal number <paramref name="element"/> of the stream (purpose, sample, step): lane element % 4 of block
    /// element / 4, so consecutive elements share one Philox evaluation.
    /// </summary>
    public static float Normal(ulong seed, uint purpose, uint sample, uint element, uint step) =>
        Normal(Generate(seed, purpose, sample, element >> 2, step), (int)(element & 3u));

    /// <summary>Float64 reference of <see cref="UniformClosedZero"/> (host only).</summary>
    public static double UniformClosedZeroReference(uint bits) => (bits >> 8) / 16777216.0;

    /// <summary>Float64 reference of <see cref="NormalPair"/> from the same two words (host only).</summary>
    public static void NormalPairReference(uint bits1, uint bits2, out double normal0, out double normal1)
    {
        double radius = Math.Sqrt(-2.0 * Math.Log(((bits1 >> 8) + 1u) / 16777216.0));
        double angle = 2.0 * Math.PI * UniformClosedZeroReference(bits2);
        normal0 = radius * Math.Cos(angle);
        normal1 = radius * Math.Sin(angle);
    }

    /// <summary>Float64 reference of <see cref="Normal(ulong, uint, uint, uint, uint)"/> (host only).</summary>
    public static double NormalReference(ulong seed, uint purpose, int sample, int element, uint step)
    {
        var block = Generate(seed, purpose, (uint)sample, (uint)(element / 4), step);
        int lane = element % 4;
        NormalPairReference(lane < 2 ? block.X0 : block.X2, lane < 2 ? block.X1 : block.X3, out double n0, out double n1);
        return lane % 2 == 0 ? n0 : n1;
    }

    private static void Round(ref uint c0, ref uint c1, ref uint c2, ref uint c3, uint k0, uint k1)
    {
        ulong productA = (ulong)MultiplierA * c0;
        ulong productB = (ulong)MultiplierB * c2;
        uint hiA = (uint)(productA >> 32), loA = (uint)productA;
        uint hiB = (uint)(productB >> 32), loB = (uint)productB;
        c0 = hiB ^ c1 ^ k0;
        c1 = loB;
        c2 = hiA ^ c3 ^ k1;
        c3 = loA;
    }
}
