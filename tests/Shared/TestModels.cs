using AnomalyVae.Inference;
using AnomalyVae.Training.Export;

namespace AnomalyVae.Tests;

/// <summary>Small models built with <see cref="OnnxGraph"/>, plus plain-loop references for their outputs.</summary>
internal static class TestModels
{
    /// <summary>The small dense model most binding tests share: y = relu(x·Wᵀ + b), 4 inputs, 3 outputs.</summary>
    internal const int DenseInputs = 4;

    internal const int DenseOutputs = 3;

    internal static readonly float[] DenseWeights =
    [
        0.5f, -1f, 0.25f, 2f,
        -0.3f, 0.8f, 1.5f, -0.7f,
        1f, 1f, -1f, 0.1f,
    ];

    internal static readonly float[] DenseBias = [0.1f, -0.2f, 0.3f];

    internal static readonly OnnxSessionOptions SingleThread = new() { IntraOpThreads = 1 };

    /// <summary>y = relu(x·Wᵀ + b) with x [N, in], W [out, in], b [out].</summary>
    internal static byte[] Dense(float[] w, float[] b, int inputs, int outputs, Action<OnnxGraph>? configure = null)
    {
        var graph = new OnnxGraph("dense");
        var x = graph.Input("x", inputs);
        var weight = graph.Initializer("W", w, outputs, inputs);
        var bias = graph.Initializer("b", b, outputs);
        var y = graph.Relu(graph.Gemm(x, weight, bias, transB: true), name: "y");
        graph.Output(y, outputs);
        configure?.Invoke(graph);
        return graph.ToBytes();
    }

    internal static float[] DenseReference(float[] x, float[] w, float[] b, int rows, int inputs, int outputs)
    {
        var y = new float[rows * outputs];
        for (var r = 0; r < rows; r++)
        {
            for (var o = 0; o < outputs; o++)
            {
                double sum = b[o];
                for (var i = 0; i < inputs; i++)
                {
                    sum += (double)x[(r * inputs) + i] * w[(o * inputs) + i];
                }

                y[(r * outputs) + o] = (float)Math.Max(0, sum);
            }
        }

        return y;
    }

    /// <summary>A two-layer MLP: y = tanh(x·W1ᵀ + b1)·W2ᵀ + b2, plus total = Σ y per row; random weights from <paramref name="seed"/>.</summary>
    internal static Mlp MlpModel(int inputs, int hidden, int outputs, int seed)
    {
        var random = new Random(seed);
        var mlp = new Mlp(
            inputs,
            hidden,
            outputs,
            Values(random, hidden * inputs, 0.3f),
            Values(random, hidden, 0.1f),
            Values(random, outputs * hidden, 0.3f),
            Values(random, outputs, 0.1f));
        var graph = new OnnxGraph("mlp");
        var x = graph.Input("x", inputs);
        var w1 = graph.Initializer("W1", mlp.W1, hidden, inputs);
        var b1 = graph.Initializer("b1", mlp.B1, hidden);
        var w2 = graph.Initializer("W2", mlp.W2, outputs, hidden);
        var b2 = graph.Initializer("b2", mlp.B2, outputs);
        var h = graph.Tanh(graph.Gemm(x, w1, b1, transB: true));
        var y = graph.Gemm(h, w2, b2, transB: true, name: "y");
        var total = graph.ReduceSum(y, [1], keepDims: false, name: "total");
        graph.Output(y, outputs);
        graph.Output(total);
        mlp.Model = graph.ToBytes();
        return mlp;
    }

    internal sealed record Mlp(int Inputs, int Hidden, int Outputs, float[] W1, float[] B1, float[] W2, float[] B2)
    {
        internal byte[] Model { get; set; } = [];

        internal (float[] Y, float[] Total) Reference(ReadOnlySpan<float> x, int rows)
        {
            var y = new float[rows * Outputs];
            var total = new float[rows];
            var h = new double[Hidden];
            for (var r = 0; r < rows; r++)
            {
                for (var j = 0; j < Hidden; j++)
                {
                    double sum = B1[j];
                    for (var i = 0; i < Inputs; i++)
                    {
                        sum += (double)x[(r * Inputs) + i] * W1[(j * Inputs) + i];
                    }

                    h[j] = Math.Tanh(sum);
                }

                for (var o = 0; o < Outputs; o++)
                {
                    double sum = B2[o];
                    for (var j = 0; j < Hidden; j++)
                    {
                        sum += h[j] * W2[(o * Hidden) + j];
                    }

                    y[(r * Outputs) + o] = (float)sum;
                    total[r] += (float)sum;
                }
            }

            return (y, total);
        }
    }

    internal static float[] Values(Random random, int count, float scale = 1f)
    {
        var values = new float[count];
        for (var i = 0; i < count; i++)
        {
            values[i] = (float)((random.NextDouble() * 2) - 1) * scale;
        }

        return values;
    }

    /// <summary>Element-wise |expected − actual| ≤ tolerance · max(1, |expected|).</summary>
    public static void AssertClose(ReadOnlySpan<float> expected, ReadOnlySpan<float> actual, float tolerance = 1e-5f)
    {
        Assert.Equal(expected.Length, actual.Length);
        for (var i = 0; i < expected.Length; i++)
        {
            var allowed = tolerance * Math.Max(1f, Math.Abs(expected[i]));
            if (!(Math.Abs(expected[i] - actual[i]) <= allowed))
            {
                Assert.Fail($"Element {i}: expected {expected[i]}, got {actual[i]}.");
            }
        }
    }
}
