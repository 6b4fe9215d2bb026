using System.Buffers.Binary;
using System.Text;
using System.Text.Json;
using TorchSharp;
using static TorchSharp.torch;

// The PoissonFlow sample app's job with TorchSharp: load a 2-D posterior-mean MLP checkpoint (safetensors with the
// PoissonFlow sampling card), draw the PFGM prior, integrate the backward ODE with Heun in ln z (30 steps, as the
// sample app) and write the samples as .npy. Usage: PoissonFlow.TorchSampleApp MODEL.safetensors [OUTPUT] [COUNT]
if (args.Length == 0) { Console.Error.WriteLine("usage: PoissonFlow.TorchSampleApp MODEL.safetensors [OUTPUT] [COUNT]"); return 2; }
string output = args.Length > 1 ? args[1] : "samples.npy";
int count = args.Length > 2 ? int.Parse(args[2]) : 1000;
var (tensors, metadata) = SafeTensors.Read(args[0]);
using var config = JsonDocument.Parse(metadata["model_config"]);
using var card = JsonDocument.Parse(metadata["pfgm_sampling"]);
int dim = config.RootElement.GetProperty("dim").GetInt32(), depth = config.RootElement.GetProperty("depth").GetInt32();
int embedding = config.RootElement.GetProperty("embedding_size").GetInt32();
bool logZ = config.RootElement.GetProperty("embedding_input").GetString() == "log_z";
if (metadata["model_type"] != "mlp" || config.RootElement.GetProperty("activation").GetString() != "silu"
    || !card.RootElement.TryGetProperty("posterior_mean_scale", out var scaleJson))
{
    Console.Error.WriteLine("this comparison app handles posterior-mean MLPs with SiLU only");
    return 2;
}

double scale = scaleJson.GetDouble(), zMin = card.RootElement.GetProperty("z_min").GetDouble();
var hyper = card.RootElement.GetProperty("hyper");
double zMax = hyper.GetProperty("z_max").GetDouble(), upperNorm = hyper.GetProperty("upper_norm").GetDouble();
using var noGrad = torch.no_grad();
torch.manual_seed(1);
// EMA weights, as PoissonFlow samples with.
var weights = Enumerable.Range(0, depth + 1).Select(l => (W: tensors[$"ema.layers.{l}.weight"], B: tensors[$"ema.layers.{l}.bias"])).ToArray();
int half = embedding / 2;
var frequencies = torch.exp(torch.arange(half, dtype: float64) * (-Math.Log(10000.0) / (half - 1))).to(float32);

Tensor Field(Tensor x, double z)
{
    // Posterior-mean network: x scaled by 1/sqrt(|x|^2 + z^2 + c^2), [x, sin, cos of (ln) z * freq] -> MLP -> ybar.
    var zColumn = torch.full(x.shape[0], 1, logZ ? Math.Log(Math.Max(z, 1e-10)) : z, dtype: float32);
    var scaled = x / torch.sqrt((x * x).sum(1, keepdim: true) + z * z + scale * scale);
    var angles = zColumn * frequencies.unsqueeze(0);
    var h = torch.cat([scaled, torch.sin(angles), torch.cos(angles)], 1);
    for (int l = 0; l <= depth; l++)
    {
        h = torch.nn.functional.linear(h, weights[l].W, weights[l].B);
        if (l < depth) h = torch.nn.functional.silu(h);
    }

    var difference = h.narrow(1, 0, dim) - x;
    var norm = torch.sqrt((difference * difference).sum(1, keepdim: true) + z * z);
    var vx = difference * (Math.Sqrt(dim) / norm);
    var vz = -Math.Sqrt(dim) * z / norm;
    return vx / (vz + 1e-5) * z;   // z dx/dz: the drift in t = ln z
}

// Prior: radius z_max |g|/|h| clipped to [1, upper_norm], direction g/|g|.
var g = torch.randn(count, dim);
var radius = torch.clamp(zMax * g.norm(1, keepdim: true) / torch.randn(count, 1).abs(), 1, upperNorm);
var points = g / g.norm(1, keepdim: true) * radius;
const int steps = 30;
double dt = Math.Log(zMin / zMax) / steps;
for (int i = 0; i < steps; i++)
{
    double z = zMax * Math.Pow(zMin / zMax, (double)i / steps), zNext = i == steps - 1 ? zMin : zMax * Math.Pow(zMin / zMax, (double)(i + 1) / steps);
    var drift = Field(points, z);
    points = i < steps - 1 ? points + dt / 2 * (drift + Field(points + dt * drift, zNext)) : points + dt * drift;
}

var values = points.contiguous().data<float>().ToArray();
Npy.Write(output, values, count, dim);
Console.WriteLine($"{count} samples of shape [{dim}] with TorchSharp on the CPU: {output}");
return 0;

/// <summary>Reads the float32 tensors and the metadata of a safetensors file.</summary>
internal static class SafeTensors
{
    public static (Dictionary<string, Tensor>, Dictionary<string, string>) Read(string path)
    {
        byte[] bytes = File.ReadAllBytes(path);
        int headerLength = (int)BinaryPrimitives.ReadUInt64LittleEndian(bytes);
        using var header = JsonDocument.Parse(bytes.AsMemory(8, headerLength));
        var tensors = new Dictionary<string, Tensor>();
        var metadata = new Dictionary<string, string>();
        foreach (var entry in header.RootElement.EnumerateObject())
        {
            if (entry.Name == "__metadata__")
            {
                foreach (var item in entry.Value.EnumerateObject()) metadata[item.Name] = item.Value.GetString()!;
                continue;
            }

            long[] shape = [.. entry.Value.GetProperty("shape").EnumerateArray().Select(d => d.GetInt64())];
            var offsets = entry.Value.GetProperty("data_offsets");
            int start = 8 + headerLength + (int)offsets[0].GetInt64(), end = 8 + headerLength + (int)offsets[1].GetInt64();
            var data = new float[(end - start) / 4];
            Buffer.BlockCopy(bytes, start, data, 0, end - start);
            tensors[entry.Name] = torch.tensor(data, shape);
        }

        return (tensors, metadata);
    }
}

/// <summary>Writes a float32 .npy array.</summary>
internal static class Npy
{
    public static void Write(string path, float[] values, int rows, int columns)
    {
        string dict = $"{{'descr': '<f4', 'fortran_order': False, 'shape': ({rows}, {columns}), }}";
        int padded = (dict.Length + 11 + 63) / 64 * 64;
        string header = dict.PadRight(padded - 11) + "\n";
        using var file = File.Create(path);
        file.Write([0x93, .. "NUMPY"u8, 1, 0]);
        file.Write(BitConverter.GetBytes((ushort)header.Length));
        file.Write(Encoding.ASCII.GetBytes(header));
        var bytes = new byte[values.Length * 4];
        Buffer.BlockCopy(values, 0, bytes, 0, bytes.Length);
        file.Write(bytes);
    }
}
