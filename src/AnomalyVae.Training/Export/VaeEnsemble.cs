using AnomalyVae.Model;
using AnomalyVae.Training.Engine;

namespace AnomalyVae.Training.Export;

/// <summary>
/// K VAEs as one detector (<see cref="VaeTrainingOptions.Ensemble"/>): members differ in their seed and their
/// early-stopping rows, none trains on the rows that calibrate the combined score (<see cref="Train"/>), and their
/// reconstruction probabilities are averaged, so the score −log (1/K)·Σ_k p̂_k(x) is still a reconstruction
/// probability (of the equal-weight mixture). Feature scores are the members' feature scores weighted by each
/// member's share of that mean, p̂_k / Σ p̂: the members that explain the row best explain its attribution.
/// Sample, encode, interpolate and the latent mean use member 0. This is the C# reference of the exported graph
/// (<see cref="VaeOnnxExport"/>); why two members: docs/quality.md.
/// </summary>
public static class VaeEnsemble
{
    private const ulong MemberRowsStream = 0xB007;

    /// <summary>Member <paramref name="member"/>'s seed: the given seed for member 0 (so K = 1 is the single VAE), seed·1000 + m after.</summary>
    public static int MemberSeed(int seed, int member) => member == 0 ? seed : unchecked((seed * 1000) + member);

    /// <summary>
    /// Trains <see cref="VaeTrainingOptions.Ensemble"/> VAEs on <paramref name="data"/>, member 0 first, exactly as
    /// one VAE is trained. Member 0's held-out rows are the calibration rows of the combined score, so no other member
    /// trains on them either: member m ≥ 1 takes the other rows in an order shuffled by its seed and early-stops on
    /// the first as many of them as member 0 held out (its own validation rows), training on the rest. Each member
    /// stopping on its own rows is what made the pair better than one VAE on the suite; members that shared member
    /// 0's validation rows gained little, and members that trained on them made the calibration optimistic
    /// (docs/quality.md, "Ensemble"). Without a validation split every member trains on every row.
    /// </summary>
    public static IReadOnlyList<VaeTrainingResult> Train(
        VaeDataset data, VaeTrainingOptions options, Action<VaeEpochProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(data);
        ArgumentNullException.ThrowIfNull(options);
        if (options.Ensemble is < 1 or > VaeTrainingOptions.MaxEnsemble)
            throw new ArgumentException($"Ensemble must be in [1, {VaeTrainingOptions.MaxEnsemble}].", nameof(options));
        var first = VaeTrainer.Train(data, options, progress, cancellationToken);
        var members = new List<VaeTrainingResult> { first };
        for (int m = 1; m < options.Ensemble; m++)
        {
            var memberOptions = options with { Seed = MemberSeed(options.Seed, m) };
            int held = first.ValidationIndices.Count;
            if (held == 0)
            {
                members.Add(VaeTrainer.Train(data, memberOptions, progress, cancellationToken));
                continue;
            }

            int[] rows = MemberRows(data.Rows, first.ValidationIndices, memberOptions.Seed);
            int f = data.FeatureCount;
            var values = new float[rows.Length * f];
            var mask = new float[rows.Length * f];
            for (int r = 0; r < rows.Length; r++)
            {
                data.Values.AsSpan(rows[r] * f, f).CopyTo(values.AsSpan(r * f));
                data.Mask.AsSpan(rows[r] * f, f).CopyTo(mask.AsSpan(r * f));
            }
            int validation = Math.Min(held, rows.Length - 1);
            var own = new VaeDataset(data.Features, values, mask, rows.Length);
            members.Add(VaeTrainer.Train(own, memberOptions with { ValidationRowIndices = [.. Enumerable.Range(0, validation)] }, progress, cancellationToken));
        }
        return members;
    }

    /// <summary>
    /// The rows member <c>m ≥ 1</c> uses, in its order: every row of <paramref name="rows"/> but member 0's
    /// <paramref name="heldOut"/> ones, shuffled by the member's <paramref name="seed"/> (the first |heldOut| validate).
    /// </summary>
    public static int[] MemberRows(int rows, IReadOnlyCollection<int> heldOut, int seed)
    {
        ArgumentNullException.ThrowIfNull(heldOut);
        var held = new HashSet<int>(heldOut);
        int[] rest = [.. Enumerable.Range(0, rows).Where(r => !held.Contains(r))];
        new DeterministicRandom((ulong)(uint)seed, MemberRowsStream).Shuffle(rest);
        return rest;
    }

    /// <summary>
    /// Scores engine-form rows as the exported graph does (see the class summary); spans as in
    /// <see cref="VaeScorer.Score"/> (empty feature-score or latent spans are skipped).
    /// </summary>
    public static void Score(IReadOnlyList<VaeModel> members, ReadOnlySpan<float> values, ReadOnlySpan<float> mask, Span<float> scores,
        Span<float> featureScores = default, Span<float> latentMean = default, int threads = 1, int scoredFrom = 0)
    {
        ArgumentNullException.ThrowIfNull(members);
        if (members.Count == 0)
            throw new ArgumentException("An ensemble needs at least one member.", nameof(members));
        if (members.Count == 1)
        {
            using var single = new VaeScorer(members[0], threads, scoredFrom);
            single.Score(values, mask, scores, featureScores, latentMean);
            return;
        }

        int rows = scores.Length;
        int k = members.Count;
        var memberScores = new float[k][];
        var memberFeatures = new float[k][];
        for (int m = 0; m < k; m++)
        {
            using var scorer = new VaeScorer(members[m], threads, scoredFrom);
            memberScores[m] = new float[rows];
            memberFeatures[m] = featureScores.IsEmpty ? [] : new float[featureScores.Length];
            scorer.Score(values, mask, memberScores[m], memberFeatures[m], m == 0 ? latentMean : default);
        }

        int scored = rows == 0 ? 0 : featureScores.Length / rows;
        var weights = new double[k];
        double logK = Math.Log(k);
        for (int i = 0; i < rows; i++)
        {
            double max = double.NegativeInfinity;
            for (int m = 0; m < k; m++)
                max = Math.Max(max, -memberScores[m][i]);
            double sum = 0;
            for (int m = 0; m < k; m++)
            {
                weights[m] = Math.Exp(-memberScores[m][i] - max);
                sum += weights[m];
            }
            scores[i] = (float)(logK - (max + Math.Log(sum)));
            for (int j = 0; j < scored; j++)
            {
                double attribution = 0;
                for (int m = 0; m < k; m++)
                    attribution += weights[m] / sum * memberFeatures[m][(i * scored) + j];
                featureScores[(i * scored) + j] = (float)attribution;
            }
        }
    }
}
