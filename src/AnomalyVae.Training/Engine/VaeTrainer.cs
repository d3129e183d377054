using System.Diagnostics;
using AnomalyVae.Model;

namespace AnomalyVae.Training.Engine;

/// <summary>
/// Progress after one epoch, for the CLI to render. Epoch is 1-based, of at most Epochs; the losses are mean
/// per-row −ELBO, TrainLoss at the epoch's warm-up Beta and ValidationLoss at full β (null without validation);
/// Elapsed counts from the start of training; Remaining assumes no early stop; IsBest marks the best weights so far
/// (kept as the result).
/// </summary>
public sealed record VaeEpochProgress(
    int Epoch, int Epochs, double TrainLoss, double? ValidationLoss, float Beta, TimeSpan Elapsed, TimeSpan Remaining, bool IsBest);

/// <summary>What training produced.</summary>
/// <param name="Model">Best-epoch model (lowest validation −ELBO; last epoch without validation).</param>
/// <param name="Options">The options with every default resolved.</param>
/// <param name="History">One entry per epoch run.</param>
/// <param name="BestEpoch">1-based epoch whose weights are in <paramref name="Model"/>.</param>
/// <param name="StoppedEarly">Whether patience ran out before the epoch limit.</param>
public sealed record VaeTrainingResult(
    VaeModel Model, VaeTrainingOptions Options, IReadOnlyList<VaeEpochProgress> History, int BestEpoch, bool StoppedEarly,
    IReadOnlyList<int> ValidationIndices);

/// <summary>
/// Fits a VAE by minimizing the mean −ELBO (masked reconstruction NLL + β·KL) with Adam over shuffled
/// mini-batches, with a held-out validation split, optional KL warm-up and early stopping that keeps the best
/// epoch's weights.
/// </summary>
public static class VaeTrainer
{
    private const ulong SplitStream = 0x5B117;
    private const ulong ShuffleStream = 0x5F1E;
    private const ulong ScoringNoiseStream = 0x5C0E;

    public static VaeTrainingResult Train(
        VaeDataset data, VaeTrainingOptions? options = null, Action<VaeEpochProgress>? progress = null,
        CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(data);
        if (data.Rows < 1)
            throw new ArgumentException("The training data has no rows.", nameof(data));
        var resolved = (options ?? new VaeTrainingOptions()).Resolve(data.Rows, data.Layout);
        ulong seed = (ulong)(uint)resolved.Seed;

        var network = new VaeNetwork(data.Layout, resolved.Hidden!, resolved.Latent!.Value, resolved.Activation,
            resolved.ActivationAlpha, resolved.NumericLogVarMin, resolved.NumericLogVarMax,
            perFeatureVariance: resolved.NumericVariance == NumericVariance.PerFeature);

        // Split: a seeded permutation; the first ValidationRows rows validate.
        var order = new int[data.Rows];
        for (int i = 0; i < order.Length; i++)
            order[i] = i;
        var splitRng = new DeterministicRandom(seed, SplitStream);
        splitRng.Shuffle(order);
        int validationRows = resolved.ValidationRows(data.Rows);
        int[] validation = order[..validationRows];
        int[] train = order[validationRows..];
        if (resolved.ValidationRowIndices is { } given)
        {
            var held = new HashSet<int>(given);
            if (held.Any(r => (uint)r >= (uint)data.Rows) || held.Count >= data.Rows)
                throw new ArgumentException($"ValidationRowIndices must name distinct rows of the {data.Rows} and leave some to train on.");
            validation = [.. held];
            train = [.. Enumerable.Range(0, data.Rows).Where(r => !held.Contains(r))];
        }
        Array.Sort(validation);
        Array.Sort(train);

        int batch = Math.Min(resolved.BatchSize!.Value, train.Length);
        int batches = (train.Length + batch - 1) / batch;
        int epochs = resolved.Epochs!.Value;
        int warmup = resolved.KlWarmupEpochs!.Value;
        int patience = resolved.Patience!.Value;

        using var session = new TrainingSession(data, network, resolved.Threads!.Value, batch, seed,
            resolved.LearningRate, resolved.WeightDecay, train)
        {
            MissingInjection = (resolved.MissingInjectionRate ?? 0f, resolved.MissingInjectionGroup),
        };
        var best = (float[])session.Parameters.Clone();
        double bestLoss = double.PositiveInfinity;
        int bestEpoch = 0, sinceBest = 0;
        bool stoppedEarly = false;
        var history = new List<VaeEpochProgress>();
        var shuffleRng = new DeterministicRandom(seed, ShuffleStream);
        var clock = Stopwatch.StartNew();

        for (int epoch = 0; epoch < epochs; epoch++)
        {
            float beta = warmup > 0 ? resolved.Beta * Math.Min(1f, (epoch + 1f) / warmup) : resolved.Beta;
            shuffleRng.Shuffle(train);
            double trainLoss = 0;
            for (int b = 0; b < batches; b++)
            {
                cancellationToken.ThrowIfCancellationRequested();
                // Even batch sizes (differ by at most one row) instead of a small remainder batch.
                int start = (int)((long)train.Length * b / batches);
                int end = (int)((long)train.Length * (b + 1) / batches);
                trainLoss += session.Step(train, start, end - start, beta);
            }

            trainLoss /= train.Length;
            if (!double.IsFinite(trainLoss))
            {
                throw new InvalidOperationException(
                    $"Training diverged in epoch {epoch + 1} (loss {trainLoss}). Lower the learning rate or check the input for extreme values.");
            }

            double? validationLoss = null;
            bool isBest;
            if (validation.Length > 0)
            {
                double loss = session.Evaluate(validation, resolved.Beta) / validation.Length;
                validationLoss = loss;
                isBest = loss < bestLoss;
                if (isBest)
                {
                    bestLoss = loss;
                    sinceBest = 0;
                }
                else if (epoch + 1 >= warmup)
                {
                    sinceBest++;
                }
            }
            else
            {
                isBest = true;
            }

            if (isBest)
            {
                session.Parameters.CopyTo(best, 0);
                bestEpoch = epoch + 1;
            }

            var elapsed = clock.Elapsed;
            var remaining = TimeSpan.FromTicks(elapsed.Ticks / (epoch + 1) * (epochs - epoch - 1));
            var entry = new VaeEpochProgress(epoch + 1, epochs, trainLoss, validationLoss, beta, elapsed, remaining, isBest);
            history.Add(entry);
            progress?.Invoke(entry);
            if (sinceBest >= patience)
            {
                stoppedEarly = epoch + 1 < epochs;
                break;
            }
        }

        var noise = new float[resolved.ScoringSamples * network.Latent];
        var noiseRng = new DeterministicRandom(seed, ScoringNoiseStream);
        noiseRng.FillGaussian(noise);
        var model = network.ToModel(best, noise, resolved.ScoreFunction);
        return new VaeTrainingResult(model, resolved, history, bestEpoch, stoppedEarly, validation);
    }
}
