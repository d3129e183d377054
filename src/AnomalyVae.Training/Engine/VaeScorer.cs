using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace AnomalyVae.Training.Engine;

/// <summary>
/// The C# reference of what the exported ONNX graph computes: per row the model's score in nats (higher = more
/// anomalous; <see cref="ScoreFunction"/>: the reconstruction probability −log((1/L)·Σ_l p(x | z_l)) or the −ELBO)
/// and per-feature scores −log((1/L)·Σ_l p(x_j | z_l)), which attribute the score but do not sum to it
/// (docs/engine.md, "Scoring"). Nothing is allocated per call. Calls on one instance are serialized (it owns one set
/// of workspaces): use one scorer per concurrent caller.
/// </summary>
public sealed unsafe class VaeScorer : IDisposable
{
    /// <summary>Rows per block (the decoder sees BlockRows × L rows at once).</summary>
    public const int BlockRows = 64;

    private readonly VaeNetwork _network;
    private readonly float[] _parameters;
    private readonly float[] _noise;
    private readonly VaePass[] _passes;
    private readonly WorkerTeam _team;
    private readonly ScoreWork _work;
    private readonly int _samples;
    private readonly int _scoredFrom;
    private readonly bool _elbo;
    private readonly object _gate = new();

    // Inputs of the call in progress (pinned for its duration).
    private float* _values;
    private float* _mask;
    private float* _scores;
    private float* _featureScores;
    private float* _latentMean;
    private int _rows;

