using AnomalyVae.Inference;
using AnomalyVae.Model;
using AnomalyVae.Tests;
using AnomalyVae.Training.Export;

namespace AnomalyVae.UnitTests.Training;

public sealed class OnnxGraphTests
{
    [Fact]
    public void Every_operator_computes_what_a_plain_loop_computes()
    {
        const int rows = 6;
        var random = new Random(17);
        var x = TestModels.Values(random, rows * 3, scale: 2f);
        float[] c = [0, 1, 2, 3, 2, 0];
        using var session = OnnxSession.FromBytes(OnnxOperatorGraph.EveryOperator().ToBytes(), new OnnxSessionOptions { IntraOpThreads = 1 });

        var outputs = session.Run(new FloatTensor("x", x, rows, 3), new FloatTensor("c", c, rows, 1));

        var expected = Expected(x, c, rows);
        Assert.Equal(expected.Count, outputs.Count);
        for (var o = 0; o < expected.Count; o++)
        {
            Assert.Equal(expected[o].Width, outputs[o].Shape[1]);
            Assert.Equal(rows, outputs[o].Shape[0]);
            TestModels.AssertClose(expected[o].Values, outputs[o].Data, 1e-5f);
        }
    }

    [Fact]
    public void Model_header_is_ir8_opset17_with_a_symbolic_batch()
    {
        var graph = new OnnxGraph("header");
        graph.Output(graph.Relu(graph.Input("x", 5)), 5);

        var model = graph.ToModel();

        Assert.Equal(8, model.IrVersion);
        Assert.Equal("AnomalyVae", model.ProducerName);
        var opset = Assert.Single(model.OpsetImport);
        Assert.Equal("", opset.Domain);
        Assert.Equal(17, opset.Version);
        var dims = Assert.Single(model.Graph.Input).Type.TensorType.Shape.Dim;
        Assert.Equal("N", dims[0].DimParam);
        Assert.Equal(5, dims[1].DimValue);
        Assert.Equal(1, model.Graph.Input[0].Type.TensorType.ElemType); // FLOAT
    }

    [Fact]
    public void Initializers_keep_their_values_and_shapes()
    {
        var graph = new OnnxGraph("init");
        graph.Initializer("w", [1.5f, -2f, 3f, 4.25f, 5f, 6f], 2, 3);
        graph.Initializer("axes", [1L, -1L], 2);
        graph.Output(graph.Identity(graph.Input("x", 1)), 1);

        var model = graph.ToModel();

        var w = model.Graph.Initializer.Single(t => t.Name == "w");
        Assert.Equal([2L, 3L], w.Dims);
        Assert.Equal([1.5f, -2f, 3f, 4.25f, 5f, 6f], System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(w.RawData.Span).ToArray());
        var axes = model.Graph.Initializer.Single(t => t.Name == "axes");
        Assert.Equal(7, axes.DataType); // INT64
        Assert.Equal([1L, -1L], System.Runtime.InteropServices.MemoryMarshal.Cast<byte, long>(axes.RawData.Span).ToArray());
    }

    [Fact]
    public void Node_attributes_of_every_kind_are_written()
    {
        var graph = new OnnxGraph("attrs");
        var x = graph.Input("x", 2);
        var y = graph.Node(
            "LeakyRelu",
            [x],
            attributes:
            [
                OnnxAttribute.Float("alpha", 0.2f),
            ])[0];
        graph.Output(y, 2);
        var probe = graph.ToModel();
        var node = probe.Graph.Node.Single();
        Assert.Equal(0.2f, node.Attribute.Single().F);

        var attributes = new[]
        {
            OnnxAttribute.Int("i", 3),
            OnnxAttribute.Float("f", 0.5f),
            OnnxAttribute.Ints("is", 1, 2),
            OnnxAttribute.Floats("fs", 0.25f, 0.75f),
            OnnxAttribute.String("s", "ok"),
        };
        var other = new OnnxGraph("attrs2");
        other.Node("Custom", [other.Input("x", 1)], attributes: attributes);
        var written = other.ToModel().Graph.Node.Single().Attribute;
        Assert.Equal(3, written[0].I);
        Assert.Equal(0.5f, written[1].F);
        Assert.Equal([1L, 2L], written[2].Ints);
        Assert.Equal([0.25f, 0.75f], written[3].Floats);
        Assert.Equal("ok", written[4].S.ToStringUtf8());
    }

    [Fact]
    public void Names_are_unique_and_references_must_exist()
    {
        var graph = new OnnxGraph("names");
        var x = graph.Input("x", 2);
        var first = graph.Relu(x);
        var second = graph.Relu(x);

        Assert.NotEqual(first, second);
        Assert.Contains("already used", Assert.Throws<ArgumentException>(() => graph.Input("x", 2)).Message);
        Assert.Contains("already used", Assert.Throws<ArgumentException>(() => graph.Relu(x, name: first)).Message);
        Assert.Contains("'nope' is not an input", Assert.Throws<ArgumentException>(() => graph.Add(x, "nope")).Message);
        Assert.Contains("'nope' is not an input", Assert.Throws<ArgumentException>(() => graph.Output("nope", 2)).Message);
        Assert.Contains("needs 4 values, got 6", Assert.Throws<ArgumentException>(() => graph.Initializer("w", [1f, 2f, 3f, 4f, 5f, 6f], 2, 2)).Message);
        var nodeNames = graph.ToModel().Graph.Node.Select(n => n.Name).ToList();
        Assert.Equal(nodeNames.Count, nodeNames.Distinct().Count());
    }

