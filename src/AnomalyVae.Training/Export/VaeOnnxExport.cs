using AnomalyVae.Model;
using AnomalyVae.Training.Engine;

namespace AnomalyVae.Training.Export;

/// <summary>
/// Writes a trained VAE as one self-contained ONNX model (opset 17) that scores raw records: standardization and log
/// transforms are inside the graph, which then computes exactly what <see cref="VaeScorer"/> does. A windowed model
/// (<see cref="WindowDefinition"/>) takes x and mask as [N, W, F] and scores the last step. Weights go under fixed
/// initializer names (<see cref="ModelFile"/>). Inputs, outputs and metadata: docs/cli.md#the-model-file.
/// </summary>
public static class VaeOnnxExport
{
    private const float Log2PiHalf = 0.918938533204672742f;

    public static byte[] ToBytes(VaeModel model, FeatureSchema schema, Calibration calibration, ModelTrainingSummary summary, WindowDefinition? window = null) =>
        ToBytes([model], schema, calibration, summary, window);

    /// <summary>
    /// An ensemble of K VAEs (<see cref="VaeEnsemble"/>) as one graph with the same inputs and outputs as one VAE:
    /// the raw → standardized transform runs once, each member's encoder and decoder under its own initializer
    /// prefix (member 0 none, member m "m{m}."), then score = log K − logsumexp_k(−score_k), feature scores the
    /// members' feature scores weighted by softmax_k(−score_k) (each member's share of the mean p̂), and the latent
    /// mean member 0's. One member gives exactly the single-VAE graph.
    /// </summary>
    public static byte[] ToBytes(IReadOnlyList<VaeModel> members, FeatureSchema schema, Calibration calibration, ModelTrainingSummary summary, WindowDefinition? window = null)
    {
        ArgumentNullException.ThrowIfNull(members);
        ArgumentNullException.ThrowIfNull(schema);
        ArgumentNullException.ThrowIfNull(calibration);
        ArgumentNullException.ThrowIfNull(summary);
        if (members.Count is < 1 or > VaeTrainingOptions.MaxEnsemble)
            throw new ArgumentException($"A model holds 1 to {VaeTrainingOptions.MaxEnsemble} VAEs; got {members.Count}.", nameof(members));
        var model = members[0];
        var features = Steps(schema, window);
        foreach (var member in members)
        {
            CheckSchemaMatches(member, features);
            if (member.LatentSize != model.LatentSize)
                throw new ArgumentException("The ensemble's members differ in latent size.", nameof(members));
            if (member.ScoreFunction != model.ScoreFunction)
                throw new ArgumentException("The ensemble's members differ in score function.", nameof(members));
        }

        var g = new OnnxGraph("anomalyvae");
        var layout = model.Layout;
        int f = layout.FeatureCount;
        int z = model.LatentSize;
        string x, mask;
        if (window is null)
        {
            x = g.Input(ModelFile.InputX, f);
            mask = g.Input(ModelFile.InputMask, f);
        }
        else
        {
            // [N, W, F] → [N, W·F]: from here on the window is one wide row of W·F features, step-major.
            x = g.Reshape(g.Input(ModelFile.InputX, window.Steps, schema.Count), [-1, f]);
            mask = g.Reshape(g.Input(ModelFile.InputMask, window.Steps, schema.Count), [-1, f]);
        }

        // 1. Raw → standardized (numeric) or as is (categorical index, binary bit): non-numeric features get
        //    center 0, scale 1 and no log, so one vector formula serves every kind.
        var center = new float[f];
        var scale = new float[f];
        var log = new float[f];
        for (int j = 0; j < f; j++)
        {
            var feature = features[j];
            bool numeric = feature.Kind == FeatureKind.Numeric;
            center[j] = numeric ? (float)feature.Center : 0f;
            scale[j] = numeric ? (float)feature.Scale : 1f;
            log[j] = numeric && feature.Log ? 1f : 0f;
        }
        string transformed = Choose(g, "log_flag", log, () => g.Mul(g.Sign(x), g.Log(g.Add(g.Abs(x), g.Scalar(1f)))), x);
        string standardized = g.Clip(
            g.Div(g.Sub(transformed, g.Initializer("center", center, f)), g.Initializer("scale", scale, f)),
            -(float)FeatureSchema.StandardizedLimit, (float)FeatureSchema.StandardizedLimit);
        if (features.Any(feature => feature.TailScale > 0))
        {
            // Tail squash k·asinh(z / k) on the features that have one; k = 1 and flag 0 elsewhere keep z as is
            // (categorical indices and bits pass through untouched).
            var tail = new float[f];
            var tailFlag = new float[f];
            for (int j = 0; j < f; j++)
            {
                double k = features[j].TailScale;
                tail[j] = k > 0 ? (float)k : 1f;
                tailFlag[j] = k > 0 ? 1f : 0f;
            }

            string tailScale = g.Initializer("tail_scale", tail, f);
            string unsquashed = standardized;
            standardized = Choose(g, "tail_flag", tailFlag, () => g.Mul(tailScale, Asinh(g, g.Div(unsquashed, tailScale))), unsquashed);
        }

        if (features.Any(feature => feature.QuantileMap is not null))
            standardized = BlendQuantileMaps(g, features, transformed, standardized);

        // 2. Encoder input: each feature's encoded columns (categorical one-hot), zeroed when missing, then the mask.
        int valueWidth = layout.MaskOffset;
        var columnFeature = new long[valueWidth];
        var categoryCode = new float[valueWidth];
        var isCategory = new float[valueWidth];
        for (int j = 0; j < f; j++)
        {
            int offset = layout.InputOffsets[j];
            var feature = layout.Features[j];
            for (int k = 0; k < feature.InputWidth; k++)
            {
                columnFeature[offset + k] = j;
                if (feature.Kind == FeatureKind.Categorical)
                {
                    categoryCode[offset + k] = k;
                    isCategory[offset + k] = 1f;
                }
            }
        }
        string spread = Columns(g, standardized, columnFeature, f, axis: 1);
        if (layout.CategoricalFeatures.Count > 0)
        {
            string oneHot = g.Cast(g.Equal(spread, g.Initializer("category_codes", categoryCode, valueWidth)), OnnxElementType.Float);
            string categoryColumns = g.Initializer("category_columns", isCategory, valueWidth);
            spread = g.Add(g.Mul(g.Sub(g.Scalar(1f), categoryColumns), spread), g.Mul(categoryColumns, oneHot));
        }
        string encoded = g.Mul(spread, Columns(g, mask, columnFeature, f, axis: 1));
        string encoderInput = g.Concat(1, encoded, mask);

        int scored = window is null ? f : schema.Count;
        var outputs = members.Select((member, m) => Member(g, member, ModelFile.MemberPrefix(m), x, mask, standardized, encoderInput, window, schema)).ToList();
        string score, featureScores;
        if (outputs.Count == 1)
        {
            (score, featureScores, _) = outputs[0];
        }
        else
        {
            // −log (1/K)·Σ_k exp(−score_k), stable; the attribution weights are each member's share of that mean.
            string negative = g.Neg(g.Concat(1, [.. outputs.Select(o => g.Unsqueeze(o.Score, [1]))])); // [N, K]
            score = g.Sub(g.Scalar(MathF.Log(outputs.Count)), StableLogSumExp(g, negative, axis: 1));
            string weights = g.Unsqueeze(g.Softmax(negative, axis: 1), [2]); // [N, K, 1]
            string stacked = g.Concat(1, [.. outputs.Select(o => g.Unsqueeze(o.FeatureScores, [1]))]); // [N, K, scored]
            featureScores = g.ReduceSum(g.Mul(weights, stacked), [1], keepDims: false);
        }
        g.OutputAs(score, ModelFile.OutputScore);
        g.OutputAs(featureScores, ModelFile.OutputFeatureScores, scored);
        g.OutputAs(g.Identity(outputs[0].LatentMean), ModelFile.OutputLatentMean, z);

        ModelFile.WriteMetadata(g, members, schema, calibration, summary, window);
        return g.ToBytes();
    }

