using AnomalyVae.Events;
using AnomalyVae.Model;
using AnomalyVae.Tests;
using AnomalyVae.Tools;

namespace AnomalyVae.UnitTests.Tools;

/// <summary>
/// The two outputs of a generator describe the same events: a model trained on the CSV (spec inferred, schema
/// fitted) sees, through the service's <see cref="EventDecoder"/>, exactly the same raw input from the JSON events.
/// </summary>
public class SyntheticStreamDecodingTests
{
    [Theory]
    [InlineData("sensors")]
    [InlineData("transactions")]
    public void DecoderReadsEachJsonEventAsTheCsvRowOfTheSameEvent(string domain)
    {
        const int Events = 20_000;
        var path = Path.Combine(Path.GetTempPath(), $"anomalyvae-decode-{Guid.NewGuid():N}.csv");
        try
        {
            var generator = GeneratedEvents.Create(domain, seed: 21, anomalyRate: 0.05);
            File.WriteAllText(path, GeneratedEvents.Csv(generator, Events));
            var (header, rows) = SpecInference.ReadSample(path);
            var schema = FeatureSchema.Fit(SpecInference.Infer(header, rows), path);
            var table = FeatureTable.Load(path, schema);
            Assert.Equal(Events, table.RowCount);

            var replay = GeneratedEvents.Create(domain, seed: 21, anomalyRate: 0.05);
            var decoder = new EventDecoder(schema, entityField: replay.EntityColumn, timeField: SyntheticStream.TimestampColumn);
            var x = new float[schema.Count];
            var mask = new float[schema.Count];
            for (var row = 0; row < Events; row++)
            {
                replay.Next();
                var payload = replay.EventJson();
                var result = decoder.Decode(payload, x, mask);
                Assert.True(result.IsSuccess, $"event {replay.EventId}: {result}");
                Assert.Equal(table.RowX(row).ToArray(), x);
                Assert.Equal(table.RowMask(row).ToArray(), mask);
                Assert.Equal(replay.EntityId, result.Entity.GetString(payload));
                Assert.Equal(replay.TimestampUnixMs, result.EventTime!.Value.ToUnixTimeMilliseconds());
            }
        }
        finally
        {
            File.Delete(path);
        }
    }
}