    [Fact]
    public void Outputs_can_be_given_their_own_names()
    {
        var graph = new OnnxGraph("renamed");
        var x = graph.Input("x", 2);
        graph.OutputAs(graph.Concat(1, x, x), "doubled", 4);
        graph.OutputAs(graph.Relu(x, name: "same"), "same", 2);
        using var session = OnnxSession.FromBytes(graph.ToBytes(), new OnnxSessionOptions { IntraOpThreads = 1 });

        var outputs = session.Run(new FloatTensor("x", [1f, -2f], 1, 2));

        Assert.Equal(["doubled", "same"], session.Outputs.Select(o => o.Name));
        Assert.Equal([1f, -2f, 1f, -2f], outputs[0].Data);
        Assert.Equal([1f, 0f], outputs[1].Data);
    }

    [Fact]
    public void A_graph_without_outputs_cannot_be_serialized()
    {
        var graph = new OnnxGraph("empty");
        graph.Input("x", 1);

        Assert.Contains("no outputs", Assert.Throws<InvalidOperationException>(graph.ToBytes).Message);
    }

    [Fact]
    public void Same_graph_serializes_to_the_same_bytes()
    {
        Assert.Equal(OnnxOperatorGraph.EveryOperator().ToBytes(), OnnxOperatorGraph.EveryOperator().ToBytes());
    }

    private static List<(int Width, float[] Values)> Expected(float[] x, float[] c, int rows)
    {
        var outputs = new List<(int Width, List<float> Values)>();
        for (var o = 0; o < 8; o++)
        {
            outputs.Add((0, []));
        }

        static float Sigmoid(double v) => (float)(1 / (1 + Math.Exp(-v)));
        for (var r = 0; r < rows; r++)
        {
            var row = x.AsSpan(r * 3, 3).ToArray();
            var v = row.Select(f => (double)f).ToArray();

            for (var j = 0; j < 2; j++)
            {
                var s = OnnxOperatorGraph.GemmB[j] + v.Select((value, i) => value * OnnxOperatorGraph.GemmW[(j * 3) + i]).Sum();
                outputs[0].Values.Add((float)(s >= 0 ? s : 0.1 * s));
            }

            outputs[1].Values.AddRange(v.Select(a => (float)Math.Tanh(a)));
            outputs[1].Values.AddRange(v.Select(a => (float)Math.Exp(a)));
            outputs[1].Values.AddRange(v.Select(a => (float)Math.Log(Math.Abs(a) + 1)));
            outputs[1].Values.AddRange(v.Select(a => (float)Math.Sign(a)));
            outputs[1].Values.AddRange(v.Select(a => (float)-a));
            outputs[1].Values.AddRange(v.Select(a => (float)Math.Max(a, 0)));
            outputs[1].Values.AddRange(v.Select(Sigmoid));
            outputs[1].Values.AddRange(v.Select(a => (float)Math.Log(1 + Math.Exp(a))));
            outputs[1].Values.AddRange(v.Select(a => (float)Math.Sqrt(Math.Abs(a))));

            outputs[2].Values.AddRange(v.Select((a, i) => (float)(a + OnnxOperatorGraph.K[i])));
            outputs[2].Values.AddRange(v.Select((a, i) => (float)(a - OnnxOperatorGraph.K[i])));
            outputs[2].Values.AddRange(v.Select((a, i) => (float)(a * OnnxOperatorGraph.K[i])));
            outputs[2].Values.AddRange(v.Select((a, i) => (float)(a / OnnxOperatorGraph.K[i])));

            outputs[3].Values.AddRange(v.Select(a => (float)Math.Clamp(a, -0.5, 0.5)));
            outputs[3].Values.AddRange(v.Select(a => (float)Math.Min(a, 0)));
            outputs[3].Values.AddRange(v.Select(a => (float)Math.Max(a, 0)));
            outputs[3].Values.AddRange(v.Select(a => (float)Math.Min(a, 0)));

            var sum = v.Sum();
            var max = v.Max();
            var logSumExp = max + Math.Log(v.Sum(a => Math.Exp(a - max)));
            outputs[4].Values.Add((float)sum);
            outputs[4].Values.Add((float)logSumExp);
            outputs[4].Values.Add((float)sum);
            outputs[4].Values.AddRange(row.Select(a => a * a));

            outputs[5].Values.AddRange([row[1], row[2], row[0]]);

            outputs[6].Values.AddRange(v.Select(a => (float)Math.Exp(a - logSumExp)));
            outputs[6].Values.AddRange(v.Select(a => (float)(a - logSumExp)));

            var category = (int)c[r];
            outputs[7].Values.AddRange(Enumerable.Range(0, 4).Select(i => i == category ? 1f : 0f));
            outputs[7].Values.AddRange([OnnxOperatorGraph.Table[category * 2], OnnxOperatorGraph.Table[(category * 2) + 1]]);
            outputs[7].Values.Add(category == 2 ? 1f : 0f);
        }

        return outputs.Select(o => (o.Values.Count / rows, o.Values.ToArray())).ToList();
    }
}
