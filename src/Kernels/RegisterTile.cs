using ILGPU;

namespace PoissonFlow.Kernels;

/// <summary>
/// The 4 x 4 register block that one thread accumulates in the library's 64 x 64 tiled products (16 x 16 threads;
/// the thread at (tx, ty) owns rows ty + 16 i and columns tx + 16 j), plus the row sums of A that a bias gradient
/// needs. Shared by the tiled linear and convolution kernels (and the conv's coarse CPU kernel, which uses
/// <see cref="AddOuter"/> directly). Static methods on a ref struct value keep every field in registers under ILGPU.
/// </summary>
internal struct RegisterTile
{
    /// <summary>Tile edge of the products (outputs per group along M and N).</summary>
    public const int Tile = 64;

    /// <summary>Depth of one k-slice staged in shared memory.</summary>
    public const int TileK = 16;

    /// <summary>Shared-memory row pitch: one float of padding against bank conflicts.</summary>
    public const int TilePitch = Tile + 1;

    public float S00, S01, S02, S03, S10, S11, S12, S13, S20, S21, S22, S23, S30, S31, S32, S33;
    public float G0, G1, G2, G3;

    /// <summary>One k step: the outer product x y^T added to the block.</summary>
    public static void AddOuter(ref RegisterTile t, float x0, float x1, float x2, float x3, float y0, float y1, float y2, float y3)
    {
        t.S00 += x0 * y0; t.S01 += x0 * y1; t.S02 += x0 * y2; t.S03 += x0 * y3;
        t.S10 += x1 * y0; t.S11 += x1 * y1; t.S12 += x1 * y2; t.S13 += x1 * y3;
        t.S20 += x2 * y0; t.S21 += x2 * y1; t.S22 += x2 * y2; t.S23 += x2 * y3;
        t.S30 += x3 * y0; t.S31 += x3 * y1; t.S32 += x3 * y2; t.S33 += x3 * y3;
    }

    /// <summary>
    /// One staged k-slice: A and B tiles laid out k-major with <see cref="TilePitch"/>; also sums the A values into
    /// the row sums when <paramref name="sumsRows"/> (the bias gradient of a weight-gradient product).
    /// </summary>
    public static void AddSlice(ref RegisterTile t, ArrayView<float> aTile, ArrayView<float> bTile, int tx, int ty, bool sumsRows)
    {
        for (int kk = 0; kk < TileK; kk++)
        {
            int row = kk * TilePitch;
            float x0 = aTile[row + ty], x1 = aTile[row + ty + 16], x2 = aTile[row + ty + 32], x3 = aTile[row + ty + 48];
            float y0 = bTile[row + tx], y1 = bTile[row + tx + 16], y2 = bTile[row + tx + 32], y3 = bTile[row + tx + 48];
            AddOuter(ref t, x0, x1, x2, x3, y0, y1, y2, y3);
            if (sumsRows)
            {
                t.G0 += x0; t.G1 += x1; t.G2 += x2; t.G3 += x3;
            }
        }
    }
}
