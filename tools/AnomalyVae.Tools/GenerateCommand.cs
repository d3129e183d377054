using System.CommandLine;
using System.Globalization;
using AnomalyVae.Cli;
using AnomalyVae.Model;
using AnomalyVae.Streaming;
using Confluent.Kafka;

namespace AnomalyVae.Tools;

/// <summary>
/// <c>generate sensors|transactions</c>: synthetic events with labelled anomalies, to a CSV file (features plus
/// label and anomaly_kind) or to a Kafka topic (JSON payloads keyed by entity id, labels optionally in a side file).
/// </summary>
internal static class GenerateCommand
{
    public static Command Create() =>
        new("generate", "Generate synthetic events with labelled anomalies, to a CSV file or a Kafka topic.")
        {
            Domain("sensors", "Machine fleet readings (temperature, vibration, pressure, rpm, current, status).", isSensors: true),
            Domain("transactions", "Card payments (amount, merchant category, country, channel, hour, new device, distance, …).", isSensors: false),
        };

    private static Command Domain(string name, string description, bool isSensors)
    {
        double defaultRate = isSensors ? SensorStream.DefaultAnomalyRate : TransactionStream.DefaultAnomalyRate;
        var count = new Option<long?>("--count") { Description = "Number of events (with --duration: whichever limit comes first)." };
        var rate = new Option<string?>("--rate") { Description = "Pace production at N events per second, e.g. 5000 or 5000/s (needs --count or --duration)." };
        var duration = new Option<double?>("--duration") { Description = "Stop after S seconds." };
        var anomalyRate = new Option<double>("--anomaly-rate")
        {
            Description = $"Expected fraction of anomalous events, 0..{SyntheticStream.MaxAnomalyRate}.",
            DefaultValueFactory = _ => defaultRate,
        };
        var seed = new Option<long>("--seed") { Description = "Random seed: the same seed and options give the same events.", DefaultValueFactory = _ => 1 };
        var output = new Option<string?>("--out") { Description = "CSV file to write (features plus label and anomaly_kind columns)." };
        var topic = new Option<string?>("--topic") { Description = "Kafka topic to produce JSON events to (key: entity id)." };
        var labels = new Option<string?>("--labels") { Description = "Also write event_id,label,anomaly_kind for every event to this CSV file." };
        var bootstrap = new Option<string>("--bootstrap") { Description = "Kafka bootstrap servers (host:port[,host:port…]).", DefaultValueFactory = _ => "127.0.0.1:9092" };
        var kafkaProperties = new Option<string[]>("--kafka-property")
        {
            Description = "librdkafka property key=value, repeatable (e.g. api.version.request=false for Kafka 0.9).",
            DefaultValueFactory = _ => [],
        };
        var entities = isSensors
            ? new Option<int>("--machines") { Description = "Fleet size.", DefaultValueFactory = _ => SensorStream.DefaultMachines }
            : new Option<int>("--accounts") { Description = "Number of accounts.", DefaultValueFactory = _ => TransactionStream.DefaultAccounts };

        var command = new Command(name, description)
        {
            count, rate, duration, anomalyRate, seed, output, topic, labels, entities, bootstrap, kafkaProperties,
        };
        command.SetAction(async (ParseResult parse, CancellationToken cancellationToken) =>
        {
            string? outPath = parse.GetValue(output);
            string? topicName = parse.GetValue(topic);
            if ((outPath is null) == (topicName is null))
                throw new CliException("give exactly one destination: --out FILE.csv or --topic TOPIC.");
            if (topicName is not null && string.IsNullOrWhiteSpace(topicName))
                throw new CliException("--topic is empty.");
            string? labelsPath = parse.GetValue(labels);
            if (outPath is not null && labelsPath is not null && Path.GetFullPath(outPath) == Path.GetFullPath(labelsPath))
                throw new CliException("--labels must be a different file from --out.");

            var pacer = Pacer(parse.GetValue(count), parse.GetValue(duration), parse.GetValue(rate));
            double anomalies = parse.GetValue(anomalyRate);
            if (!(anomalies >= 0 && anomalies <= SyntheticStream.MaxAnomalyRate))
                throw new CliException($"--anomaly-rate must be between 0 and {SyntheticStream.MaxAnomalyRate.ToString(CultureInfo.InvariantCulture)}; got {anomalies.ToString(CultureInfo.InvariantCulture)}.");
            int entityCount = parse.GetValue(entities);
            if (entityCount < 1 || entityCount > SyntheticStream.MaxEntities)
                throw new CliException($"{entities.Name} must be between 1 and {SyntheticStream.MaxEntities}; got {entityCount}.");
            SyntheticStream generator = isSensors
                ? new SensorStream(parse.GetValue(seed), anomalies, entityCount)
                : new TransactionStream(parse.GetValue(seed), anomalies, entityCount);

            using var labelsFile = labelsPath is null ? null : CsvWriter.Create(CliRun.OutputFile(labelsPath));
            StreamSummary summary;
            string destination;
            if (outPath is not null)
            {
                summary = await WriteCsvAsync(generator, CliRun.OutputFile(outPath), pacer, labelsFile, cancellationToken);
                destination = outPath;
            }
            else
            {
                var config = SyntheticStreamProducer.ProducerConfig(KafkaOptions(parse.GetValue(bootstrap)!, parse.GetValue(kafkaProperties)!));
                try
                {
                    summary = await SyntheticStreamProducer.ProduceAsync(generator, topicName!, config, pacer, labelsFile, cancellationToken);
                }
                catch (KafkaException e)
                {
                    throw new CliException($"Kafka: {e.Error.Reason}");
                }

                destination = $"topic '{topicName}'";
            }

            labelsFile?.Flush();
            Console.WriteLine($"generated {generator.Domain} to {destination}: {summary}");
            return 0;
        });
        return command;
    }