    /// <summary>
    /// w·z′ + (1 − w)·Q(t) on the features with a quantile map (w = 1 and Q = 0 elsewhere). Q(t) as a sum over segments,
    /// Q(t) = Q(knot 0) + Σ_i slope_i·(min(max(t, knot_i), knot_i+1) − knot_i), flat beyond the end knots; features
    /// with fewer knots are padded with empty segments (both ends the last knot, slope 0).
    /// </summary>
    private static string BlendQuantileMaps(OnnxGraph g, IReadOnlyList<FittedFeature> features, string transformed, string standardized)
    {
        int f = features.Count;
        int segments = features.Max(feature => feature.QuantileMap is { } map ? map.Knots.Count - 1 : 1);
        var lower = new float[f * segments];
        var upper = new float[f * segments];
        var slope = new float[f * segments];
        var start = new float[f];
        var center = new float[f];
        var scale = new float[f];
        var squashShare = new float[f];
        var mapShare = new float[f];
        for (int j = 0; j < f; j++)
        {
            squashShare[j] = 1f;
            scale[j] = 1f;
            if (features[j].QuantileMap is not { } map)
                continue;
            center[j] = (float)map.Center;
            scale[j] = (float)map.Scale;
            squashShare[j] = (float)map.Blend;
            mapShare[j] = (float)(1 - map.Blend);
            start[j] = (float)map.Gaussian[0];
            for (int i = 0; i < segments; i++)
            {
                int last = map.Knots.Count - 1;
                double lo = map.Knots[Math.Min(i, last)], hi = map.Knots[Math.Min(i + 1, last)];
                lower[(j * segments) + i] = (float)lo;
                upper[(j * segments) + i] = (float)hi;
                slope[(j * segments) + i] = i < last ? (float)((map.Gaussian[i + 1] - map.Gaussian[i]) / (hi - lo)) : 0f;
            }
        }

        string lowerKnots = g.Initializer("quantile_lower", lower, f, segments);
        string t = g.Unsqueeze(transformed, [2]); // [N, F, 1]
        string clipped = g.Min(g.Max(t, lowerKnots), g.Initializer("quantile_upper", upper, f, segments));
        string rise = g.Mul(g.Sub(clipped, lowerKnots), g.Initializer("quantile_slope", slope, f, segments));
        string mapped = g.Add(g.Initializer("quantile_start", start, f), g.ReduceSum(rise, [2], keepDims: false));
        string blended = g.Add(g.Mul(g.Initializer("quantile_squash_share", squashShare, f), standardized),
            g.Mul(g.Initializer("quantile_map_share", mapShare, f), mapped));
        return g.Div(g.Sub(blended, g.Initializer("quantile_center", center, f)), g.Initializer("quantile_scale", scale, f));
    }

