using System.CommandLine;
using AnomalyVae.Cli;
using AnomalyVae.Events;
using AnomalyVae.Model;
using AnomalyVae.Streaming;
using AnomalyVae.Training.Engine;

namespace AnomalyVae.Tools;

/// <summary><c>bench</c>: benchmarks that print numbers (speed goals live here, not in tests).</summary>
internal static class BenchCommands
{
    public static Command Bench()
    {
        var score = new Command("score", "ONNX Runtime batch scoring cost per row at batch 1024 (and the C# engine's, for comparison).");
        score.SetAction(_ => { ScoringBenchmark.Run(Console.Out); return 0; });
        var epochs = new Option<int>("--epochs") { Description = "Timed epochs after a warm-up.", DefaultValueFactory = _ => 3 };
        var train = new Command("train", "Training rows/s for 100k rows × 32 numeric features, hidden 128-64, latent 8, batch 256, 2 threads (compare: tools/bench/torch_train_bench.py).") { epochs };
        train.SetAction(parse => { TrainingBenchmark.Run(Console.Out, Math.Clamp(parse.GetValue(epochs), 1, 100)); return 0; });
        var data = new Option<string>("--data") { Description = "Labelled CSV file.", Required = true };
        var label = new Option<string>("--label-column") { Description = "Label column (1 = anomaly).", DefaultValueFactory = _ => "label" };
        var seeds = new Option<int>("--seeds") { Description = "Repetitions with different splits and seeds.", DefaultValueFactory = _ => 5 };
        var ensemble = new Option<int?>("--ensemble") { Description = "VAEs per model whose p̂(x) is averaged (default: the trainer's, 2)." };
        var samples = new Option<int>("--samples") { Description = "Latent samples L.", DefaultValueFactory = _ => new Training.Engine.VaeTrainingOptions().ScoringSamples };
        var protocol = new Command("protocol", "Semi-supervised quality check: train on half the normal rows, test on the rest plus all anomalies.") { data, label, seeds, samples, ensemble };
        protocol.SetAction(parse => ProtocolBenchmark.Run(CliRun.ExistingFile(parse.GetValue(data)!, "data file"), parse.GetValue(label)!,
            Math.Clamp(parse.GetValue(seeds), 1, 100), WithEnsemble(new Training.Engine.VaeTrainingOptions { ScoringSamples = parse.GetValue(samples) }, parse.GetValue(ensemble)),
            Console.Out));
        var model = new Option<string>("--model") { Description = "Model file (.onnx) whose features the events carry.", Required = true };
        var input = new Option<string>("--in") { Description = "JSON events, one per line.", Required = true };
        var output = new Option<string>("--out") { Description = "File to write: the same events, a fraction of them bad.", Required = true };
        var fraction = new Option<double>("--fraction") { Description = "Fraction of events replaced by bad ones.", DefaultValueFactory = _ => 0.1 };
        var seed = new Option<long>("--seed") { Description = "Random seed.", DefaultValueFactory = _ => 1 };
        var entity = new Option<string?>("--entity-field") { Description = "The detector's EntityField (adds bad_entity faults)." };
        var time = new Option<string?>("--time-field") { Description = "The detector's TimestampField (adds bad_event_time faults)." };
        var maxPayload = new Option<int>("--max-payload-bytes")
        {
            Description = "The detector's Scoring:MaxPayloadBytes; oversized faults are up to twice this.",
            DefaultValueFactory = _ => EventDecoder.DefaultMaxPayloadBytes,
        };
        var mix = new Command("mix-bad-events", "Replace a seeded fraction of JSON events (one per line) by bad payloads, one fault each, covering every dead-letter reason (for the fuzz-mix stage of deploy/local/bench-pipeline.sh).")
        {
            model, input, output, fraction, seed, entity, time, maxPayload,
        };
        mix.SetAction(parse => BadEventMix.Run(CliRun.ExistingFile(parse.GetValue(model)!, "model file"), CliRun.ExistingFile(parse.GetValue(input)!, "events file"),
            CliRun.OutputFile(parse.GetValue(output)!), parse.GetValue(fraction), parse.GetValue(seed), parse.GetValue(entity), parse.GetValue(time),
            parse.GetValue(maxPayload), Console.Out));
        var cardio = new Option<string?>("--cardio") { Description = "ODDS cardio CSV (numeric columns, last column the 0/1 label); omit to run only the synthetic sets." };
        var splits = new Option<int>("--splits") { Description = "Cardio splits (seeds).", DefaultValueFactory = _ => 20 };
        var syntheticSeeds = new Option<int>("--synthetic-seeds") { Description = "Seeds per synthetic table (0 skips them).", DefaultValueFactory = _ => 3 };
        var beta = new Option<float?>("--beta") { Description = "KL weight β (default: the trainer's)." };
        var latent = new Option<int?>("--latent") { Description = "Latent dimensions (default: the trainer's rule)." };
        var hidden = new Option<string?>("--hidden") { Description = "Hidden widths, e.g. 64 or 128,64 (default: the trainer's rule)." };
        var maxEpochs = new Option<int?>("--epochs") { Description = "Maximum epochs (default: the trainer's rule)." };
        var logVarMax = new Option<float?>("--logvar-max") { Description = "Numeric log-variance upper clamp (default: the trainer's)." };
        var logVarMin = new Option<float?>("--logvar-min") { Description = "Numeric log-variance lower clamp (default: the trainer's)." };
        var weightDecay = new Option<float?>("--weight-decay") { Description = "Decoupled weight decay (default: the trainer's)." };
        var threads = new Option<int>("--threads") { Description = "Training threads.", DefaultValueFactory = _ => 1 };
        var scoreFunction = CliRun.ScoreOption();
        var quantileMaps = CliRun.QuantileMapOption();
        var quality = new Command("quality", "Engine AUROC with default (or given) settings on cardio and on synthetic tables with dependency anomalies.")
        {
            cardio, splits, syntheticSeeds, samples, beta, latent, hidden, maxEpochs, threads, logVarMax, logVarMin, weightDecay, ensemble, scoreFunction, quantileMaps,
        };
        quality.SetAction(parse =>
        {
            var defaults = new Training.Engine.VaeTrainingOptions();
            var options = defaults with
            {
                ScoringSamples = parse.GetValue(samples),
                Beta = parse.GetValue(beta) ?? defaults.Beta,
                Latent = parse.GetValue(latent),
                Hidden = CliRun.ParseHidden(parse.GetValue(hidden)),
                Epochs = parse.GetValue(maxEpochs),
                Threads = Math.Clamp(parse.GetValue(threads), 1, 64),
                NumericLogVarMax = parse.GetValue(logVarMax) ?? defaults.NumericLogVarMax,
                NumericLogVarMin = parse.GetValue(logVarMin) ?? defaults.NumericLogVarMin,
                WeightDecay = parse.GetValue(weightDecay) ?? defaults.WeightDecay,
                ScoreFunction = CliRun.ScoreFunctionOf(parse.GetValue(scoreFunction)),
            };
            string? cardioPath = parse.GetValue(cardio) is { } path ? CliRun.ExistingFile(path, "cardio file") : null;
            return QualityBenchmark.Run(cardioPath, Math.Clamp(parse.GetValue(splits), 0, 100), Math.Clamp(parse.GetValue(syntheticSeeds), 0, 20),
                WithEnsemble(options, parse.GetValue(ensemble)), Console.Out, parse.GetValue(quantileMaps));
        });
        var topic = new Option<string>("--topic") { Description = "Topic to read from its beginning to its end.", Required = true };
        var bootstrap = new Option<string>("--bootstrap") { Description = "Kafka bootstrap servers.", DefaultValueFactory = _ => "127.0.0.1:9092" };
        var kafkaProperties = new Option<string[]>("--kafka-property")
        {
            Description = "librdkafka property key=value, repeatable (e.g. api.version.request=false for Kafka 0.9).",
            DefaultValueFactory = _ => [],
        };
        var consume = new Command("consume", "Rate of a bare Confluent.Kafka consumer loop over a whole topic (serve's client and consumer settings, no processing).")
        {
            topic, bootstrap, kafkaProperties,
        };
        consume.SetAction(parse => ConsumerBenchmark.Run(GenerateCommand.KafkaOptions(parse.GetValue(bootstrap)!, parse.GetValue(kafkaProperties)!),
            parse.GetValue(topic)!, Console.Out));
        var dataDir = new Option<string>("--data-dir") { Description = "Directory of labelled CSV tables (and optionally BASELINES.md).", Required = true };
        var seedList = new Option<string>("--seeds") { Description = "Comma-separated seeds, one split each.", DefaultValueFactory = _ => "0,1,2" };
        var tables = new Option<string?>("--tables") { Description = "Comma-separated table names (file names without .csv); default all." };
        var suiteSamples = new Option<int?>("--samples") { Description = "Latent samples L (default: the trainer's)." };
        var screenRankGauss = new Option<bool>("--screen-rank-gauss")
        {
            Description = "Screening only, not what `train` writes: replace each numeric column by the normal quantile of its rank among the split's training rows before training (docs/quality.md).",
        };
        var screenBlend = new Option<double>("--screen-blend")
        {
            Description = "With --screen-rank-gauss: weight w in [0, 1] of the product's squashed robust z in w·z + (1 − w)·rank-Gauss (default 0).",
        };
        var suite = new Command("suite", "Semi-supervised protocol through train → ONNX → ONNX Runtime on every table of a directory: AUROC/AUPRC per table, means, and BASELINES.md for comparison.")
        {
            dataDir, seedList, tables, label, suiteSamples, beta, latent, hidden, maxEpochs, logVarMax, logVarMin, weightDecay, ensemble, screenRankGauss, screenBlend,
            scoreFunction, quantileMaps,
        };
        suite.SetAction(parse =>
        {
            var defaults = new Training.Engine.VaeTrainingOptions();
            var options = defaults with
            {
                ScoringSamples = parse.GetValue(suiteSamples) ?? defaults.ScoringSamples,
                Beta = parse.GetValue(beta) ?? defaults.Beta,
                Latent = parse.GetValue(latent),
                Hidden = CliRun.ParseHidden(parse.GetValue(hidden)),
                Epochs = parse.GetValue(maxEpochs),
                NumericLogVarMax = parse.GetValue(logVarMax) ?? defaults.NumericLogVarMax,
                NumericLogVarMin = parse.GetValue(logVarMin) ?? defaults.NumericLogVarMin,
                WeightDecay = parse.GetValue(weightDecay) ?? defaults.WeightDecay,
                ScoreFunction = CliRun.ScoreFunctionOf(parse.GetValue(scoreFunction)),
            };
            string directory = parse.GetValue(dataDir)!;
            if (!Directory.Exists(directory))
                throw new CliException($"data directory not found: {directory}");
            int[] seeds = ParseSeeds(parse.GetValue(seedList)!);
            string[]? only = parse.GetValue(tables)?.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
            return SuiteBenchmark.Run(directory, seeds, only, parse.GetValue(label)!, WithEnsemble(options, parse.GetValue(ensemble)), Console.Out,
                parse.GetValue(screenRankGauss), parse.GetValue(screenBlend) is var w && w is >= 0 and <= 1 ? w
                    : throw new CliException($"--screen-blend must be in [0, 1], not {w}."), parse.GetValue(quantileMaps));
        });
        var connection = new Option<string>("--connection") { Description = "PostgreSQL connection string of a scratch database.", Required = true };
        var batches = new Option<int>("--batches") { Description = "Timed batches per detector.", DefaultValueFactory = _ => 200 };
        var flagRate = new Option<double>("--flag-rate") { Description = "Share of each batch's 4096 events flagged.", DefaultValueFactory = _ => 0.01 };
        var entityCount = new Option<int>("--entities") { Description = "Entities the flagged events belong to.", DefaultValueFactory = _ => 200 };
        var alertsTopic = new Option<string?>("--alerts-topic") { Description = "Also produce the alert records of the alerts detector to this topic (with --bootstrap)." };
        var commit = new Command("commit", "Commit time of serve's batch transaction with incidents off, on, and on with alerts (writes to the given database).")
        {
            connection, batches, flagRate, entityCount, alertsTopic, bootstrap, kafkaProperties,
        };
        commit.SetAction(parse => CommitBenchmark.Run(parse.GetValue(connection)!, Math.Clamp(parse.GetValue(batches), 1, 100_000),
            Math.Clamp(parse.GetValue(flagRate), 0, 1), Math.Clamp(parse.GetValue(entityCount), 1, 1_000_000), Console.Out,
            GenerateCommand.KafkaOptions(parse.GetValue(bootstrap)!, parse.GetValue(kafkaProperties)!), parse.GetValue(alertsTopic)));
        var load = new Option<bool>("--load") { Description = "Fill the database first (drops and reloads the daily anomalies partitions of the last --days days)." };
        var rows = new Option<long>("--rows") { Description = "Rows to load.", DefaultValueFactory = _ => 50_000_000 };
        var days = new Option<int>("--days") { Description = "Days (daily partitions) the rows spread over, ending today.", DefaultValueFactory = _ => 30 };
        var detectorCount = new Option<int>("--detectors") { Description = "Detectors the rows belong to.", DefaultValueFactory = _ => 3 };
        var entitiesPerDetector = new Option<int>("--entities") { Description = "Entities per detector (plus a hot one with 5 % of the rows).", DefaultValueFactory = _ => 20_000 };
        var runs = new Option<int>("--runs") { Description = "Timed runs per query shape.", DefaultValueFactory = _ => 200 };
        var queries = new Command("queries", "p50/p95 of the API's anomaly list/filter queries on a large partitioned table (with --load: fills a scratch database first).")
        {
            connection, load, rows, days, detectorCount, entitiesPerDetector, runs,
        };
        queries.SetAction(parse => QueryBenchmark.Run(parse.GetValue(connection)!, parse.GetValue(load), Math.Clamp(parse.GetValue(rows), 1, 10_000_000_000),
            Math.Clamp(parse.GetValue(days), 1, 365), Math.Clamp(parse.GetValue(detectorCount), 1, 1000), Math.Clamp(parse.GetValue(entitiesPerDetector), 1, 10_000_000),
            Math.Clamp(parse.GetValue(runs), 1, 100_000), Console.Out));
        var stateConnection = new Option<string?>("--connection") { Description = "PostgreSQL connection string of a scratch database (omit: memory only)." };
        var stateEntities = new Option<int>("--entities") { Description = "Entities held in memory (and stored).", DefaultValueFactory = _ => 100_000 };
        var stateSteps = new Option<int>("--window") { Description = "W, events per window.", DefaultValueFactory = _ => 8 };
        var stateFeatures = new Option<int>("--features") { Description = "Numeric features per event.", DefaultValueFactory = _ => 6 };
        var stateBatches = new Option<int>("--batches") { Description = "Timed batches per case.", DefaultValueFactory = _ => 50 };
        var windows = new Command("windows", "A windowed detector's state: memory (heap, RSS) for --entities entities, per-event state CPU, and the commit time of 4096-event batches without and with state.")
        {
            stateConnection, stateEntities, stateSteps, stateFeatures, stateBatches,
        };
        windows.SetAction(parse => WindowStateBenchmark.Run(parse.GetValue(stateConnection), Math.Clamp(parse.GetValue(stateEntities), 4096, 10_000_000),
            Math.Clamp(parse.GetValue(stateSteps), 2, WindowDefinition.MaxSteps), Math.Clamp(parse.GetValue(stateFeatures), 1, 1000),
            Math.Clamp(parse.GetValue(stateBatches), 1, 100_000), Console.Out));
        return new Command("bench", "Benchmarks; each prints its numbers.") { train, score, protocol, mix, quality, suite, consume, commit, queries, windows };
    }

    /// <summary>The options with <c>--ensemble</c> applied when given (else the trainer's default K).</summary>
    private static Training.Engine.VaeTrainingOptions WithEnsemble(Training.Engine.VaeTrainingOptions options, int? ensemble) =>
        ensemble is { } k ? options with { Ensemble = Math.Clamp(k, 1, Training.Engine.VaeTrainingOptions.MaxEnsemble) } : options;

    private static int[] ParseSeeds(string text)
    {
        var seeds = new List<int>();
        foreach (var part in text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            if (!int.TryParse(part, System.Globalization.NumberStyles.Integer, System.Globalization.CultureInfo.InvariantCulture, out int seed) || seed < 0)
                throw new CliException($"--seeds: '{part}' is not a seed (a non-negative integer).");
            seeds.Add(seed);
        }

        return seeds.Count > 0 ? [.. seeds] : throw new CliException("--seeds: give at least one seed.");
    }
}
