using System.Globalization;
using PoissonFlow.IO;

namespace PoissonFlow.Data;

/// <summary>
/// Loads user data: a 2-D float array from a NumPy .npy file or a .csv file (n rows x d columns, d &gt;= 2, an
/// optional header line). Every problem is a <see cref="DatasetException"/> whose message names the file and, where
/// it applies, the row and column.
/// </summary>
public static class PointSetFiles
{
    /// <summary>
    /// Resolves a data argument: a built-in set name (<see cref="ToyDatasets.Names"/>, generating
    /// <paramref name="count"/> points from <paramref name="seed"/>) or the path of a .npy or .csv file (all its rows).
    /// </summary>
    /// <exception cref="DatasetException">Unknown name, missing or unreadable file, or invalid content.</exception>
    public static PointSet Resolve(string nameOrPath, int count, int seed)
    {
        if (ToyDatasets.IsKnown(nameOrPath)) return ToyDatasets.Generate(nameOrPath, count, seed);
        string extension = Path.GetExtension(nameOrPath).ToLowerInvariant();
        if (extension is ".npy" or ".csv" || File.Exists(nameOrPath)) return Load(nameOrPath);
        return ToyDatasets.Generate(nameOrPath, count, seed); // throws: unknown name, lists the valid ones
    }

    /// <summary>Loads a .npy or .csv file, chosen by extension.</summary>
    /// <exception cref="DatasetException">Missing, unreadable or invalid file.</exception>
    public static PointSet Load(string path)
    {
        if (!File.Exists(path)) throw new DatasetException($"{path}: no such file");
        return Path.GetExtension(path).ToLowerInvariant() switch
        {
            ".npy" => LoadNpy(path),
            ".csv" => LoadCsv(path),
            var other => throw new DatasetException($"{path}: unsupported file type '{other}': expected .npy or .csv"),
        };
    }

    /// <summary>Loads an n x d (d &gt;= 2) float32 or float64 .npy array.</summary>
    /// <exception cref="DatasetException">Unreadable, wrong rank, fewer than 2 columns, empty, or non-finite values.</exception>
    public static PointSet LoadNpy(string path)
    {
        NpyArray array;
        try
        {
            array = Npy.Read(path);
        }
        catch (Exception e) when (e is NpyFormatException or IOException or UnauthorizedAccessException)
        {
            throw new DatasetException($"{path}: cannot read as .npy: {e.Message}", e);
        }

        if (array.Shape.Length != 2)
        {
            throw new DatasetException($"{path}: expected a 2-D array (points x coordinates), got shape ({string.Join(", ", array.Shape)})");
        }

        int count = array.Shape[0], dim = array.Shape[1];
        if (count == 0) throw new DatasetException($"{path}: the array has no rows");
        if (dim < 2) throw new DatasetException($"{path}: points need at least 2 coordinates, the array has {dim} column(s)");
        for (int i = 0; i < array.Data.Length; i++)
        {
            if (!float.IsFinite(array.Data[i]))
            {
                throw new DatasetException($"{path}: row {i / dim + 1}, column {i % dim + 1} is {array.Data[i]}: data must be finite");
            }
        }

        return new PointSet(array.Data, count, dim);
    }

    /// <summary>
    /// Loads a .csv file of numbers: comma-separated (semicolons and tabs are accepted too), one point per line, the
    /// same number (&gt;= 2) of columns on every line, blank lines ignored. A first line that is not numeric is a header.
    /// </summary>
    /// <exception cref="DatasetException">Unreadable, empty, one column, ragged rows, non-numeric or non-finite values.</exception>
    public static PointSet LoadCsv(string path)
    {
        string[] lines;
        try
        {
            lines = File.ReadAllLines(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new DatasetException($"{path}: cannot read: {e.Message}", e);
        }

        if (lines.Any(line => line.Contains('\0')))
        {
            throw new DatasetException($"{path}: not a text file (contains NUL bytes): expected comma-separated numbers");
        }

        var values = new List<float>();
        int dim = -1, rows = 0;
        bool first = true;
        for (int lineIndex = 0; lineIndex < lines.Length; lineIndex++)
        {
            string line = lines[lineIndex].Trim();
            if (line.Length == 0) continue;
            string[] cells = line.Split([',', ';', '\t']);
            bool header = first && !cells.Any(c => TryParse(c, out _));
            first = false;
            if (header)
            {
                dim = cells.Length;
                continue;
            }

            if (dim < 0) dim = cells.Length;
            if (cells.Length != dim)
            {
                throw new DatasetException($"{path}: line {lineIndex + 1} has {cells.Length} column(s), expected {dim} like the first line");
            }

            for (int c = 0; c < cells.Length; c++)
            {
                if (!TryParse(cells[c], out float value))
                {
                    throw new DatasetException($"{path}: line {lineIndex + 1}, column {c + 1}: '{cells[c].Trim()}' is not a number");
                }

                if (!float.IsFinite(value))
                {
                    throw new DatasetException($"{path}: line {lineIndex + 1}, column {c + 1} is {cells[c].Trim()}: data must be finite");
                }

                values.Add(value);
            }

            rows++;
        }

        if (rows == 0) throw new DatasetException($"{path}: no data rows");
        if (dim < 2) throw new DatasetException($"{path}: points need at least 2 coordinates, the file has {dim} column");
        return new PointSet(values.ToArray(), rows, dim);
    }

    private static bool TryParse(string cell, out float value) =>
        float.TryParse(cell.Trim(), NumberStyles.Float, CultureInfo.InvariantCulture, out value);
}
