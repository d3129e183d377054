using System.Diagnostics;
using AnomalyVae.Model;
using AnomalyVae.Training.Engine;

namespace AnomalyVae.Tools;

/// <summary>
/// Training throughput on a fixed configuration, for comparison with training/bench/torch_train_bench.py:
/// 100,000 synthetic rows × 32 numeric features, hidden 128-64, latent 8, batch 256, 2 threads, tanh, per-row variance.
/// Prints rows/s over a few epochs after one warm-up epoch, and bytes allocated per optimizer step.
/// </summary>
public static class TrainingBenchmark
{
    public const int Rows = 100_000;
    public const int Features = 32;
    public const int BatchSize = 256;
    public const int DefaultThreads = 2;

    /// <summary>Runs the benchmark and writes a short report; returns the measured training rows per second.</summary>
    /// <param name="output">Where the report goes.</param>
    /// <param name="epochs">Timed epochs (after one warm-up epoch).</param>
    /// <param name="threads">Worker threads; the reference configuration uses 2.</param>
    public static double Run(TextWriter output, int epochs = 3, int threads = DefaultThreads)
    {
        ArgumentNullException.ThrowIfNull(output);
        ArgumentOutOfRangeException.ThrowIfLessThan(epochs, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(threads, 1);
        var data = SyntheticData(Rows, Features, seed: 1);
        // Per-row variance: the same model as the PyTorch script (a full 128→64 head).
        var options = new VaeTrainingOptions
        {
            Hidden = [128, 64],
            Latent = 8,
            BatchSize = BatchSize,
            Threads = threads,
            NumericVariance = NumericVariance.PerRow,
        }
            .Resolve(data.Rows, data.Layout);
        var network = new VaeNetwork(data.Layout, options.Hidden!, options.Latent!.Value, options.Activation, options.ActivationAlpha,
            options.NumericLogVarMin, options.NumericLogVarMax, perFeatureVariance: options.NumericVariance == NumericVariance.PerFeature);
        var order = Enumerable.Range(0, data.Rows).ToArray();
        using var session = new TrainingSession(data, network, threads, BatchSize, 1, options.LearningRate, options.WeightDecay, order);
        var rng = new DeterministicRandom(7);
        int batches = data.Rows / BatchSize;

        double Epoch()
        {
            rng.Shuffle(order);
            double loss = 0;
            for (int b = 0; b < batches; b++)
                loss += session.Step(order, b * BatchSize, BatchSize, 1f);
            return loss / (batches * BatchSize);
        }

        double warmLoss = Epoch(); // JIT, caches, worker start-up
        long allocatedBefore = GC.GetTotalAllocatedBytes(precise: true);
        var clock = Stopwatch.StartNew();
        double loss = 0;
        for (int e = 0; e < epochs; e++)
            loss = Epoch();
        clock.Stop();
        long allocated = GC.GetTotalAllocatedBytes(precise: true) - allocatedBefore;
        double rowsPerSecond = (double)epochs * batches * BatchSize / clock.Elapsed.TotalSeconds;
        output.WriteLine($"AnomalyVae engine training benchmark: {Rows:N0} rows × {Features} numeric, hidden 128-64, latent 8, " +
            $"batch {BatchSize}, {threads} threads, activation {options.Activation}, {network.ParameterCount:N0} parameters");
        output.WriteLine($"  loss after warm-up epoch {warmLoss:F3}, after {epochs} timed epochs {loss:F3}");
        output.WriteLine($"  {rowsPerSecond:N0} rows/s ({clock.Elapsed.TotalMilliseconds / (epochs * batches):F3} ms per step)");
        output.WriteLine($"  allocated during timed epochs: {allocated:N0} bytes ({(double)allocated / (epochs * batches):F1} per step)");
        return rowsPerSecond;
    }

    /// <summary>Rows from a 4-dimensional latent through fixed nonlinear maps plus noise, already standardized-like.</summary>
    public static VaeDataset SyntheticData(int rows, int features, ulong seed)
    {
        var rng = new DeterministicRandom(seed);
        var loadings = new double[features * 4];
        for (int i = 0; i < loadings.Length; i++)
            loadings[i] = rng.NextGaussian() * 0.8;
        var values = new float[rows * features];
        var latent = new double[4];
        for (int r = 0; r < rows; r++)
        {
            for (int k = 0; k < 4; k++)
                latent[k] = rng.NextGaussian();
            for (int j = 0; j < features; j++)
            {
                double a = 0;
                for (int k = 0; k < 4; k++)
                    a += loadings[j * 4 + k] * latent[k];
                values[r * features + j] = (float)(Math.Tanh(a) * 1.5 + 0.2 * a + 0.1 * rng.NextGaussian());
            }
        }

        var mask = new float[values.Length];
        Array.Fill(mask, 1f);
        return new VaeDataset(Enumerable.Repeat(new VaeFeature(FeatureKind.Numeric), features).ToArray(), values, mask, rows);
    }
}
