using AnomalyVae.Inference;
using AnomalyVae.Tests;
using AnomalyVae.Training.Export;

namespace AnomalyVae.UnitTests.Inference;

public sealed class OnnxBindingTests
{
    private const int In = TestModels.DenseInputs;
    private const int Out = TestModels.DenseOutputs;
    private const int MaxRows = 1024;
    private static readonly float[] W = TestModels.DenseWeights;
    private static readonly float[] B = TestModels.DenseBias;
    private static readonly OnnxSessionOptions SingleThread = TestModels.SingleThread;

    [Fact]
    public void Batches_of_1_7_and_1024_rows_are_scored_into_the_callers_buffer()
    {
        using var session = OnnxSession.FromBytes(TestModels.Dense(W, B, In, Out), SingleThread);
        var x = GC.AllocateArray<float>(MaxRows * In, pinned: true);
        var y = GC.AllocateArray<float>(MaxRows * Out, pinned: true);
        using var binding = session.Bind([new("x", x)], [new("y", y)]);
        Assert.Equal(MaxRows, binding.MaxRows);

        foreach (var rows in new[] { 1, 7, 1024, 7, 1 })
        {
            var input = TestModels.Values(new Random(rows * 31), rows * In, scale: 2f);
            input.CopyTo(binding.Input(0, rows));
            Array.Fill(y, float.NaN);

            binding.Run(rows);

            var expected = TestModels.DenseReference(input, W, B, rows, In, Out);
            TestModels.AssertClose(expected, y.AsSpan(0, rows * Out)); // written in place...
            TestModels.AssertClose(expected, binding.Output(0, rows)); // ...and visible through the view
            Assert.All(y.AsSpan(rows * Out).ToArray(), v => Assert.True(float.IsNaN(v), "rows past the batch must stay untouched"));
        }
    }

    [Fact]
    public void Hot_path_allocates_nothing_once_a_batch_size_has_been_seen()
    {
        using var session = OnnxSession.FromBytes(TestModels.Dense(W, B, In, Out), SingleThread);
        var x = TestModels.Values(new Random(9), MaxRows * In);
        var y = new float[MaxRows * Out];
        using var binding = session.Bind([new("x", x)], [new("y", y)]);
        binding.Run(64);
        binding.Run(1024);

        // The fewest bytes of a few rounds: a one-off of the runtime (a tier-up) allocated 6232 bytes in one run here.
        Assert.Equal(0, Allocations.Fewest(() =>
        {
            for (var i = 0; i < 200; i++)
            {
                binding.Run((i & 1) == 0 ? 64 : 1024);
                _ = binding.Output(0, 64);
            }
        }));
        TestModels.AssertClose(TestModels.DenseReference(x, W, B, MaxRows, In, Out), y);
    }

    [Fact]
    public void Two_inputs_and_a_chosen_subset_of_outputs()
    {
        // sum = x + mask, prod = x * mask; bind only prod.
        var graph = new OnnxGraph("two-inputs");
        var x = graph.Input("x", 2);
        var mask = graph.Input("mask", 2);
        graph.Output(graph.Add(x, mask, name: "sum"), 2);
        graph.Output(graph.Mul(x, mask, name: "prod"), 2);
        using var session = OnnxSession.FromBytes(graph.ToBytes(), SingleThread);
        float[] xs = [1, 2, 3, 4, 5, 6];
        float[] masks = [1, 0, 0, 1, 1, 1];
        var prod = new float[6];

        using var binding = session.Bind([new("mask", masks), new("x", xs)], [new("prod", prod)]);
        binding.Run(3);

        Assert.Equal([1f, 0, 0, 4, 5, 6], prod);
        Assert.Equal(1, binding.OutputCount);
        Assert.Equal(2, binding.InputCount);
        Assert.Equal(2, binding.OutputRowWidth(0));
    }

    [Fact]
    public void Max_rows_is_set_by_the_smallest_buffer()
    {
        using var session = OnnxSession.FromBytes(TestModels.Dense(W, B, In, Out), SingleThread);

        using var binding = session.Bind([new("x", new float[10 * In])], [new("y", new float[(6 * Out) + 2])]);

        Assert.Equal(6, binding.MaxRows);
        var error = Assert.Throws<ArgumentOutOfRangeException>(() => binding.Run(7));
        Assert.Contains("1..6", error.Message);
        Assert.Throws<ArgumentOutOfRangeException>(() => binding.Run(0));
    }

    [Fact]
    public void Binding_errors_name_the_offending_tensor()
    {
        using var session = OnnxSession.FromBytes(TestModels.Dense(W, B, In, Out), SingleThread);

        var missingInput = Assert.Throws<ArgumentException>(() => session.Bind([], [new("y", new float[3])]));
        Assert.Contains("x: float[N,4]", missingInput.Message);
        var unknownOutput = Assert.Throws<ArgumentException>(() => session.Bind([new("x", new float[4])], [new("z", new float[3])]));
        Assert.Contains("'z' is not a model output", unknownOutput.Message);
        var noOutputs = Assert.Throws<ArgumentException>(() => session.Bind([new("x", new float[4])], []));
        Assert.Contains("y: float[N,3]", noOutputs.Message);
        var tooSmall = Assert.Throws<ArgumentException>(() => session.Bind([new("x", new float[3])], [new("y", new float[3])]));
        Assert.Contains("less than one row of 4", tooSmall.Message);
        var twice = Assert.Throws<ArgumentException>(() => session.Bind([new("x", new float[4]), new("x", new float[4])], [new("y", new float[3])]));
        Assert.Contains("bound twice", twice.Message);
    }

    [Fact]
    public void Run_after_the_session_is_disposed_throws_instead_of_crashing()
    {
        var session = OnnxSession.FromBytes(TestModels.Dense(W, B, In, Out), SingleThread);
        using var binding = session.Bind([new("x", new float[4 * In])], [new("y", new float[4 * Out])]);
        binding.Run(4);
        session.Dispose();

        Assert.Throws<ObjectDisposedException>(() => binding.Run(4));
    }

    [Fact]
    public void Disposed_binding_refuses_to_run()
    {
        using var session = OnnxSession.FromBytes(TestModels.Dense(W, B, In, Out), SingleThread);
        var binding = session.Bind([new("x", new float[In])], [new("y", new float[Out])]);
        binding.Dispose();

        Assert.Throws<ObjectDisposedException>(() => binding.Run(1));
        binding.Dispose();
    }

    [Fact]
    public async Task Bindings_on_separate_threads_share_one_session()
    {
        using var session = OnnxSession.FromBytes(TestModels.Dense(W, B, In, Out), SingleThread);

        await Task.WhenAll(Enumerable.Range(0, 4).Select(t => Task.Run(() =>
        {
            var x = new float[64 * In];
            var y = new float[64 * Out];
            using var binding = session.Bind([new("x", x)], [new("y", y)]);
            for (var i = 0; i < 100; i++)
            {
                var rows = 1 + ((t * 100) + i) % 64;
                var input = TestModels.Values(new Random((t * 7919) + i), rows * In);
                input.CopyTo(x, 0);
                binding.Run(rows);
                TestModels.AssertClose(TestModels.DenseReference(input, W, B, rows, In, Out), binding.Output(0, rows));
            }
        })));
    }
}
