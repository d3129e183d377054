using System.Runtime.InteropServices;
using AnomalyVae.Model;
using Google.Protobuf;

using OnnxProto = global::Onnx;

namespace AnomalyVae.Training.Export;

/// <summary>A node attribute: int, float, ints, floats or string.</summary>
public sealed class OnnxAttribute
{
    private OnnxAttribute(OnnxProto.AttributeProto message) => Message = message;

    public string Name => Message.Name;

    internal OnnxProto.AttributeProto Message { get; }

    public static OnnxAttribute Int(string name, long value) =>
        new(new OnnxProto.AttributeProto { Name = name, Type = OnnxProto.AttributeProto.Types.AttributeType.Int, I = value });

    public static OnnxAttribute Float(string name, float value) =>
        new(new OnnxProto.AttributeProto { Name = name, Type = OnnxProto.AttributeProto.Types.AttributeType.Float, F = value });

    public static OnnxAttribute Ints(string name, params long[] values)
    {
        var proto = new OnnxProto.AttributeProto { Name = name, Type = OnnxProto.AttributeProto.Types.AttributeType.Ints };
        proto.Ints.AddRange(values);
        return new OnnxAttribute(proto);
    }

    public static OnnxAttribute Floats(string name, params float[] values)
    {
        var proto = new OnnxProto.AttributeProto { Name = name, Type = OnnxProto.AttributeProto.Types.AttributeType.Floats };
        proto.Floats.AddRange(values);
        return new OnnxAttribute(proto);
    }

    public static OnnxAttribute String(string name, string value) =>
        new(new OnnxProto.AttributeProto { Name = name, Type = OnnxProto.AttributeProto.Types.AttributeType.String, S = ByteString.CopyFromUtf8(value) });
}

/// <summary>
/// Builds one ONNX model (IR 8, opset 17, producer "AnomalyVae") over the classes generated from onnx.proto; inputs and
/// outputs are float tensors with the symbolic batch dimension "N". Each node method returns its output's name (pass a
/// new one, or get one such as "Gemm_3"). Opset-17 axes, sizes, shapes and Clip bounds are inputs, which the builder
/// adds as initializers (ReduceLogSumExp still takes axes as an attribute).
/// </summary>
public sealed class OnnxGraph
{
    public const long IrVersion = 8;
    public const long Opset = 17;
    public const string ProducerName = "AnomalyVae";
    public const string BatchDimension = "N";

    private readonly OnnxProto.ModelProto _model;
    private readonly OnnxProto.GraphProto _graph;
    private readonly HashSet<string> _values = new(StringComparer.Ordinal);
    private readonly HashSet<string> _nodeNames = new(StringComparer.Ordinal);
    private int _counter;

