-- Where each detector resumes reading each partition. The service writes a batch's anomalies and its next
-- offset in one transaction, so after a restart it neither skips nor re-flags events.
CREATE TABLE consumer_offsets (
  detector text NOT NULL,
  topic text NOT NULL,
  "partition" integer NOT NULL CHECK ("partition" >= 0),
  next_offset bigint NOT NULL CHECK (next_offset >= 0),
  updated_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (detector, topic, "partition")
);

COMMENT ON TABLE consumer_offsets IS 'Next offset to consume per detector, topic and partition (committed with the anomalies of the batch before it).';
COMMENT ON COLUMN consumer_offsets.next_offset IS 'Offset of the first event not yet processed.';
