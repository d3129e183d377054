using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace AnomalyVae.Training.Engine;

/// <summary>What a GEMM does with its result tile.</summary>
internal enum GemmOutput
{
    /// <summary>C = A·B.</summary>
    Store,

    /// <summary>C += A·B.</summary>
    Accumulate,

    /// <summary>C = A·B + bias (bias broadcast over rows, one value per column of C).</summary>
    StoreWithBias,
}

/// <summary>
/// Single-threaded float GEMM, C[m,n] = A[m,k]·B[k,n] with strided A and B, so one kernel serves the forward and both
/// backward products without transposing copies; B is packed into caller-provided scratch. Every C element is one FMA
/// chain over k in order, so results do not depend on tiling or on how callers split rows across threads.
/// </summary>
internal static unsafe class Gemm
{
    /// <summary>Rows per micro-tile.</summary>
    public const int TileRows = 6;

    /// <summary>Columns per packed B panel.</summary>
    public const int PanelWidth = 16;

    /// <summary>Rows of A processed per block, chosen so a block of A stays in L2 while the panels of B stream past.</summary>
    private const int RowBlockBytes = 192 * 1024;

    /// <summary>Floats of scratch that <see cref="Multiply"/> needs to pack B (k × n rounded up to panels) plus a padded bias.</summary>
    public static int ScratchLength(int n, int k) => RoundUp(n, PanelWidth) * (k + 1);

    /// <summary>
    /// C(i, j) (=|+=) Σ_p A(i, p)·B(p, j) [+ bias(j)], with A(i, p) = a[i·aRow + p·aCol],
    /// B(p, j) = b[p·bRow + j·bCol] and C(i, j) = c[i·ldc + j].
    /// </summary>
    public static void Multiply(
        int m, int n, int k,
        float* a, nint aRow, nint aCol,
        float* b, nint bRow, nint bCol,
        float* c, nint ldc,
        GemmOutput output, float* bias, float* scratch)
    {
        if (m <= 0 || n <= 0)
            return;
        int paddedN = RoundUp(n, PanelWidth);
        float* packedBias = scratch + (nint)paddedN * k;
        PackB(n, k, b, bRow, bCol, scratch);
        if (output == GemmOutput.StoreWithBias)
        {
            for (int j = 0; j < n; j++)
                packedBias[j] = bias[j];
            for (int j = n; j < paddedN; j++)
                packedBias[j] = 0f;
        }

        int rowBlock = Math.Max(TileRows, RoundUp(RowBlockBytes / (4 * Math.Max(k, 1)), TileRows));
        for (int i0 = 0; i0 < m; i0 += rowBlock)
        {
            int iEnd = Math.Min(m, i0 + rowBlock);
            for (int j0 = 0; j0 < n; j0 += PanelWidth)
            {
                int cols = Math.Min(PanelWidth, n - j0);
                float* panel = scratch + (nint)j0 * k;
                float* panelBias = packedBias + j0;
                for (int i = i0; i < iEnd; i += TileRows)
                {
                    int rows = Math.Min(TileRows, iEnd - i);
                    float* aTile = a + i * aRow;
                    float* cTile = c + i * ldc + j0;
                    if (cols <= 8)
                        Kernel6x8(aTile, aRow, aCol, panel, k, cTile, ldc, rows, cols, output, panelBias);
                    else
                        Kernel6x16(aTile, aRow, aCol, panel, k, cTile, ldc, rows, cols, output, panelBias);
                }
            }
        }
    }

