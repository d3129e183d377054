using System.Diagnostics;
using System.Globalization;
using AnomalyVae.Inference;
using AnomalyVae.Model;
using AnomalyVae.Training;
using AnomalyVae.Training.Engine;

namespace AnomalyVae.Tools;

/// <summary>
/// Scoring cost per row for the benchmark configuration (32 numeric features, hidden 128-64, latent 8) at L = 1, 4, 8, 16
/// and, at L = 4, ensembles of K = 2 and 3 VAEs in one file:
/// ONNX Runtime through the bound, allocation-free path at batch 1024, one and two intra-op threads, and the C# engine.
/// </summary>
internal static class ScoringBenchmark
{
    public const int Features = 32;
    public const int Batch = 1024;

    public static void Run(TextWriter output)
    {
        var c = CultureInfo.InvariantCulture;
        var table = SyntheticTable(rows: 8192, seed: 3, quantileMaps: false);
        var mapped = SyntheticTable(rows: 8192, seed: 3, quantileMaps: true);
        int defaultSamples = new VaeTrainingOptions().ScoringSamples;
        output.WriteLine($"model: {Features} numeric features, hidden 128-64, latent 8, batch {Batch}; default L = {defaultSamples}");
        int defaultEnsemble = new VaeTrainingOptions().Ensemble;
        output.WriteLine($"default ensemble K = {defaultEnsemble}: its rows time one model file holding K VAEs");
        output.WriteLine("opt-in: the -ELBO score and a quantile map on every feature (train --score elbo --quantile-map)");
        foreach (var (samples, ensemble, optIn) in new[] { (1, 1, false), (4, 1, false), (4, 1, true), (4, 2, false), (4, 2, true), (4, 3, false), (8, 1, false), (16, 1, false) })
        {
            var options = new VaeTrainingOptions
            {
                Hidden = [128, 64],
                Latent = 8,
                Epochs = 1,
                BatchSize = 256,
                Threads = 2,
                Seed = 1,
                ScoringSamples = samples,
                Ensemble = ensemble,
                ScoreFunction = optIn ? ScoreFunction.NegativeElbo : ScoreFunction.ReconstructionProbability,
            };
            var data = optIn ? mapped : table;
            var trained = Trainer.Train(data, options);
            string label = optIn ? " opt-in" : "";
            byte[] model = trained.ToOnnx();
            foreach (int threads in new[] { 1, 2 })
            {
                using var bundle = ModelBundle.Load(model, "bench", new OnnxSessionOptions { IntraOpThreads = threads });
                using var scorer = bundle.CreateScorer(Batch);
                data.X.AsSpan(0, Batch * Features).CopyTo(scorer.X);
                data.Mask.AsSpan(0, Batch * Features).CopyTo(scorer.Mask);
                double perRow = Measure(() => scorer.Run(Batch));
                output.WriteLine(string.Create(c, $"L={samples,-2} K={ensemble}{label} onnxruntime {threads} thread(s): {perRow * 1e6,7:F3} µs/row  ({1 / perRow,12:N0} rows/s)"));
            }

            if (ensemble > 1)
                continue; // the engine reference scores members one after another: K times the K = 1 line

            var values = data.StandardizedValues().AsSpan(0, Batch * Features).ToArray();
            var mask = data.Mask.AsSpan(0, Batch * Features).ToArray();
            var scores = new float[Batch];
            using var engine = new VaeScorer(trained.Result.Model, 1);
            double enginePerRow = Measure(() => engine.Score(values, mask, scores));
            output.WriteLine(string.Create(c, $"L={samples,-2} K=1{label} C# engine   1 thread(s): {enginePerRow * 1e6,7:F3} µs/row  ({1 / enginePerRow,12:N0} rows/s)"));
        }
    }

    /// <summary>Seconds per row: warm up, then the best of five timed rounds of at least 0.3 s each.</summary>
    private static double Measure(Action batch)
    {
        for (int i = 0; i < 20; i++)
            batch();
        double best = double.MaxValue;
        for (int round = 0; round < 5; round++)
        {
            int batches = 0;
            var clock = Stopwatch.StartNew();
            while (clock.Elapsed.TotalSeconds < 0.3)
            {
                batch();
                batches++;
            }
            best = Math.Min(best, clock.Elapsed.TotalSeconds / (batches * (double)Batch));
        }
        return best;
    }

    /// <summary>
    /// The training benchmark's synthetic numerics as a table in raw units (center 0, scale 1, and a tail squash as
    /// fitted schemas have since 2026-12-05, so the graph timed is the one trained models get), with a quantile map
    /// fitted on each column when asked.
    /// </summary>
    private static FeatureTable SyntheticTable(int rows, int seed, bool quantileMaps)
    {
        var data = TrainingBenchmark.SyntheticData(rows, Features, (ulong)seed);
        var schema = new FeatureSchema(Enumerable.Range(0, Features)
            .Select(j => FittedFeature.Numeric($"f{j}", 0, 1, tailScale: FeatureSchema.TailScaleFloor,
                quantileMap: quantileMaps ? FeatureSchema.FitQuantileMap([.. Enumerable.Range(0, rows).Select(r => (double)data.Values[(r * Features) + j])], 0, 1, FeatureSchema.TailScaleFloor) : null)));
        return new FeatureTable(schema, data.Values, data.Mask);
    }
}
