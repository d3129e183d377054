using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using AnomalyVae.Model;

namespace AnomalyVae.Training.Engine;

/// <summary>
/// The mutable state of one training run: parameters, Adam moments, a <see cref="VaePass"/> per thread, a gradient
/// buffer per batch chunk, and the work items the <see cref="WorkerTeam"/> runs. What is summed, and in which order,
/// depends only on the thread count, so (data, seed, threads) always gives the same bits; nothing is allocated per
/// step. The two phases of a step: docs/engine.md#speed-and-determinism.
/// </summary>
internal sealed unsafe class TrainingSession : IDisposable
{
    private const float Beta1 = 0.9f;
    private const float Beta2 = 0.999f;
    private const float AdamEpsilon = 1e-8f;
    private const ulong TrainingNoiseStream = 0x7121;
    private const ulong ValidationNoiseStream = 0x7A11;
    private const ulong MissingInjectionStream = 0x315D;

    /// <summary>
    /// Chunks per thread. Threads claim chunks, so a worker that is slow to wake leaves its chunk to the others;
    /// measured on 2 cores, smaller chunks (2 or 4 per thread) were slower on a quiet machine (less GEMM reuse, more
    /// gradient buffers to sum) and no faster on a loaded one.
    /// </summary>
    private const int ChunksPerThread = 1;

    /// <summary>Floats per Adam slice (a multiple of 8, so every element takes the same SIMD path).</summary>
    private const int UpdateSlice = 8192;

    /// <summary>Initial head weights are scaled down so the decoder starts close to the data's marginals.</summary>
    private const float HeadWeightScale = 0.1f;

    private readonly WorkerTeam _team;
    private readonly VaePass[] _passes;
    private readonly float[][] _chunkGradientArrays;
    private readonly float*[] _chunkGradients;
    private readonly float[] _parameters;
    private readonly float[] _firstMoment;
    private readonly float[] _secondMoment;
    private readonly GCHandle _valuesHandle;
    private readonly GCHandle _maskHandle;
    private readonly float* _values;
    private readonly float* _mask;
    private readonly double[] _reconstruction;
    private readonly double[] _kl;
    private readonly StepWork _stepWork;
    private readonly UpdateWork _updateWork;
    private readonly ValidationWork _validationWork;
    private readonly int _chunks;
    private readonly int _chunkRows;
    private readonly ulong _seed;
    private readonly float _learningRate;
    private readonly float _weightDecay;

    // Per-step inputs read by the work items.
    private int[] _batchIndex = [];
    private int _batchStart;
    private int _batchRows;
    private float _beta;
    private long _step;

    public TrainingSession(VaeDataset data, VaeNetwork network, int threads, int maxBatch, ulong seed, float learningRate, float weightDecay,
        ReadOnlySpan<int> trainRows)
    {
        Network = network;
        _seed = seed;
        _learningRate = learningRate;
        _weightDecay = weightDecay;
        Threads = threads;
        _team = new WorkerTeam(threads);
        _chunks = threads == 1 ? 1 : Math.Min(threads * ChunksPerThread, Math.Max(1, maxBatch / 8));
        _chunkRows = (maxBatch + _chunks - 1) / _chunks;
        _passes = new VaePass[threads];
        for (int t = 0; t < threads; t++)
            _passes[t] = new VaePass(network, _chunkRows, _chunkRows);
        _chunkGradientArrays = new float[_chunks][];
        _chunkGradients = new float*[_chunks];
        for (int c = 0; c < _chunks; c++)
        {
            _chunkGradientArrays[c] = GC.AllocateArray<float>(network.ParameterCount + 8, pinned: true);
            _chunkGradients[c] = (float*)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(_chunkGradientArrays[c]));
        }

