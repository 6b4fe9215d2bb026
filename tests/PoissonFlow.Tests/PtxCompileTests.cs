using System.Reflection;
using ILGPU;
using ILGPU.Backends.EntryPoints;
using ILGPU.Backends.PTX;
using ILGPU.Runtime;
using ILGPU.Runtime.Cuda;
using PoissonFlow.Kernels.Device;

namespace PoissonFlow.Tests;

/// <summary>
/// Compiles every kernel of the library to PTX for sm_90 with ILGPU's PTX backend, no GPU needed. This is CI's
/// only check of the CUDA path: it catches kernels that do not compile for CUDA and BCL calls that become an
/// unresolved <c>.extern .func</c>, which the driver's JIT would reject at load time.
/// </summary>
public sealed class PtxCompileTests
{
    private static readonly string[] LibraryAssemblies = ["PoissonFlow.Kernels", "PoissonFlow.Network", "PoissonFlow.Sampling"];

    /// <summary>Every method marked <see cref="GpuKernelAttribute"/>, once per requested instantiation.</summary>
    public static IEnumerable<TestCaseData> Kernels()
    {
        foreach (var name in LibraryAssemblies)
        {
            var assembly = Assembly.Load(name);
            foreach (var type in assembly.GetTypes())
            {
                foreach (var method in type.GetMethods(BindingFlags.Static | BindingFlags.Public | BindingFlags.NonPublic | BindingFlags.DeclaredOnly))
                {
                    foreach (var attribute in method.GetCustomAttributes<GpuKernelAttribute>())
                    {
                        var entry = attribute.TypeArguments.Length > 0 ? method.MakeGenericMethod(attribute.TypeArguments) : method;
                        string suffix = attribute.TypeArguments.Length > 0 ? $"<{string.Join(",", attribute.TypeArguments.Select(t => t.Name))}>" : "";
                        yield return new TestCaseData(entry).SetArgDisplayNames($"{type.Name}.{method.Name}{suffix}");
                    }
                }
            }
        }
    }

    [Test]
    public void LibraryHasKernelsToCheck() =>
        Assert.That(Kernels().Count(), Is.GreaterThan(0), "no [GpuKernel] methods found: the PTX check would be vacuous");

    [TestCaseSource(nameof(Kernels))]
    public void CompilesToPtxForSm90WithoutUnresolvedCalls(MethodInfo kernel)
    {
        // A fresh context per kernel: one failed compile poisons an ILGPU context for every later compile.
        using var context = Context.Create(builder => builder.EnableAlgorithms().Optimize(OptimizationLevel.O1));
        var architecture = CudaArchitecture.SM_90;
        using var backend = new PTXBackend(context, new CudaCapabilityContext(architecture), architecture, CudaInstructionSet.ISA_88, nvvmAPI: null);
        var first = kernel.GetParameters().FirstOrDefault()?.ParameterType;
        bool implicitlyGrouped = first == typeof(Index1D) || first == typeof(Index2D) || first == typeof(Index3D);
        var entry = implicitlyGrouped
            ? EntryPointDescription.FromImplicitlyGroupedKernel(kernel)
            : EntryPointDescription.FromExplicitlyGroupedKernel(kernel);
        var ptx = ((PTXCompiledKernel)backend.Compile(entry, KernelSpecialization.Empty)).PTXAssembly;
        Assert.That(ptx, Does.Contain(".target sm_80"), "ILGPU targets sm_80 PTX for an sm_90 device");
        Assert.That(ptx, Does.Not.Contain(".extern .func"), "an unresolved call would fail the driver's PTX JIT");
    }
}
