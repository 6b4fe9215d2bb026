namespace PoissonFlow.Data;

/// <summary>
/// A set of points in R^Dim stored row-major (Count x Dim floats): a data set, a reference batch or a batch of samples.
/// </summary>
public sealed class PointSet
{
    /// <summary>Wraps <paramref name="data"/> (not copied), which must hold exactly count x dim values.</summary>
    /// <exception cref="ArgumentException">The length does not match, or count or dim is not positive.</exception>
    public PointSet(float[] data, int count, int dim)
    {
        ArgumentNullException.ThrowIfNull(data);
        if (count <= 0 || dim <= 0) throw new ArgumentException($"a point set needs count > 0 and dim > 0, got {count} x {dim}");
        if ((long)count * dim != data.Length)
        {
            throw new ArgumentException($"a {count} x {dim} point set needs {(long)count * dim} values, got {data.Length}");
        }

        Data = data;
        Count = count;
        Dim = dim;
    }

    /// <summary>The coordinates, row-major: point i is Data[i*Dim .. (i+1)*Dim).</summary>
    public float[] Data { get; }

    /// <summary>Number of points.</summary>
    public int Count { get; }

    /// <summary>Dimension of each point.</summary>
    public int Dim { get; }

    /// <summary>The coordinates of point <paramref name="index"/>.</summary>
    public ReadOnlySpan<float> this[int index] => Data.AsSpan(index * Dim, Dim);

    /// <summary>The mean Euclidean norm of the points (the ‖y‖_avg of the PFGM hyper-parameter recipe).</summary>
    public double MeanNorm()
    {
        double sum = 0;
        for (int i = 0; i < Count; i++)
        {
            double squared = 0;
            foreach (float v in this[i]) squared += (double)v * v;
            sum += Math.Sqrt(squared);
        }

        return sum / Count;
    }

    /// <summary>Per-coordinate minimum and maximum: (min[d], max[d]).</summary>
    public (double[] Min, double[] Max) Bounds()
    {
        var min = Enumerable.Repeat(double.PositiveInfinity, Dim).ToArray();
        var max = Enumerable.Repeat(double.NegativeInfinity, Dim).ToArray();
        for (int i = 0; i < Count; i++)
        {
            var p = this[i];
            for (int d = 0; d < Dim; d++)
            {
                min[d] = Math.Min(min[d], p[d]);
                max[d] = Math.Max(max[d], p[d]);
            }
        }

        return (min, max);
    }

    /// <summary>
    /// <paramref name="count"/> points drawn uniformly without replacement (a seeded partial shuffle), or all of them
    /// in shuffled order when count &gt;= Count.
    /// </summary>
    public PointSet Subsample(int count, int seed)
    {
        if (count <= 0) throw new ArgumentException($"subsample size must be positive, got {count}");
        int take = Math.Min(count, Count);
        var order = Enumerable.Range(0, Count).ToArray();
        var rng = new Random(seed);
        for (int i = 0; i < take; i++)
        {
            int j = rng.Next(i, Count);
            (order[i], order[j]) = (order[j], order[i]);
        }

        var data = new float[take * Dim];
        for (int i = 0; i < take; i++) this[order[i]].CopyTo(data.AsSpan(i * Dim, Dim));
        return new PointSet(data, take, Dim);
    }
}

/// <summary>Thrown for data that cannot be used: an unknown data set name, an unreadable file, NaN, too few columns.</summary>
public sealed class DatasetException : Exception
{
    /// <summary>Creates the exception with a message that names the source and the problem.</summary>
    public DatasetException(string message) : base(message) { }

    /// <summary>Creates the exception, keeping the underlying cause.</summary>
    public DatasetException(string message, Exception inner) : base(message, inner) { }
}
