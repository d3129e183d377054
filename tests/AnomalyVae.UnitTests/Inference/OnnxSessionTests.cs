using System.Runtime.InteropServices;
using AnomalyVae.Inference;
using AnomalyVae.Model;
using AnomalyVae.Tests;
using Microsoft.Extensions.Logging;
using Microsoft.ML.OnnxRuntime;
using Xunit.Abstractions;

namespace AnomalyVae.UnitTests.Inference;

public sealed class OnnxSessionTests(ITestOutputHelper output)
{
    private const int In = TestModels.DenseInputs;
    private const int Out = TestModels.DenseOutputs;
    private static readonly float[] W = TestModels.DenseWeights;
    private static readonly float[] B = TestModels.DenseBias;
    private static readonly OnnxSessionOptions SingleThread = TestModels.SingleThread;

    [Fact]
    public void Dense_relu_model_matches_a_plain_loop()
    {
        using var session = OnnxSession.FromBytes(TestModels.Dense(W, B, In, Out), SingleThread);
        var x = TestModels.Values(new Random(1), 5 * In, scale: 3f);

        var outputs = session.Run(new FloatTensor("x", x, 5, In));

        var y = Assert.Single(outputs);
        Assert.Equal("y", y.Name);
        Assert.Equal([5L, Out], y.Shape);
        var expected = TestModels.DenseReference(x, W, B, 5, In, Out);
        Assert.Contains(expected, v => v == 0f); // the data exercises relu's clamp...
        Assert.Contains(expected, v => v > 0f); // ...and its pass-through
        TestModels.AssertClose(expected, y.Data);
    }

    [Fact]
    public void Session_reports_inputs_outputs_and_provider()
    {
        using var session = OnnxSession.FromBytes(TestModels.Dense(W, B, In, Out), SingleThread);

        var input = Assert.Single(session.Inputs);
        Assert.Equal("x", input.Name);
        Assert.Equal(OnnxElementType.Float, input.ElementType);
        Assert.Equal([-1L, In], input.Shape);
        Assert.Equal(["N", ""], input.DimensionNames);
        Assert.Equal("x: float[N,4]", input.ToString());
        Assert.Equal(In, input.ElementsPerRow);
        var output = Assert.Single(session.Outputs);
        Assert.Equal("y", output.Name);
        Assert.Equal([-1L, Out], output.Shape);
        Assert.Equal(ExecutionProvider.Cpu, session.Provider);
    }

    [Fact]
    public void Same_session_runs_batches_of_1_7_and_1024_rows()
    {
        using var session = OnnxSession.FromBytes(TestModels.Dense(W, B, In, Out), SingleThread);
        foreach (var rows in new[] { 1, 7, 1024, 7 })
        {
            var x = TestModels.Values(new Random(rows), rows * In, scale: 2f);
            var y = Assert.Single(session.Run(new FloatTensor("x", x, rows, In)));
            Assert.Equal([(long)rows, Out], y.Shape);
            TestModels.AssertClose(TestModels.DenseReference(x, W, B, rows, In, Out), y.Data);
        }
    }

    [Fact]
    public void Wrong_input_width_is_rejected_with_both_shapes()
    {
        using var session = OnnxSession.FromBytes(TestModels.Dense(W, B, In, Out), SingleThread);

        var error = Assert.Throws<ArgumentException>(() => session.Run(new FloatTensor("x", new float[6], 2, 3)));

        Assert.Contains("[2,3]", error.Message);
        Assert.Contains("[N,4]", error.Message);
        Assert.Contains("'x'", error.Message);
    }

    [Fact]
    public void Wrong_input_rank_is_rejected_with_both_shapes()
    {
        using var session = OnnxSession.FromBytes(TestModels.Dense(W, B, In, Out), SingleThread);

        var error = Assert.Throws<ArgumentException>(() => session.Run(new FloatTensor("x", new float[8], 8)));

        Assert.Contains("[8]", error.Message);
        Assert.Contains("[N,4]", error.Message);
    }

    [Fact]
    public void Unknown_and_missing_inputs_are_named()
    {
        using var session = OnnxSession.FromBytes(TestModels.Dense(W, B, In, Out), SingleThread);

        var unknown = Assert.Throws<ArgumentException>(() => session.Run(new FloatTensor("features", new float[4], 1, 4)));
        Assert.Contains("'features' is not an input", unknown.Message);
        Assert.Contains("x: float[N,4]", unknown.Message);
        var missing = Assert.Throws<ArgumentException>(() => session.Run());
        Assert.Contains("x: float[N,4]", missing.Message);
        Assert.Contains("not given", missing.Message);
    }

    [Fact]
    public void Data_length_must_match_the_declared_shape()
    {
        var error = Assert.Throws<ArgumentException>(() => new FloatTensor("x", new float[7], 2, 4));

        Assert.Contains("[2,4]", error.Message);
        Assert.Contains("7 values", error.Message);
    }