    /// <summary>One VAE's part of the graph from the shared standardized input: its score [N], feature scores [N, scored] and μ [N, Z].</summary>
    private static (string Score, string FeatureScores, string LatentMean) Member(
        OnnxGraph g, VaeModel model, string prefix, string x, string mask, string standardized, string encoderInput, WindowDefinition? window, FeatureSchema schema)
    {
        var layout = model.Layout;
        int f = layout.FeatureCount;
        int z = model.LatentSize;
        int samples = model.NoiseSamples;
        string h = encoderInput;

        // 3. Encoder → μ, log σ² (clamped), σ.
        h = Dense(g, h, model.Encoder, prefix + ModelFile.EncoderPrefix);
        var muLogVar = g.Split(h, [z, z], axis: 1);
        string mu = muLogVar[0];
        string latentLogVar = g.Clip(muLogVar[1], model.LatentLogVarMin, model.LatentLogVarMax);
        string sigma = g.Exp(g.Mul(latentLogVar, g.Scalar(0.5f)));

        // 4. L latent samples per row with the model's fixed noise: z_l = μ + σ·ε_l, shape [N·L, Z].
        string noise = g.Initializer(prefix + ModelFile.Noise, model.Noise, samples, z);
        string latent = g.Add(g.Unsqueeze(mu, [1]), g.Mul(g.Unsqueeze(sigma, [1]), noise));
        string decoderInput = g.Reshape(latent, [-1, z]);

        // 5. Decoder → likelihood heads [N, L, H].
        string heads = g.Reshape(Dense(g, decoderInput, model.Decoder, prefix + ModelFile.DecoderPrefix), [-1, samples, layout.HeadWidth]);

        // 6. Per-feature negative log-likelihoods [N, L, F], grouped by kind as the heads are, then reordered.
        var blockSizes = new List<long>();
        int numericCount = layout.NumericFeatures.Count, binaryCount = layout.BinaryFeatures.Count;
        int categoricalWidth = layout.HeadWidth - layout.CategoricalLogitOffset;
        if (numericCount > 0)
            blockSizes.AddRange([numericCount, numericCount]);
        if (binaryCount > 0)
            blockSizes.Add(binaryCount);
        if (categoricalWidth > 0)
            blockSizes.Add(categoricalWidth);
        var blocks = blockSizes.Count == 1 ? [heads] : g.Split(heads, [.. blockSizes], axis: 2);
        int block = 0;
        var parts = new List<string>();
        var groupedOrder = new List<int>();
        if (numericCount > 0)
        {
            string mean = blocks[block++];
            string logVar = g.Clip(blocks[block++], model.NumericLogVarMin, model.NumericLogVarMax);
            string target = g.Unsqueeze(Columns(g, standardized, layout.NumericFeatures, f, axis: 1), [1]);
            string residual = g.Sub(target, mean);
            string scaled = g.Mul(g.Mul(residual, residual), g.Exp(g.Neg(logVar)));
            parts.Add(g.Add(g.Scalar(Log2PiHalf), g.Mul(g.Scalar(0.5f), g.Add(logVar, scaled))));
            groupedOrder.AddRange(layout.NumericFeatures);
        }
        if (binaryCount > 0)
        {
            // softplus(a) − x·a, written as max(a, 0) + log(1 + e^−|a|) − x·a so large logits stay finite.
            string logit = blocks[block++];
            string target = g.Unsqueeze(Columns(g, x, layout.BinaryFeatures, f, axis: 1), [1]);
            string softplus = g.Add(g.Max(logit, g.Scalar(0f)), g.Log(g.Add(g.Scalar(1f), g.Exp(g.Neg(g.Abs(logit))))));
            parts.Add(g.Sub(softplus, g.Mul(target, logit)));
            groupedOrder.AddRange(layout.BinaryFeatures);
        }
        if (categoricalWidth > 0)
        {
            string logits = blocks[block];
            var sizes = layout.CategoricalFeatures.Select(j => (long)layout.Features[j].Categories).ToArray();
            var perFeature = sizes.Length == 1 ? [logits] : g.Split(logits, sizes, axis: 2);
            for (int c = 0; c < sizes.Length; c++)
            {
                int j = layout.CategoricalFeatures[c];
                var codes = new float[sizes[c]];
                for (int k = 0; k < codes.Length; k++)
                    codes[k] = k;
                string index = g.Gather(x, g.Int64s(j), axis: 1); // [N, 1]
                string oneHot = g.Unsqueeze(g.Cast(g.Equal(index, g.Initializer($"{prefix}codes_{j}", codes, codes.Length)), OnnxElementType.Float), [1]);
                string logProbability = g.LogSoftmax(perFeature[c], axis: -1);
                parts.Add(g.Neg(g.ReduceSum(g.Mul(logProbability, oneHot), [2], keepDims: true)));
                groupedOrder.Add(j);
            }
        }
        string grouped = parts.Count == 1 ? parts[0] : g.Concat(2, [.. parts]);
        var position = new long[f];
        for (int p = 0; p < groupedOrder.Count; p++)
            position[groupedOrder[p]] = p;
        string nll = g.Mul(Columns(g, grouped, position, f, axis: 2), g.Unsqueeze(mask, [1]));
        int scored = f;
        if (window is not null)
        {
            // Only the window's last step (the event itself) is scored; earlier steps are its context.
            scored = schema.Count;
            nll = g.Slice(nll, f - scored, f, axis: 2);
        }

        // 7. The reconstruction probability −log((1/L)·Σ_l exp(−Σ_j nll)) = log L − logsumexp_l(−Σ_j nll), or the
        //    −ELBO: (1/L)·Σ_l Σ_j nll + ½·Σ_k (σ² + μ² − 1 − log σ²). Per feature always log L − logsumexp_l(−nll).
        string logL = g.Scalar(MathF.Log(samples));
        string total = g.ReduceSum(nll, [2], keepDims: false); // [N, L]
        string score;
        if (model.ScoreFunction == ScoreFunction.NegativeElbo)
        {
            string klTerms = g.Sub(g.Add(g.Mul(sigma, sigma), g.Mul(mu, mu)), g.Add(g.Scalar(1f), latentLogVar));
            string kl = g.Mul(g.Scalar(0.5f), g.ReduceSum(klTerms, [1], keepDims: false)); // [N]
            score = g.Add(g.Mul(g.ReduceSum(total, [1], keepDims: false), g.Scalar(1f / samples)), kl);
        }
        else
        {
            score = g.Sub(logL, StableLogSumExp(g, g.Neg(total), axis: 1));
        }
        string featureScores = g.Sub(logL, StableLogSumExp(g, g.Neg(nll), axis: 1));
        return (score, featureScores, mu);
    }

