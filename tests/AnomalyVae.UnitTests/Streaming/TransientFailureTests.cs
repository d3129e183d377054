using AnomalyVae.Streaming;
using Npgsql;

namespace AnomalyVae.UnitTests.Streaming;

/// <summary>Which commit failures serve waits out and retries, and which fault the detector.</summary>
public sealed class TransientFailureTests
{
    [Theory]
    [InlineData("57P01")] // admin_shutdown: the server restarts under the transaction
    [InlineData("57P02")] // crash_shutdown
    [InlineData("57P03")] // cannot_connect_now (starting up)
    [InlineData("53300")] // too_many_connections
    [InlineData("40001")] // serialization_failure
    [InlineData("08006")] // connection_failure
    public void Server_side_outages_are_retried(string sqlState) =>
        Assert.True(BatchCommitter.IsTransient(new PostgresException("outage", "FATAL", "FATAL", sqlState)));

    [Theory]
    [InlineData("22P02")] // invalid_text_representation: the data is wrong, a retry writes it again
    [InlineData("23505")] // unique_violation
    [InlineData("42P01")] // undefined_table: a migration is missing
    [InlineData("42501")] // insufficient_privilege
    public void Rejected_data_and_broken_sql_are_not_retried(string sqlState) =>
        Assert.False(BatchCommitter.IsTransient(new PostgresException("rejected", "ERROR", "ERROR", sqlState)));

    [Fact]
    public void Two_consumers_opening_one_entitys_first_incident_at_once_retry_but_other_unique_violations_do_not()
    {
        Assert.True(BatchCommitter.IsTransient(new PostgresException("duplicate key", "ERROR", "ERROR", "23505", constraintName: "incidents_open_key")));
        Assert.False(BatchCommitter.IsTransient(new PostgresException("duplicate key", "ERROR", "ERROR", "23505", constraintName: "anomalies_event_key")));
    }

    [Fact]
    public void Lost_connections_and_timeouts_are_retried()
    {
        Assert.True(BatchCommitter.IsTransient(new NpgsqlException("reading from stream", new EndOfStreamException())));
        Assert.True(BatchCommitter.IsTransient(new NpgsqlException("connect", new System.Net.Sockets.SocketException(111))));
        Assert.True(BatchCommitter.IsTransient(new TimeoutException()));
        Assert.False(BatchCommitter.IsTransient(new InvalidOperationException("a bug")));
    }
}
