using SixLabors.ImageSharp;
using SixLabors.ImageSharp.PixelFormats;
using PoissonFlow.IO;

namespace PoissonFlow.Cli.Plots;

/// <summary>An RGB colour with components in [0, 1].</summary>
/// <param name="R">Red.</param>
/// <param name="G">Green.</param>
/// <param name="B">Blue.</param>
internal readonly record struct Colour(float R, float G, float B)
{
    public static Colour White => new(1, 1, 1);
    public static Colour LightGrey => new(0.78f, 0.78f, 0.78f);
    public static Colour Grey => new(0.55f, 0.55f, 0.55f);
    public static Colour Black => new(0.1f, 0.1f, 0.1f);
    public static Colour Blue => new(0.12f, 0.38f, 0.78f);
    public static Colour Red => new(0.84f, 0.16f, 0.16f);
    public static Colour Orange => new(0.95f, 0.55f, 0.1f);

    /// <summary>A colour along a blue-to-red ramp, t in [0, 1].</summary>
    public static Colour Ramp(double t)
    {
        float s = (float)Math.Clamp(t, 0, 1);
        return new Colour(0.12f + 0.78f * s, 0.38f - 0.2f * s, 0.78f - 0.62f * s);
    }
}

/// <summary>
/// A raster with a world-to-pixel mapping (equal scale on both axes, y up) and alpha-blended discs and lines:
/// the few primitives the plots need, drawn by hand since ImageSharp.Drawing is not a dependency.
/// </summary>
internal sealed class Canvas
{
    private readonly float[] _rgb;
    private double _scale, _originX, _originY;
    private int _viewLeft, _viewTop, _viewRight, _viewBottom;

    /// <summary>A canvas of width x height pixels showing the world box [minX, maxX] x [minY, maxY], letterboxed.</summary>
    public Canvas(int width, int height, double minX, double maxX, double minY, double maxY, Colour background)
    {
        if (width <= 0 || height <= 0) throw new ArgumentException($"canvas size must be positive, got {width} x {height}");
        Width = width;
        Height = height;
        _rgb = new float[width * height * 3];
        for (int i = 0; i < width * height; i++)
        {
            _rgb[3 * i] = background.R;
            _rgb[3 * i + 1] = background.G;
            _rgb[3 * i + 2] = background.B;
        }

        SetView(0, 0, width, height, minX, maxX, minY, maxY);
    }

    /// <summary>
    /// Directs later drawing into the pixel rectangle (left, top, width, height), which shows the world box
    /// [minX, maxX] x [minY, maxY] letterboxed; nothing is drawn outside the rectangle. For side-by-side panels.
    /// </summary>
    public void SetView(int left, int top, int width, int height, double minX, double maxX, double minY, double maxY)
    {
        if (!(maxX > minX) || !(maxY > minY)) throw new ArgumentException($"empty world box [{minX}, {maxX}] x [{minY}, {maxY}]");
        _viewLeft = Math.Clamp(left, 0, Width);
        _viewTop = Math.Clamp(top, 0, Height);
        _viewRight = Math.Clamp(left + width, 0, Width);
        _viewBottom = Math.Clamp(top + height, 0, Height);
        _scale = Math.Min(width / (maxX - minX), height / (maxY - minY));
        _originX = left + (width - _scale * (maxX - minX)) / 2 - _scale * minX;
        _originY = top + (height - _scale * (maxY - minY)) / 2 + _scale * maxY;
    }

    public int Width { get; }

    public int Height { get; }

    /// <summary>Pixel column of world x.</summary>
    public double PixelX(double x) => _originX + _scale * x;

    /// <summary>Pixel row of world y (rows grow downwards).</summary>
    public double PixelY(double y) => _originY - _scale * y;

    /// <summary>Blends a filled disc of <paramref name="radius"/> pixels centred on world (x, y).</summary>
    public void Disc(double x, double y, double radius, Colour colour, float alpha)
    {
        double px = PixelX(x), py = PixelY(y);
        if (!double.IsFinite(px) || !double.IsFinite(py)) return;
        int x0 = (int)Math.Floor(px - radius), x1 = (int)Math.Ceiling(px + radius);
        int y0 = (int)Math.Floor(py - radius), y1 = (int)Math.Ceiling(py + radius);
        for (int row = Math.Max(y0, _viewTop); row <= Math.Min(y1, _viewBottom - 1); row++)
        {
            for (int col = Math.Max(x0, _viewLeft); col <= Math.Min(x1, _viewRight - 1); col++)
            {
                double dx = col + 0.5 - px, dy = row + 0.5 - py;
                // coverage falls off over the last pixel of the radius: smooth edges without supersampling
                double coverage = Math.Clamp(radius + 0.5 - Math.Sqrt(dx * dx + dy * dy), 0, 1);
                if (coverage > 0) Blend(col, row, colour, (float)(alpha * coverage));
            }
        }
    }

