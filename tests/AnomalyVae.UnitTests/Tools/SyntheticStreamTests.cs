using System.Globalization;
using System.Text;
using System.Text.Json;
using AnomalyVae.Events;
using AnomalyVae.Model;
using AnomalyVae.Tests;
using AnomalyVae.Tools;

namespace AnomalyVae.UnitTests.Tools;

/// <summary>What both generators promise: determinism, anomaly rate, payload shape, CSV that the feature code reads.</summary>
public class SyntheticStreamTests
{
    public static TheoryData<string> Domains => ["sensors", "transactions"];

    [Theory]
    [MemberData(nameof(Domains))]
    public void SameSeedGivesByteIdenticalCsvAndJson(string domain)
    {
        Assert.Equal(
            GeneratedEvents.Csv(GeneratedEvents.Create(domain, seed: 42), 20_000),
            GeneratedEvents.Csv(GeneratedEvents.Create(domain, seed: 42), 20_000));
        Assert.Equal(
            GeneratedEvents.Json(GeneratedEvents.Create(domain, seed: 42), 20_000),
            GeneratedEvents.Json(GeneratedEvents.Create(domain, seed: 42), 20_000));
    }

    [Theory]
    [MemberData(nameof(Domains))]
    public void DifferentSeedsGiveDifferentEvents(string domain)
    {
        // Compare what follows the event id (which contains the seed anyway): the readings themselves.
        static string[] Bodies(string csv) => [.. csv.Split('\n').Skip(1).Select(line => line[(line.IndexOf(',', StringComparison.Ordinal) + 1)..])];
        var a = Bodies(GeneratedEvents.Csv(GeneratedEvents.Create(domain, seed: 1), 5000));
        var b = Bodies(GeneratedEvents.Csv(GeneratedEvents.Create(domain, seed: 2), 5000));
        Assert.Equal(a.Length, b.Length);
        var same = a.Zip(b).Count(p => p.First == p.Second);
        Assert.True(same < a.Length / 100, $"{same} of {a.Length} rows identical across seeds");
    }

    [Theory]
    [InlineData("sensors", null)]
    [InlineData("sensors", 0.05)]
    [InlineData("transactions", null)]
    [InlineData("transactions", 0.02)]
    public void AnomalousFractionIsCloseToTheRate(string domain, double? rate)
    {
        var generator = GeneratedEvents.Create(domain, seed: 3, rate);
        const int Events = 300_000;
        long anomalies = 0;
        for (var i = 0; i < Events; i++)
        {
            generator.Next();
            anomalies += generator.Label;
            Assert.Equal(generator.Label == 1, generator.AnomalyKind.Length > 0);
        }

        var fraction = anomalies / (double)Events;
        Assert.InRange(fraction, generator.AnomalyRate * 0.85, generator.AnomalyRate * 1.15);
    }

    [Theory]
    [MemberData(nameof(Domains))]
    public void RateZeroGivesNoAnomalies(string domain)
    {
        var generator = GeneratedEvents.Create(domain, seed: 3, anomalyRate: 0);
        Assert.All(GeneratedEvents.Take(generator, 50_000), e => Assert.Equal(0, e.Label));
    }

    [Theory]
    [MemberData(nameof(Domains))]
    public void EveryKindAppearsWithASimilarShare(string domain)
    {
        var generator = GeneratedEvents.Create(domain, seed: 5);
        var counts = GeneratedEvents.Take(generator, 300_000).Where(e => e.Label == 1).GroupBy(e => e.Kind).ToDictionary(g => g.Key, g => g.Count());
        Assert.Equal(generator.AnomalyKinds.Order(), counts.Keys.Order());
        var total = counts.Values.Sum();
        foreach (var (kind, count) in counts)
            Assert.InRange(count / (double)total, 0.5 / counts.Count, 1.6 / counts.Count);
    }