    /// <param name="model">The model.</param>
    /// <param name="threads">Worker threads.</param>
    /// <param name="scoredFrom">
    /// The first feature the score and the feature scores cover (0: all). A windowed model's input is W steps of F
    /// features and only the last step is scored: pass (W−1)·F; the feature scores then hold F values per row.
    /// The encoder still sees every feature.
    /// </param>
    public VaeScorer(VaeModel model, int threads = 1, int scoredFrom = 0)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentOutOfRangeException.ThrowIfLessThan(threads, 1);
        ArgumentOutOfRangeException.ThrowIfNegative(scoredFrom);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(scoredFrom, model.Layout.FeatureCount);
        Model = model;
        _scoredFrom = scoredFrom;
        _elbo = model.ScoreFunction == ScoreFunction.NegativeElbo;
        _network = VaeNetwork.FromModel(model, out _parameters);
        _noise = GC.AllocateArray<float>(model.Noise.Length, pinned: true);
        model.Noise.CopyTo(_noise, 0);
        _samples = model.NoiseSamples;
        _passes = new VaePass[threads];
        for (int t = 0; t < threads; t++)
            _passes[t] = new VaePass(_network, BlockRows, BlockRows * _samples);
        _team = new WorkerTeam(threads);
        _work = new ScoreWork(this);
    }

    public VaeModel Model { get; }

    public int FeatureCount => _network.Layout.FeatureCount;

    public int LatentSize => _network.Latent;

    /// <summary>Features the score covers (and feature scores per row): F − scoredFrom.</summary>
    public int ScoredFeatureCount => FeatureCount - _scoredFrom;

    /// <summary>
    /// Scores <c>scores.Length</c> rows of engine-form <paramref name="values"/> and <paramref name="mask"/>
    /// ([rows, F] each). Optionally writes per-feature scores [rows, F] and the latent mean μ [rows, LatentSize]
    /// (pass empty spans to skip them; feature scores are [rows, <see cref="ScoredFeatureCount"/>]). Throws <see cref="ArgumentException"/> on malformed input.
    /// </summary>
    public void Score(ReadOnlySpan<float> values, ReadOnlySpan<float> mask, Span<float> scores,
        Span<float> featureScores = default, Span<float> latentMean = default)
    {
        int rows = scores.Length;
        int f = FeatureCount;
        VaeInput.Validate(_network.Layout, values, mask, rows);
        if (!featureScores.IsEmpty && featureScores.Length < rows * ScoredFeatureCount)
            throw new ArgumentException($"featureScores needs {rows} × {ScoredFeatureCount} values.", nameof(featureScores));
        if (!latentMean.IsEmpty && latentMean.Length < rows * LatentSize)
            throw new ArgumentException($"latentMean needs {rows} × {LatentSize} values.", nameof(latentMean));
        if (rows == 0)
            return;

        lock (_gate)
        {
            fixed (float* v = values)
            fixed (float* m = mask)
            fixed (float* s = scores)
            fixed (float* fs = featureScores)
            fixed (float* lm = latentMean)
            {
                _values = v;
                _mask = m;
                _scores = s;
                _featureScores = fs;
                _latentMean = lm;
                _rows = rows;
                try
                {
                    _team.Run(_work, (rows + BlockRows - 1) / BlockRows);
                }
                finally
                {
                    _values = _mask = _scores = _featureScores = _latentMean = null;
                }
            }
        }
    }

    private void ScoreBlock(int block, int worker)
    {
        var pass = _passes[worker];
        float* parameters = (float*)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(_parameters));
        float* noise = (float*)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(_noise));
        int f = FeatureCount, z = LatentSize, samples = _samples, from = _scoredFrom, scored = f - from;
        float logSamples = MathF.Log(samples);
        int first = block * BlockRows;
        int rows = Math.Min(BlockRows, _rows - first);
        pass.LoadRows(_values, _mask, first, rows);
        pass.EncodeInput(rows);
        pass.Encode(parameters, rows);
        pass.SampleLatent(rows, noise, samples);
        pass.Decode(parameters, rows * samples);
        pass.ComputeFeatureNll(rows, samples);

        for (int r = 0; r < rows; r++)
        {
            float* nll = pass.FeatureNll + r * samples * f;
            // Total NLL per sample into the row's scratch (GradientA is free while scoring).
            float* total = pass.GradientA + r * samples;
            for (int l = 0; l < samples; l++)
            {
                float sum = 0f;
                for (int j = from; j < f; j++)
                    sum += nll[l * f + j];
                total[l] = sum;
            }

            _scores[first + r] = _elbo
                ? Mean(total, samples) + KlFromPrior(pass.EncoderHead + r * 2 * z, z)
                : NegativeLogSumExp(total, 1, samples) + logSamples;
            if (_featureScores != null)
            {
                float* row = _featureScores + (nint)(first + r) * scored;
                for (int j = from; j < f; j++)
                    row[j - from] = NegativeLogSumExp(nll + j, f, samples) + logSamples;
            }

            if (_latentMean != null)
            {
                for (int k = 0; k < z; k++)
                    _latentMean[(nint)(first + r) * z + k] = pass.EncoderHead[r * 2 * z + k];
            }
        }
    }

    private static float Mean(float* values, int count)
    {
        float sum = 0f;
        for (int l = 0; l < count; l++)
            sum += values[l];
        return sum / count;
    }

    /// <summary>KL(q(z|x) ‖ N(0, I)) of one row's encoder head [μ | raw log σ²], as training computes it (clamped log-variance).</summary>
    private float KlFromPrior(float* head, int z)
    {
        float kl = 0f;
        for (int k = 0; k < z; k++)
            kl += Likelihood.Kl(head[k], head[z + k], _network.LatentLogVarMin, _network.LatentLogVarMax, out _, out _);
        return kl;
    }

    /// <summary>−log Σ_l exp(−a_l) for a_l = values[l·stride], stable: min(a) − log Σ exp(min(a) − a_l).</summary>
    private static float NegativeLogSumExp(float* values, int stride, int count)
    {
        float min = values[0];
        for (int l = 1; l < count; l++)
            min = MathF.Min(min, values[l * stride]);
        float sum = 0f;
        for (int l = 0; l < count; l++)
            sum += MathF.Exp(min - values[l * stride]);
        return min - MathF.Log(sum);
    }

    public void Dispose() => _team.Dispose();

    private sealed class ScoreWork(VaeScorer scorer) : IPartitionedWork
    {
        public void Execute(int part, int worker) => scorer.ScoreBlock(part, worker);
    }
}
