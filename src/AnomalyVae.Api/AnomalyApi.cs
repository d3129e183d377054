using System.Globalization;
using System.Net.Mime;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;
using AnomalyVae.Storage;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Microsoft.Net.Http.Headers;
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

    /// <summary>Largest feedback body: a 4,000-character note written entirely in \uXXXX escapes, plus the label.</summary>
    public const int MaxFeedbackBodyBytes = 32 * 1024;

    /// <summary>Largest activation body: {"detector": "…"} with a 100-character name.</summary>
    public const int MaxActivateBodyBytes = 1024;

    /// <summary>How much of a bad value an error detail quotes.</summary>
    public const int QuotedPrefixLength = 40;

    /// <summary>Content-Security-Policy of the dashboard: our own files only, no inline code, never framed.</summary>
    public const string DashboardContentSecurityPolicy =
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; " +
        "object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

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
            return PostgresDataSource.Create(connectionString);
        });
        // Checked now: a bad drift key stops start-up instead of the first GET /api/detectors.
        var drift = DriftSettings(configuration);
        services.TryAddSingleton(sp => new AnomalyQueries(sp.GetRequiredService<NpgsqlDataSource>(), drift));
        services.TryAddSingleton(sp => new FeedbackStore(sp.GetRequiredService<NpgsqlDataSource>()));
        services.TryAddSingleton(sp => new IncidentQueries(sp.GetRequiredService<NpgsqlDataSource>()));
        services.TryAddSingleton(sp => new ModelRegistry(sp.GetRequiredService<NpgsqlDataSource>()));
        services.TryAddSingleton(sp => ApiKeys.FromOptions(sp.GetRequiredService<IOptions<ApiOptions>>().Value));
        services.TryAddSingleton(sp => new FailedAuthentication(sp.GetRequiredService<IOptions<ApiOptions>>().Value, sp.GetRequiredService<ILogger<FailedAuthentication>>()));
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

    /// <summary>
    /// Maps the /api endpoints and the dashboard. Errors the handlers answer are problem details wherever this is
    /// mounted; for the ones outside them (404, 405, exceptions, database down) the host adds
    /// <see cref="UseAnomalyApiErrors"/> as <see cref="ApiHost"/> does.
    /// </summary>
    public static IEndpointRouteBuilder MapAnomalyApi(this IEndpointRouteBuilder endpoints)
    {
        var options = endpoints.ServiceProvider.GetRequiredService<IOptions<ApiOptions>>().Value;
        var api = endpoints.MapGroup("/api").AddEndpointFilter(ApiHeaders);
        var reads = api.MapGroup("");
        if (options.ReadsNeedKey)
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

        // The page itself never needs a key: it only holds code; its API calls carry the key when reads require one.
        var dashboard = endpoints.MapGroup("").AddEndpointFilter(DashboardHeaders);
        dashboard.MapGet("/", (DashboardFiles files) => files.Serve("index.html"));
        dashboard.MapGet("/dashboard", (DashboardFiles files) => files.Serve("index.html"));
        dashboard.MapGet("/dashboard/{**path}", (string? path, DashboardFiles files) => files.Serve(string.IsNullOrEmpty(path) ? "index.html" : path));
        return endpoints;
    }

    /// <summary>
    /// Problem details for the errors no handler answers: unknown paths (404), a known path with another method (405
    /// with Allow, from routing), a rejected Host header (400), exceptions (500 without internals) and an unreachable
    /// database (503 with Retry-After). Add it before routing.
    /// </summary>
    public static IApplicationBuilder UseAnomalyApiErrors(this IApplicationBuilder app)
    {
        ArgumentNullException.ThrowIfNull(app);
        app.UseExceptionHandler(new ExceptionHandlerOptions { ExceptionHandler = WriteExceptionProblemAsync });
        app.UseStatusCodePages(context => WriteStatusProblemAsync(context.HttpContext));
        return app;
    }

    /// <summary>Seconds a client is told to wait (Retry-After) when the database is unreachable.</summary>
    public const int DatabaseRetryAfterSeconds = 5;

    private static Task WriteExceptionProblemAsync(HttpContext http)
    {
        var error = http.Features.Get<Microsoft.AspNetCore.Diagnostics.IExceptionHandlerFeature>()?.Error;
        http.Response.Headers.XContentTypeOptions = "nosniff";
        if (error is BadHttpRequestException bad)
            return Problem(bad.StatusCode, ReasonPhrase(bad.StatusCode), "The request could not be read.").ExecuteAsync(http);
        if (error is not null && IsDatabaseUnavailable(error))
        {
            http.Response.Headers.RetryAfter = DatabaseRetryAfterSeconds.ToString(CultureInfo.InvariantCulture);
            return Problem(StatusCodes.Status503ServiceUnavailable, "Database unavailable",
                $"The anomaly database cannot be reached right now; retry in {DatabaseRetryAfterSeconds} seconds.").ExecuteAsync(http);
        }
        return Problem(StatusCodes.Status500InternalServerError, "Internal error",
            $"The request failed on the server (trace id {http.TraceIdentifier}); the server log has the details.").ExecuteAsync(http);
    }

    private static Task WriteStatusProblemAsync(HttpContext http)
    {
        var status = http.Response.StatusCode;
        http.Response.Headers.XContentTypeOptions = "nosniff";
        var detail = status switch
        {
            StatusCodes.Status404NotFound => $"Nothing is served at {Quote(http.Request.Path.Value ?? "/")}.",
            StatusCodes.Status405MethodNotAllowed => $"{Quote(http.Request.Method)} is not allowed here; the Allow header lists the methods that are ({http.Response.Headers.Allow}).",
            StatusCodes.Status400BadRequest => "The request was refused: its Host header is not one of Api:AllowedHosts, or it is malformed.",
            StatusCodes.Status413PayloadTooLarge => "The request body is larger than this endpoint accepts.",
            _ => ReasonPhrase(status),
        };
        return Problem(status, ReasonPhrase(status), detail).ExecuteAsync(http);
    }

    private static string ReasonPhrase(int status) =>
        Microsoft.AspNetCore.WebUtilities.ReasonPhrases.GetReasonPhrase(status) is { Length: > 0 } phrase ? phrase : "Error";

    /// <summary>
    /// An exception that means the database cannot be reached (refused or dropped connections, timeouts, a server
    /// shutting down or out of connections, a TLS handshake that fails verification), as opposed to a bug: those
    /// answer 503, a bug 500.
    /// </summary>
    public static bool IsDatabaseUnavailable(Exception error)
    {
        for (var e = error; e is not null; e = e.InnerException)
        {
            switch (e)
            {
                case PostgresException pg:
                    return pg.SqlState.StartsWith("08", StringComparison.Ordinal) || pg.SqlState.StartsWith("53", StringComparison.Ordinal)
                        || pg.SqlState is "57P01" or "57P02" or "57P03" || pg.IsTransient;
                case NpgsqlException npgsql when npgsql.IsTransient:
                case System.Security.Authentication.AuthenticationException: // TLS to the database refused (certificate)
                case TimeoutException:
                case System.Net.Sockets.SocketException:
                    return true;
            }
        }
        return false;
    }

    private static async ValueTask<object?> ApiHeaders(EndpointFilterInvocationContext context, EndpointFilterDelegate next)
    {
        var headers = context.HttpContext.Response.Headers;
        headers.XContentTypeOptions = "nosniff";
        headers.CacheControl = "no-store";
        return await next(context);
    }

    private static async ValueTask<object?> DashboardHeaders(EndpointFilterInvocationContext context, EndpointFilterDelegate next)
    {
        var headers = context.HttpContext.Response.Headers;
        headers.ContentSecurityPolicy = DashboardContentSecurityPolicy;
        headers.XContentTypeOptions = "nosniff";
        headers.XFrameOptions = "DENY"; // frame-ancestors for browsers without CSP level 2
        headers["Referrer-Policy"] = "no-referrer";
        return await next(context);
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
        var failures = http.RequestServices.GetRequiredService<FailedAuthentication>();
        var source = http.Connection.RemoteIpAddress?.ToString() ?? "unknown";
        if (failures.IsThrottled(source))
            return TooManyFailures(http, failures);
        var sent = http.Request.Headers[ApiOptions.KeyHeader];
        var id = sent.Count == 1 ? keys.Identify(sent.ToString()) : null;
        if (id is null)
        {
            var reason = sent.Count switch { 0 => "no X-Api-Key header", 1 => "unknown key", _ => "several X-Api-Key headers" };
            if (!failures.RecordFailure(source, $"{reason} on {http.Request.Method} {Quote(http.Request.Path.Value ?? "")}"))
                return TooManyFailures(http, failures);
            http.Response.Headers.WWWAuthenticate = "ApiKey header=\"X-Api-Key\"";
            return Problem(StatusCodes.Status401Unauthorized, "API key required", "Send a configured API key in the X-Api-Key header.");
        }
        http.Items[KeyIdItem] = id;
        return await next(context);
    }

    private static IResult TooManyFailures(HttpContext http, FailedAuthentication failures)
    {
        http.Response.Headers.RetryAfter = ((int)failures.Window.TotalSeconds).ToString(CultureInfo.InvariantCulture);
        return Problem(StatusCodes.Status429TooManyRequests, "Too many failed API key attempts",
            $"This address sent too many wrong or missing API keys; try again after {(int)failures.Window.TotalSeconds} seconds.");
    }

    private const string KeyIdItem = "anomalyvae.api-key-id";

    private static async Task<IResult> ListAnomalies(HttpRequest request, AnomalyQueries queries, CancellationToken cancellationToken)
    {
        var query = request.Query;
        if (!TryScope(query, out var detector, out var entity, out var from, out var to, out var problem))
            return problem;

        double? minScore = null;
        if (Single(query, "minScore") is { } minText)
        {
            if (!double.TryParse(minText, NumberStyles.Float, CultureInfo.InvariantCulture, out var value) || !double.IsFinite(value))
                return BadParameter("minScore", "finite_number", $"minScore must be a finite number, not {Quote(minText)}.");
            minScore = value;
        }

        long? incident = null;
        if (Single(query, "incident") is { } incidentText)
        {
            if (!TryId(incidentText, out var incidentId, out problem))
                return BadParameter("incident", "positive_integer", $"incident must be a positive whole number, not {Quote(incidentText)}.");
            incident = incidentId;
        }

        if (!TryPage(query, out var limit, out var after, out var pageProblem))
            return pageProblem!;
        var page = await queries.ListAsync(new AnomalyFilter(detector, entity, from, to, minScore, limit, after, incident), cancellationToken);
        return Results.Json(new AnomalyPageResponse(page.Items, page.Next?.Encode()), Json);
    }

    /// <summary>The filters anomalies and incidents share: detector, entity and a time range with from &lt; to.</summary>
    private static bool TryScope(IQueryCollection query, out string? detector, out string? entity, out DateTimeOffset? from,
        out DateTimeOffset? to, out IResult problem)
    {
        entity = null;
        from = to = null;
        if (!TryText(query, "detector", out detector, out problem)
            || !TryText(query, "entity", out entity, out problem)
            || !TryTime(query, "from", out from, out problem)
            || !TryTime(query, "to", out to, out problem))
        {
            return false;
        }
        if (from is not null && to is not null && from >= to)
        {
            problem = BadParameter("to", "order", "'to' must be later than 'from'.");
            return false;
        }
        return true;
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
                problem = BadParameter("limit", "range", $"limit must be a whole number from 1 to {AnomalyFilter.MaxLimit}, not {Quote(limitText)}.");
                return false;
            }
        }
        if (Single(query, "after") is { } afterText && !AnomalyCursor.TryDecode(afterText, out after))
        {
            problem = BadParameter("after", "cursor", "after is not a cursor returned by this API (use the 'next' value of the previous page as it is).");
            return false;
        }
        return true;
    }

    private static async Task<IResult> ListIncidents(HttpRequest request, IncidentQueries queries, CancellationToken cancellationToken)
    {
        var query = request.Query;
        if (!TryScope(query, out var detector, out var entity, out var from, out var to, out var problem))
            return problem;
        var status = Single(query, "status");
        if (status is not null && !IncidentFilter.IsStatus(status))
            return BadParameter("status", "one_of", $"status must be \"{IncidentFilter.Open}\" or \"{IncidentFilter.Closed}\", not {Quote(status)}.");
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
        var (body, bodyProblem) = await ReadBodyAsync<ActivateRequest>(request, MaxActivateBodyBytes, cancellationToken);
        if (bodyProblem is not null)
            return bodyProblem;
        if (body?.Detector is { } fromBody)
        {
            if (detector is not null && detector != fromBody)
                return BadParameter("detector", "conflict", "The detector in the query and the one in the body differ.");
            detector = fromBody;
        }
        if (detector is null)
            return BadParameter("detector", "required", "Name the detector: ?detector=NAME or a JSON body {\"detector\": \"NAME\"}.");
        if (!ModelRegistry.IsDetectorName(detector))
            return BadParameter("detector", "name_syntax", $"detector must be 1-100 letters, digits, '.', '_' or '-', not {Quote(detector)}.");
        if (version.Length is 0 or > 200 || version.Any(char.IsControl))
            return BadParameter("version", "name_syntax", $"version must be 1-200 characters without control characters, not {Quote(version)}.");
        try
        {
            var activation = await registry.ActivateAsync(detector, version, cancellationToken);
            return Results.Json(new ActivationResponse(activation.Model, activation.PreviousVersion), Json);
        }
        catch (ModelNotFoundException)
        {
            return Problem(StatusCodes.Status404NotFound, "Model not found", $"detector {Quote(detector)} has no model version {Quote(version)}.");
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

    /// <summary>A feedback body (at most <see cref="MaxFeedbackBodyBytes"/>), checked; the problem when it is missing or invalid.</summary>
    private static async Task<(FeedbackRequest? Body, IResult? Problem)> ReadFeedbackAsync(HttpRequest request, CancellationToken cancellationToken)
    {
        var (body, bodyProblem) = await ReadBodyAsync<FeedbackRequest>(request, MaxFeedbackBodyBytes, cancellationToken);
        if (bodyProblem is not null)
            return (null, bodyProblem);
        if (body is null)
            return (null, BadParameter("body", "required", "Send a JSON body {\"label\": \"true_positive\" | \"false_positive\", \"note\": \"...\"}."));
        if (!FeedbackStore.IsLabel(body.Label))
            return (null, BadParameter("label", "one_of", $"label must be \"{FeedbackStore.TruePositive}\" or \"{FeedbackStore.FalsePositive}\", not {Quote(body.Label ?? "null")}."));
        if (body.Note is { } note)
        {
            if (note.Length > FeedbackStore.MaxNoteLength)
                return (null, BadParameter("note", "max_length", $"note must be at most {FeedbackStore.MaxNoteLength} characters, not {note.Length}."));
            if (note.Contains('\0'))
                return (null, BadParameter("note", "no_nul", "note must not contain NUL characters (PostgreSQL text cannot hold them)."));
        }
        return (body, null);
    }

    /// <summary>
    /// Reads a JSON body of at most <paramref name="maxBytes"/>: none is fine (null), anything but JSON is 415, a longer
    /// one 413 before it is read (Content-Length) or as soon as it passes the limit (chunked).
    /// </summary>
    private static async Task<(T? Body, IResult? Problem)> ReadBodyAsync<T>(HttpRequest request, long maxBytes, CancellationToken cancellationToken)
        where T : class
    {
        if (request.ContentLength is 0 || (request.ContentLength is null && !request.Headers.TransferEncoding.Any()))
            return (null, null);
        if (!IsJsonContentType(request.ContentType))
        {
            return (null, Problem(StatusCodes.Status415UnsupportedMediaType, "Unsupported media type",
                $"The body must be JSON in UTF-8 (Content-Type: application/json), not {Quote(request.ContentType ?? "a body without Content-Type")}."));
        }
        if (request.ContentLength > maxBytes)
            return (null, BodyTooLarge(maxBytes));
        if (request.HttpContext.Features.Get<IHttpMaxRequestBodySizeFeature>() is { IsReadOnly: false } sizeLimit)
            sizeLimit.MaxRequestBodySize = maxBytes;
        try
        {
            return (await JsonSerializer.DeserializeAsync<T>(request.Body, Json, cancellationToken), null);
        }
        catch (BadHttpRequestException e) when (e.StatusCode == StatusCodes.Status413PayloadTooLarge)
        {
            return (null, BodyTooLarge(maxBytes));
        }
        catch (JsonException e)
        {
            return (null, BadParameter("body", "json",
                $"The body is not valid JSON of the expected shape (at {Quote(e.Path ?? "$")}, line {e.LineNumber + 1}, byte {e.BytePositionInLine + 1})."));
        }
    }

    private static IResult BodyTooLarge(long maxBytes) =>
        Problem(StatusCodes.Status413PayloadTooLarge, "Body too large", $"This endpoint accepts bodies of at most {maxBytes} bytes.");

    private static bool IsJsonContentType(string? contentType)
    {
        if (!MediaTypeHeaderValue.TryParse(contentType, out var media))
            return false;
        var type = media.MediaType.Value ?? "";
        var json = type.Equals(MediaTypeNames.Application.Json, StringComparison.OrdinalIgnoreCase)
            || (type.StartsWith("application/", StringComparison.OrdinalIgnoreCase) && type.EndsWith("+json", StringComparison.OrdinalIgnoreCase));
        return json && (media.Charset.Value is null || media.Charset.Value.Equals("utf-8", StringComparison.OrdinalIgnoreCase));
    }

    /// <summary>
    /// A bad value as an error detail may show it: the first <see cref="QuotedPrefixLength"/> characters, quoted, control
    /// characters escaped, and how long the whole was. Answers never echo a large input back.
    /// </summary>
    public static string Quote(string value)
    {
        ArgumentNullException.ThrowIfNull(value);
        var shown = new StringBuilder("'");
        foreach (var c in value.AsSpan(0, Math.Min(value.Length, QuotedPrefixLength)))
        {
            if (char.IsControl(c) || char.IsSurrogate(c))
                shown.Append(CultureInfo.InvariantCulture, $"\\u{(int)c:x4}");
            else
                shown.Append(c);
        }
        shown.Append('\'');
        if (value.Length > QuotedPrefixLength)
            shown.Append(CultureInfo.InvariantCulture, $"… ({value.Length} characters)");
        return shown.ToString();
    }

    private static string? Single(IQueryCollection query, string name) =>
        query.TryGetValue(name, out var values) && values.Count > 0 && !string.IsNullOrEmpty(values[^1]) ? values[^1] : null;

    private static bool TryText(IQueryCollection query, string name, out string? value, out IResult problem)
    {
        value = Single(query, name);
        problem = Results.Empty;
        if (value is null)
            return true;
        if (value.Length > MaxFilterLength)
        {
            problem = BadParameter(name, "max_length", $"{name} must be at most {MaxFilterLength} characters, not {value.Length}.");
            return false;
        }
        if (value.Contains('\0'))
        {
            problem = BadParameter(name, "no_nul", $"{name} must not contain NUL characters.");
            return false;
        }
        return true;
    }

    /// <summary>ISO 8601 as the API writes it: a date, or a date and time (minutes, seconds, fractions), UTC unless an offset is given.</summary>
    private static readonly string[] s_iso8601 =
    [
        "yyyy-MM-dd'T'HH:mm:ss.FFFFFFFK", "yyyy-MM-dd'T'HH:mm:ssK", "yyyy-MM-dd'T'HH:mmK", "yyyy-MM-dd",
    ];

    /// <summary>Parses a strict ISO 8601 time (see <see cref="s_iso8601"/>); "Jan 1 2020" or "12:00" are not.</summary>
    public static bool TryParseIsoTime(string text, out DateTimeOffset time) =>
        DateTimeOffset.TryParseExact(text, s_iso8601, CultureInfo.InvariantCulture, DateTimeStyles.AssumeUniversal, out time);

    private static bool TryTime(IQueryCollection query, string name, out DateTimeOffset? value, out IResult problem)
    {
        value = null;
        problem = Results.Empty;
        if (Single(query, name) is not { } text)
            return true;
        if (!TryParseIsoTime(text, out var time))
        {
            problem = BadParameter(name, "iso8601", $"{name} must be an ISO 8601 time such as 2026-01-31T12:00:00Z, not {Quote(text)}.");
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
        problem = BadParameter("id", "positive_integer", $"id must be a positive whole number, not {Quote(text)}.");
        return false;
    }

    /// <summary>A 400 naming the parameter and the rule it broke (members "parameter" and "rule").</summary>
    private static IResult BadParameter(string parameter, string rule, string detail) =>
        Results.Problem(detail, statusCode: StatusCodes.Status400BadRequest, title: "Invalid request parameter",
            extensions: new Dictionary<string, object?> { ["parameter"] = parameter, ["rule"] = rule });

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