    [Theory]
    [MemberData(nameof(Domains))]
    public void JsonEventsCarryTheFeaturesAndNoLabels(string domain)
    {
        var generator = GeneratedEvents.Create(domain, seed: 9, anomalyRate: 0.2);
        string[] expectedNames = [SyntheticStream.EventIdColumn, generator.EntityColumn, SyntheticStream.TimestampColumn, .. generator.FeatureColumns];
        var ids = new HashSet<string>(StringComparer.Ordinal);
        for (var i = 0; i < 5000; i++)
        {
            generator.Next();
            using var json = JsonDocument.Parse(generator.EventJson().ToArray());
            var root = json.RootElement;
            Assert.Equal(expectedNames, root.EnumerateObject().Select(p => p.Name));
            Assert.True(ids.Add(root.GetProperty("event_id").GetString()!));
            Assert.Equal(generator.EventId.ToString(), root.GetProperty("event_id").GetString());
            Assert.Equal(generator.EntityId, root.GetProperty(generator.EntityColumn).GetString());
            var ts = DateTime.Parse(root.GetProperty("ts").GetString()!, CultureInfo.InvariantCulture, DateTimeStyles.AdjustToUniversal | DateTimeStyles.AssumeUniversal);
            Assert.Equal(generator.TimestampUnixMs, (ts - DateTime.UnixEpoch).Ticks / TimeSpan.TicksPerMillisecond);
            for (var c = 0; c < generator.FeatureColumns.Count; c++)
            {
                var value = root.GetProperty(generator.FeatureColumns[c]);
                if (generator.IsText(c))
                    Assert.Equal(generator.Text(c), value.GetString());
                else
                    Assert.Equal(generator.Number(c), value.GetDouble());
            }
        }

        Assert.DoesNotContain("label", Encoding.UTF8.GetString(generator.EventJson()), StringComparison.OrdinalIgnoreCase);
        Assert.DoesNotContain("anomaly", Encoding.UTF8.GetString(generator.EventJson()), StringComparison.OrdinalIgnoreCase);
    }

    [Theory]
    [MemberData(nameof(Domains))]
    public void NumbersAreWrittenInTheirShortestRoundTripForm(string domain)
    {
        // The fixed-point formatter must agree with .NET's "R" for every value it writes.
        using var reader = new CsvReader(new StringReader(GeneratedEvents.Csv(GeneratedEvents.Create(domain, seed: 10, anomalyRate: 0.1), 20_000)));
        var check = GeneratedEvents.Create(domain, seed: 10, anomalyRate: 0.1);
        while (reader.ReadRecord())
        {
            check.Next();
            for (var c = 0; c < check.FeatureColumns.Count; c++)
            {
                if (!check.IsText(c))
                    Assert.Equal(check.Number(c).ToString("R", CultureInfo.InvariantCulture), reader.GetString(3 + c));
            }
        }

        Assert.Equal(20_000, check.Generated);
    }

    [Theory]
    [MemberData(nameof(Domains))]
    public void CsvRecordsMatchTheEventsAndCarryTheLabels(string domain)
    {
        var events = GeneratedEvents.Take(GeneratedEvents.Create(domain, seed: 4, anomalyRate: 0.05), 10_000);
        var generator = GeneratedEvents.Create(domain, seed: 4, anomalyRate: 0.05);
        using var reader = new CsvReader(new StringReader(GeneratedEvents.Csv(generator, 10_000)));
        Assert.Equal(generator.CsvHeader, reader.Header);
        var label = reader.IndexOf("label");
        var kind = reader.IndexOf("anomaly_kind");
        var rows = 0;
        while (reader.ReadRecord())
        {
            var e = events[rows++];
            Assert.Equal(e.EventId, reader.GetString(0));
            Assert.Equal(e.Timestamp, reader.GetString(2));
            Assert.Equal(e.Label.ToString(CultureInfo.InvariantCulture), reader.GetString(label));
            Assert.Equal(e.Kind, reader.GetString(kind));
        }

        Assert.Equal(10_000, rows);
        Assert.Contains(events, e => e.Label == 1);
    }

    [Theory]
    [MemberData(nameof(Domains))]
    public void TimeMovesForwardAndEventIdsAreUnique(string domain)
    {
        var events = GeneratedEvents.Take(GeneratedEvents.Create(domain, seed: 6), 100_000);
        Assert.Equal(events.Count, events.Select(e => e.EventId).Distinct(StringComparer.Ordinal).Count());
        for (var i = 1; i < events.Count; i++)
            Assert.True(events[i].UnixMs >= events[i - 1].UnixMs, $"event {i} goes back in time");
        Assert.Equal(SyntheticStream.DefaultStart, DateTime.UnixEpoch.AddMilliseconds(events[0].UnixMs).Date);
        Assert.True(events[^1].UnixMs - events[0].UnixMs > 86_400_000, "100k events span more than a day, so daily cycles show");
    }

