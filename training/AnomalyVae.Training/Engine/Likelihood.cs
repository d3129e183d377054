namespace AnomalyVae.Training.Engine;

/// <summary>
/// Negative log-likelihoods of the decoder heads and the latent KL term, each with its gradient.
/// Kept scalar and separate so finite-difference tests can check each term on its own.
/// </summary>
internal static class Likelihood
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
