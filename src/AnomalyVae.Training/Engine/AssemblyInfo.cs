using System.Runtime.CompilerServices;

// The engine's GEMM, passes and likelihood terms are internal; unit tests check them directly.
[assembly: InternalsVisibleTo("AnomalyVae.UnitTests")]
