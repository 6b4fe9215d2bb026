using PoissonFlow.Kernels;

namespace PoissonFlow.Tests;

public sealed class PhiloxTests
{
    /// <summary>Known-answer vectors of Philox4x32-10 from Random123 (kat_vectors).</summary>
    [TestCase(0u, 0u, 0u, 0u, 0u, 0u, 0x6627e8d5u, 0xe169c58du, 0xbc57ac4cu, 0x9b00dbd8u)]
    [TestCase(0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu, 0x408f276du, 0x41c83b0eu, 0xa20bc7c6u, 0x6d5451fdu)]
    [TestCase(0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u, 0xa4093822u, 0x299f31d0u, 0xd16cfe09u, 0x94fdccebu, 0x5001e420u, 0x24126ea1u)]
    public void MatchesRandom123KnownAnswers(uint c0, uint c1, uint c2, uint c3, uint k0, uint k1, uint r0, uint r1, uint r2, uint r3) =>
        Assert.That(Philox.Generate(new PhiloxBlock(c0, c1, c2, c3), k0, k1), Is.EqualTo(new PhiloxBlock(r0, r1, r2, r3)));

    [Test]
    public void KernelProducesTheHostIntegers()
    {
        const int blocks = 37;
        const ulong seed = 0x1234_5678_9abc_def0ul;
        var device = TestDevice.Cpu;
        using var buffer = device.Accelerator.Allocate1D<uint>(4 * blocks);
        Perturbation.For(device).RawBlocks(buffer.View, seed, purpose: 7, step: 99);
        var actual = buffer.GetAsArray1D();
        for (int i = 0; i < blocks; i++)
        {
            var expected = Philox.Generate(seed, 7, (uint)i, 0, 99);
            Assert.That(new PhiloxBlock(actual[4 * i], actual[4 * i + 1], actual[4 * i + 2], actual[4 * i + 3]), Is.EqualTo(expected), $"block {i}");
        }
    }

    [Test]
    public void UniformsStayInsideTheirIntervals()
    {
        Assert.Multiple(() =>
        {
            Assert.That(Philox.UniformOpenZero(0), Is.EqualTo(1f / 16777216f));
            Assert.That(Philox.UniformOpenZero(uint.MaxValue), Is.EqualTo(1f));
            Assert.That(Philox.UniformClosedZero(0), Is.EqualTo(0f));
            Assert.That(Philox.UniformClosedZero(uint.MaxValue), Is.LessThan(1f));
        });
    }

    /// <summary>Device normals against float64 Box-Muller on the same integers; float transcendentals: 1e-5 absolute.</summary>
    [Test]
    public void NormalFillMatchesFloat64BoxMuller()
    {
        const int count = 1001;
        var device = TestDevice.Cpu;
        using var buffer = device.Accelerator.Allocate1D(Numerics.Poison(count));
        Perturbation.For(device).Normal(buffer.View, seed: 42, purpose: 9, step: 3);
        var actual = buffer.GetAsArray1D();
        var expected = Enumerable.Range(0, count).Select(e => Philox.NormalReference(42, 9, 0, e, 3)).ToArray();
        Numerics.AssertClose(actual, expected, rtol: 1e-5, atol: 1e-5, "normals");
        double mean = actual.Average(v => (double)v), variance = actual.Average(v => (double)v * v) - mean * mean;
        // 5 sigma of the sample mean (1/sqrt(n)) and of the sample variance (sqrt(2/n)).
        Assert.That(mean, Is.EqualTo(0).Within(5 / Math.Sqrt(count)));
        Assert.That(variance, Is.EqualTo(1).Within(5 * Math.Sqrt(2.0 / count)));
    }
}
