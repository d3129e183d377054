using System.Runtime.Intrinsics;

namespace AnomalyVae.Training.Engine;

/// <summary>
/// Negative log-likelihoods of the decoder heads and the latent KL term, each with its gradient.
/// Kept scalar and separate so finite-difference tests can check each term on its own.
/// </summary>
internal static unsafe class Likelihood
{
    /// <summary>½·log(2π).</summary>
    public const float HalfLog2Pi = 0.918938533204672742f;

    /// <summary>
    /// −log N(x; mean, exp(v)) with v = clamp(rawLogVar, min, max). Outside (min, max) the clamp is flat, so
    /// the log-variance gradient is 0 there (the same as ONNX Clip).
    /// </summary>
    public static float Gaussian(float x, float mean, float rawLogVar, float min, float max, out float dMean, out float dRawLogVar)
    {
        float v = Math.Clamp(rawLogVar, min, max);
        float precision = MathF.Exp(-v);
        float r = x - mean;
        float scaled = r * r * precision;
        dMean = -r * precision;
        dRawLogVar = rawLogVar > min && rawLogVar < max ? 0.5f * (1f - scaled) : 0f;
        return HalfLog2Pi + 0.5f * (v + scaled);
    }

    /// <summary>
    /// <see cref="Gaussian"/> over a row's n numeric heads at once (Vector256; a final partial vector goes through a
    /// zero-padded copy so every element takes the same arithmetic). Returns Σ_i m_i·NLL_i. When
    /// <paramref name="dMean"/> is not null, writes m_i·scale·∂NLL_i into <paramref name="dMean"/> and
    /// <paramref name="dRawLogVar"/>; when <paramref name="nll"/> is not null, writes m_i·NLL_i there.
    /// </summary>
    public static float GaussianRow(float* x, float* m, float* mean, float* rawLogVar, int n, float min, float max, float scale,
        float* dMean, float* dRawLogVar, float* nll)
    {
        var total = Vector256<float>.Zero;
        int i = 0;
        for (; i <= n - 8; i += 8)
            total += GaussianVector(x + i, m + i, mean + i, rawLogVar + i, min, max, scale, dMean == null ? null : dMean + i, dRawLogVar == null ? null : dRawLogVar + i, nll == null ? null : nll + i);
        if (i < n)
        {
            int rest = n - i;
            float* px = stackalloc float[8], pm = stackalloc float[8], pmean = stackalloc float[8], praw = stackalloc float[8];
            float* pdm = stackalloc float[8], pdr = stackalloc float[8], pn = stackalloc float[8];
            for (int k = 0; k < 8; k++)
            {
                bool live = k < rest;
                px[k] = live ? x[i + k] : 0f;
                pm[k] = live ? m[i + k] : 0f;
                pmean[k] = live ? mean[i + k] : 0f;
                praw[k] = live ? rawLogVar[i + k] : 0f;
            }

            total += GaussianVector(px, pm, pmean, praw, min, max, scale, pdm, pdr, pn);
            for (int k = 0; k < rest; k++)
            {
                if (dMean != null)
                {
                    dMean[i + k] = pdm[k];
                    dRawLogVar[i + k] = pdr[k];
                }

                if (nll != null)
                    nll[i + k] = pn[k];
            }
        }

        return Vector256.Sum(total);
    }

    private static Vector256<float> GaussianVector(float* px, float* pm, float* pmean, float* praw, float min, float max, float scale,
        float* dMean, float* dRawLogVar, float* nll)
    {
        var raw = Vector256.Load(praw);
        var lo = Vector256.Create(min);
        var hi = Vector256.Create(max);
        var v = Vector256.Min(Vector256.Max(raw, lo), hi);
        var precision = Vector256.Exp(-v);
        var r = Vector256.Load(px) - Vector256.Load(pmean);
        var scaled = r * r * precision;
        var half = Vector256.Create(0.5f);
        var m = Vector256.Load(pm);
        var value = m * (Vector256.Create(HalfLog2Pi) + half * (v + scaled));
        if (dMean != null)
        {
            var ms = m * Vector256.Create(scale);
            Vector256.Store(-(r * precision) * ms, dMean);
            var inside = Vector256.GreaterThan(raw, lo) & Vector256.LessThan(raw, hi);
            Vector256.Store(Vector256.ConditionalSelect(inside, half * (Vector256<float>.One - scaled) * ms, Vector256<float>.Zero), dRawLogVar);
        }

        if (nll != null)
            Vector256.Store(value, nll);
        return value;
    }

    /// <summary>−log softmax(logits)[index]; writes softmax − onehot(index), times <paramref name="scale"/>, to <paramref name="dLogits"/>.</summary>
    public static float Categorical(int index, ReadOnlySpan<float> logits, Span<float> dLogits, float scale)
    {
        float max = logits[0];
        for (int k = 1; k < logits.Length; k++)
            max = MathF.Max(max, logits[k]);
        float sum = 0f;
        for (int k = 0; k < logits.Length; k++)
        {
            float e = MathF.Exp(logits[k] - max);
            dLogits[k] = e;
            sum += e;
        }

        float inv = scale / sum;
        for (int k = 0; k < logits.Length; k++)
            dLogits[k] *= inv;
        dLogits[index] -= scale;
        return max + MathF.Log(sum) - logits[index];
    }

    /// <summary>−log softmax(logits)[index] without gradient.</summary>
    public static float Categorical(int index, ReadOnlySpan<float> logits)
    {
        float max = logits[0];
        for (int k = 1; k < logits.Length; k++)
            max = MathF.Max(max, logits[k]);
        float sum = 0f;
        for (int k = 0; k < logits.Length; k++)
            sum += MathF.Exp(logits[k] - max);
        return max + MathF.Log(sum) - logits[index];
    }

    /// <summary>−log Bernoulli(x; sigmoid(logit)) = softplus(logit) − x·logit, computed stably; d/dlogit = sigmoid(logit) − x.</summary>
    public static float Bernoulli(float x, float logit, out float dLogit)
    {
        float e = MathF.Exp(-MathF.Abs(logit));
        float sigmoid = logit >= 0f ? 1f / (1f + e) : e / (1f + e);
        dLogit = sigmoid - x;
        return MathF.Max(logit, 0f) + MathF.Log(1f + e) - x * logit;
    }

    /// <summary>
    /// KL(N(μ, exp(v)) ‖ N(0, 1)) for one latent dimension, v = clamp(rawLogVar, min, max):
    /// ½(μ² + eᵛ − 1 − v). Gradient w.r.t. raw log-variance is 0 outside the clamp range.
    /// </summary>
    public static float Kl(float mu, float rawLogVar, float min, float max, out float dMu, out float dRawLogVar)
    {
        float v = Math.Clamp(rawLogVar, min, max);
        float ev = MathF.Exp(v);
        dMu = mu;
        dRawLogVar = rawLogVar > min && rawLogVar < max ? 0.5f * (ev - 1f) : 0f;
        return 0.5f * (mu * mu + ev - 1f - v);
    }
}
