using System.Diagnostics;
using AnomalyVae.Inference;
using AnomalyVae.Tests;
using Xunit.Abstractions;

namespace AnomalyVae.QualityTests;

/// <summary>
/// Prints, for the record, what one row costs through the binding for a small MLP at batch 1024. Asserts only
/// that the bench computed the right thing: timings vary by machine and load and are never pass/fail here.
/// </summary>
[Collection(nameof(ProcessWideMeasurements))]
public sealed class OnnxThroughputBench(ITestOutputHelper output)
{
    private const int Rows = 1024;
    private const int Batches = 300;

    [Theory]
    [InlineData(1)]
    [InlineData(0)]
    public void Small_mlp_cost_per_row_at_batch_1024(int intraOpThreads)
    {
        var mlp = TestModels.MlpModel(inputs: 32, hidden: 64, outputs: 32, seed: 11);
        using var session = OnnxSession.FromBytes(mlp.Model, new OnnxSessionOptions { IntraOpThreads = intraOpThreads });
        var x = GC.AllocateArray<float>(Rows * mlp.Inputs, pinned: true);
        var y = GC.AllocateArray<float>(Rows * mlp.Outputs, pinned: true);
        var total = GC.AllocateArray<float>(Rows, pinned: true);
        TestModels.Values(new Random(3), x.Length).CopyTo(x, 0);
        using var binding = session.Bind([new("x", x)], [new("y", y), new("total", total)]);

        for (var i = 0; i < 30; i++)
        {
            binding.Run(Rows);
        }

        var clock = Stopwatch.StartNew();
        for (var i = 0; i < Batches; i++)
        {
            binding.Run(Rows);
        }

        clock.Stop();
        var bound = clock.Elapsed.TotalNanoseconds / Batches;

        var convenienceClock = Stopwatch.StartNew();
        for (var i = 0; i < Batches / 10; i++)
        {
            _ = session.Run(new FloatTensor("x", x, Rows, mlp.Inputs));
        }

        convenienceClock.Stop();
        var convenience = convenienceClock.Elapsed.TotalNanoseconds / (Batches / 10);

        output.WriteLine(
            $"MLP 32-64-32 (+row sum), batch {Rows}, intra-op threads {(intraOpThreads == 0 ? "ORT default" : intraOpThreads)}, " +
            $"{Environment.ProcessorCount} cores: bound {bound / 1000:F1} µs/batch = {bound / Rows:F1} ns/row; " +
            $"convenience Run {convenience / 1000:F1} µs/batch = {convenience / Rows:F1} ns/row");
        var (expectedY, expectedTotal) = mlp.Reference(x, Rows);
        TestModels.AssertClose(expectedY, y, 1e-4f);
        TestModels.AssertClose(expectedTotal, total, 1e-4f);
    }
}
