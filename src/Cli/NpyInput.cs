using System.Globalization;
using PoissonFlow.IO;

namespace PoissonFlow.Cli;

/// <summary>
/// Reads .npy inputs named by command options and checks what every numeric command needs: the file reads, the
/// shape is as expected, and every value is finite. Errors name the option, the file and the problem.
/// </summary>
public static class NpyInput
{
    /// <summary>Reads the file named by option <paramref name="option"/>, with its finite-values check.</summary>
    public static NpyArray Read(ParsedArgs args, string option)
    {
        ArgumentNullException.ThrowIfNull(args);
        return Read(args.GetRequiredString(option), option);
    }

    /// <summary>Reads <paramref name="path"/> (named in messages as option <paramref name="option"/>), with its finite-values check.</summary>
    public static NpyArray Read(string path, string option)
    {
        NpyArray array;
        try
        {
            array = Npy.Read(path);
        }
        catch (NpyFormatException ex)
        {
            throw new UserErrorException($"--{option} {ex.Message}", ex);
        }

        int bad = Npy.IndexOfNonFinite(array.Data);
        if (bad >= 0)
        {
            throw new UserErrorException(
                $"--{option} {path}: contains {Name(array.Data[bad])} at {Position(array.Shape, bad)}; every value must be finite");
        }

        return array;
    }

    /// <summary>Reads a 2-D array (rows x columns) with at least one row and one column.</summary>
    public static NpyArray ReadMatrix(ParsedArgs args, string option, string meaning)
    {
        var array = Read(args, option);
        string path = args.GetRequiredString(option);
        if (array.Rank != 2)
        {
            throw new UserErrorException($"--{option} {path}: expected a 2-D array ({meaning}), got shape {array.ShapeText}");
        }

        if (array.Shape[0] == 0 || array.Shape[1] == 0)
        {
            throw new UserErrorException($"--{option} {path}: the array is empty (shape {array.ShapeText}); expected {meaning}");
        }

        return array;
    }

    /// <summary>
    /// Reads a vector of exactly <paramref name="length"/> values, stored as shape (length,) or (length, 1);
    /// <paramref name="lengthMeaning"/> says where the length comes from, for the message.
    /// </summary>
    public static float[] ReadVector(ParsedArgs args, string option, int length, string lengthMeaning)
    {
        var array = Read(args, option);
        string path = args.GetRequiredString(option);
        bool vectorShape = array.Rank == 1 || (array.Rank == 2 && array.Shape[1] == 1);
        if (!vectorShape || array.Shape[0] != length)
        {
            throw new UserErrorException(
                $"--{option} {path}: has shape {array.ShapeText}, expected ({length},): one value per {lengthMeaning}");
        }

        return array.Data;
    }

    /// <summary>Rejects negative values (distances such as z or r), naming the first one.</summary>
    public static void RequireNonNegative(ParsedArgs args, string option, float[] values, string meaning)
    {
        for (int i = 0; i < values.Length; i++)
        {
            if (values[i] < 0)
            {
                throw new UserErrorException(string.Create(CultureInfo.InvariantCulture,
                    $"--{option} {args.GetRequiredString(option)}: value {values[i]:G6} at index {i} is negative; {meaning} must be >= 0"));
            }
        }
    }

    private static string Name(float value) => float.IsNaN(value) ? "NaN" : value > 0 ? "+Inf" : "-Inf";

    private static string Position(int[] shape, int flatIndex)
    {
        if (shape.Length <= 1) return $"index {flatIndex}";
        var index = new int[shape.Length];
        int rest = flatIndex;
        for (int d = shape.Length - 1; d >= 0; d--)
        {
            index[d] = rest % shape[d];
            rest /= shape[d];
        }

        return $"index [{string.Join(", ", index)}]";
    }
}
