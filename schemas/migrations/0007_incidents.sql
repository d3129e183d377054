-- Incidents: consecutive anomalies of one entity (per detector) grouped into one problem. An anomaly joins its
-- entity's open incident when it comes at most the detector's gap (Detectors:N:IncidentGap) after the incident's
-- last anomaly; otherwise that incident is closed and a new one opens. An open incident closes once the detector's
-- clock (the newest event time it scored) passes last_at + gap. Times are event times (the anomaly's event_time,
-- else its detected_at). Written by serve in the same transaction as the anomalies and offsets, and only for
-- anomaly rows that transaction inserted, so a replayed batch cannot count an anomaly twice.
CREATE TABLE incidents (
  id bigserial PRIMARY KEY,
  detector text NOT NULL,
  entity text NOT NULL,
  first_anomaly_id bigint NOT NULL,
  first_at timestamptz NOT NULL,
  last_at timestamptz NOT NULL,
  anomaly_count bigint NOT NULL CHECK (anomaly_count > 0),
  peak_score double precision NOT NULL,
  min_p_value double precision NOT NULL CHECK (min_p_value >= 0 AND min_p_value <= 1),
  peak_anomaly_id bigint NOT NULL,
  feature_scores jsonb NOT NULL CHECK (jsonb_typeof(feature_scores) = 'object'),
  opened_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  closed_at timestamptz NULL,
  CONSTRAINT incidents_first_anomaly_key UNIQUE (detector, first_anomaly_id),
  CONSTRAINT incidents_times CHECK (first_at <= last_at AND (closed_at IS NULL OR closed_at >= last_at))
);

-- At most one open incident per entity and detector: two consumers opening one at once conflict (and retry).
CREATE UNIQUE INDEX incidents_open_key ON incidents (detector, entity) WHERE closed_at IS NULL;
-- The sweep that closes a detector's quiet incidents after each batch.
CREATE INDEX incidents_open_last_idx ON incidents (detector, last_at) WHERE closed_at IS NULL;
-- Listing: newest first by the keyset (opened_at, id), which never changes (first_at can, when a late event
-- joins), so paging never skips or repeats an incident; all, per detector, per entity.
CREATE INDEX incidents_opened_idx ON incidents (opened_at DESC, id DESC);
CREATE INDEX incidents_detector_opened_idx ON incidents (detector, opened_at DESC, id DESC);
CREATE INDEX incidents_entity_opened_idx ON incidents (entity, opened_at DESC, id DESC);

ALTER TABLE anomalies ADD COLUMN incident_id bigint NULL;
CREATE INDEX anomalies_incident_idx ON anomalies (incident_id, detected_at DESC, id DESC) WHERE incident_id IS NOT NULL;

COMMENT ON TABLE incidents IS 'Runs of anomalies of one entity, no two further apart than the detector''s incident gap.';
COMMENT ON COLUMN incidents.first_anomaly_id IS 'The anomaly that opened the incident (a natural key: one incident per opening anomaly).';
COMMENT ON COLUMN incidents.first_at IS 'Time of its earliest anomaly (event time, else detection time).';
COMMENT ON COLUMN incidents.last_at IS 'Time of its latest anomaly (event time, else detection time).';
COMMENT ON COLUMN incidents.peak_score IS 'Highest anomaly score among its anomalies.';
COMMENT ON COLUMN incidents.min_p_value IS 'Smallest p-value among its anomalies (the most unusual one).';
COMMENT ON COLUMN incidents.feature_scores IS 'Per-feature scores summed over its anomalies: {"temp": 812.5, ...}; the largest are its top features.';
COMMENT ON COLUMN incidents.opened_at IS 'When serve stored its first anomaly (the listing order).';
COMMENT ON COLUMN incidents.closed_at IS 'last_at + gap once the detector''s clock passed it (or a later anomaly opened a new incident); NULL while open.';
COMMENT ON COLUMN anomalies.incident_id IS 'The incident this anomaly belongs to (NULL: no entity, incidents off, or stored before migration 0007).';

-- The detector's clock: per partition, the newest event time it scored (only ever moves forward). Incidents close
-- when the slowest partition's clock passes last_at + gap, so a partition that is consumed ahead of the others (after
-- a restart, say) cannot close an incident whose next anomaly still waits in a partition behind it.
CREATE TABLE incident_clocks (
  detector text NOT NULL,
  topic text NOT NULL,
  "partition" integer NOT NULL,
  clock timestamptz NOT NULL,
  PRIMARY KEY (detector, topic, "partition")
);

COMMENT ON TABLE incident_clocks IS 'Per detector and partition, the newest event time scored: the clock that closes quiet incidents.';
