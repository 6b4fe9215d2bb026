namespace PoissonFlow.IO;

/// <summary>
/// Writes a file so that readers only ever see the old file or the complete new one: the content goes to a
/// temporary file in the same folder (same file system, so the final rename is atomic) and is renamed over the
/// target only once fully written and flushed. Any failure deletes the temporary file and leaves no output.
/// </summary>
public static class AtomicFile
{
    /// <summary>Writes <paramref name="path"/> through <paramref name="write"/>, atomically.</summary>
    /// <exception cref="DirectoryNotFoundException">The target's folder does not exist.</exception>
    /// <exception cref="IOException">Writing failed (disk full, permissions); the message names the target file.</exception>
    public static void Write(string path, Action<Stream> write)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(path);
        ArgumentNullException.ThrowIfNull(write);
        string fullPath = Path.GetFullPath(path);
        string folder = Path.GetDirectoryName(fullPath) ?? ".";
        if (!Directory.Exists(folder))
        {
            throw new DirectoryNotFoundException($"cannot write '{path}': the folder '{folder}' does not exist");
        }

        if (Directory.Exists(fullPath))
        {
            throw new IOException($"cannot write '{path}': it is a folder");
        }

        // A hidden name with a random part: never clashes with a concurrent writer or a user's file.
        string temp = Path.Combine(folder, $".{Path.GetFileName(fullPath)}.{Guid.NewGuid():N}.tmp");
        try
        {
            using (var stream = new FileStream(temp, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 16))
            {
                write(stream);
                stream.Flush(flushToDisk: true);
            }

            File.Move(temp, fullPath, overwrite: true);
        }
        catch (Exception ex)
        {
            TryDelete(temp);
            if (ex is IOException io and not FileNotFoundException and not DirectoryNotFoundException)
            {
                // Keep the HResult so callers can still recognise "disk full"; name the file the user asked for.
                throw new IOException($"cannot write '{path}': {io.Message}", io) { HResult = io.HResult };
            }

            if (ex is UnauthorizedAccessException)
            {
                throw new UnauthorizedAccessException($"cannot write '{path}': permission denied", ex);
            }

            throw;
        }
    }

    /// <summary>Writes UTF-8 text (no byte-order mark) to <paramref name="path"/>, atomically.</summary>
    public static void WriteText(string path, string text) =>
        Write(path, stream =>
        {
            using var writer = new StreamWriter(stream, new System.Text.UTF8Encoding(false), leaveOpen: true);
            writer.Write(text);
        });

    /// <summary>True when <paramref name="ex"/> or one of its inner exceptions reports a full disk or exceeded quota.</summary>
    public static bool IsDiskFull(Exception ex)
    {
        for (Exception? e = ex; e is not null; e = e.InnerException)
        {
            // ENOSPC (28) and EDQUOT (122) on Linux; ERROR_DISK_FULL (0x70) and ERROR_HANDLE_DISK_FULL (0x27) on Windows.
            int code = e.HResult & 0xFFFF;
            if (e is IOException && (code is 28 or 122 or 0x70 or 0x27)) return true;
        }

        return false;
    }

    private static void TryDelete(string path)
    {
        try
        {
            File.Delete(path);
        }
        catch (IOException)
        {
            // Best effort: the original error is the one worth reporting.
        }
        catch (UnauthorizedAccessException)
        {
        }
    }
}