    private static async Task<StreamSummary> WriteCsvAsync(
        SyntheticStream generator, string path, EventPacer pacer, CsvWriter? labels, CancellationToken cancellationToken)
    {
        long anomalies = 0;
        using (var csv = CsvWriter.Create(path))
        {
            generator.WriteCsvHeader(csv);
            if (labels is not null)
                labels.WriteRecord(SyntheticStream.LabelsHeader);
            int n;
            while ((n = await pacer.NextBatchAsync(4096, cancellationToken)) > 0)
            {
                for (int i = 0; i < n; i++)
                {
                    generator.Next();
                    generator.WriteCsvRecord(csv);
                    if (labels is not null)
                        generator.WriteLabelRecord(labels);
                    anomalies += generator.Label;
                }
            }
        }

        return new StreamSummary(pacer.Released, anomalies, pacer.Elapsed);
    }

    private static EventPacer Pacer(long? count, double? durationSeconds, string? rateText)
    {
        if (count is <= 0)
            throw new CliException($"--count must be positive; got {count}.");
        if (durationSeconds is { } d && !(d > 0 && d <= TimeSpan.MaxValue.TotalSeconds))
            throw new CliException($"--duration must be a positive number of seconds; got {d.ToString(CultureInfo.InvariantCulture)}.");
        if (count is null && durationSeconds is null)
            throw new CliException(rateText is null ? "give --count N or --duration S (or both)." : "--rate needs --count N or --duration S.");
        double? rate = rateText is null ? null : ParseRate(rateText);
        return new EventPacer(count, durationSeconds is { } s ? TimeSpan.FromSeconds(s) : null, rate);
    }

    /// <summary>"5000", "5000/s" or "2.5e4/s".</summary>
    private static double ParseRate(string text)
    {
        var number = text.Trim();
        if (number.EndsWith("/s", StringComparison.OrdinalIgnoreCase))
            number = number[..^2];
        if (!double.TryParse(number, NumberStyles.Float, CultureInfo.InvariantCulture, out double rate) || !(rate > 0) || !double.IsFinite(rate))
            throw new CliException($"--rate must be a positive number of events per second, e.g. 5000/s; got '{text}'.");
        return rate;
    }

    internal static KafkaOptions KafkaOptions(string bootstrap, string[] properties)
    {
        if (string.IsNullOrWhiteSpace(bootstrap))
            throw new CliException("--bootstrap is empty; give host:port.");
        var options = new KafkaOptions { BootstrapServers = bootstrap };
        foreach (var property in properties)
        {
            int equals = property.IndexOf('=', StringComparison.Ordinal);
            if (equals <= 0 || equals == property.Length - 1)
                throw new CliException($"--kafka-property must be key=value; got '{property}'.");
            options.Properties[property[..equals].Trim()] = property[(equals + 1)..].Trim();
        }

        return options;
    }
}