    [Fact]
    public void SpecInferenceReadsGeneratedSensorCsvSensibly()
    {
        var decisions = InferFromCsv(new SensorStream(seed: 11));
        Assert.Equal(
            new Dictionary<string, FeatureKind?>
            {
                ["event_id"] = null,
                ["machine_id"] = null,
                ["ts"] = null,
                ["temperature"] = FeatureKind.Numeric,
                ["vibration"] = FeatureKind.Numeric,
                ["pressure"] = FeatureKind.Numeric,
                ["rpm"] = FeatureKind.Numeric,
                ["current"] = FeatureKind.Numeric,
                ["status"] = FeatureKind.Categorical,
                ["label"] = null,
                ["anomaly_kind"] = null,
            },
            decisions);
    }

    [Fact]
    public void SpecInferenceReadsGeneratedTransactionCsvSensibly()
    {
        var decisions = InferFromCsv(new TransactionStream(seed: 11));
        Assert.Equal(
            new Dictionary<string, FeatureKind?>
            {
                ["event_id"] = null,
                ["account_id"] = null,
                ["ts"] = null,
                ["amount"] = FeatureKind.Numeric,
                ["merchant_category"] = FeatureKind.Categorical,
                ["country"] = FeatureKind.Categorical,
                ["channel"] = FeatureKind.Categorical,
                ["hour"] = FeatureKind.Numeric,
                ["device_new"] = FeatureKind.Binary,
                ["distance_from_home_km"] = FeatureKind.Numeric,
                ["account_avg_amount"] = FeatureKind.Numeric,
                ["minutes_since_last"] = FeatureKind.Numeric,
                ["amount_to_avg"] = FeatureKind.Numeric,
                // A small count: in the first 10,000 payments of 10,000 accounts it takes fewer than 10 distinct
                // values, which the inference rules read as integer codes.
                ["payments_last_hour"] = FeatureKind.Categorical,
                ["foreign_country"] = FeatureKind.Binary,
                ["label"] = null,
                ["anomaly_kind"] = null,
            },
            decisions);
    }

    [Fact]
    public void InvalidSettingsAreRejected()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => new SensorStream(anomalyRate: -0.01));
        Assert.Throws<ArgumentOutOfRangeException>(() => new SensorStream(anomalyRate: 0.51));
        Assert.Throws<ArgumentOutOfRangeException>(() => new TransactionStream(anomalyRate: double.NaN));
        Assert.Throws<ArgumentOutOfRangeException>(() => new SensorStream(machines: 0));
        Assert.Throws<ArgumentOutOfRangeException>(() => new TransactionStream(accounts: SyntheticStream.MaxEntities + 1));
        Assert.Throws<ArgumentException>(() => new SensorStream(start: new DateTime(2024, 1, 1, 0, 0, 0, DateTimeKind.Local)));
    }

    [Fact]
    public void EntityIdsArePaddedToTheFleetSize()
    {
        var small = new SensorStream(machines: 20);
        small.Next();
        Assert.Equal("m000", small.EntityId);
        var large = new TransactionStream(accounts: 123_456);
        for (var i = 0; i < 100; i++)
        {
            large.Next();
            Assert.Equal(7, large.EntityId.Length); // a + 6 digits
            Assert.Equal(large.EntityIndex, int.Parse(large.EntityId.AsSpan(1), CultureInfo.InvariantCulture));
        }
    }

    private static Dictionary<string, FeatureKind?> InferFromCsv(SyntheticStream generator)
    {
        var path = Path.Combine(Path.GetTempPath(), $"anomalyvae-gen-{Guid.NewGuid():N}.csv");
        try
        {
            using (var csv = CsvWriter.Create(path))
            {
                generator.WriteCsvHeader(csv);
                for (var i = 0; i < SpecInference.DefaultSampleRows; i++)
                {
                    generator.Next();
                    generator.WriteCsvRecord(csv);
                }
            }

            var (header, rows) = SpecInference.ReadSample(path);
            Assert.Equal(SpecInference.DefaultSampleRows, rows.Count);
            return SpecInference.Decide(header, rows).ToDictionary(d => d.Column, d => d.Kind);
        }
        finally
        {
            File.Delete(path);
        }
    }
}
