-- Flagged events: one row per event a detector scored as anomalous.
-- The unique key on the event's Kafka coordinates makes writes idempotent: a batch replayed after a crash
-- (INSERT ... ON CONFLICT DO NOTHING) cannot flag the same event twice.
CREATE TABLE anomalies (
  id bigserial PRIMARY KEY,
  detector text NOT NULL,
  topic text NOT NULL,
  "partition" integer NOT NULL CHECK ("partition" >= 0),
  "offset" bigint NOT NULL CHECK ("offset" >= 0),
  entity text NULL,
  event_time timestamptz NULL,
  detected_at timestamptz NOT NULL DEFAULT now(),
  score double precision NOT NULL,
  p_value double precision NOT NULL,
  threshold double precision NOT NULL,
  model_version text NOT NULL,
  contributions jsonb NOT NULL,
  event jsonb NOT NULL,
  CONSTRAINT anomalies_event_key UNIQUE (detector, topic, "partition", "offset"),
  -- PostgreSQL orders NaN above every number, so these range checks also keep NaN out.
  CONSTRAINT anomalies_score_finite CHECK (score > '-Infinity' AND score < 'Infinity'),
  CONSTRAINT anomalies_threshold_finite CHECK (threshold > '-Infinity' AND threshold < 'Infinity'),
  CONSTRAINT anomalies_p_value_range CHECK (p_value >= 0 AND p_value <= 1),
  CONSTRAINT anomalies_contributions_array CHECK (jsonb_typeof(contributions) = 'array'),
  CONSTRAINT anomalies_event_object CHECK (jsonb_typeof(event) = 'object')
);

-- Newest anomalies of a detector, with a stable order for keyset pagination.
CREATE INDEX anomalies_detector_detected_idx ON anomalies (detector, detected_at DESC, id DESC);
-- History of one entity (e.g. a machine).
CREATE INDEX anomalies_entity_detected_idx ON anomalies (entity, detected_at DESC);
-- Queries by when events happened rather than when they were scored.
CREATE INDEX anomalies_event_time_idx ON anomalies (event_time);

COMMENT ON TABLE anomalies IS 'Events scored as anomalous, one row per event (unique Kafka coordinates per detector).';
COMMENT ON COLUMN anomalies.detector IS 'Name of the detector (deployed model) that flagged the event.';
COMMENT ON COLUMN anomalies.entity IS 'The event''s entity field (e.g. machine id) as text, if configured and present.';
COMMENT ON COLUMN anomalies.event_time IS 'The event''s own time field, if configured and present.';
COMMENT ON COLUMN anomalies.detected_at IS 'When the service scored the event.';
COMMENT ON COLUMN anomalies.score IS 'Anomaly score: negative log reconstruction probability (higher = more anomalous).';
COMMENT ON COLUMN anomalies.p_value IS 'P(score >= this score) under normal data, from the model''s calibration.';
COMMENT ON COLUMN anomalies.threshold IS 'The score threshold in force when the event was flagged.';
COMMENT ON COLUMN anomalies.model_version IS 'Version of the model that scored the event.';
COMMENT ON COLUMN anomalies.contributions IS 'Per-feature scores, largest first: [{"feature": "temp", "score": 12.5}, ...].';
COMMENT ON COLUMN anomalies.event IS 'The event as received (JSON object).';
