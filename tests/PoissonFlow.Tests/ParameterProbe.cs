using PoissonFlow.Network.UNet;

namespace PoissonFlow.Tests;

/// <summary>
/// Finite differences at a sample of parameter indices: one random element of every parameter tensor plus some random
/// extra ones. Checking every element of a network costs two float64 forward passes each; the sample still catches a
/// wrong or missing gradient in any tensor.
/// </summary>
public static class ParameterProbe
{
    /// <summary>
    /// Returns the device gradients and the central differences (see <see cref="FiniteDifference"/>) of <paramref name="loss"/> at the sampled
    /// indices of <paramref name="parameters"/>.
    /// </summary>
    public static (float[] Actual, double[] Expected) Sample(IEnumerable<(long Offset, long Length)> slots, int extra, Random rng,
        float[] gradients, double[] parameters, Func<double[], double> loss)
    {
        var indices = slots.Select(slot => (int)(slot.Offset + rng.NextInt64(slot.Length)))
            .Concat(Enumerable.Range(0, extra).Select(_ => rng.Next(parameters.Length)))
            .Distinct()
            .ToArray();
        var expected = FiniteDifference.Gradient(loss, parameters, indices);
        var actual = indices.Select(i => gradients[i]).ToArray();
        return (actual, expected);
    }

    /// <summary>The slots of <paramref name="shapes"/> laid out one after another.</summary>
    public static IEnumerable<(long Offset, long Length)> Slots(IEnumerable<ParameterShape> shapes)
    {
        long offset = 0;
        foreach (var shape in shapes)
        {
            yield return (offset, shape.Length);
            offset += shape.Length;
        }
    }
}
