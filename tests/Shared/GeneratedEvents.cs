using System.Text;
using AnomalyVae.Events;
using AnomalyVae.Model;
using AnomalyVae.Tools;

namespace AnomalyVae.Tests;

/// <summary>One generated event, copied out of the generator for inspection.</summary>
internal sealed record GeneratedEvent(
    string EventId, int Entity, long UnixMs, string Timestamp, double[] Numbers, string[] Texts, int Label, string Kind)
{
    public double this[int column] => Numbers[column];
}

/// <summary>Ways of running a generator in tests.</summary>
internal static class GeneratedEvents
{
    public static SyntheticStream Create(string domain, long seed, double? anomalyRate = null) => domain switch
    {
        "sensors" => new SensorStream(seed, anomalyRate ?? SensorStream.DefaultAnomalyRate),
        "transactions" => new TransactionStream(seed, anomalyRate ?? TransactionStream.DefaultAnomalyRate),
        _ => throw new ArgumentException(domain, nameof(domain)),
    };

    public static List<GeneratedEvent> Take(SyntheticStream generator, int count)
    {
        var columns = generator.FeatureColumns.Count;
        var events = new List<GeneratedEvent>(count);
        for (var i = 0; i < count; i++)
        {
            generator.Next();
            var numbers = new double[columns];
            var texts = new string[columns];
            for (var c = 0; c < columns; c++)
            {
                if (generator.IsText(c))
                    texts[c] = generator.Text(c);
                else
                    numbers[c] = generator.Number(c);
            }

            events.Add(new GeneratedEvent(
                generator.EventId.ToString(), generator.EntityIndex, generator.TimestampUnixMs, generator.Timestamp.ToString(),
                numbers, texts, generator.Label, generator.AnomalyKind));
        }

        return events;
    }

    /// <summary>
    /// Drops a large event list and hands the memory back to the OS at once. Tests that measure process memory
    /// (ProcessWideMeasurements) run after the parallel ones; without this, the GC would shrink a heap of
    /// hundreds of MB while they measure, which reads as noise in their native-memory figures.
    /// </summary>
    public static void Release(List<GeneratedEvent> events)
    {
        events.Clear();
        events.TrimExcess();
        GC.Collect(2, GCCollectionMode.Aggressive, blocking: true, compacting: true);
    }

    /// <summary>Header plus <paramref name="count"/> records, as the CLI writes them.</summary>
    public static string Csv(SyntheticStream generator, int count)
    {
        var text = new StringWriter();
        using (var csv = new CsvWriter(text))
        {
            generator.WriteCsvHeader(csv);
            for (var i = 0; i < count; i++)
            {
                generator.Next();
                generator.WriteCsvRecord(csv);
            }
        }

        return text.ToString();
    }

    /// <summary>The JSON payloads of <paramref name="count"/> events, one per line.</summary>
    public static byte[] Json(SyntheticStream generator, int count)
    {
        var bytes = new MemoryStream();
        for (var i = 0; i < count; i++)
        {
            generator.Next();
            bytes.Write(generator.EventJson());
            bytes.WriteByte((byte)'\n');
        }

        return bytes.ToArray();
    }

    public static string Utf8(ReadOnlySpan<byte> bytes) => Encoding.UTF8.GetString(bytes);

    public static double Correlation(IReadOnlyList<double> x, IReadOnlyList<double> y)
    {
        double mx = x.Average(), my = y.Average(), sxy = 0, sxx = 0, syy = 0;
        for (var i = 0; i < x.Count; i++)
        {
            sxy += (x[i] - mx) * (y[i] - my);
            sxx += (x[i] - mx) * (x[i] - mx);
            syy += (y[i] - my) * (y[i] - my);
        }

        return sxy / Math.Sqrt(sxx * syy);
    }
}
