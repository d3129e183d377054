using AnomalyVae.Model;
using AnomalyVae.Training.Export;

namespace AnomalyVae.Tests;

/// <summary>A builder graph that uses every operator (OnnxGraphTests computes it; the checker test validates it).</summary>
internal static class OnnxOperatorGraph
{
    public static readonly float[] GemmW = [0.5f, -1f, 0.25f, 2f, -0.3f, 0.8f];
    public static readonly float[] GemmB = [0.1f, -0.2f];
    public static readonly float[] K = [2f, -0.5f, 4f];
    public static readonly float[] Table = [10f, 11f, 20f, 21f, 30f, 31f, 40f, 41f];

    /// <summary>
    /// One graph using every builder operator. Inputs x [N,3] (numeric) and c [N,1] (a category 0..3 as float);
    /// one output per operator group, checked by OnnxGraphTests.
    /// </summary>
    public static OnnxGraph EveryOperator()
    {
        var g = new OnnxGraph("every-operator") { Description = "builder coverage", ModelVersion = 3 };
        g.SetMetadata("anomalyvae.test", "every-operator");
        var x = g.Input("x", 3);
        var c = g.Input("c", 1);
        var k = g.Initializer("k", K, 3);
        var zero = g.Scalar(0f);
        var one = g.Scalar(1f);

        // 0: dense layer, LeakyRelu
        g.Output(g.LeakyRelu(g.Gemm(x, g.Initializer("W", GemmW, 2, 3), g.Initializer("b", GemmB, 2), transB: true), 0.1f), 2);

        // 1: unary operators
        var absolute = g.Abs(x);
        g.Output(g.Concat(1, g.Tanh(x), g.Exp(x), g.Log(g.Add(absolute, one)), g.Sign(x), g.Neg(x), g.Relu(x), g.Sigmoid(x), g.Softplus(x), g.Sqrt(absolute)), 27);

        // 2: binary arithmetic with a broadcast row vector
        g.Output(g.Concat(1, g.Add(x, k), g.Sub(x, k), g.Mul(x, k), g.Div(x, k)), 12);

        // 3: Clip (both bounds, upper only), Max/Min against a scalar
        g.Output(g.Concat(1, g.Clip(x, -0.5f, 0.5f), g.Clip(x, null, 0f), g.Max(x, zero), g.Min(x, zero)), 12);

        // 4: reductions and the axes/shape-as-input operators
        var rowSum = g.ReduceSum(x, [1], keepDims: false);
        g.Output(g.Concat(1, g.ReduceSum(x, [1]), g.ReduceLogSumExp(x, [1]), g.Unsqueeze(rowSum, [1]), g.Reshape(g.Mul(x, x), [-1, 3])), 6);

        // 5: Split with sizes, reassembled in the opposite order
        var parts = g.Split(x, [1, 2], axis: 1);
        g.Output(g.Concat(1, parts[1], parts[0]), 3);

        // 6: Softmax and LogSoftmax over features
        g.Output(g.Concat(1, g.Softmax(x), g.LogSoftmax(x)), 6);

        // 7: categorical: Cast, OneHot, Gather (embedding lookup), Equal + Where
        var index = g.Reshape(g.Cast(c, OnnxElementType.Int64), [-1]);
        var isTwo = g.Equal(c, g.Scalar(2f));
        g.Output(g.Concat(1, g.OneHot(index, 4), g.Gather(g.Initializer("table", Table, 4, 2), index), g.Where(isTwo, one, zero)), 7);
        return g;
    }
}
