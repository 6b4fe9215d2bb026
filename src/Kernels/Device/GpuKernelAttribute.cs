namespace PoissonFlow.Kernels.Device;

/// <summary>
/// Marks a static method as an ILGPU kernel entry point so that the test suite can compile every kernel of the
/// library to PTX for sm_90 without a GPU and reject unresolved calls. Generic kernels name the type arguments
/// to compile them with.
/// </summary>
[AttributeUsage(AttributeTargets.Method, AllowMultiple = true)]
public sealed class GpuKernelAttribute : Attribute
{
    /// <summary>Marks a non-generic kernel, or a generic one compiled with <paramref name="typeArguments"/>.</summary>
    public GpuKernelAttribute(params Type[] typeArguments) => TypeArguments = typeArguments;

    /// <summary>Type arguments for a generic kernel; empty for a plain one.</summary>
    public Type[] TypeArguments { get; }
}