    public static void Save(string path, VaeModel model, FeatureSchema schema, Calibration calibration, ModelTrainingSummary summary, WindowDefinition? window = null) =>
        Save(path, [model], schema, calibration, summary, window);

    /// <summary>Writes <see cref="ToBytes(IReadOnlyList{VaeModel}, FeatureSchema, Calibration, ModelTrainingSummary, WindowDefinition?)"/> atomically.</summary>
    public static void Save(string path, IReadOnlyList<VaeModel> members, FeatureSchema schema, Calibration calibration, ModelTrainingSummary summary, WindowDefinition? window = null)
    {
        var bytes = ToBytes(members, schema, calibration, summary, window);
        string temp = path + ".tmp";
        File.WriteAllBytes(temp, bytes);
        File.Move(temp, path, overwrite: true); // readers never see half a model
    }

    private static string Dense(OnnxGraph g, string input, IReadOnlyList<DenseLayer> layers, string prefix)
    {
        string h = input;
        for (int i = 0; i < layers.Count; i++)
        {
            var layer = layers[i];
            string w = g.Initializer($"{prefix}{i}.weight", layer.Weights, layer.Outputs, layer.Inputs);
            string b = g.Initializer($"{prefix}{i}.bias", layer.Bias, layer.Outputs);
            h = g.Gemm(h, w, b, transB: true);
            h = layer.Activation switch
            {
                Activation.Identity => h,
                Activation.Relu => g.Relu(h),
                Activation.LeakyRelu => g.LeakyRelu(h, layer.Alpha),
                Activation.Tanh => g.Tanh(h),
                Activation.Elu => g.Node("Elu", [h], attributes: OnnxAttribute.Float("alpha", layer.Alpha))[0],
                Activation.Softplus => g.Softplus(h),
                _ => throw new NotSupportedException($"Activation {layer.Activation} has no ONNX export."),
            };
        }
        return h;
    }