        _parameters = GC.AllocateArray<float>(network.ParameterCount, pinned: true);
        _firstMoment = GC.AllocateArray<float>(network.ParameterCount, pinned: true);
        _secondMoment = GC.AllocateArray<float>(network.ParameterCount, pinned: true);
        network.Initialize(_parameters, seed);
        network.InitializeHeads(_parameters, data.Values, data.Mask, trainRows, HeadWeightScale);
        _valuesHandle = GCHandle.Alloc(data.Values, GCHandleType.Pinned);
        _maskHandle = GCHandle.Alloc(data.Mask, GCHandleType.Pinned);
        _values = (float*)_valuesHandle.AddrOfPinnedObject();
        _mask = (float*)_maskHandle.AddrOfPinnedObject();
        // One slot per chunk (steps) or per validation block (evaluation), whichever is more.
        int slots = Math.Max(_chunks, (data.Rows + _chunkRows - 1) / _chunkRows);
        _reconstruction = new double[slots];
        _kl = new double[slots];
        _stepWork = new StepWork(this);
        _updateWork = new UpdateWork(this);
        _validationWork = new ValidationWork(this);
    }

    public VaeNetwork Network { get; }

    public int Threads { get; }

    /// <summary>Training steps mark each group of this many inputs missing with this probability (rate 0: off).</summary>
    public (float Rate, int Group) MissingInjection { get; init; } = (0f, 1);

    /// <summary>The live parameter vector (pinned).</summary>
    public float[] Parameters => _parameters;

    /// <summary>Optimizer steps taken so far.</summary>
    public long Steps => _step;

    private float* ParameterPointer => (float*)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(_parameters));

    /// <summary>
    /// One Adam step on rows <paramref name="index"/>[start .. start + rows) with KL weight <paramref name="beta"/>.
    /// Returns the batch's summed −ELBO (reconstruction + β·KL) before the update.
    /// </summary>
    public double Step(int[] index, int start, int rows, float beta)
    {
        _batchIndex = index;
        _batchStart = start;
        _batchRows = rows;
        _beta = beta;
        _step++;
        _team.Run(_stepWork, _chunks);
        _team.Run(_updateWork, (Network.ParameterCount + UpdateSlice - 1) / UpdateSlice);
        double total = 0;
        for (int c = 0; c < _chunks; c++)
            total += _reconstruction[c] + beta * _kl[c];
        return total;
    }

    /// <summary>Summed −ELBO (β = <paramref name="beta"/>) over rows <paramref name="index"/>, with fixed per-row noise.</summary>
    public double Evaluate(int[] index, float beta)
    {
        _batchIndex = index;
        _batchStart = 0;
        _batchRows = index.Length;
        _beta = beta;
        int blocks = (index.Length + _chunkRows - 1) / _chunkRows;
        _team.Run(_validationWork, blocks);
        double total = 0;
        for (int b = 0; b < blocks; b++)
            total += _reconstruction[b] + beta * _kl[b];
        return total;
    }

    private static (int Start, int Count) Slice(int total, int part, int parts)
    {
        int start = (int)((long)total * part / parts);
        int end = (int)((long)total * (part + 1) / parts);
        return (start, end - start);
    }

    private void RunStepPart(int chunk, int worker)
    {
        var pass = _passes[worker];
        var (offset, rows) = Slice(_batchRows, chunk, _chunks);
        var index = new ReadOnlySpan<int>(_batchIndex, _batchStart + offset, rows);
        pass.LoadRows(_values, _mask, index);
        if (MissingInjection.Rate > 0)
            InjectMissing(pass, offset, rows);
        pass.EncodeInput(rows);
        pass.Encode(ParameterPointer, rows);
        int z = Network.Latent;
        for (int r = 0; r < rows; r++)
        {
            // Noise depends on (seed, step, position in batch) only, not on how the batch is split.
            var rng = new DeterministicRandom(_seed ^ TrainingNoiseStream, (ulong)_step, (ulong)(offset + r));
            rng.FillGaussian(new Span<float>(pass.Epsilon + r * z, z));
        }

        pass.SampleLatent(rows);
        pass.Decode(ParameterPointer, rows);
        var (reconstruction, kl) = pass.LossAndGradient(rows, _beta, 1f / _batchRows);
        pass.Backward(ParameterPointer, _chunkGradients[chunk], rows);
        _reconstruction[chunk] = reconstruction;
        _kl[chunk] = kl;
    }

    /// <summary>Marks groups of the loaded rows missing (mask 0); the draw depends on (seed, step, position in batch) only.</summary>
    private void InjectMissing(VaePass pass, int offset, int rows)
    {
        var (rate, group) = MissingInjection;
        int f = Network.Layout.FeatureCount;
        for (int r = 0; r < rows; r++)
        {
            var rng = new DeterministicRandom(_seed ^ MissingInjectionStream, (ulong)_step, (ulong)(offset + r));
            float* mask = pass.Mask + (nint)r * f;
            for (int first = 0; first < f; first += group)
            {
                if (rng.NextDouble() < rate)
                    new Span<float>(mask + first, Math.Min(group, f - first)).Clear();
            }
        }
    }

    private void RunValidationPart(int block, int worker)
    {
        var pass = _passes[worker];
        int first = block * _chunkRows;
        int rows = Math.Min(_chunkRows, _batchRows - first);
        int z = Network.Latent;
        var index = new ReadOnlySpan<int>(_batchIndex, first, rows);
        pass.LoadRows(_values, _mask, index);
        pass.EncodeInput(rows);
        pass.Encode(ParameterPointer, rows);
        for (int r = 0; r < rows; r++)
        {
            var rng = new DeterministicRandom(_seed ^ ValidationNoiseStream, (ulong)index[r]);
            rng.FillGaussian(new Span<float>(pass.Epsilon + r * z, z));
        }

        pass.SampleLatent(rows);
        pass.Decode(ParameterPointer, rows);
        var (reconstruction, kl) = pass.LossAndGradient(rows, _beta, 0f);
        _reconstruction[block] = reconstruction;
        _kl[block] = kl;
    }

    private void RunUpdatePart(int part, int worker)
    {
        int start = part * UpdateSlice;
        int end = Math.Min(Network.ParameterCount, start + UpdateSlice);

        float* p = ParameterPointer + start;
        float* m = (float*)Unsafe.AsPointer(ref _firstMoment[start]);
        float* v = (float*)Unsafe.AsPointer(ref _secondMoment[start]);
        int count = end - start;
        double t = _step;
        float correction1 = (float)(1.0 / (1.0 - Math.Pow(Beta1, t)));
        float correction2 = (float)(1.0 / (1.0 - Math.Pow(Beta2, t)));
        float lr = _learningRate;
        float decay = 1f - _learningRate * _weightDecay;

        var gradients = _chunkGradients;
        int i = 0;
        if (Vector256.IsHardwareAccelerated)
        {
            var b1 = Vector256.Create(Beta1);
            var ob1 = Vector256.Create(1f - Beta1);
            var b2 = Vector256.Create(Beta2);
            var ob2 = Vector256.Create(1f - Beta2);
            var c1 = Vector256.Create(correction1);
            var c2 = Vector256.Create(correction2);
            var vlr = Vector256.Create(lr);
            var veps = Vector256.Create(AdamEpsilon);
            var vdecay = Vector256.Create(decay);
            for (; i <= count - 8; i += 8)
            {
                var g = Vector256.Load(gradients[0] + start + i);
                for (int k = 1; k < gradients.Length; k++)
                    g += Vector256.Load(gradients[k] + start + i);
                var mi = b1 * Vector256.Load(m + i) + ob1 * g;
                var vi = b2 * Vector256.Load(v + i) + ob2 * (g * g);
                Vector256.Store(mi, m + i);
                Vector256.Store(vi, v + i);
                var step = vlr * (mi * c1) / (Vector256.Sqrt(vi * c2) + veps);
                Vector256.Store(Vector256.Load(p + i) * vdecay - step, p + i);
            }
        }

        for (; i < count; i++)
        {
            float g = gradients[0][start + i];
            for (int k = 1; k < gradients.Length; k++)
                g += gradients[k][start + i];
            float mi = Beta1 * m[i] + (1f - Beta1) * g;
            float vi = Beta2 * v[i] + (1f - Beta2) * (g * g);
            m[i] = mi;
            v[i] = vi;
            float step = lr * (mi * correction1) / (MathF.Sqrt(vi * correction2) + AdamEpsilon);
            p[i] = p[i] * decay - step;
        }
    }

    public void Dispose()
    {
        _team.Dispose();
        if (_valuesHandle.IsAllocated)
            _valuesHandle.Free();
        if (_maskHandle.IsAllocated)
            _maskHandle.Free();
    }

    private sealed class StepWork(TrainingSession session) : IPartitionedWork
    {
        public void Execute(int part, int worker) => session.RunStepPart(part, worker);
    }

    private sealed class UpdateWork(TrainingSession session) : IPartitionedWork
    {
        public void Execute(int part, int worker) => session.RunUpdatePart(part, worker);
    }

    private sealed class ValidationWork(TrainingSession session) : IPartitionedWork
    {
        public void Execute(int part, int worker) => session.RunValidationPart(part, worker);
    }
}
