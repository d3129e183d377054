using AnomalyVae.Inference;
using AnomalyVae.Training.Export;
using Microsoft.Extensions.Logging;

namespace AnomalyVae.UnitTests.Inference;

/// <summary>ORT's own log lines go to the process-wide <see cref="OnnxRuntime.Logger"/>; serial, since it is shared.</summary>
[Collection(nameof(ProcessWideMeasurements))]
public sealed class OnnxRuntimeLoggingTests
{
    [Fact]
    public void Ort_warnings_reach_the_configured_logger()
    {
        // ORT warns about an initializer that no node uses.
        var graph = new OnnxGraph("unused-initializer");
        graph.Initializer("orphan_weights", [1f, 2f], 2);
        graph.Output(graph.Relu(graph.Input("x", 1)), 1);
        var logger = new RecordingLogger();
        OnnxRuntime.Logger = logger;
        try
        {
            using var session = OnnxSession.FromBytes(graph.ToBytes(), new OnnxSessionOptions { IntraOpThreads = 1 });
        }
        finally
        {
            OnnxRuntime.Logger = null;
        }

        Assert.Contains(logger.Entries, e => e.Level == LogLevel.Warning && e.Message.Contains("orphan_weights", StringComparison.Ordinal));
    }
}