    /// <summary>log Σ exp(a) over <paramref name="axis"/> (dropped), shifted by the maximum so it never overflows or underflows to −∞.</summary>
    private static string StableLogSumExp(OnnxGraph g, string a, long axis)
    {
        string max = g.Node("ReduceMax", [a], attributes: [OnnxAttribute.Ints("axes", axis), OnnxAttribute.Int("keepdims", 1)])[0];
        string sum = g.ReduceSum(g.Exp(g.Sub(a, max)), [axis], keepDims: false);
        string squeezedMax = g.Node("Squeeze", [max, g.Int64s(axis)])[0];
        return g.Add(squeezedMax, g.Log(sum));
    }

    /// <summary>
    /// Elements <paramref name="indices"/> of <paramref name="data"/> along <paramref name="axis"/> (of size
    /// <paramref name="size"/>): the input itself when they are all of them in order (an all-numeric table), a Slice
    /// when they are one ascending run, a Gather otherwise. Why: ONNX Runtime's Gather copies element by element; on the
    /// 32-feature bench model four identity Gathers took 1.7 of 5.9 µs per row (profiled 2026-12-06, docs/performance.md).
    /// </summary>
    private static string Columns(OnnxGraph g, string data, IReadOnlyList<int> indices, int size, long axis) =>
        Columns(g, data, [.. indices.Select(j => (long)j)], size, axis);

