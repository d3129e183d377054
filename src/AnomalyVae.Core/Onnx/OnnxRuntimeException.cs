namespace AnomalyVae.Onnx;

/// <summary>ONNX Runtime's error codes (<c>OrtErrorCode</c>); newer runtimes may report values beyond these.</summary>
public enum OrtErrorCode
{
    Ok = 0,
    Fail = 1,
    InvalidArgument = 2,
    NoSuchFile = 3,
    NoModel = 4,
    EngineError = 5,
    RuntimeException = 6,
    InvalidProtobuf = 7,
    ModelLoaded = 8,
    NotImplemented = 9,
    InvalidGraph = 10,
    EpFail = 11,
}

/// <summary>An error reported by ONNX Runtime (a non-null <c>OrtStatus</c>), with its code and message.</summary>
public sealed class OnnxRuntimeException : Exception
{
    public OnnxRuntimeException(OrtErrorCode errorCode, string ortMessage, string? context = null)
        : base(Describe(errorCode, ortMessage, context))
    {
        ErrorCode = errorCode;
        OrtMessage = ortMessage;
    }

    /// <summary>ORT's error code.</summary>
    public OrtErrorCode ErrorCode { get; }

    /// <summary>ORT's own message, without our context.</summary>
    public string OrtMessage { get; }

    private static string Describe(OrtErrorCode code, string ortMessage, string? context)
    {
        var name = Enum.IsDefined(code) ? code.ToString() : ((int)code).ToString(System.Globalization.CultureInfo.InvariantCulture);
        return context is null
            ? $"ONNX Runtime error {name}: {ortMessage}"
            : $"{context}: ONNX Runtime error {name}: {ortMessage}";
    }
}