    /// <summary>Packs B into panels: panel q holds B(p, 16q + c) at [q·16·k + p·16 + c], zeros past column n.</summary>
    private static void PackB(int n, int k, float* b, nint bRow, nint bCol, float* dst)
    {
        for (int j0 = 0; j0 < n; j0 += PanelWidth)
        {
            int cols = Math.Min(PanelWidth, n - j0);
            float* panel = dst + (nint)j0 * k;
            if (bCol == 1 && cols == PanelWidth)
            {
                for (int p = 0; p < k; p++)
                {
                    float* src = b + p * bRow + j0;
                    Vector256.Store(Vector256.Load(src), panel + p * PanelWidth);
                    Vector256.Store(Vector256.Load(src + 8), panel + p * PanelWidth + 8);
                }
            }
            else if (bRow == 1)
            {
                // Transposed source (B = Wᵀ): walk each W row contiguously.
                for (int cc = 0; cc < PanelWidth; cc++)
                {
                    if (cc < cols)
                    {
                        float* src = b + (j0 + cc) * bCol;
                        for (int p = 0; p < k; p++)
                            panel[p * PanelWidth + cc] = src[p];
                    }
                    else
                    {
                        for (int p = 0; p < k; p++)
                            panel[p * PanelWidth + cc] = 0f;
                    }
                }
            }
            else
            {
                for (int p = 0; p < k; p++)
                {
                    float* row = panel + p * PanelWidth;
                    float* src = b + p * bRow + j0 * bCol;
                    for (int cc = 0; cc < cols; cc++)
                        row[cc] = src[cc * bCol];
                    for (int cc = cols; cc < PanelWidth; cc++)
                        row[cc] = 0f;
                }
            }
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> Fma(Vector256<float> a, Vector256<float> b, Vector256<float> acc) =>
        Vector256.MultiplyAddEstimate(a, b, acc);

    /// <summary>
    /// 6 rows × 16 columns. Rows past <paramref name="rows"/> re-read row 0 (their results are discarded),
    /// which keeps a single code path; columns past <paramref name="cols"/> multiply zero padding.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Kernel6x16(
        float* a, nint aRow, nint aCol, float* panel, int k, float* c, nint ldc,
        int rows, int cols, GemmOutput output, float* bias)
    {
        float* a0 = a;
        float* a1 = rows > 1 ? a + aRow : a;
        float* a2 = rows > 2 ? a + 2 * aRow : a;
        float* a3 = rows > 3 ? a + 3 * aRow : a;
        float* a4 = rows > 4 ? a + 4 * aRow : a;
        float* a5 = rows > 5 ? a + 5 * aRow : a;
        Vector256<float> c00 = default, c01 = default, c10 = default, c11 = default, c20 = default, c21 = default;
        Vector256<float> c30 = default, c31 = default, c40 = default, c41 = default, c50 = default, c51 = default;
        float* bp = panel;
        nint off = 0;
        for (int p = 0; p < k; p++)
        {
            var b0 = Vector256.Load(bp);
            var b1 = Vector256.Load(bp + 8);
            bp += PanelWidth;
            var av = Vector256.Create(a0[off]);
            c00 = Fma(av, b0, c00);
            c01 = Fma(av, b1, c01);
            av = Vector256.Create(a1[off]);
            c10 = Fma(av, b0, c10);
            c11 = Fma(av, b1, c11);
            av = Vector256.Create(a2[off]);
            c20 = Fma(av, b0, c20);
            c21 = Fma(av, b1, c21);
            av = Vector256.Create(a3[off]);
            c30 = Fma(av, b0, c30);
            c31 = Fma(av, b1, c31);
            av = Vector256.Create(a4[off]);
            c40 = Fma(av, b0, c40);
            c41 = Fma(av, b1, c41);
            av = Vector256.Create(a5[off]);
            c50 = Fma(av, b0, c50);
            c51 = Fma(av, b1, c51);
            off += aCol;
        }

        if (output == GemmOutput.StoreWithBias)
        {
            var bb0 = Vector256.Load(bias);
            var bb1 = Vector256.Load(bias + 8);
            c00 += bb0; c01 += bb1; c10 += bb0; c11 += bb1; c20 += bb0; c21 += bb1;
            c30 += bb0; c31 += bb1; c40 += bb0; c41 += bb1; c50 += bb0; c51 += bb1;
        }

        bool accumulate = output == GemmOutput.Accumulate;
        if (cols == PanelWidth)
        {
            StoreRow16(c, c00, c01, accumulate);
            if (rows > 1) StoreRow16(c + ldc, c10, c11, accumulate);
            if (rows > 2) StoreRow16(c + 2 * ldc, c20, c21, accumulate);
            if (rows > 3) StoreRow16(c + 3 * ldc, c30, c31, accumulate);
            if (rows > 4) StoreRow16(c + 4 * ldc, c40, c41, accumulate);
            if (rows > 5) StoreRow16(c + 5 * ldc, c50, c51, accumulate);
        }
        else
        {
            StorePartial16(c, c00, c01, cols, accumulate);
            if (rows > 1) StorePartial16(c + ldc, c10, c11, cols, accumulate);
            if (rows > 2) StorePartial16(c + 2 * ldc, c20, c21, cols, accumulate);
            if (rows > 3) StorePartial16(c + 3 * ldc, c30, c31, cols, accumulate);
            if (rows > 4) StorePartial16(c + 4 * ldc, c40, c41, cols, accumulate);
            if (rows > 5) StorePartial16(c + 5 * ldc, c50, c51, cols, accumulate);
        }
    }

    /// <summary>6 rows × 8 columns, for panels with at most 8 live columns (narrow layers such as the latent).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Kernel6x8(
        float* a, nint aRow, nint aCol, float* panel, int k, float* c, nint ldc,
        int rows, int cols, GemmOutput output, float* bias)
    {
        float* a0 = a;
        float* a1 = rows > 1 ? a + aRow : a;
        float* a2 = rows > 2 ? a + 2 * aRow : a;
        float* a3 = rows > 3 ? a + 3 * aRow : a;
        float* a4 = rows > 4 ? a + 4 * aRow : a;
        float* a5 = rows > 5 ? a + 5 * aRow : a;
        Vector256<float> c0 = default, c1 = default, c2 = default, c3 = default, c4 = default, c5 = default;
        float* bp = panel;
        nint off = 0;
        for (int p = 0; p < k; p++)
        {
            var b0 = Vector256.Load(bp);
            bp += PanelWidth;
            c0 = Fma(Vector256.Create(a0[off]), b0, c0);
            c1 = Fma(Vector256.Create(a1[off]), b0, c1);
            c2 = Fma(Vector256.Create(a2[off]), b0, c2);
            c3 = Fma(Vector256.Create(a3[off]), b0, c3);
            c4 = Fma(Vector256.Create(a4[off]), b0, c4);
            c5 = Fma(Vector256.Create(a5[off]), b0, c5);
            off += aCol;
        }

        if (output == GemmOutput.StoreWithBias)
        {
            var bb = Vector256.Load(bias);
            c0 += bb; c1 += bb; c2 += bb; c3 += bb; c4 += bb; c5 += bb;
        }

        bool accumulate = output == GemmOutput.Accumulate;
        StorePartial8(c, c0, cols, accumulate);
        if (rows > 1) StorePartial8(c + ldc, c1, cols, accumulate);
        if (rows > 2) StorePartial8(c + 2 * ldc, c2, cols, accumulate);
        if (rows > 3) StorePartial8(c + 3 * ldc, c3, cols, accumulate);
        if (rows > 4) StorePartial8(c + 4 * ldc, c4, cols, accumulate);
        if (rows > 5) StorePartial8(c + 5 * ldc, c5, cols, accumulate);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void StoreRow16(float* c, Vector256<float> lo, Vector256<float> hi, bool accumulate)
    {
        if (accumulate)
        {
            lo += Vector256.Load(c);
            hi += Vector256.Load(c + 8);
        }

        Vector256.Store(lo, c);
        Vector256.Store(hi, c + 8);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void StorePartial16(float* c, Vector256<float> lo, Vector256<float> hi, int cols, bool accumulate)
    {
        float* tmp = stackalloc float[PanelWidth];
        Vector256.Store(lo, tmp);
        Vector256.Store(hi, tmp + 8);
        for (int j = 0; j < cols; j++)
            c[j] = accumulate ? c[j] + tmp[j] : tmp[j];
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void StorePartial8(float* c, Vector256<float> v, int cols, bool accumulate)
    {
        if (cols == 8)
        {
            Vector256.Store(accumulate ? v + Vector256.Load(c) : v, c);
            return;
        }

        float* tmp = stackalloc float[8];
        Vector256.Store(v, tmp);
        for (int j = 0; j < cols; j++)
            c[j] = accumulate ? c[j] + tmp[j] : tmp[j];
    }

    private static int RoundUp(int value, int multiple) => (value + multiple - 1) / multiple * multiple;
}
