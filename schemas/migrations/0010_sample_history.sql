-- Windowed detectors: a retraining sample row must keep what its window held. serve writes, with each event of a
-- windowed detector it admits to training_sample or recent_events, the W-1 earlier events of its entity that its
-- window held when it was scored (the entity history serve keeps, migration 0008), rebuilt from the decoded steps as
-- event objects: numbers as values, categories by name, binary features by their first token, missing features
-- absent, oldest first. Retraining and recalibration rebuild each row's window from history + event. Rows of
-- per-event detectors, and rows written before this migration, have none (NULL): windowed retraining skips them.
-- anomalies keep it too, so that a labelled anomaly of a windowed detector (feedback) can be scored as serve scored
-- it: a false positive joins the training windows, and recalibration and the gates score labelled windows.
ALTER TABLE training_sample ADD COLUMN history jsonb NULL
  CHECK (history IS NULL OR jsonb_typeof(history) = 'object');
ALTER TABLE recent_events ADD COLUMN history jsonb NULL
  CHECK (history IS NULL OR jsonb_typeof(history) = 'object');
-- No CHECK on anomalies.history: adding one would scan every partition of a large table under an exclusive lock,
-- while adding a nullable column without a default only changes the catalog.
ALTER TABLE anomalies ADD COLUMN history jsonb NULL;
COMMENT ON COLUMN training_sample.history IS 'Windowed detectors: {"steps": [event objects, oldest first], "flagged": [bool per step]} of the W-1 earlier events its window held; NULL otherwise.';
COMMENT ON COLUMN recent_events.history IS 'Windowed detectors: {"steps": [event objects, oldest first], "flagged": [bool per step]} of the W-1 earlier events its window held; NULL otherwise.';
COMMENT ON COLUMN anomalies.history IS 'Windowed detectors: the earlier events the anomaly''s window held, as training_sample.history; NULL otherwise.';
