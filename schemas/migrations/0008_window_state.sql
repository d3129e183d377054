-- serve's per-entity state for windowed detectors: each (partition, entity)'s last W−1 decoded events. Written by
-- serve in the same transaction as the anomalies and the consumer offsets of the batch that last touched the
-- entity, and only when that transaction moves the partition's offset forward, so the state always matches the
-- stored offsets: after a crash serve resumes at the offsets with exactly the history the next event needs.
CREATE TABLE window_state (
  detector text NOT NULL,
  topic text NOT NULL,
  "partition" integer NOT NULL CHECK ("partition" >= 0),
  entity text NOT NULL,
  spec text NOT NULL,
  last_offset bigint NOT NULL CHECK (last_offset >= 0),
  state bytea NOT NULL,
  updated_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (detector, topic, "partition", entity)
);

COMMENT ON TABLE window_state IS 'Per detector, partition and entity: the last W-1 decoded events a windowed model needs (committed with the offsets).';
COMMENT ON COLUMN window_state.spec IS 'Fingerprint of the feature encoding the steps were decoded with; rows of another fingerprint are ignored (state reset).';
COMMENT ON COLUMN window_state.last_offset IS 'Offset of the newest event in the state.';
COMMENT ON COLUMN window_state.state IS 'Packed steps, oldest first: u16 features F, u16 steps n, n*F float32 values (little-endian), n*F mask bits, n flagged bytes.';