    [Fact]
    public void Random_bytes_are_rejected_by_ort_with_a_clear_error()
    {
        var bytes = new byte[4096];
        new Random(42).NextBytes(bytes);

        var error = Assert.Throws<OnnxRuntimeException>(() => OnnxSession.FromBytes(bytes, SingleThread));

        output.WriteLine(error.Message);
        Assert.Contains("[ErrorCode:", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Truncated_model_file_is_rejected_as_invalid_protobuf()
    {
        var path = Path.Combine(Path.GetTempPath(), $"anomalyvae-corrupt-{Guid.NewGuid():N}.onnx");
        var model = TestModels.Dense(W, B, In, Out);
        File.WriteAllBytes(path, model.AsSpan(0, model.Length / 2).ToArray());
        try
        {
            var error = Assert.Throws<OnnxRuntimeException>(() => OnnxSession.FromFile(path, SingleThread));

            output.WriteLine(error.Message);
            Assert.Contains("InvalidProtobuf", error.Message, StringComparison.Ordinal);
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Fact]
    public void Empty_model_file_and_empty_bytes_are_rejected()
    {
        var path = Path.Combine(Path.GetTempPath(), $"anomalyvae-empty-{Guid.NewGuid():N}.onnx");
        File.WriteAllBytes(path, []);
        try
        {
            var fromFile = Assert.Throws<InvalidDataException>(() => OnnxSession.FromFile(path, SingleThread));
            Assert.Contains(path, fromFile.Message);
            Assert.Contains("empty", fromFile.Message);
            var fromBytes = Assert.Throws<InvalidDataException>(() => OnnxSession.FromBytes([], SingleThread));
            Assert.Contains("empty", fromBytes.Message);
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Fact]
    public void Missing_model_file_is_a_file_not_found_error()
    {
        var path = Path.Combine(Path.GetTempPath(), $"anomalyvae-missing-{Guid.NewGuid():N}.onnx");

        var error = Assert.Throws<FileNotFoundException>(() => OnnxSession.FromFile(path, SingleThread));

        Assert.Contains(path, error.Message);
    }

    [Fact]
    public void Model_loads_from_a_file()
    {
        var path = Path.Combine(Path.GetTempPath(), $"anomalyvae-dense-{Guid.NewGuid():N}.onnx");
        File.WriteAllBytes(path, TestModels.Dense(W, B, In, Out));
        try
        {
            using var session = OnnxSession.FromFile(path, SingleThread with { OptimizationLevel = GraphOptimizationLevel.ORT_DISABLE_ALL });
            var x = TestModels.Values(new Random(3), 2 * In);

            var y = Assert.Single(session.Run(new FloatTensor("x", x, 2, In)));

            TestModels.AssertClose(TestModels.DenseReference(x, W, B, 2, In, Out), y.Data);
            Assert.Contains(path, session.Source);
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Fact]
    public void Metadata_round_trips_through_the_model_file()
    {
        var model = TestModels.Dense(W, B, In, Out, graph =>
        {
            graph.Description = "dense test model";
            graph.ModelVersion = 42;
            graph.Domain = "org.anomalyvae.test";
            graph.SetMetadata("anomalyvae.schema", "{\"features\":[\"a\",\"b\"]}");
            graph.SetMetadata("anomalyvae.calibration", "first");
            graph.SetMetadata("anomalyvae.calibration", "0.25"); // replaces the earlier value
            graph.SetMetadata("unicode", "Zürich ✓");
        });

        using var session = OnnxSession.FromBytes(model, SingleThread);
        var metadata = session.Metadata;

        Assert.Equal("AnomalyVae", metadata.ProducerName);
        Assert.Equal("dense", metadata.GraphName);
        Assert.Equal("org.anomalyvae.test", metadata.Domain);
        Assert.Equal("dense test model", metadata.Description);
        Assert.Equal(42, metadata.Version);
        Assert.Equal(3, metadata.Custom.Count);
        Assert.Equal("{\"features\":[\"a\",\"b\"]}", metadata.Custom["anomalyvae.schema"]);
        Assert.Equal("0.25", metadata.Custom["anomalyvae.calibration"]);
        Assert.Equal("Zürich ✓", metadata.Custom["unicode"]);
    }

    [Fact]
    public void Model_without_custom_metadata_has_an_empty_map()
    {
        using var session = OnnxSession.FromBytes(TestModels.Dense(W, B, In, Out), SingleThread);

        Assert.Empty(session.Metadata.Custom);
        Assert.Equal("", session.Metadata.Description);
    }

    [Fact]
    public void Cuda_request_without_cuda_logs_one_warning_and_scores_on_cpu()
    {
        var logger = new RecordingLogger();
        // ORT's CUDA provider ships with the package; what this machine lacks is the CUDA 13 runtime it links.
        Assert.True(File.Exists(Path.Combine(AppContext.BaseDirectory, "libonnxruntime_providers_cuda.so")), "the CUDA provider should be in the build output");
        Assert.False(NativeLibrary.TryLoad("libcudart.so.13", out _), "This test expects a machine without the CUDA 13 runtime.");

        using var session = OnnxSession.FromBytes(TestModels.Dense(W, B, In, Out), SingleThread with { CudaDeviceId = 0 }, logger);
        var x = TestModels.Values(new Random(5), 7 * In, scale: 2f);
        var y = Assert.Single(session.Run(new FloatTensor("x", x, 7, In)));

        Assert.Equal(ExecutionProvider.Cpu, session.Provider);
        var entry = Assert.Single(logger.Entries);
        output.WriteLine(entry.Message);
        Assert.Equal(LogLevel.Warning, entry.Level);
        Assert.Contains("CUDA", entry.Message);
        Assert.Contains("CPU", entry.Message);
        Assert.DoesNotContain('\n', entry.Message);
        TestModels.AssertClose(TestModels.DenseReference(x, W, B, 7, In, Out), y.Data);
    }

    [Fact]
    public void Cpu_session_logs_nothing()
    {
        var logger = new RecordingLogger();

        using var session = OnnxSession.FromBytes(TestModels.Dense(W, B, In, Out), SingleThread, logger);

        Assert.Empty(logger.Entries);
    }

    [Fact]
    public void Corrupt_model_with_cuda_requested_reports_the_model_error_without_a_cuda_warning()
    {
        var logger = new RecordingLogger();
        var bytes = new byte[256];
        new Random(7).NextBytes(bytes);

        Assert.Throws<OnnxRuntimeException>(() => OnnxSession.FromBytes(bytes, SingleThread with { CudaDeviceId = 0 }, logger));

        Assert.Empty(logger.Entries);
    }

    [Fact]
    public void Invalid_options_are_rejected_before_loading()
    {
        var model = TestModels.Dense(W, B, In, Out);

        Assert.Throws<ArgumentOutOfRangeException>(() => OnnxSession.FromBytes(model, new OnnxSessionOptions { IntraOpThreads = -1 }));
        Assert.Throws<ArgumentOutOfRangeException>(() => OnnxSession.FromBytes(model, new OnnxSessionOptions { OptimizationLevel = (GraphOptimizationLevel)5 }));
        Assert.Throws<ArgumentOutOfRangeException>(() => OnnxSession.FromBytes(model, new OnnxSessionOptions { CudaDeviceId = -1 }));
    }

    [Fact]
    public void Disposed_session_refuses_to_run()
    {
        var session = OnnxSession.FromBytes(TestModels.Dense(W, B, In, Out), SingleThread);
        session.Dispose();

        Assert.Throws<ObjectDisposedException>(() => session.Run(new FloatTensor("x", new float[In], 1, In)));
        session.Dispose(); // idempotent
    }

    [Fact]
    public async Task Concurrent_runs_on_one_session_give_correct_results()
    {
        using var session = OnnxSession.FromBytes(TestModels.Dense(W, B, In, Out), SingleThread);

        var tasks = Enumerable.Range(0, 8).Select(t => Task.Run(() =>
        {
            for (var i = 0; i < 50; i++)
            {
                var rows = 1 + ((t * 50) + i) % 33;
                var x = TestModels.Values(new Random((t * 1000) + i), rows * In);
                var y = Assert.Single(session.Run(new FloatTensor("x", x, rows, In)));
                TestModels.AssertClose(TestModels.DenseReference(x, W, B, rows, In, Out), y.Data);
            }
        }));

        await Task.WhenAll(tasks);
    }

    [Fact]
    public async Task Disposing_during_concurrent_runs_either_finishes_them_or_refuses_cleanly()
    {
        var session = OnnxSession.FromBytes(TestModels.Dense(W, B, In, Out), SingleThread);
        var x = TestModels.Values(new Random(8), 256 * In);
        var expected = TestModels.DenseReference(x, W, B, 256, In, Out);
        using var started = new CountdownEvent(4);

        int RunUntilDisposed()
        {
            started.Signal();
            var completed = 0;
            while (true)
            {
                try
                {
                    TestModels.AssertClose(expected, Assert.Single(session.Run(new FloatTensor("x", x, 256, In))).Data);
                    completed++;
                }
                catch (ObjectDisposedException)
                {
                    return completed;
                }
            }
        }

        // Dedicated threads: busy runners on pool threads would starve the pool on a 2-core machine.
        var runners = Enumerable.Range(0, 4)
            .Select(_ => Task.Factory.StartNew(RunUntilDisposed, CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default))
            .ToArray();
        started.Wait();
        await Task.Delay(20);
        session.Dispose();

        var completedRuns = await Task.WhenAll(runners);
        Assert.True(completedRuns.Sum() > 0, "some runs should have finished before the dispose");
    }
}
