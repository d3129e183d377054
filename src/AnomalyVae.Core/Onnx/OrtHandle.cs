using System.Runtime.InteropServices;

namespace AnomalyVae.Onnx;

/// <summary>
/// Owns one ORT object (env, session options, session, memory info, value, type info, metadata) and releases it
/// with the matching <c>Release*</c> function of the table, exactly once, even if the owner is never disposed.
/// </summary>
internal sealed unsafe class OrtHandle : SafeHandle
{
    private readonly delegate* unmanaged<nint, void> _release;

    private OrtHandle(nint handle, delegate* unmanaged<nint, void> release)
        : base(0, ownsHandle: true)
    {
        _release = release;
        SetHandle(handle);
    }

    public override bool IsInvalid => handle == 0;

    /// <summary>Wraps a handle that ORT just returned; call this before anything else can throw.</summary>
    internal static OrtHandle Own(nint handle, delegate* unmanaged<nint, void> release) => new(handle, release);

    protected override bool ReleaseHandle()
    {
        _release(handle);
        return true;
    }
}

/// <summary>
/// A native block of NUL-terminated UTF-8 strings plus the <c>const char*[]</c> pointing at them, the form in
/// which <c>OrtApi::Run</c> takes input and output names. Built once per session or binding, not per call.
/// </summary>
internal sealed unsafe class NativeUtf8Strings : SafeHandle
{
    internal NativeUtf8Strings(IReadOnlyList<string> values)
        : base(0, ownsHandle: true)
    {
        Count = values.Count;
        var pointerBytes = (nuint)(values.Count * sizeof(nint));
        var total = pointerBytes;
        foreach (var value in values)
        {
            total += (nuint)System.Text.Encoding.UTF8.GetByteCount(value) + 1;
        }

        var block = (byte*)NativeMemory.Alloc(Math.Max(total, 1));
        SetHandle((nint)block);
        var pointers = (byte**)block;
        var cursor = block + pointerBytes;
        for (var i = 0; i < values.Count; i++)
        {
            pointers[i] = cursor;
            var written = System.Text.Encoding.UTF8.GetBytes(values[i], new Span<byte>(cursor, (int)(total - (nuint)(cursor - block))));
            cursor[written] = 0;
            cursor += written + 1;
        }
    }

    internal int Count { get; }

    internal byte** Pointers => (byte**)handle;

    public override bool IsInvalid => handle == 0;

    protected override bool ReleaseHandle()
    {
        NativeMemory.Free((void*)handle);
        return true;
    }
}
