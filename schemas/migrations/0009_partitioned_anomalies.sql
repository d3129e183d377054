-- Time-partitioned anomalies and scoring_stats (declarative range partitioning by day), so that retention drops
-- whole partitions (DROP TABLE: no row deletes, no bloat, no vacuum debt) instead of deleting rows. Partitions are
-- named <table>_pYYYYMMDD and cover one UTC day; serve's PartitionMaintenance creates them ahead and drops the
-- expired ones (Storage:Retention:*; docs/operations.md#storage-and-retention). There is no DEFAULT partition: a row
-- no partition takes is an error, not a row parked where it would block creating its day's partition later.
--
-- Conversion keeps every row without copying one: the existing table becomes the partition "<table>_legacy" covering
-- everything up to the end of the current UTC day (MINVALUE .. tomorrow 00:00, or later if a row is newer), and
-- daily partitions follow. The legacy partition is dropped as one piece once its upper bound is older than the
-- retention. Attaching it scans it once (range check) and builds the indexes the new primary key needs.
--
-- Exactly-once: a unique constraint on a partitioned table must contain the partition key, and detected_at is the
-- time serve wrote the row, so it differs between a batch and its replay: the former unique key on the event's
-- Kafka coordinates (anomalies_event_key) cannot be kept across partitions. Instead, AnomalyStore inserts only the
-- rows at or after the partition's committed next offset, read under that consumer_offsets row's lock in the same
-- transaction (fencing); docs/streaming.md#exactly-once explains why that is equivalent. The legacy partition keeps
-- its old unique index (harmless; it only ever holds old rows).
--
-- Foreign keys: anomaly_feedback.anomaly_id referenced anomalies (id) ON DELETE CASCADE. A key into a partitioned
-- table must reference (id, detected_at) and would make dropping a partition fail while feedback points into it,
-- so the key is dropped: FeedbackStore inserts only for an existing anomaly (INSERT ... SELECT), and retention
-- deletes the feedback of the anomalies it drops in the same transaction. incidents keep no key into anomalies.

-- anomalies -------------------------------------------------------------------------------------------------------
ALTER TABLE anomaly_feedback DROP CONSTRAINT anomaly_feedback_anomaly_id_fkey;

-- The old primary key (id) gives way to the partitioned table's (id, detected_at), built when the table is attached.
ALTER TABLE anomalies DROP CONSTRAINT anomalies_pkey;
ALTER TABLE anomalies RENAME TO anomalies_legacy;
ALTER INDEX anomalies_event_key RENAME TO anomalies_legacy_event_key;
ALTER INDEX anomalies_detector_detected_idx RENAME TO anomalies_legacy_detector_detected_idx;
ALTER INDEX anomalies_entity_detected_idx RENAME TO anomalies_legacy_entity_detected_idx;
ALTER INDEX anomalies_event_time_idx RENAME TO anomalies_legacy_event_time_idx;
ALTER INDEX anomalies_detected_id_idx RENAME TO anomalies_legacy_detected_id_idx;
ALTER INDEX anomalies_incident_idx RENAME TO anomalies_legacy_incident_idx;

CREATE TABLE anomalies (
  id bigint NOT NULL DEFAULT nextval('anomalies_id_seq'),
  detector text NOT NULL,
  topic text NOT NULL,
  "partition" integer NOT NULL CONSTRAINT anomalies_partition_check CHECK ("partition" >= 0),
  "offset" bigint NOT NULL CONSTRAINT anomalies_offset_check CHECK ("offset" >= 0),
  entity text NULL,
  event_time timestamptz NULL,
  detected_at timestamptz NOT NULL DEFAULT now(),
  score double precision NOT NULL,
  p_value double precision NOT NULL,
  threshold double precision NOT NULL,
  model_version text NOT NULL,
  contributions jsonb NOT NULL,
  event jsonb NOT NULL,
  incident_id bigint NULL,
  PRIMARY KEY (id, detected_at),
  CONSTRAINT anomalies_score_finite CHECK (score > '-Infinity' AND score < 'Infinity'),
  CONSTRAINT anomalies_threshold_finite CHECK (threshold > '-Infinity' AND threshold < 'Infinity'),
  CONSTRAINT anomalies_p_value_range CHECK (p_value >= 0 AND p_value <= 1),
  CONSTRAINT anomalies_contributions_array CHECK (jsonb_typeof(contributions) = 'array'),
  CONSTRAINT anomalies_event_object CHECK (jsonb_typeof(event) = 'object')
) PARTITION BY RANGE (detected_at);

-- The ids continue from the old table's sequence, which now belongs to the new table (dropping the legacy
-- partition must not drop it).
ALTER SEQUENCE anomalies_id_seq OWNED BY anomalies.id;

-- The same indexes as before (0001, 0005, 0007), per partition; the legacy partition's existing ones are attached.
CREATE INDEX anomalies_detector_detected_idx ON anomalies (detector, detected_at DESC, id DESC);
CREATE INDEX anomalies_entity_detected_idx ON anomalies (entity, detected_at DESC);
CREATE INDEX anomalies_event_time_idx ON anomalies (event_time);
CREATE INDEX anomalies_detected_id_idx ON anomalies (detected_at DESC, id DESC);
CREATE INDEX anomalies_incident_idx ON anomalies (incident_id, detected_at DESC, id DESC) WHERE incident_id IS NOT NULL;

