using ILGPU;
using ILGPU.Algorithms;
using ILGPU.Runtime;
using PoissonFlow.Kernels.Device;

namespace PoissonFlow.Kernels;

/// <summary>
/// The PFGM and PFGM++ priors, drawn on device: x = s * g / |h| with g ~ N(0, I_N) and h ~ N(0, I_D), then the radius
/// clipped to [min, max]. PFGM is D = 1, s = z_max, clip [1, upper_norm] (the projected uniform hemisphere:
/// R = z_max sqrt(B/(1-B)), B ~ Beta(N/2, 1/2)); PFGM++ is s = sigma_max sqrt(D), no clip (R = s sqrt(B/(1-B)),
/// B ~ Beta(N/2, D/2)). Random numbers come from Philox keyed by the seed, counter (purpose, row, coordinate), so a
/// sample does not depend on the launch shape or the device.
/// </summary>
public sealed class Prior
{
    private readonly ComputeDevice _device;
    private readonly Action<AcceleratorStream, KernelConfig, ArrayView<float>, RowShape, int, float, float, float, ulong> _sample;

    private Prior(ComputeDevice device)
    {
        _device = device;
        _sample = device.Accelerator.LoadKernel<ArrayView<float>, RowShape, int, float, float, float, ulong>(PriorKernel);
    }

    /// <summary>This device's instance (kernel compiled once per device).</summary>
    public static Prior For(ComputeDevice device) => device.Operation(d => new Prior(d));

    /// <summary>
    /// The PFGM prior at z = <paramref name="zMax"/>: writes B x N points. Radii are clipped to
    /// [<paramref name="lowerNorm"/>, <paramref name="upperNorm"/>] (official: [1, 3000] for CIFAR).
    /// </summary>
    public void Pfgm(ArrayView<float> points, int batch, int dim, float zMax, float upperNorm, ulong seed, float lowerNorm = 1f)
    {
        if (!(zMax > 0)) throw new ArgumentException($"PFGM prior: z_max must be positive, got {zMax}");
        Sample(points, batch, dim, 1, zMax, lowerNorm, upperNorm, seed);
    }

    /// <summary>The PFGM++ prior with D = <paramref name="extraDims"/> at sigma_max: R = sigma_max sqrt(D) |g| / |h|, unclipped.</summary>
    public void PfgmPlusPlus(ArrayView<float> points, int batch, int dim, int extraDims, float sigmaMax, ulong seed)
    {
        if (!(sigmaMax > 0)) throw new ArgumentException($"PFGM++ prior: sigma_max must be positive, got {sigmaMax}");
        Sample(points, batch, dim, extraDims, sigmaMax * MathF.Sqrt(extraDims), 0f, float.PositiveInfinity, seed);
    }

    /// <summary>The general form: x = radiusScale g / |h| with D = extraDims, radius clipped to [minRadius, maxRadius].</summary>
    public void Sample(ArrayView<float> points, int batch, int dim, int extraDims, float radiusScale, float minRadius, float maxRadius, ulong seed)
    {
        if (batch <= 0 || dim <= 0) throw new ArgumentException($"prior: batch {batch} and dim {dim} must be positive");
        if (extraDims <= 0) throw new ArgumentException($"prior: the number of extra dimensions D must be at least 1, got {extraDims}");
        if (!(minRadius <= maxRadius)) throw new ArgumentException($"prior: radius clip [{minRadius}, {maxRadius}] is empty");
        if (points.Length != (long)batch * dim) throw new ArgumentException($"prior: {points.Length} values for {batch}x{dim} points");
        var (config, shape) = OdeSteps.For(_device).RowLaunch(batch, dim);
        _sample(_device.Accelerator.DefaultStream, config, points, shape, extraDims, radiusScale, minRadius, maxRadius, seed);
    }

    /// <summary>Float64 reference drawing the very same random numbers as the kernel.</summary>
    public static double[] Reference(int batch, int dim, int extraDims, double radiusScale, double minRadius, double maxRadius, ulong seed)
    {
                var x = new double[batch * dim];
        for (int b = 0; b < batch; b++)
        {
            double g2 = 0, h2 = 0;
            for (int i = 0; i < dim; i++)
            {
                double g = Philox.NormalReference(seed, PurposeDirection, b, i, 0);
                x[b * dim + i] = g;
                g2 += g * g;
            }

            for (int j = 0; j < extraDims; j++)
            {
                double h = Philox.NormalReference(seed, PurposeExtra, b, j, 0);
                h2 += h * h;
            }

            double gNorm = Math.Sqrt(g2);
            double radius = Math.Clamp(radiusScale * gNorm / Math.Max(Math.Sqrt(h2), 1e-30), minRadius, maxRadius);
            for (int i = 0; i < dim; i++) x[b * dim + i] *= radius / gNorm;
        }

        return x;
    }

    /// <summary>Philox purpose word of the prior's N direction normals g.</summary>
    public const uint PurposeDirection = 5;

    /// <summary>Philox purpose word of the prior's D normals h.</summary>
    public const uint PurposeExtra = 6;

    [GpuKernel]
    internal static void PriorKernel(ArrayView<float> points, RowShape shape, int extraDims, float radiusScale,
        float minRadius, float maxRadius, ulong seed)
    {
        long thread = Grid.GlobalIndex.X;
        long rowStride = (long)Grid.DimX * Group.DimX / shape.LanesPerRow;
        int lane = (int)(thread % shape.LanesPerRow);
        for (long row = thread / shape.LanesPerRow; row < shape.Batch; row += rowStride)
        {
            long rowBase = row * shape.Dim;
            float g2 = 0f, h2 = 0f;
            for (int i = lane; i < shape.Dim; i += shape.LanesPerRow)
            {
                float g = Philox.Normal(seed, PurposeDirection, (uint)row, (uint)i, 0);
                points[rowBase + i] = g;
                g2 += g * g;
            }

            for (int j = lane; j < extraDims; j += shape.LanesPerRow)
            {
                float h = Philox.Normal(seed, PurposeExtra, (uint)row, (uint)j, 0);
                h2 += h * h;
            }

            g2 = OdeSteps.RowSum(g2, shape.LanesPerRow);
            h2 = OdeSteps.RowSum(h2, shape.LanesPerRow);
            float gNorm = XMath.Sqrt(g2);
            float radius = XMath.Clamp(radiusScale * gNorm / XMath.Max(XMath.Sqrt(h2), 1e-30f), minRadius, maxRadius);
            float scale = radius / gNorm;
            for (int i = lane; i < shape.Dim; i += shape.LanesPerRow) points[rowBase + i] *= scale;
        }
    }
}
