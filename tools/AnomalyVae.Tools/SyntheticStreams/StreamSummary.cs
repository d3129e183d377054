using System.Globalization;

namespace AnomalyVae.Tools;

/// <summary>What a generation run emitted and how fast.</summary>
/// <param name="Events">Events emitted (for Kafka: produced and acknowledged).</param>
/// <param name="Anomalies">Of those, injected anomalies.</param>
/// <param name="Elapsed">Wall time from the first event to the last write (for Kafka: the last acknowledgement).</param>
public sealed record StreamSummary(long Events, long Anomalies, TimeSpan Elapsed)
{
    public double EventsPerSecond => Elapsed > TimeSpan.Zero ? Events / Elapsed.TotalSeconds : 0;

    /// <summary>One line for a terminal, e.g. "200000 events (2011 anomalies) in 3.21 s: 62305 events/s".</summary>
    public override string ToString() => string.Create(
        CultureInfo.InvariantCulture, $"{Events} events ({Anomalies} anomalies) in {Elapsed.TotalSeconds:0.00} s: {EventsPerSecond:0} events/s");
}
