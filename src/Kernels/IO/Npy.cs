namespace PoissonFlow.IO;

/// <summary>A float32 array read from or written to a NumPy .npy file, with its shape (C order).</summary>
/// <param name="Data">The values in C (row-major) order.</param>
/// <param name="Shape">The dimensions.</param>
public sealed record NpyArray(float[] Data, int[] Shape);

/// <summary>Thrown for a file that is not a readable .npy array of a supported kind; the message names the file and the problem.</summary>
public sealed class NpyFormatException : Exception
{
    /// <summary>Creates the exception.</summary>
    public NpyFormatException(string message) : base(message) { }
}

/// <summary>
/// NumPy .npy reading (float32 or float64, C order; float64 is converted) and writing (float32, atomically).
/// CONTRACT STUB: the implementation replaces the bodies, the signatures stay.
/// </summary>
public static class Npy
{
    /// <summary>Reads an array; throws <see cref="NpyFormatException"/> naming the file and the problem.</summary>
    public static NpyArray Read(string path) => throw new NotImplementedException();

    /// <summary>Writes a float32 array atomically (temporary file, then rename), so a failure leaves no partial file.</summary>
    public static void Write(string path, ReadOnlySpan<float> data, params int[] shape) => throw new NotImplementedException();
}
