using AnomalyVae.Training.Export;

namespace AnomalyVae.UnitTests.Onnx;

/// <summary>Small models built with <see cref="OnnxGraph"/>, plus plain-loop references for their outputs.</summary>
internal static class TestModels
{
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

    /// <summary>A two-layer MLP, x [N, in] → tanh(hidden) → out, with a second output that sums the first per row.</summary>
    internal static byte[] Mlp(int inputs, int hidden, int outputs, int seed)
    {
        var random = new Random(seed);
        var graph = new OnnxGraph("mlp");
        var x = graph.Input("x", inputs);
        var w1 = graph.Initializer("W1", Values(random, hidden * inputs), hidden, inputs);
        var b1 = graph.Initializer("b1", Values(random, hidden), hidden);
        var w2 = graph.Initializer("W2", Values(random, outputs * hidden), outputs, hidden);
        var b2 = graph.Initializer("b2", Values(random, outputs), outputs);
        var h = graph.Tanh(graph.Gemm(x, w1, b1, transB: true));
        var y = graph.Gemm(h, w2, b2, transB: true, name: "y");
        var total = graph.ReduceSum(y, [1], keepDims: false, name: "total");
        graph.Output(y, outputs);
        graph.Output(total);
        return graph.ToBytes();
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
}
