namespace PoissonFlow.Bench;

/// <summary>One field problem size: B query points against M reference points of dimension N.</summary>
public sealed record FieldShape(int Batch, int Count, int Dim)
{
    /// <summary>B x M x N elements, the size of one broadcast temporary of the official formula (less its +1 column).</summary>
    public long Elements => (long)Batch * Count * Dim;

    /// <summary>FLOPs of one evaluation, counted as the fused algorithm does: 5 B M N.</summary>
    public double Flops => Kernels.PoissonField.FlopCount(Batch, Count, Dim);

    /// <summary>Bytes of one float32 B x M x (N+1) temporary of the official broadcast formula.</summary>
    public long BroadcastTemporaryBytes => 4L * Batch * Count * (Dim + 1);

    /// <summary>Bytes every implementation must read and write at least once: inputs (B N + B + M N) and output B (N+1).</summary>
    public long MinimumBytes => 4L * ((long)Batch * Dim + Batch + (long)Count * Dim + (long)Batch * (Dim + 1));

    /// <summary>BenchmarkDotNet shows parameters through ToString: BxMxN.</summary>
    public override string ToString() => $"{Batch}x{Count}x{Dim}";
}
