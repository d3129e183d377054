namespace AnomalyVae.QualityTests;

/// <summary>Benchmarks that time the whole process run alone, not beside other tests.</summary>
[CollectionDefinition(nameof(ProcessWideMeasurements), DisableParallelization = true)]
public sealed class ProcessWideMeasurements;
