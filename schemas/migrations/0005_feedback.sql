-- Feedback on flagged anomalies: users say whether a flag was right. Labels feed threshold recalibration and
-- the choice of training samples; every label is kept (a later label does not overwrite an earlier one).
CREATE TABLE anomaly_feedback (
  id bigserial PRIMARY KEY,
  anomaly_id bigint NOT NULL REFERENCES anomalies (id) ON DELETE CASCADE,
  label text NOT NULL CHECK (label IN ('true_positive', 'false_positive')),
  note text NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  source text NOT NULL CHECK (source <> '')
);

CREATE INDEX anomaly_feedback_anomaly_idx ON anomaly_feedback (anomaly_id, created_at DESC);

COMMENT ON TABLE anomaly_feedback IS 'User labels on flagged anomalies (true or false positive).';
COMMENT ON COLUMN anomaly_feedback.label IS 'true_positive (a real anomaly) or false_positive (normal after all).';
COMMENT ON COLUMN anomaly_feedback.source IS 'Who gave it: "api-key:<id>" (id of the API key, never the key) or "cli".';

-- The query API and CLI list anomalies newest first across all detectors, paged by the keyset (detected_at, id);
-- without this index that listing would sort the whole table for every page.
CREATE INDEX anomalies_detected_id_idx ON anomalies (detected_at DESC, id DESC);
