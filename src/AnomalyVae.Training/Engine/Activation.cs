using System.Numerics.Tensors;
using System.Runtime.Intrinsics;

namespace AnomalyVae.Training.Engine;

/// <summary>
/// Hidden-layer nonlinearity. Each maps to a single ONNX (opset 17) operator: Identity, Relu,
/// LeakyRelu(alpha), Tanh, Elu(alpha), Softplus. Every derivative is computable from the activation's
/// output alone, so the engine keeps only post-activation values for backward.
/// </summary>
public enum Activation
{
    /// <summary>y = x (output layers).</summary>
    Identity,

    /// <summary>y = max(x, 0).</summary>
    Relu,

    /// <summary>y = x for x &gt; 0, alpha·x otherwise (ONNX LeakyRelu).</summary>
    LeakyRelu,

    /// <summary>y = tanh(x).</summary>
    Tanh,

    /// <summary>y = x for x &gt; 0, alpha·(eˣ − 1) otherwise (ONNX Elu).</summary>
    Elu,

    /// <summary>y = log(1 + eˣ).</summary>
    Softplus,
}

/// <summary>Forward and backward of <see cref="Activation"/> over spans (vectorized).</summary>
internal static class ActivationMath
{
    /// <summary>Applies the activation in place.</summary>
    public static void Forward(Activation activation, float alpha, Span<float> values)
    {
        switch (activation)
        {
            case Activation.Identity:
                break;
            case Activation.Relu:
                TensorPrimitives.Max(values, 0f, values);
                break;
            case Activation.LeakyRelu:
                LeakyReluForward(values, alpha);
                break;
            case Activation.Tanh:
                TensorPrimitives.Tanh(values, values);
                break;
            case Activation.Elu:
                EluForward(values, alpha);
                break;
            case Activation.Softplus:
                SoftplusForward(values);
                break;
            default:
                throw new ArgumentOutOfRangeException(nameof(activation), activation, "Unknown activation.");
        }
    }

    /// <summary>
    /// Turns dL/dy into dL/dx in place, given the forward outputs y. At kinks (ReLU/LeakyRelu/Elu at 0) the
    /// derivative of the x ≤ 0 branch is used, matching ONNX Runtime's gradient conventions.
    /// </summary>
    public static void Backward(Activation activation, float alpha, ReadOnlySpan<float> outputs, Span<float> gradient)
    {
        switch (activation)
        {
            case Activation.Identity:
                break;
            case Activation.Relu:
                SlopeBackward(outputs, gradient, 0f);
                break;
            case Activation.LeakyRelu:
                SlopeBackward(outputs, gradient, alpha);
                break;
            case Activation.Tanh:
                TanhBackward(outputs, gradient);
                break;
            case Activation.Elu:
                EluBackward(outputs, gradient, alpha);
                break;
            case Activation.Softplus:
                // dy/dx = sigmoid(x) = 1 − e^(−y)
                for (int i = 0; i < gradient.Length; i++)
                    gradient[i] *= 1f - MathF.Exp(-outputs[i]);
                break;
            default:
                throw new ArgumentOutOfRangeException(nameof(activation), activation, "Unknown activation.");
        }
    }

    private static void LeakyReluForward(Span<float> values, float alpha)
    {
        int i = 0;
        if (Vector256.IsHardwareAccelerated)
        {
            var a = Vector256.Create(alpha);
            for (; i <= values.Length - 8; i += 8)
            {
                var x = Vector256.Create(values.Slice(i, 8));
                Vector256.ConditionalSelect(Vector256.GreaterThan(x, Vector256<float>.Zero), x, x * a).CopyTo(values.Slice(i, 8));
            }
        }

        for (; i < values.Length; i++)
            values[i] = values[i] > 0f ? values[i] : values[i] * alpha;
    }

    private static void SlopeBackward(ReadOnlySpan<float> outputs, Span<float> gradient, float negativeSlope)
    {
        int i = 0;
        if (Vector256.IsHardwareAccelerated)
        {
            var slope = Vector256.Create(negativeSlope);
            for (; i <= gradient.Length - 8; i += 8)
            {
                var y = Vector256.Create(outputs.Slice(i, 8));
                var g = Vector256.Create(gradient.Slice(i, 8));
                Vector256.ConditionalSelect(Vector256.GreaterThan(y, Vector256<float>.Zero), g, g * slope).CopyTo(gradient.Slice(i, 8));
            }
        }

        for (; i < gradient.Length; i++)
            gradient[i] = outputs[i] > 0f ? gradient[i] : gradient[i] * negativeSlope;
    }

    /// <summary>dx = dy·(1 − y²).</summary>
    private static void TanhBackward(ReadOnlySpan<float> outputs, Span<float> gradient)
    {
        int i = 0;
        if (Vector256.IsHardwareAccelerated)
        {
            for (; i <= gradient.Length - 8; i += 8)
            {
                var y = Vector256.Create(outputs.Slice(i, 8));
                (Vector256.Create(gradient.Slice(i, 8)) * (Vector256<float>.One - y * y)).CopyTo(gradient.Slice(i, 8));
            }
        }

        for (; i < gradient.Length; i++)
            gradient[i] *= 1f - outputs[i] * outputs[i];
    }

    /// <summary>y ≤ 0 ⇒ dy/dx = alpha·eˣ = y + alpha; otherwise 1.</summary>
    private static void EluBackward(ReadOnlySpan<float> outputs, Span<float> gradient, float alpha)
    {
        int i = 0;
        if (Vector256.IsHardwareAccelerated)
        {
            var a = Vector256.Create(alpha);
            for (; i <= gradient.Length - 8; i += 8)
            {
                var y = Vector256.Create(outputs.Slice(i, 8));
                var g = Vector256.Create(gradient.Slice(i, 8));
                Vector256.ConditionalSelect(Vector256.GreaterThan(y, Vector256<float>.Zero), g, g * (y + a)).CopyTo(gradient.Slice(i, 8));
            }
        }

        for (; i < gradient.Length; i++)
            gradient[i] *= outputs[i] > 0f ? 1f : outputs[i] + alpha;
    }

    private static void EluForward(Span<float> values, float alpha)
    {
        for (int i = 0; i < values.Length; i++)
        {
            float x = values[i];
            values[i] = x > 0f ? x : alpha * (MathF.Exp(x) - 1f);
        }
    }

    private static void SoftplusForward(Span<float> values)
    {
        // log(1 + eˣ) = max(x, 0) + log(1 + e^(−|x|)), stable for large |x|.
        for (int i = 0; i < values.Length; i++)
        {
            float x = values[i];
            values[i] = MathF.Max(x, 0f) + MathF.Log(1f + MathF.Exp(-MathF.Abs(x)));
        }
    }
}
