using Microsoft.Extensions.Logging;
using Microsoft.ML.OnnxRuntime;

namespace AnomalyVae.Inference;

/// <summary>
/// The process's ONNX Runtime environment (Microsoft.ML.OnnxRuntime's <see cref="OrtEnv"/>), created once with
/// ORT's own log lines (warning and worse) forwarded to <see cref="Logger"/>.
/// </summary>
public static class OnnxRuntime
{
    private static readonly Lazy<OrtEnv> Environment = new(CreateEnvironment, LazyThreadSafetyMode.ExecutionAndPublication);
    private static volatile ILogger? _logger;

    // Kept in a field: ORT calls it from native code for the life of the process.
    private static readonly DOrtLoggingFunction Forwarder = Forward;

    /// <summary>
    /// Where ONNX Runtime's own log lines go; null writes them to standard error. The environment is process-wide,
    /// so this is too: the host sets it once at start-up.
    /// </summary>
    public static ILogger? Logger
    {
        get => _logger;
        set => _logger = value;
    }

    /// <summary>The runtime's version, e.g. "1.32.0".</summary>
    public static string Version => Env.GetVersionString();

    internal static OrtEnv Env => Environment.Value;

    private static OrtEnv CreateEnvironment()
    {
        var options = new EnvironmentCreationOptions
        {
            logLevel = OrtLoggingLevel.ORT_LOGGING_LEVEL_WARNING,
            loggingFunction = Forwarder,
        };
        return OrtEnv.CreateInstanceWithOptions(ref options);
    }

    private static void Forward(IntPtr param, OrtLoggingLevel severity, string category, string logId, string codeLocation, string message)
    {
        var level = severity switch
        {
            OrtLoggingLevel.ORT_LOGGING_LEVEL_VERBOSE => LogLevel.Trace,
            OrtLoggingLevel.ORT_LOGGING_LEVEL_INFO => LogLevel.Information,
            OrtLoggingLevel.ORT_LOGGING_LEVEL_WARNING => LogLevel.Warning,
            OrtLoggingLevel.ORT_LOGGING_LEVEL_ERROR => LogLevel.Error,
            _ => LogLevel.Critical,
        };
        if (_logger is { } logger)
        {
            logger.Log(level, "ONNX Runtime [{Category}] {Message}", category, message);
        }
        else
        {
            Console.Error.WriteLine($"onnxruntime {level}: [{category}] {message}");
        }
    }
}