    /// <summary>Blends a one-pixel line between two world points (clipped to the canvas, then stepped pixel by pixel).</summary>
    public void Line(double xa, double ya, double xb, double yb, Colour colour, float alpha)
    {
        double pxa = PixelX(xa), pya = PixelY(ya), pxb = PixelX(xb), pyb = PixelY(yb);
        if (!double.IsFinite(pxa + pya + pxb + pyb)) return;
        // Liang-Barsky: keep the parameter range [t0, t1] of the segment inside [0, Width] x [0, Height]
        double t0 = 0, t1 = 1, dx = pxb - pxa, dy = pyb - pya;
        if (!Clip(-dx, pxa - _viewLeft, ref t0, ref t1) || !Clip(dx, _viewRight - pxa, ref t0, ref t1) ||
            !Clip(-dy, pya - _viewTop, ref t0, ref t1) || !Clip(dy, _viewBottom - pya, ref t0, ref t1)) return;
        double steps = Math.Ceiling(Math.Max(Math.Abs(dx), Math.Abs(dy)) * (t1 - t0));
        for (int s = 0; s <= steps; s++)
        {
            double t = t0 + (steps == 0 ? 0 : s / steps) * (t1 - t0);
            int col = (int)Math.Floor(pxa + t * dx), row = (int)Math.Floor(pya + t * dy);
            if (InView(col, row)) Blend(col, row, colour, alpha);
        }
    }

    private static bool Clip(double p, double q, ref double t0, ref double t1)
    {
        if (p == 0) return q >= 0;
        double r = q / p;
        if (p < 0)
        {
            if (r > t1) return false;
            if (r > t0) t0 = r;
        }
        else
        {
            if (r < t0) return false;
            if (r < t1) t1 = r;
        }

        return true;
    }

    /// <summary>A horizontal world-space rule across the whole canvas.</summary>
    public void HorizontalRule(double y, Colour colour, float alpha)
    {
        int row = (int)Math.Floor(PixelY(y));
        if (row < _viewTop || row >= _viewBottom) return;
        for (int col = _viewLeft; col < _viewRight; col++) Blend(col, row, colour, alpha);
    }

    /// <summary>Number of pixels that differ from <paramref name="background"/>: a check that something was drawn.</summary>
    public int PixelsDifferentFrom(Colour background)
    {
        int count = 0;
        for (int i = 0; i < Width * Height; i++)
        {
            if (Math.Abs(_rgb[3 * i] - background.R) + Math.Abs(_rgb[3 * i + 1] - background.G) + Math.Abs(_rgb[3 * i + 2] - background.B) > 0.02f) count++;
        }

        return count;
    }

    /// <summary>Writes the canvas as an 8-bit RGB PNG, atomically.</summary>
    public void SavePng(string path)
    {
        using var image = new Image<Rgb24>(Width, Height);
        image.ProcessPixelRows(rows =>
        {
            for (int y = 0; y < rows.Height; y++)
            {
                var row = rows.GetRowSpan(y);
                for (int x = 0; x < row.Length; x++)
                {
                    int i = 3 * (y * Width + x);
                    row[x] = new Rgb24(ToByte(_rgb[i]), ToByte(_rgb[i + 1]), ToByte(_rgb[i + 2]));
                }
            }
        });
        PoissonFlow.IO.AtomicFile.Write(path, stream => image.SaveAsPng(stream));
    }

    private bool InView(int col, int row) => col >= _viewLeft && col < _viewRight && row >= _viewTop && row < _viewBottom;

    private void Blend(int col, int row, Colour colour, float alpha)
    {
        int i = 3 * (row * Width + col);
        _rgb[i] += alpha * (colour.R - _rgb[i]);
        _rgb[i + 1] += alpha * (colour.G - _rgb[i + 1]);
        _rgb[i + 2] += alpha * (colour.B - _rgb[i + 2]);
    }

    private static byte ToByte(float v) => (byte)Math.Clamp((int)MathF.Round(v * 255f), 0, 255);
}
