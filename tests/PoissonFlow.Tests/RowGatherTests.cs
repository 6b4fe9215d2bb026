using PoissonFlow.Kernels;

namespace PoissonFlow.Tests;

/// <summary>
/// The device batch draw: the row indices are exact integers (the same on host and device), the gather is a copy
/// (so exact too), every index lies in range, and the draws cover the rows uniformly and change with the step.
/// </summary>
public sealed class RowGatherTests
{
    private static RowGather Op => RowGather.For(TestDevice.Cpu);

    [Test]
    public void Drawn_rows_equal_the_host_reference_and_stay_in_range()
    {
        const int rows = 300, count = 37;
        using var indices = TestDevice.Cpu.Accelerator.Allocate1D(Enumerable.Repeat(-1, rows).ToArray());
        Op.DrawRows(indices.View, rows, count, seed: 0x1234_5678_9ABCUL, step: 11);
        var device = indices.GetAsArray1D();
        var host = RowGather.DrawRowsReference(rows, count, 0x1234_5678_9ABCUL, 11);
        Assert.That(device, Is.EqualTo(host), "integer draws must match exactly");
        Assert.That(device, Has.All.InRange(0, count - 1));
        Assert.That(RowGather.DrawRowsReference(rows, count, 0x1234_5678_9ABCUL, 12), Is.Not.EqualTo(host), "another step draws other rows");
    }

    [Test]
    public void Gather_copies_the_drawn_rows_into_a_poisoned_output()
    {
        const int count = 23, dim = 13, rows = 40;
        var data = Numerics.Uniform(new Random(5), count * dim);
        var accelerator = TestDevice.Cpu.Accelerator;
        using var source = accelerator.Allocate1D(data);
        using var indices = accelerator.Allocate1D<int>(rows);
        using var output = accelerator.Allocate1D(Numerics.Poison(rows * dim + 3));
        Op.DrawAndGather(source.View, indices.View, output.View, rows, dim, seed: 99, step: 4);
        var result = output.GetAsArray1D();
        var expected = RowGather.GatherReference(data, RowGather.DrawRowsReference(rows, count, 99, 4), rows, dim);
        // A copy: exact.
        Numerics.AssertClose(result.AsSpan(0, rows * dim), expected, rtol: 0, atol: 0, "gathered rows");
        Assert.That(result.AsSpan(rows * dim).ToArray(), Has.All.NaN, "nothing written past the batch");
    }

    [Test]
    public void Draws_cover_the_rows_uniformly()
    {
        const int count = 10, rows = 20000;
        var histogram = new int[count];
        foreach (int i in RowGather.DrawRowsReference(rows, count, 7, 0)) histogram[i]++;
        // Binomial(20000, 0.1): sd = 42.4; 5 sd either side (a correct draw fails about 1 run in 10^5 over 10 bins).
        double expected = rows / (double)count, sd = Math.Sqrt(rows * 0.1 * 0.9);
        Assert.That(histogram, Has.All.InRange(expected - 5 * sd, expected + 5 * sd));
    }

    [Test]
    public void Bad_shapes_are_rejected_with_a_message()
    {
        var accelerator = TestDevice.Cpu.Accelerator;
        using var source = accelerator.Allocate1D<float>(10);
        using var indices = accelerator.Allocate1D<int>(4);
        using var output = accelerator.Allocate1D<float>(8);
        Assert.That(() => Op.Gather(source.View, indices.View, output.View, 4, 3), Throws.ArgumentException.With.Message.Contains("whole number"));
        Assert.That(() => Op.Gather(source.View, indices.View, output.View, 5, 2), Throws.ArgumentException.With.Message.Contains("need 5 indices"));
        Assert.That(() => Op.DrawRows(indices.View, 4, 0, 1, 0), Throws.ArgumentException.With.Message.Contains("row draw"));
    }
}
