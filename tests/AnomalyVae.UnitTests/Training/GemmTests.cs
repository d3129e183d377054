using AnomalyVae.Model;
using AnomalyVae.Training.Engine;

namespace AnomalyVae.UnitTests.Training;

public sealed unsafe class GemmTests
{
    private static float[] RandomMatrix(int length, int seed)
    {
        var rng = new DeterministicRandom((ulong)seed);
        var a = new float[length];
        for (int i = 0; i < a.Length; i++)
            a[i] = (float)(2 * rng.NextDouble() - 1);
        return a;
    }

    /// <summary>Runs Gemm.Multiply on managed arrays with the given strides.</summary>
    private static void Run(int m, int n, int k, float[] a, int aRow, int aCol, float[] b, int bRow, int bCol,
        float[] c, int ldc, GemmOutput output, float[]? bias)
    {
        var scratch = new float[Gemm.ScratchLength(n, k) + 16];
        fixed (float* pa = a, pb = b, pc = c, ps = scratch, pbias = bias)
            Gemm.Multiply(m, n, k, pa, aRow, aCol, pb, bRow, bCol, pc, ldc, output, pbias, ps);
    }

    private static void AssertClose(int m, int n, int k, float[] a, int aRow, int aCol, float[] b, int bRow, int bCol,
        float[] c, int ldc, float[] before, GemmOutput output, float[]? bias)
    {
        for (int i = 0; i < m; i++)
        {
            for (int j = 0; j < n; j++)
            {
                double sum = 0, magnitude = 0;
                for (int p = 0; p < k; p++)
                {
                    double t = (double)a[i * aRow + p * aCol] * b[p * bRow + j * bCol];
                    sum += t;
                    magnitude += Math.Abs(t);
                }

                if (output == GemmOutput.Accumulate)
                    sum += before[i * ldc + j];
                if (output == GemmOutput.StoreWithBias)
                    sum += bias![j];
                // Float FMA chain: error bounded by ~k·ε·Σ|a·b|; 1e-6 per term is a generous margin.
                double tolerance = 1e-6 * (k + 2) * (magnitude + 1);
                Assert.True(Math.Abs(c[i * ldc + j] - sum) <= tolerance,
                    $"C[{i},{j}] = {c[i * ldc + j]}, expected {sum} (m={m}, n={n}, k={k}, {output})");
            }
        }
    }

    public static TheoryData<int, int, int> Shapes => new()
    {
        { 1, 1, 1 }, { 6, 16, 8 }, { 7, 17, 3 }, { 13, 8, 64 }, { 5, 9, 0 }, { 37, 41, 29 }, { 128, 64, 64 }, { 12, 3, 130 },
    };

    [Theory]
    [MemberData(nameof(Shapes))]
    public void Forward_shape_X_times_W_transposed_matches_double_reference(int m, int n, int k)
    {
        // Y[m,n] = X[m,k]·Wᵀ with W [n,k] row-major, plus bias.
        var x = RandomMatrix(m * k, 1);
        var w = RandomMatrix(n * k, 2);
        var bias = RandomMatrix(n, 3);
        var y = new float[m * n];
        Run(m, n, k, x, k, 1, w, 1, k, y, n, GemmOutput.StoreWithBias, bias);
        AssertClose(m, n, k, x, k, 1, w, 1, k, y, n, y, GemmOutput.StoreWithBias, bias);
    }

    [Theory]
    [MemberData(nameof(Shapes))]
    public void Backward_input_shape_dY_times_W_matches_double_reference(int m, int n, int k)
    {
        // dX[m,n] = dY[m,k]·W with W [k,n] row-major, accumulated onto existing values.
        var dy = RandomMatrix(m * k, 4);
        var w = RandomMatrix(k * n, 5);
        var dx = RandomMatrix(m * n, 6);
        var before = (float[])dx.Clone();
        Run(m, n, k, dy, k, 1, w, n, 1, dx, n, GemmOutput.Accumulate, null);
        AssertClose(m, n, k, dy, k, 1, w, n, 1, dx, n, before, GemmOutput.Accumulate, null);
    }

    [Theory]
    [MemberData(nameof(Shapes))]
    public void Backward_weight_shape_dY_transposed_times_X_matches_double_reference(int m, int n, int k)
    {
        // dW[m,n] = dYᵀ·X with dY [k,m] and X [k,n], written into a wider matrix (ldc > n).
        var dy = RandomMatrix(k * m, 7);
        var x = RandomMatrix(k * n, 8);
        int ldc = n + 3;
        var dw = RandomMatrix(m * ldc, 9);
        var before = (float[])dw.Clone();
        Run(m, n, k, dy, 1, m, x, n, 1, dw, ldc, GemmOutput.Store, null);
        AssertClose(m, n, k, dy, 1, m, x, n, 1, dw, ldc, before, GemmOutput.Store, null);
        for (int i = 0; i < m; i++)
        {
            for (int j = n; j < ldc; j++)
                Assert.Equal(before[i * ldc + j], dw[i * ldc + j]); // padding columns untouched
        }
    }

    [Fact]
    public void A_row_gets_the_same_bits_whatever_block_it_is_computed_in()
    {
        // The training split of a batch across threads relies on this: row i's result must not depend on m.
        const int m = 50, n = 37, k = 45;
        var x = RandomMatrix(m * k, 10);
        var w = RandomMatrix(n * k, 11);
        var bias = RandomMatrix(n, 12);
        var whole = new float[m * n];
        Run(m, n, k, x, k, 1, w, 1, k, whole, n, GemmOutput.StoreWithBias, bias);
        foreach (int split in new[] { 1, 5, 7, 23 })
        {
            var top = new float[split * n];
            var bottom = new float[(m - split) * n];
            Run(split, n, k, x, k, 1, w, 1, k, top, n, GemmOutput.StoreWithBias, bias);
            Run(m - split, n, k, x[(split * k)..], k, 1, w, 1, k, bottom, n, GemmOutput.StoreWithBias, bias);
            Assert.Equal(whole, top.Concat(bottom).ToArray());
        }
    }
}
