using ILGPU;
using ILGPU.Runtime;
using PoissonFlow.Kernels.Device;

namespace PoissonFlow.Kernels;

/// <summary>
/// Draws a training batch from a data set that lives on the device: random row indices from Philox (deterministic
/// in the seed and the step, the same integers on every accelerator), then a gather of those rows. With the data
/// uploaded once, a training step needs no host copy at all, and a resumed run draws exactly the rows it would
/// have drawn without the interruption.
/// </summary>
public sealed class RowGather
{
    /// <summary>Philox purpose word of the row indices (distinct from the perturbation's, prior's and dropout's).</summary>
    public const uint PurposeRows = 9;

    private readonly ComputeDevice _device;
    private readonly Action<AcceleratorStream, KernelConfig, ArrayView<int>, int, int, uint, uint, uint> _draw;
    private readonly Action<AcceleratorStream, KernelConfig, ArrayView<float>, ArrayView<int>, ArrayView<float>, int, int> _gather;

    private RowGather(ComputeDevice device)
    {
        _device = device;
        _draw = device.Accelerator.LoadKernel<ArrayView<int>, int, int, uint, uint, uint>(DrawRowsKernel);
        _gather = device.Accelerator.LoadKernel<ArrayView<float>, ArrayView<int>, ArrayView<float>, int, int>(GatherKernel);
    }

    /// <summary>This device's instance (kernels compiled once per device).</summary>
    public static RowGather For(ComputeDevice device) => device.Operation(d => new RowGather(d));

    /// <summary>
    /// Fills <paramref name="indices"/>[0..rows) with row numbers in [0, <paramref name="count"/>), drawn uniformly
    /// with replacement: row j of step s is floor(u · count) with u the first Philox word of (purpose, j, 0, s).
    /// </summary>
    /// <exception cref="ArgumentException">A non-positive count or rows, or too short an index view.</exception>
    public void DrawRows(ArrayView<int> indices, int rows, int count, ulong seed, uint step)
    {
        Check(rows, count, indices.Length);
        _draw(_device.Accelerator.DefaultStream, _device.GridStride(rows), indices, rows, count, (uint)seed, (uint)(seed >> 32), step);
    }

    /// <summary>
    /// Copies row <paramref name="indices"/>[r] of <paramref name="source"/> (count x dim) to row r of
    /// <paramref name="destination"/> (rows x dim), for r in [0, rows).
    /// </summary>
    /// <exception cref="ArgumentException">A view is too short for the shapes.</exception>
    public void Gather(ArrayView<float> source, ArrayView<int> indices, ArrayView<float> destination, int rows, int dim)
    {
        if (dim < 1 || rows < 1) throw new ArgumentException($"row gather: rows and dim must be positive, got {rows} x {dim}");
        if (source.Length % dim != 0) throw new ArgumentException($"row gather: the source has {source.Length} values, not a whole number of {dim}-value rows");
        if ((long)rows * dim > int.MaxValue) throw new ArgumentException($"row gather: {rows} rows of {dim} values exceed 2^31 values per batch");
        if (indices.Length < rows || destination.Length < (long)rows * dim)
        {
            throw new ArgumentException($"row gather: {rows} rows of {dim} need {rows} indices and {(long)rows * dim} outputs, got {indices.Length} and {destination.Length}");
        }

        _gather(_device.Accelerator.DefaultStream, _device.GridStride((long)rows * dim), source, indices, destination, rows, dim);
    }

    /// <summary>Draws the row indices (as <see cref="DrawRows"/>) and gathers those rows, in two launches.</summary>
    public void DrawAndGather(ArrayView<float> source, ArrayView<int> indices, ArrayView<float> destination, int rows, int dim, ulong seed, uint step)
    {
        DrawRows(indices, rows, (int)(source.Length / dim), seed, step);
        Gather(source, indices, destination, rows, dim);
    }

    /// <summary>Host reference of <see cref="DrawRows"/> (exact: the same integers).</summary>
    public static int[] DrawRowsReference(int rows, int count, ulong seed, uint step)
    {
        Check(rows, count, rows);
        var indices = new int[rows];
        for (int j = 0; j < rows; j++) indices[j] = RowIndex(Philox.Generate(seed, PurposeRows, (uint)j, 0, step).X0, count);
        return indices;
    }

    /// <summary>Host reference of <see cref="Gather"/> in float64.</summary>
    public static double[] GatherReference(ReadOnlySpan<float> source, ReadOnlySpan<int> indices, int rows, int dim)
    {
        var result = new double[rows * dim];
        for (int r = 0; r < rows; r++)
        {
            for (int c = 0; c < dim; c++) result[r * dim + c] = source[indices[r] * dim + c];
        }

        return result;
    }

    /// <summary>floor(bits · count / 2^32): uniform in [0, count) without a division or float rounding.</summary>
    private static int RowIndex(uint bits, int count) => (int)(((ulong)bits * (ulong)count) >> 32);

    private static void Check(int rows, int count, long indexLength)
    {
        if (rows < 1 || count < 1) throw new ArgumentException($"row draw: need at least one row and one data point, got {rows} rows from {count}");
        if (indexLength < rows) throw new ArgumentException($"row draw: {rows} rows need {rows} indices, got {indexLength}");
    }

    [GpuKernel]
    internal static void DrawRowsKernel(ArrayView<int> indices, int rows, int count, uint key0, uint key1, uint step)
    {
        int stride = Grid.DimX * Group.DimX;
        for (int j = Grid.GlobalIndex.X; j < rows; j += stride)
        {
            var block = Philox.Generate(new PhiloxBlock(PurposeRows, (uint)j, 0u, step), key0, key1);
            indices[j] = RowIndex(block.X0, count);
        }
    }

    [GpuKernel]
    internal static void GatherKernel(ArrayView<float> source, ArrayView<int> indices, ArrayView<float> destination, int rows, int dim)
    {
        // Element-wise over the output: consecutive threads copy consecutive values of one row (coalesced on a GPU).
        // The batch fits an int (checked by the launcher); only the source offset needs 64 bits.
        int length = rows * dim, stride = Grid.DimX * Group.DimX;
        for (int i = Grid.GlobalIndex.X; i < length; i += stride)
        {
            int row = i / dim;
            int column = i - row * dim;
            destination[i] = source[(long)indices[row] * dim + column];
        }
    }
}
