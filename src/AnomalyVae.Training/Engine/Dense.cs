using System.Numerics.Tensors;

namespace AnomalyVae.Training.Engine;

/// <summary>Forward and backward of a dense layer y = act(x·Wᵀ + b) over a block of rows, on <see cref="Gemm"/>.</summary>
internal static unsafe class Dense
{
    /// <summary>y [rows, out] = act(x [rows, in] · Wᵀ + b).</summary>
    public static void Forward(in LayerSpec layer, float* parameters, float* x, float* y, int rows, float* scratch)
    {
        Gemm.Multiply(rows, layer.Outputs, layer.Inputs,
            x, layer.Inputs, 1,
            parameters + layer.WeightOffset, 1, layer.Inputs,
            y, layer.Outputs, GemmOutput.StoreWithBias, parameters + layer.BiasOffset, scratch);
        ActivationMath.Forward(layer.Activation, layer.Alpha, new Span<float>(y, rows * layer.Outputs));
    }

    /// <summary>
    /// Given dLoss/dy in <paramref name="dy"/> (overwritten with dLoss/dpre), writes dW = dpreᵀ·x and
    /// db = Σ_rows dpre into <paramref name="gradient"/> at the layer's offsets and, unless <paramref name="dx"/> is
    /// null, dx = dpre·W.
    /// </summary>
    public static void Backward(in LayerSpec layer, float* parameters, float* x, float* y, float* dy, float* dx, int rows,
        float* gradient, float* scratch)
    {
        int n = rows * layer.Outputs;
        ActivationMath.Backward(layer.Activation, layer.Alpha, new ReadOnlySpan<float>(y, n), new Span<float>(dy, n));
        Gemm.Multiply(layer.Outputs, layer.Inputs, rows,
            dy, 1, layer.Outputs,
            x, layer.Inputs, 1,
            gradient + layer.WeightOffset, layer.Inputs, GemmOutput.Store, null, scratch);
        var db = new Span<float>(gradient + layer.BiasOffset, layer.Outputs);
        db.Clear();
        for (int r = 0; r < rows; r++)
            TensorPrimitives.Add(db, new ReadOnlySpan<float>(dy + r * layer.Outputs, layer.Outputs), db);
        if (dx != null)
        {
            Gemm.Multiply(rows, layer.Inputs, layer.Outputs,
                dy, layer.Outputs, 1,
                parameters + layer.WeightOffset, layer.Inputs, 1,
                dx, layer.Inputs, GemmOutput.Store, null, scratch);
        }
    }
}