    /// <inheritdoc cref="Columns(OnnxGraph, string, IReadOnlyList{int}, int, long)"/>
    private static string Columns(OnnxGraph g, string data, long[] indices, int size, long axis)
    {
        bool run = indices.Length > 0 && indices.Select((j, i) => j - i).All(d => d == indices[0]);
        if (run && indices[0] == 0 && indices.Length == size)
            return data;
        return run
            ? g.Slice(data, indices[0], indices[0] + indices.Length, axis)
            : g.Gather(data, g.Int64s(indices), axis);
    }

    /// <summary>
    /// Per feature <paramref name="chosen"/> where <paramref name="flags"/> is 1 and <paramref name="otherwise"/> where it is
    /// 0, as flag·chosen + (1 − flag)·otherwise; when every flag is the same, only that branch (no blend, and no
    /// <paramref name="chosen"/> ops when none is set: each element-wise op costs about 0.02 µs per row of 32 features).
    /// </summary>
    private static string Choose(OnnxGraph g, string name, float[] flags, Func<string> chosen, string otherwise)
    {
        if (flags.All(flag => flag == 0f))
            return otherwise;
        if (flags.All(flag => flag == 1f))
            return chosen();
        string flag = g.Initializer(name, flags, flags.Length);
        return g.Add(g.Mul(flag, chosen()), g.Mul(g.Sub(g.Scalar(1f), flag), otherwise));
    }

    /// <summary>
    /// asinh(x) = sign(x)·log(|x| + √(x² + 1)), from element-wise ops: ONNX Runtime's Asinh is a scalar loop (0.55 µs per
    /// row of 32 features, profiled 2026-12-06), these are vectorized. Its inputs are bounded (|z| ≤ StandardizedLimit),
    /// so x² never overflows; the odd form keeps negative inputs free of cancellation.
    /// </summary>
    private static string Asinh(OnnxGraph g, string x)
    {
        string magnitude = g.Abs(x);
        string root = g.Sqrt(g.Add(g.Mul(magnitude, magnitude), g.Scalar(1f)));
        return g.Mul(g.Sign(x), g.Log(g.Add(magnitude, root)));
    }

    /// <summary>The engine model's features: the schema's, once per window step (once without a window).</summary>
    public static IReadOnlyList<FittedFeature> Steps(FeatureSchema schema, WindowDefinition? window)
    {
        ArgumentNullException.ThrowIfNull(schema);
        int steps = window?.Validate().Steps ?? 1;
        var features = new List<FittedFeature>(steps * schema.Count);
        for (int step = 0; step < steps; step++)
            features.AddRange(schema.Features);
        return features;
    }

    private static void CheckSchemaMatches(VaeModel model, IReadOnlyList<FittedFeature> features)
    {
        if (features.Count != model.Layout.FeatureCount)
            throw new ArgumentException($"The feature schema (times the window's steps) has {features.Count} features, the model {model.Layout.FeatureCount}.");
        for (int j = 0; j < features.Count; j++)
        {
            var fitted = features[j];
            var engine = model.Layout.Features[j];
            if (fitted.Kind != engine.Kind || (fitted.Kind == FeatureKind.Categorical && fitted.Cardinality != engine.Categories))
                throw new ArgumentException($"Feature {j} ('{fitted.Name}') differs between the schema and the model.");
        }
    }
}
