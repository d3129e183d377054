using AnomalyVae.Inference;
using AnomalyVae.Model;
using AnomalyVae.Tests;
using AnomalyVae.Training;
using AnomalyVae.Training.Engine;
using Xunit.Abstractions;

namespace AnomalyVae.QualityTests;

/// <summary>
/// On data with a known anomaly mechanism (broken correlations), the calibrated threshold must hold its
/// false-positive rate on fresh normal rows and still catch the anomalies.
/// </summary>
public sealed class CalibrationOnGeneratedDataTests(ITestOutputHelper output) : IDisposable
{
    private readonly string _directory = Directory.CreateTempSubdirectory("avae-calibration-").FullName;

    [Theory]
    [InlineData(0.05)]
    [InlineData(0.02)]
    public void FlaggedFractionOnHeldOutNormalRowsIsNearTheTarget(double targetFpr)
    {
        string train = MixedData.WriteCsv(_directory, "train.csv", rows: 6000, seed: 21);
        var options = new VaeTrainingOptions { Hidden = [32, 16], Latent = 3, Epochs = 15, Threads = 2, Seed = 3, ValidationFraction = 0.25 };
        var trained = Trainer.Train(train, FeatureSpec.Parse(MixedData.SpecJson), options, targetFpr);
        using var bundle = ModelBundle.Load(trained.ToOnnx(), "calibration-test");

        var normal = FeatureTable.Load(MixedData.WriteCsv(_directory, "normal.csv", rows: 5000, seed: 22), bundle.Schema);
        var scores = bundle.Score(normal).Scores;
        double flagged = scores.Count(s => bundle.Calibration.IsAnomalous(s)) / (double)scores.Length;
        Assert.InRange(flagged, 0.5 * targetFpr, 1.5 * targetFpr);

        var mixed = FeatureTable.Load(MixedData.WriteCsv(_directory, "mixed.csv", rows: 3000, seed: 23, anomalyRate: 0.1), bundle.Schema, ["label"]);
        int[] labels = mixed.GetLabels("label");
        var mixedScores = bundle.Score(mixed).Scores;
        int anomalies = labels.Count(l => l == 1);
        int caught = Enumerable.Range(0, labels.Length).Count(i => labels[i] == 1 && bundle.Calibration.IsAnomalous(mixedScores[i]));
        output.WriteLine($"target FPR {targetFpr:P1}: flagged {flagged:P2} of fresh normal rows; caught {caught}/{anomalies} injected anomalies");
        Assert.True(caught > 0.8 * anomalies, $"caught {caught} of {anomalies} injected anomalies");
    }

    public void Dispose() => Directory.Delete(_directory, recursive: true);
}
