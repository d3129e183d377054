using System.Globalization;
using AnomalyVae.Model;

namespace AnomalyVae.Inference;

/// <summary>A model input or output as the session sees it.</summary>
/// <param name="Name">The graph input/output name.</param>
/// <param name="ElementType">Undefined for non-tensor values (sequences, maps).</param>
/// <param name="Shape">Dimensions; -1 where the dimension is dynamic (symbolic or unknown).</param>
/// <param name="DimensionNames">The symbolic name per dimension ("N"), or "" where there is none.</param>
public sealed record OnnxTensorInfo(string Name, OnnxElementType ElementType, IReadOnlyList<long> Shape, IReadOnlyList<string> DimensionNames)
{
    /// <summary>Whether the first dimension is dynamic, i.e. the tensor can carry any number of rows.</summary>
    public bool HasDynamicBatch => Shape.Count > 0 && Shape[0] < 0;

    /// <summary>Elements per row (product of all but the first dimension); null if any of those is dynamic.</summary>
    public long? ElementsPerRow
    {
        get
        {
            long product = 1;
            for (var i = 1; i < Shape.Count; i++)
            {
                if (Shape[i] < 0)
                {
                    return null;
                }

                product *= Shape[i];
            }

            return product;
        }
    }

    /// <summary>The shape as text, symbolic names where known: "[N,4]".</summary>
    public string ShapeText => FormatShape(Shape, DimensionNames);

    public override string ToString() => $"{Name}: {ElementType.ToString().ToLowerInvariant()}{ShapeText}";

    internal static string FormatShape(IReadOnlyList<long> shape, IReadOnlyList<string>? names = null)
    {
        var parts = new string[shape.Count];
        for (var i = 0; i < shape.Count; i++)
        {
            parts[i] = shape[i] >= 0
                ? shape[i].ToString(CultureInfo.InvariantCulture)
                : names is not null && i < names.Count && names[i].Length > 0 ? names[i] : "?";
        }

        return "[" + string.Join(",", parts) + "]";
    }
}

/// <summary>The model-level fields of an ONNX file as ORT reports them.</summary>
/// <param name="ProducerName">ModelProto.producer_name.</param>
/// <param name="GraphName">GraphProto.name.</param>
/// <param name="Domain">ModelProto.domain.</param>
/// <param name="Description">ModelProto.doc_string.</param>
/// <param name="Version">ModelProto.model_version.</param>
/// <param name="Custom">ModelProto.metadata_props.</param>
public sealed record OnnxMetadata(
    string ProducerName,
    string GraphName,
    string Domain,
    string Description,
    long Version,
    IReadOnlyDictionary<string, string> Custom);

/// <summary>A named float tensor in managed memory, for the convenience <see cref="OnnxSession.Run(ReadOnlySpan{FloatTensor})"/>.</summary>
public sealed class FloatTensor
{
    public FloatTensor(string name, float[] data, params long[] shape)
    {
        ArgumentNullException.ThrowIfNull(name);
        ArgumentNullException.ThrowIfNull(data);
        ArgumentNullException.ThrowIfNull(shape);
        long count = 1;
        foreach (var dim in shape)
        {
            if (dim < 0)
            {
                throw new ArgumentException($"Tensor '{name}' has a negative dimension in shape {OnnxTensorInfo.FormatShape(shape)}.", nameof(shape));
            }

            count *= dim;
        }

        if (count != data.Length)
        {
            throw new ArgumentException(
                $"Tensor '{name}' has shape {OnnxTensorInfo.FormatShape(shape)} ({count} elements) but {data.Length} values.", nameof(data));
        }

        Name = name;
        Data = data;
        Shape = shape;
    }

    public string Name { get; }

    public float[] Data { get; }

    public IReadOnlyList<long> Shape { get; }

    public override string ToString() => $"{Name}: float{OnnxTensorInfo.FormatShape(Shape)}";
}