    public OnnxGraph(string graphName)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(graphName);
        _graph = new OnnxProto.GraphProto { Name = graphName };
        _model = new OnnxProto.ModelProto
        {
            IrVersion = IrVersion,
            ProducerName = ProducerName,
            ProducerVersion = typeof(OnnxGraph).Assembly.GetName().Version?.ToString() ?? "0",
            Graph = _graph,
        };
        _model.OpsetImport.Add(new OnnxProto.OperatorSetIdProto { Domain = "", Version = Opset });
    }

    /// <summary>The model's doc_string.</summary>
    public string Description
    {
        get => _model.DocString;
        set => _model.DocString = value ?? "";
    }

    /// <summary>The model's model_version.</summary>
    public long ModelVersion
    {
        get => _model.ModelVersion;
        set => _model.ModelVersion = value;
    }

    /// <summary>The model's domain (reverse-DNS, e.g. "org.anomalyvae").</summary>
    public string Domain
    {
        get => _model.Domain;
        set => _model.Domain = value ?? "";
    }

    /// <summary>Sets one metadata_props entry (replacing the key's earlier value).</summary>
    public OnnxGraph SetMetadata(string key, string value)
    {
        ArgumentException.ThrowIfNullOrEmpty(key);
        ArgumentNullException.ThrowIfNull(value);
        var existing = _model.MetadataProps.FirstOrDefault(p => p.Key == key);
        if (existing is null)
        {
            _model.MetadataProps.Add(new OnnxProto.StringStringEntryProto { Key = key, Value = value });
        }
        else
        {
            existing.Value = value;
        }

        return this;
    }

    /// <summary>Declares a float graph input of shape [N, <paramref name="rowShape"/>...].</summary>
    public string Input(string name, params long[] rowShape)
    {
        Claim(name);
        _graph.Input.Add(BatchedFloat(name, rowShape));
        return name;
    }

    /// <summary>Declares <paramref name="value"/> as a float graph output of shape [N, <paramref name="rowShape"/>...].</summary>
    public string Output(string value, params long[] rowShape)
    {
        RequireKnown(value);
        if (_graph.Output.Any(o => o.Name == value))
        {
            throw new ArgumentException($"'{value}' is already a graph output.", nameof(value));
        }

        _graph.Output.Add(BatchedFloat(value, rowShape));
        return value;
    }

    /// <summary>
    /// Declares <paramref name="value"/> as a float graph output named <paramref name="name"/> (through an Identity
    /// node when the names differ), of shape [N, <paramref name="rowShape"/>...].
    /// </summary>
    public string OutputAs(string value, string name, params long[] rowShape) =>
        Output(value == name ? value : Identity(value, name), rowShape);

    /// <summary>A float initializer (constant tensor) with the given shape; an empty shape makes a scalar.</summary>
    public string Initializer(string name, ReadOnlySpan<float> values, params long[] shape) =>
        AddInitializer(name, OnnxProto.TensorProto.Types.DataType.Float, MemoryMarshal.AsBytes(values), values.Length, shape);

    /// <summary>An int64 initializer with the given shape; an empty shape makes a scalar.</summary>
    public string Initializer(string name, ReadOnlySpan<long> values, params long[] shape) =>
        AddInitializer(name, OnnxProto.TensorProto.Types.DataType.Int64, MemoryMarshal.AsBytes(values), values.Length, shape);

    /// <summary>A float scalar initializer with a generated name.</summary>
    public string Scalar(float value) => Initializer(NewName("const"), [value]);

    /// <summary>A 1-D int64 initializer with a generated name (axes, sizes, shapes).</summary>
    public string Int64s(params long[] values) => Initializer(NewName("const"), values, values.Length);

    /// <summary>
    /// Adds a node of any default-domain operator. Empty strings in <paramref name="inputs"/> skip optional
    /// inputs. Returns the output names (generated where <paramref name="outputs"/> is null).
    /// </summary>
    public string[] Node(string opType, IReadOnlyList<string> inputs, int outputCount = 1, IReadOnlyList<string>? outputs = null, params OnnxAttribute[] attributes)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(opType);
        ArgumentOutOfRangeException.ThrowIfLessThan(outputCount, 1);
        if (outputs is not null && outputs.Count != outputCount)
        {
            throw new ArgumentException($"{opType}: {outputs.Count} output names for {outputCount} outputs.", nameof(outputs));
        }

        foreach (var input in inputs)
        {
            if (input.Length > 0)
            {
                RequireKnown(input);
            }
        }

        var node = new OnnxProto.NodeProto { OpType = opType, Name = UniqueNodeName(opType) };
        node.Input.AddRange(inputs);
        var names = new string[outputCount];
        for (var i = 0; i < outputCount; i++)
        {
            names[i] = outputs?[i] ?? NewName(opType);
            Claim(names[i]);
        }

        node.Output.AddRange(names);
        var seen = new HashSet<string>(StringComparer.Ordinal);
        foreach (var attribute in attributes)
        {
            if (!seen.Add(attribute.Name))
            {
                throw new ArgumentException($"{opType}: attribute '{attribute.Name}' given twice.", nameof(attributes));
            }

            node.Attribute.Add(attribute.Message.Clone());
        }

        _graph.Node.Add(node);
        return names;
    }

    /// <summary>Y = alpha·A'·B' + beta·C. With <paramref name="transB"/> a dense weight W [out, in] is used as stored.</summary>
    public string Gemm(string a, string b, string? c = null, bool transA = false, bool transB = false, float alpha = 1f, float beta = 1f, string? name = null)
    {
        var attributes = new List<OnnxAttribute>();
        if (transA)
        {
            attributes.Add(OnnxAttribute.Int("transA", 1));
        }

        if (transB)
        {
            attributes.Add(OnnxAttribute.Int("transB", 1));
        }

        if (alpha != 1f)
        {
            attributes.Add(OnnxAttribute.Float("alpha", alpha));
        }

        if (beta != 1f)
        {
            attributes.Add(OnnxAttribute.Float("beta", beta));
        }

        string[] inputs = c is null ? [a, b] : [a, b, c];
        return One("Gemm", inputs, name, [.. attributes]);
    }

    public string Relu(string x, string? name = null) => One("Relu", [x], name);

    public string LeakyRelu(string x, float alpha = 0.01f, string? name = null) => One("LeakyRelu", [x], name, OnnxAttribute.Float("alpha", alpha));

    public string Tanh(string x, string? name = null) => One("Tanh", [x], name);

    public string Sigmoid(string x, string? name = null) => One("Sigmoid", [x], name);

    /// <summary>log(1 + exp(x)).</summary>
    public string Softplus(string x, string? name = null) => One("Softplus", [x], name);

    public string Exp(string x, string? name = null) => One("Exp", [x], name);

    public string Log(string x, string? name = null) => One("Log", [x], name);

    public string Sqrt(string x, string? name = null) => One("Sqrt", [x], name);

    public string Abs(string x, string? name = null) => One("Abs", [x], name);

    public string Sign(string x, string? name = null) => One("Sign", [x], name);

    public string Neg(string x, string? name = null) => One("Neg", [x], name);

    public string Identity(string x, string? name = null) => One("Identity", [x], name);

    public string Add(string a, string b, string? name = null) => One("Add", [a, b], name);

    public string Sub(string a, string b, string? name = null) => One("Sub", [a, b], name);

    public string Mul(string a, string b, string? name = null) => One("Mul", [a, b], name);

    public string Div(string a, string b, string? name = null) => One("Div", [a, b], name);

    /// <summary>Element-wise maximum of one or more tensors (broadcasting).</summary>
    public string Max(params string[] inputs) => One("Max", inputs, null);

    /// <summary>Element-wise minimum of one or more tensors (broadcasting).</summary>
    public string Min(params string[] inputs) => One("Min", inputs, null);

    /// <summary>Clamps x to [min, max]; a null bound is left open. Bounds become scalar inputs (opset 11+).</summary>
    public string Clip(string x, float? min, float? max, string? name = null) =>
        One("Clip", [x, min is { } lo ? Scalar(lo) : "", max is { } hi ? Scalar(hi) : ""], name);

    /// <summary>Sum over <paramref name="axes"/> (an int64 input since opset 13).</summary>
    public string ReduceSum(string x, long[] axes, bool keepDims = true, string? name = null) =>
        One("ReduceSum", [x, Int64s(axes)], name, OnnxAttribute.Int("keepdims", keepDims ? 1 : 0));

    /// <summary>log Σ exp over <paramref name="axes"/> (an attribute up to opset 17).</summary>
    public string ReduceLogSumExp(string x, long[] axes, bool keepDims = true, string? name = null) =>
        One("ReduceLogSumExp", [x], name, OnnxAttribute.Ints("axes", axes), OnnxAttribute.Int("keepdims", keepDims ? 1 : 0));

    /// <summary>Splits x along <paramref name="axis"/> into pieces of the given sizes (an int64 input since opset 13).</summary>
    public string[] Split(string x, long[] sizes, long axis = 1, IReadOnlyList<string>? names = null) =>
        Node("Split", [x, Int64s(sizes)], sizes.Length, names, OnnxAttribute.Int("axis", axis));

    public string Concat(long axis, params string[] inputs) => One("Concat", inputs, null, OnnxAttribute.Int("axis", axis));

    public string Softmax(string x, long axis = -1, string? name = null) => One("Softmax", [x], name, OnnxAttribute.Int("axis", axis));

    public string LogSoftmax(string x, long axis = -1, string? name = null) => One("LogSoftmax", [x], name, OnnxAttribute.Int("axis", axis));

    /// <summary>Inserts size-1 dimensions at <paramref name="axes"/> (an int64 input since opset 13).</summary>
    public string Unsqueeze(string x, long[] axes, string? name = null) => One("Unsqueeze", [x, Int64s(axes)], name);

    /// <summary>Reshapes to <paramref name="shape"/> (0 copies a dimension, -1 infers one).</summary>
    public string Reshape(string x, long[] shape, string? name = null) => One("Reshape", [x, Int64s(shape)], name);

    public string Gather(string data, string indices, long axis = 0, string? name = null) =>
        One("Gather", [data, indices], name, OnnxAttribute.Int("axis", axis));

    /// <summary>Elements [<paramref name="start"/>, <paramref name="end"/>) along <paramref name="axis"/>.</summary>
    public string Slice(string data, long start, long end, long axis, string? name = null) =>
        One("Slice", [data, Int64s(start), Int64s(end), Int64s(axis)], name);

    /// <summary>One-hot of <paramref name="indices"/> with <paramref name="depth"/> classes; values are [off, on].</summary>
    public string OneHot(string indices, long depth, float off = 0f, float on = 1f, long axis = -1, string? name = null) =>
        One("OneHot", [indices, Initializer(NewName("const"), [depth], []), Initializer(NewName("const"), [off, on], 2)], name, OnnxAttribute.Int("axis", axis));

    /// <summary>Element-wise a == b, a bool tensor.</summary>
    public string Equal(string a, string b, string? name = null) => One("Equal", [a, b], name);

    /// <summary>condition ? x : y element-wise (condition is bool).</summary>
    public string Where(string condition, string x, string y, string? name = null) => One("Where", [condition, x, y], name);

    public string Cast(string x, OnnxElementType to, string? name = null) => One("Cast", [x], name, OnnxAttribute.Int("to", (long)to));

    /// <summary>The serialized model.</summary>
    public byte[] ToBytes()
    {
        if (_graph.Output.Count == 0)
        {
            throw new InvalidOperationException($"Graph '{_graph.Name}' has no outputs; declare them with Output(...).");
        }

        return _model.ToByteArray();
    }

    /// <summary>Writes the serialized model to <paramref name="path"/>.</summary>
    public void Save(string path) => File.WriteAllBytes(path, ToBytes());

    /// <summary>A copy of the model proto, for tests that inspect it.</summary>
    internal OnnxProto.ModelProto ToModel() => _model.Clone();

    private string One(string opType, string[] inputs, string? name, params OnnxAttribute[] attributes) =>
        Node(opType, inputs, 1, name is null ? null : [name], attributes)[0];

    private string AddInitializer(string name, OnnxProto.TensorProto.Types.DataType type, ReadOnlySpan<byte> bytes, int count, long[] shape)
    {
        ArgumentNullException.ThrowIfNull(shape);
        long expected = 1;
        foreach (var dim in shape)
        {
            ArgumentOutOfRangeException.ThrowIfNegative(dim, nameof(shape));
            expected *= dim;
        }

        if (expected != count)
        {
            throw new ArgumentException($"Initializer '{name}': shape [{string.Join(",", shape)}] needs {expected} values, got {count}.", nameof(shape));
        }

        if (!BitConverter.IsLittleEndian)
        {
            throw new PlatformNotSupportedException("ONNX raw_data is little-endian.");
        }

        Claim(name);
        var tensor = new OnnxProto.TensorProto { Name = name, DataType = (int)type, RawData = ByteString.CopyFrom(bytes) };
        tensor.Dims.AddRange(shape);
        _graph.Initializer.Add(tensor);
        return name;
    }

    private static OnnxProto.ValueInfoProto BatchedFloat(string name, long[] rowShape)
    {
        var shape = new OnnxProto.TensorShapeProto();
        shape.Dim.Add(new OnnxProto.TensorShapeProto.Types.Dimension { DimParam = BatchDimension });
        foreach (var dim in rowShape)
        {
            ArgumentOutOfRangeException.ThrowIfNegative(dim, nameof(rowShape));
            shape.Dim.Add(new OnnxProto.TensorShapeProto.Types.Dimension { DimValue = dim });
        }

        return new OnnxProto.ValueInfoProto
        {
            Name = name,
            Type = new OnnxProto.TypeProto
            {
                TensorType = new OnnxProto.TypeProto.Types.Tensor { ElemType = (int)OnnxProto.TensorProto.Types.DataType.Float, Shape = shape },
            },
        };
    }

    private void Claim(string name)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(name);
        if (!_values.Add(name))
        {
            throw new ArgumentException($"The name '{name}' is already used in graph '{_graph.Name}'.", nameof(name));
        }
    }

    private void RequireKnown(string value)
    {
        if (!_values.Contains(value))
        {
            throw new ArgumentException($"'{value}' is not an input, initializer or node output of graph '{_graph.Name}'.", nameof(value));
        }
    }

    private string NewName(string prefix)
    {
        string name;
        do
        {
            name = $"{prefix}_{++_counter}";
        }
        while (_values.Contains(name));

        return name;
    }

    private string UniqueNodeName(string opType)
    {
        string name;
        do
        {
            name = $"{opType}_node_{++_counter}";
        }
        while (!_nodeNames.Add(name));

        return name;
    }
}
