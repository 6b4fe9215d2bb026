namespace PoissonFlow.Kernels.Device;

/// <summary>Which accelerator a <see cref="ComputeDevice"/> runs on.</summary>
public enum DeviceKind
{
    /// <summary>CUDA when an NVIDIA device is present, otherwise the ILGPU CPU accelerator.</summary>
    Auto,

    /// <summary>An NVIDIA GPU through CUDA; an error when none is present.</summary>
    Cuda,

    /// <summary>ILGPU's CPU accelerator (a functional emulator of GPU threads: correct, not fast).</summary>
    Cpu,
}

/// <summary>Thrown when the requested accelerator does not exist on this machine.</summary>
public sealed class DeviceUnavailableException : Exception
{
    /// <summary>Creates the exception with a message that names the missing device.</summary>
    public DeviceUnavailableException(string message) : base(message) { }
}