COMMENT ON TABLE anomalies IS 'Events scored as anomalous, one row per event (fenced by consumer_offsets); range-partitioned by detected_at, one partition per UTC day.';
COMMENT ON COLUMN anomalies.detector IS 'Name of the detector (deployed model) that flagged the event.';
COMMENT ON COLUMN anomalies.entity IS 'The event''s entity field (e.g. machine id) as text, if configured and present.';
COMMENT ON COLUMN anomalies.event_time IS 'The event''s own time field, if configured and present.';
COMMENT ON COLUMN anomalies.detected_at IS 'When the service scored the event (the partition key).';
COMMENT ON COLUMN anomalies.score IS 'Anomaly score: negative log reconstruction probability (higher = more anomalous).';
COMMENT ON COLUMN anomalies.p_value IS 'P(score >= this score) under normal data, from the model''s calibration.';
COMMENT ON COLUMN anomalies.threshold IS 'The score threshold in force when the event was flagged.';
COMMENT ON COLUMN anomalies.model_version IS 'Version of the model that scored the event.';
COMMENT ON COLUMN anomalies.contributions IS 'Per-feature scores, largest first: [{"feature": "temp", "score": 12.5}, ...].';
COMMENT ON COLUMN anomalies.event IS 'The event as received (JSON object).';
COMMENT ON COLUMN anomalies.incident_id IS 'The incident this anomaly belongs to (NULL: no entity, incidents off, or stored before migration 0007).';

-- scoring_stats -----------------------------------------------------------------------------------------------------
-- Its primary key already holds window_start, so the upsert (ON CONFLICT on the key) works unchanged.
ALTER TABLE scoring_stats RENAME TO scoring_stats_legacy;
ALTER INDEX scoring_stats_pkey RENAME TO scoring_stats_legacy_pkey;

CREATE TABLE scoring_stats (
  detector text NOT NULL,
  window_start timestamptz NOT NULL,
  window_seconds integer NOT NULL CONSTRAINT scoring_stats_window_seconds_check CHECK (window_seconds > 0),
  model_version text NOT NULL,
  events_scored bigint NOT NULL DEFAULT 0 CONSTRAINT scoring_stats_events_scored_check CHECK (events_scored >= 0),
  events_flagged bigint NOT NULL DEFAULT 0 CONSTRAINT scoring_stats_events_flagged_check CHECK (events_flagged >= 0),
  events_dead_lettered bigint NOT NULL DEFAULT 0 CONSTRAINT scoring_stats_events_dead_lettered_check CHECK (events_dead_lettered >= 0),
  score_p50 double precision NULL,
  score_p90 double precision NULL,
  score_p99 double precision NULL,
  score_max double precision NULL,
  updated_at timestamptz NOT NULL DEFAULT now(),
  score_bins bigint[] NULL CONSTRAINT scoring_stats_score_bins_check CHECK (score_bins IS NULL OR cardinality(score_bins) = 11),
  PRIMARY KEY (detector, window_start, model_version),
  CONSTRAINT scoring_stats_flagged_le_scored CHECK (events_flagged <= events_scored),
  CONSTRAINT scoring_stats_quantiles_ordered CHECK (score_p50 <= score_p90 AND score_p90 <= score_p99 AND score_p99 <= score_max)
) PARTITION BY RANGE (window_start);

COMMENT ON TABLE scoring_stats IS 'Scoring statistics per detector, time window and model version; range-partitioned by window_start, one partition per UTC day.';
COMMENT ON COLUMN scoring_stats.window_start IS 'Start of the window (aligned to window_seconds; the partition key).';
COMMENT ON COLUMN scoring_stats.events_scored IS 'Events scored in the window (flagged or not).';
COMMENT ON COLUMN scoring_stats.events_flagged IS 'Events whose score was above the threshold.';
COMMENT ON COLUMN scoring_stats.events_dead_lettered IS 'Events that could not be scored and went to the dead-letter topic.';
COMMENT ON COLUMN scoring_stats.score_p50 IS 'Median score of the events scored in the window.';
COMMENT ON COLUMN scoring_stats.score_p90 IS '90th percentile score.';
COMMENT ON COLUMN scoring_stats.score_p99 IS '99th percentile score.';
COMMENT ON COLUMN scoring_stats.score_max IS 'Largest score.';
COMMENT ON COLUMN scoring_stats.score_bins IS 'Events per calibration score bin (11 bins; edges at the model''s calibration quantiles 0.1 .. 0.9 and 0.99).';

-- Legacy partitions and the first week of daily ones -------------------------------------------------------------
DO $$
DECLARE
  -- Day arithmetic in UTC and in hours: interval '1 day' on a timestamptz follows the session's time zone.
  tomorrow timestamptz := (date_trunc('day', now() AT TIME ZONE 'UTC') + interval '24 hours') AT TIME ZONE 'UTC';
  upper_bound timestamptz;
  day timestamptz;
  t record;
BEGIN
  FOR t IN SELECT * FROM (VALUES ('anomalies', 'detected_at'), ('scoring_stats', 'window_start')) AS v(name, key) LOOP
    -- Up to the end of today, or of the day of the newest row if a clock ran ahead.
    EXECUTE format('SELECT max(%I) FROM %I', t.key, t.name || '_legacy') INTO upper_bound;
    upper_bound := greatest(tomorrow, (date_trunc('day', upper_bound AT TIME ZONE 'UTC') + interval '24 hours') AT TIME ZONE 'UTC');
    EXECUTE format('ALTER TABLE %I ATTACH PARTITION %I FOR VALUES FROM (MINVALUE) TO (%L)', t.name, t.name || '_legacy', upper_bound);
    day := upper_bound;
    WHILE day < tomorrow + interval '168 hours' LOOP
      EXECUTE format('CREATE TABLE %I PARTITION OF %I FOR VALUES FROM (%L) TO (%L)',
        t.name || '_p' || to_char(day AT TIME ZONE 'UTC', 'YYYYMMDD'), t.name, day, day + interval '24 hours');
      day := day + interval '24 hours';
    END LOOP;
  END LOOP;
END
$$;
