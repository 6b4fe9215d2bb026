using PoissonFlow.Kernels.Device;

namespace PoissonFlow.Tests;

public sealed class DeviceTests
{
    [Test]
    public void CpuDeviceEmulatesWarp32AndSixteenBySixteenGroups()
    {
        var device = TestDevice.Cpu;
        Assert.Multiple(() =>
        {
            Assert.That(device.IsCuda, Is.False);
            Assert.That(device.Accelerator.WarpSize, Is.EqualTo(32));
            Assert.That(device.Accelerator.MaxNumThreadsPerGroup, Is.GreaterThanOrEqualTo(256));
            Assert.That(device.Accelerator.NumMultiprocessors, Is.EqualTo(Environment.ProcessorCount));
        });
    }

    [Test]
    public void AskingForCudaWithoutAGpuIsAClearError()
    {
        if (ComputeDevice.CudaAvailable()) Assert.Ignore("this machine has a CUDA device");
        var error = Assert.Throws<DeviceUnavailableException>(() => ComputeDevice.Create(DeviceKind.Cuda).Dispose());
        Assert.That(error!.Message, Does.Contain("CUDA"));
    }

    [TestCase("auto", DeviceKind.Auto)]
    [TestCase("CUDA", DeviceKind.Cuda)]
    [TestCase("cpu", DeviceKind.Cpu)]
    public void ParsesDeviceNames(string text, DeviceKind expected) => Assert.That(ComputeDevice.ParseKind(text), Is.EqualTo(expected));

    [Test]
    public void RejectsUnknownDeviceNames() =>
        Assert.That(() => ComputeDevice.ParseKind("tpu"), Throws.ArgumentException.With.Message.Contains("tpu"));

    [Test, Category("Cuda")]
    public void CudaDeviceIsCreatedWhenPresent()
    {
        using var device = TestDevice.CudaOrIgnore();
        Assert.That(device.IsCuda, Is.True);
    }
}
