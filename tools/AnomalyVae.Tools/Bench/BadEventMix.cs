using System.Globalization;
using AnomalyVae.Cli;
using AnomalyVae.Inference;
using AnomalyVae.Model;

namespace AnomalyVae.Tools;

/// <summary>
/// <c>bench mix-bad-events</c>: copies a file of JSON events (one per line) and replaces a seeded random fraction
/// of them with bad variants from <see cref="BadEventStream"/>, for the fuzz-mix stage of
/// deploy/local/bench-pipeline.sh. Prints how many of each dead-letter reason it wrote.
/// </summary>
internal static class BadEventMix
{
    public static int Run(string modelPath, string input, string output, double fraction, long seed, string? entityField, string? timeField,
        int maxPayloadBytes, TextWriter report)
    {
        if (!(fraction >= 0 && fraction <= 1))
            throw new CliException($"--fraction must be between 0 and 1; got {fraction.ToString(CultureInfo.InvariantCulture)}.");
        if (maxPayloadBytes < 2)
            throw new CliException($"--max-payload-bytes must be at least 2; got {maxPayloadBytes}.");
        FeatureSchema schema;
        using (var bundle = ModelBundle.Load(modelPath))
            schema = bundle.Schema;
        var generator = new BadEventStream(schema, entityField, timeField, maxPayloadBytes, seed: seed);
        var pick = new DeterministicRandom(unchecked((ulong)seed), stream: 1);
        var counts = new SortedDictionary<string, long>(StringComparer.Ordinal);
        long lines = 0, bad = 0;
        using var reader = new StreamReader(input);
        using var writer = new FileStream(output, FileMode.Create, FileAccess.Write, FileShare.None, 1 << 16);
        while (reader.ReadLine() is { } line)
        {
            lines++;
            var valid = System.Text.Encoding.UTF8.GetBytes(line);
            if (pick.NextDouble() < fraction)
            {
                BadEvent fault;
                try
                {
                    // kcat -l skips empty lines, so an empty payload would not reach the topic: draw another.
                    do
                        fault = generator.Next(valid);
                    while (fault.Payload.Length == 0);
                }
                catch (ArgumentException e)
                {
                    throw new CliException($"{input} line {lines}: {e.Message}");
                }
                writer.Write(fault.Payload);
                counts[fault.Reason] = counts.GetValueOrDefault(fault.Reason) + 1;
                bad++;
            }
            else
            {
                writer.Write(valid);
            }
            writer.WriteByte((byte)'\n');
        }
        report.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"{lines} events, {bad} replaced by bad ones: {string.Join(", ", counts.Select(c => $"{c.Key} {c.Value}"))}"));
        return 0;
    }
}
