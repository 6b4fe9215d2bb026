using PoissonFlow.Kernels.Device;

namespace PoissonFlow.Tests;

/// <summary>
/// One CPU accelerator for the whole test assembly: each accelerator owns hundreds of emulator threads, and
/// several alive at once on a 2-core machine only slow everything down.
/// </summary>
[SetUpFixture]
public sealed class TestDevice
{
    private static ComputeDevice? s_cpu;

    /// <summary>The shared CPU device.</summary>
    public static ComputeDevice Cpu => s_cpu ??= ComputeDevice.Create(DeviceKind.Cpu);

    /// <summary>A CUDA device, or an ignored test when this machine has none.</summary>
    public static ComputeDevice CudaOrIgnore()
    {
        if (!ComputeDevice.CudaAvailable()) Assert.Ignore("no CUDA device on this machine");
        return ComputeDevice.Create(DeviceKind.Cuda);
    }

    [OneTimeTearDown]
    public void DisposeDevices()
    {
        s_cpu?.Dispose();
        s_cpu = null;
    }
}
