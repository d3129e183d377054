using System.Globalization;
using System.Text.Json;
using System.Text.Json.Serialization;
using AnomalyVae.Storage;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Options;
using Npgsql;

namespace AnomalyVae.Api;

/// <summary>
/// The query and registry HTTP API (under /api) and the dashboard (/ and /dashboard), as an extension that mounts on
/// any ASP.NET Core application: <c>services.AddAnomalyApi(configuration)</c> then <c>app.MapAnomalyApi()</c>.
/// JSON is snake_case; errors are RFC 7807 problem+json with a "parameter" member naming the offending input.
/// </summary>
public static class AnomalyApi
{
    /// <summary>Configuration key of the PostgreSQL connection string.</summary>
    public const string ConnectionStringKey = "Postgres:ConnectionString";

    /// <summary>Longest detector or entity filter accepted (longer ones cannot match anything stored sensibly).</summary>
    public const int MaxFilterLength = 512;

    /// <summary>snake_case, ISO 8601 times, nulls written (clients see every field).</summary>
    public static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web)
    {
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        DictionaryKeyPolicy = JsonNamingPolicy.SnakeCaseLower,
        DefaultIgnoreCondition = JsonIgnoreCondition.Never,
    };

    /// <summary>
    /// Registers what the API needs: <see cref="ApiOptions"/> from section "Api", and unless the host already has them, an
    /// <see cref="NpgsqlDataSource"/> from <c>Postgres:ConnectionString</c>, <see cref="AnomalyQueries"/>,
    /// <see cref="FeedbackStore"/> and <see cref="ModelRegistry"/>.
    /// </summary>
    public static IServiceCollection AddAnomalyApi(this IServiceCollection services, IConfiguration configuration)
    {
        ArgumentNullException.ThrowIfNull(configuration);
        services.AddOptions<ApiOptions>().Bind(configuration.GetSection(ApiOptions.Section));
        services.TryAddSingleton(_ =>
        {
            var connectionString = configuration[ConnectionStringKey];
            if (string.IsNullOrWhiteSpace(connectionString))
                throw new InvalidOperationException($"{ConnectionStringKey} is not configured (appsettings.json, environment Postgres__ConnectionString, or --connection).");
            return NpgsqlDataSource.Create(connectionString);
        });
        // Checked now: a bad drift key stops start-up instead of the first GET /api/detectors.
        var drift = DriftSettings(configuration);
        services.TryAddSingleton(sp => new AnomalyQueries(sp.GetRequiredService<NpgsqlDataSource>(), drift));
        services.TryAddSingleton(sp => new FeedbackStore(sp.GetRequiredService<NpgsqlDataSource>()));
        services.TryAddSingleton(sp => new IncidentQueries(sp.GetRequiredService<NpgsqlDataSource>()));
        services.TryAddSingleton(sp => new ModelRegistry(sp.GetRequiredService<NpgsqlDataSource>()));
        services.TryAddSingleton(sp => new ApiKeys(sp.GetRequiredService<IOptions<ApiOptions>>().Value.Keys));
        services.TryAddSingleton(_ => DashboardFiles.FromOutputDirectory());
        services.AddProblemDetails();
        return services;
    }

    /// <summary>
    /// The drift settings GET /api/detectors judges by: section "Retraining" (DriftThreshold, DriftWindow,
    /// DriftMinEvents), the same keys <c>serve</c> reads, so one configuration file serves both processes.
    /// </summary>
    /// <exception cref="InvalidOperationException">A drift key is malformed or out of range.</exception>
    public static DriftRule DriftSettings(IConfiguration configuration)
    {
        ArgumentNullException.ThrowIfNull(configuration);
        var rule = new DriftRule();
        configuration.GetSection("Retraining").Bind(rule);
        foreach (var problem in rule.DriftProblems())
            throw new InvalidOperationException(problem);
        return rule;
    }

    /// <summary>Maps the /api endpoints and the dashboard.</summary>
    public static IEndpointRouteBuilder MapAnomalyApi(this IEndpointRouteBuilder endpoints)
    {
        var options = endpoints.ServiceProvider.GetRequiredService<IOptions<ApiOptions>>().Value;
        var api = endpoints.MapGroup("/api");
        var reads = api.MapGroup("");
        if (options.RequireKeyForReads)
            reads.AddEndpointFilter(RequireKey);
        var writes = api.MapGroup("").AddEndpointFilter(RequireKey);

        reads.MapGet("/anomalies", ListAnomalies);
        reads.MapGet("/anomalies/{id}", GetAnomaly);
        reads.MapGet("/incidents", ListIncidents);
        reads.MapGet("/incidents/{id}", GetIncident);
        reads.MapGet("/detectors", ListDetectors);
        reads.MapGet("/models", ListModels);
        writes.MapPost("/models/{version}/activate", ActivateModel);
        writes.MapPost("/anomalies/{id}/feedback", AddFeedback);
        writes.MapPost("/incidents/{id}/feedback", AddIncidentFeedback);
        api.MapFallback(() => Problem(StatusCodes.Status404NotFound, "Not found", "No such API endpoint."));

        // The page itself never needs a key: it only holds code; its API calls carry the key when reads require one.
        endpoints.MapGet("/", (DashboardFiles files) => files.Serve("index.html"));
        endpoints.MapGet("/dashboard", (DashboardFiles files) => files.Serve("index.html"));
        endpoints.MapGet("/dashboard/{**path}", (string? path, DashboardFiles files) => files.Serve(string.IsNullOrEmpty(path) ? "index.html" : path));
        return endpoints;
    }

    private static async ValueTask<object?> RequireKey(EndpointFilterInvocationContext context, EndpointFilterDelegate next)
    {
        var http = context.HttpContext;
        var keys = http.RequestServices.GetRequiredService<ApiKeys>();
        if (!keys.AnyConfigured)
        {
            return Problem(StatusCodes.Status401Unauthorized, "API key required",
                "No API keys are configured, so this endpoint is disabled: set Api:Keys (e.g. environment Api__Keys__0=<secret>) and send the key in the X-Api-Key header.");
        }
        var id = keys.Identify(http.Request.Headers[ApiOptions.KeyHeader].ToString());
        if (id is null)
        {
            http.Response.Headers.WWWAuthenticate = "ApiKey header=\"X-Api-Key\"";
            return Problem(StatusCodes.Status401Unauthorized, "API key required", "Send a configured API key in the X-Api-Key header.");
        }
        http.Items[KeyIdItem] = id;
        return await next(context);
    }

    private const string KeyIdItem = "anomalyvae.api-key-id";

    private static async Task<IResult> ListAnomalies(HttpRequest request, AnomalyQueries queries, CancellationToken cancellationToken)
    {
        var query = request.Query;
        if (!TryText(query, "detector", out var detector, out var problem)
            || !TryText(query, "entity", out var entity, out problem)
            || !TryTime(query, "from", out var from, out problem)
            || !TryTime(query, "to", out var to, out problem))
        {
            return problem!;
        }
        if (from is not null && to is not null && from >= to)
            return BadParameter("to", "'to' must be later than 'from'.");

        double? minScore = null;
        if (Single(query, "minScore") is { } minText)
        {
            if (!double.TryParse(minText, NumberStyles.Float, CultureInfo.InvariantCulture, out var value) || !double.IsFinite(value))
                return BadParameter("minScore", $"minScore must be a finite number, not '{minText}'.");
            minScore = value;
        }

        long? incident = null;
        if (Single(query, "incident") is { } incidentText)
        {
            if (!TryId(incidentText, out var incidentId, out problem))
                return BadParameter("incident", $"incident must be a positive whole number, not '{incidentText}'.");
            incident = incidentId;
        }

        if (!TryPage(query, out var limit, out var after, out var pageProblem))
            return pageProblem!;
        var page = await queries.ListAsync(new AnomalyFilter(detector, entity, from, to, minScore, limit, after, incident), cancellationToken);
        return Results.Json(new AnomalyPageResponse(page.Items, page.Next?.Encode()), Json);
    }

    private static bool TryPage(IQueryCollection query, out int limit, out AnomalyCursor? after, out IResult? problem)
    {
        limit = AnomalyFilter.DefaultLimit;
        after = null;
        problem = null;
        if (Single(query, "limit") is { } limitText)
        {
            if (!int.TryParse(limitText, NumberStyles.None, CultureInfo.InvariantCulture, out limit) || limit < 1 || limit > AnomalyFilter.MaxLimit)
            {
                problem = BadParameter("limit", $"limit must be a whole number from 1 to {AnomalyFilter.MaxLimit}, not '{limitText}'.");
                return false;
            }
        }
        if (Single(query, "after") is { } afterText && !AnomalyCursor.TryDecode(afterText, out after))
        {
            problem = BadParameter("after", "after is not a cursor returned by this API (use the 'next' value of the previous page as it is).");
            return false;
        }
        return true;
    }

    private static async Task<IResult> ListIncidents(HttpRequest request, IncidentQueries queries, CancellationToken cancellationToken)
    {
        var query = request.Query;
        if (!TryText(query, "detector", out var detector, out var problem)
            || !TryText(query, "entity", out var entity, out problem)
            || !TryTime(query, "from", out var from, out problem)
            || !TryTime(query, "to", out var to, out problem))
        {
            return problem!;
        }
        if (from is not null && to is not null && from >= to)
            return BadParameter("to", "'to' must be later than 'from'.");
        var status = Single(query, "status");
        if (status is not null && !IncidentFilter.IsStatus(status))
            return BadParameter("status", $"status must be \"{IncidentFilter.Open}\" or \"{IncidentFilter.Closed}\".");
        if (!TryPage(query, out var limit, out var after, out var pageProblem))
            return pageProblem!;
        var page = await queries.ListAsync(new IncidentFilter(detector, entity, status, from, to, limit, after), cancellationToken);
        return Results.Json(new IncidentPageResponse(page.Items, page.Next?.Encode()), Json);
    }

    private static async Task<IResult> GetIncident(string id, IncidentQueries queries, CancellationToken cancellationToken)
    {
        if (!TryId(id, out var value, out var problem))
            return problem;
        var incident = await queries.GetAsync(value, cancellationToken);
        return incident is null
            ? Problem(StatusCodes.Status404NotFound, "Incident not found", $"There is no incident with id {value}.")
            : Results.Json(incident, Json);
    }

    private static async Task<IResult> AddIncidentFeedback(string id, HttpContext context, FeedbackStore feedback, CancellationToken cancellationToken)
    {
        if (!TryId(id, out var incidentId, out var problem))
            return problem;
        var (body, bodyProblem) = await ReadFeedbackAsync(context.Request, cancellationToken);
        if (bodyProblem is not null)
            return bodyProblem;
        var source = context.Items[KeyIdItem] as string ?? "api";
        var labelled = await feedback.AddToIncidentAsync(incidentId, body!.Label!, body.Note, source, cancellationToken);
        return labelled is null
            ? Problem(StatusCodes.Status404NotFound, "Incident not found", $"There is no incident with id {incidentId}.")
            : Results.Json(new IncidentFeedbackResponse(incidentId, body.Label!, labelled.Value), Json, statusCode: StatusCodes.Status201Created);
    }

    private static async Task<IResult> GetAnomaly(string id, AnomalyQueries queries, CancellationToken cancellationToken)
    {
        if (!TryId(id, out var value, out var problem))
            return problem;
        var detail = await queries.GetAsync(value, cancellationToken);
        return detail is null
            ? Problem(StatusCodes.Status404NotFound, "Anomaly not found", $"There is no anomaly with id {value}.")
            : Results.Json(detail, Json);
    }

    private static async Task<IResult> ListDetectors(AnomalyQueries queries, CancellationToken cancellationToken) =>
        Results.Json(new ItemsResponse<DetectorStatus>(await queries.DetectorsAsync(cancellationToken)), Json);

    private static async Task<IResult> ListModels(HttpRequest request, ModelRegistry registry, CancellationToken cancellationToken)
    {
        if (!TryText(request.Query, "detector", out var detector, out var problem))
            return problem;
        return Results.Json(new ItemsResponse<RegisteredModel>(await registry.ListAsync(detector, cancellationToken)), Json);
    }

    private static async Task<IResult> ActivateModel(string version, HttpRequest request, ModelRegistry registry, CancellationToken cancellationToken)
    {
        if (!TryText(request.Query, "detector", out var detector, out var problem))
            return problem;
        var (body, bodyProblem) = await ReadBodyAsync<ActivateRequest>(request, cancellationToken);
        if (bodyProblem is not null)
            return bodyProblem;
        if (body?.Detector is { } fromBody)
        {
            if (detector is not null && detector != fromBody)
                return BadParameter("detector", "The detector in the query and the one in the body differ.");
            detector = fromBody;
        }
        if (detector is null)
            return BadParameter("detector", "Name the detector: ?detector=NAME or a JSON body {\"detector\": \"NAME\"}.");
        if (!ModelRegistry.IsDetectorName(detector))
            return BadParameter("detector", "detector must be 1-100 letters, digits, '.', '_' or '-'.");
        if (version.Length is 0 or > 200 || version.Contains('\0'))
            return BadParameter("version", "version is not a valid model version.");
        try
        {
            var activation = await registry.ActivateAsync(detector, version, cancellationToken);
            return Results.Json(new ActivationResponse(activation.Model, activation.PreviousVersion), Json);
        }
        catch (ModelNotFoundException e)
        {
            return Problem(StatusCodes.Status404NotFound, "Model not found", e.Message);
        }
    }

    private static async Task<IResult> AddFeedback(string id, HttpContext context, FeedbackStore feedback, CancellationToken cancellationToken)
    {
        if (!TryId(id, out var anomalyId, out var problem))
            return problem;
        var (body, bodyProblem) = await ReadFeedbackAsync(context.Request, cancellationToken);
        if (bodyProblem is not null)
            return bodyProblem;
        var source = context.Items[KeyIdItem] as string ?? "api";
        var stored = await feedback.AddAsync(anomalyId, body!.Label!, body.Note, source, cancellationToken);
        return stored is null
            ? Problem(StatusCodes.Status404NotFound, "Anomaly not found", $"There is no anomaly with id {anomalyId}.")
            : Results.Json(stored, Json, statusCode: StatusCodes.Status201Created);
    }

    /// <summary>A feedback body, checked; the problem when it is missing or invalid.</summary>
    private static async Task<(FeedbackRequest? Body, IResult? Problem)> ReadFeedbackAsync(HttpRequest request, CancellationToken cancellationToken)
    {
        var (body, bodyProblem) = await ReadBodyAsync<FeedbackRequest>(request, cancellationToken);
        if (bodyProblem is not null)
            return (null, bodyProblem);
        if (body is null)
            return (null, BadParameter("body", "Send a JSON body {\"label\": \"true_positive\" | \"false_positive\", \"note\": \"...\"}."));
        if (!FeedbackStore.IsLabel(body.Label))
            return (null, BadParameter("label", $"label must be \"{FeedbackStore.TruePositive}\" or \"{FeedbackStore.FalsePositive}\"."));
        if (body.Note is { } note && (note.Length > FeedbackStore.MaxNoteLength || note.Contains('\0')))
            return (null, BadParameter("note", $"note must be text of at most {FeedbackStore.MaxNoteLength} characters."));
        return (body, null);
    }

    private static async Task<(T? Body, IResult? Problem)> ReadBodyAsync<T>(HttpRequest request, CancellationToken cancellationToken)
        where T : class
    {
        if (request.ContentLength is 0 || (request.ContentLength is null && !request.Headers.TransferEncoding.Any()))
            return (null, null);
        try
        {
            return (await JsonSerializer.DeserializeAsync<T>(request.Body, Json, cancellationToken), null);
        }
        catch (JsonException e)
        {
            return (null, BadParameter("body", $"The body is not valid JSON of the expected shape: {e.Message}"));
        }
    }

    private static string? Single(IQueryCollection query, string name) =>
        query.TryGetValue(name, out var values) && values.Count > 0 && !string.IsNullOrEmpty(values[^1]) ? values[^1] : null;

    private static bool TryText(IQueryCollection query, string name, out string? value, out IResult problem)
    {
        value = Single(query, name);
        problem = Results.Empty;
        if (value is null)
            return true;
        if (value.Length > MaxFilterLength || value.Contains('\0'))
        {
            problem = BadParameter(name, $"{name} must be text of at most {MaxFilterLength} characters without NUL.");
            return false;
        }
        return true;
    }

    private static bool TryTime(IQueryCollection query, string name, out DateTimeOffset? value, out IResult problem)
    {
        value = null;
        problem = Results.Empty;
        if (Single(query, name) is not { } text)
            return true;
        if (!DateTimeOffset.TryParse(text, CultureInfo.InvariantCulture, DateTimeStyles.AssumeUniversal, out var time))
        {
            problem = BadParameter(name, $"{name} must be an ISO 8601 time such as 2026-01-31T12:00:00Z, not '{text}'.");
            return false;
        }
        value = time;
        return true;
    }

    private static bool TryId(string text, out long id, out IResult problem)
    {
        problem = Results.Empty;
        if (long.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out id) && id > 0)
            return true;
        problem = BadParameter("id", $"id must be a positive whole number, not '{text}'.");
        return false;
    }

    private static IResult BadParameter(string parameter, string detail) =>
        Results.Problem(detail, statusCode: StatusCodes.Status400BadRequest, title: "Invalid request parameter",
            extensions: new Dictionary<string, object?> { ["parameter"] = parameter });

    private static IResult Problem(int status, string title, string detail) =>
        Results.Problem(detail, statusCode: status, title: title);

    private sealed record AnomalyPageResponse(IReadOnlyList<AnomalySummary> Items, string? Next);

    private sealed record IncidentPageResponse(IReadOnlyList<IncidentSummary> Items, string? Next);

    private sealed record IncidentFeedbackResponse(long IncidentId, string Label, long AnomaliesLabelled);

    private sealed record ItemsResponse<T>(IReadOnlyList<T> Items);

    private sealed record ActivationResponse(RegisteredModel Model, string? PreviousVersion);

    private sealed record ActivateRequest(string? Detector);

    private sealed record FeedbackRequest(string? Label, string? Note);
}
