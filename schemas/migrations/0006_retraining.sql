-- What retraining and drift detection read: the score distribution per window in calibration bins, a bounded
-- sample of normal events to train on, a bounded slice of recent events to evaluate on, and a log of decisions.

-- Drift: events per calibration score bin. Bin edges are the scoring model's calibration quantiles at levels
-- 0.1, 0.2, ..., 0.9 and 0.99 (11 bins), so on the calibration data the expected shares are 0.1 (x9), 0.09 and
-- 0.01; the population stability index of the observed counts against those shares measures drift.
ALTER TABLE scoring_stats ADD COLUMN score_bins bigint[] NULL
  CHECK (score_bins IS NULL OR cardinality(score_bins) = 11);
COMMENT ON COLUMN scoring_stats.score_bins IS 'Events per calibration score bin (11 bins; edges at the model''s calibration quantiles 0.1 .. 0.9 and 0.99).';

-- The training sample: events scored as normal, admitted with probability Retraining:SampleRate into a reservoir
-- of Retraining:SampleSize slots; once full, an admitted event replaces a uniformly random slot, so an entry
-- survives on average SampleSize admissions and the sample leans towards recent traffic. Written in the same
-- transaction as the batch's offsets: a replayed batch rewrites the same slots instead of adding rows.
CREATE TABLE training_sample (
  detector text NOT NULL,
  slot integer NOT NULL CHECK (slot >= 0),
  topic text NOT NULL,
  partition integer NOT NULL,
  "offset" bigint NOT NULL,
  event_time timestamptz NULL,
  sampled_at timestamptz NOT NULL DEFAULT now(),
  model_version text NOT NULL,
  score double precision NOT NULL,
  event jsonb NOT NULL,
  PRIMARY KEY (detector, slot)
);
COMMENT ON TABLE training_sample IS 'Reservoir of events scored as normal, per detector: what retraining trains on.';

-- The evaluation slice: every scored event (flagged or not) is admitted with probability
-- Retraining:RecentRate into a ring of Retraining:RecentSize slots (slot = admissions mod size), so it holds the
-- latest admitted events. An event goes to at most one of training_sample and recent_events: the slice is held out.
CREATE TABLE recent_events (
  detector text NOT NULL,
  slot integer NOT NULL CHECK (slot >= 0),
  topic text NOT NULL,
  partition integer NOT NULL,
  "offset" bigint NOT NULL,
  event_time timestamptz NULL,
  sampled_at timestamptz NOT NULL DEFAULT now(),
  model_version text NOT NULL,
  score double precision NOT NULL,
  flagged boolean NOT NULL,
  event jsonb NOT NULL,
  PRIMARY KEY (detector, slot)
);
COMMENT ON TABLE recent_events IS 'Ring of recently scored events per detector (held out from training_sample): what retraining evaluates on.';

-- Admission counters of both samples; updated with UPDATE ... RETURNING so that several consumer-group members
-- share one reservoir and one ring without handing out a slot twice.
CREATE TABLE sample_counters (
  detector text PRIMARY KEY,
  training_admitted bigint NOT NULL DEFAULT 0 CHECK (training_admitted >= 0),
  recent_admitted bigint NOT NULL DEFAULT 0 CHECK (recent_admitted >= 0)
);
COMMENT ON TABLE sample_counters IS 'How many events each detector has admitted to training_sample and recent_events so far.';

-- Every retraining run and what it decided, with the gate results behind the decision.
CREATE TABLE retrain_runs (
  id bigserial PRIMARY KEY,
  detector text NOT NULL,
  started_at timestamptz NOT NULL DEFAULT now(),
  finished_at timestamptz NULL,
  trigger text NOT NULL CHECK (trigger IN ('manual', 'schedule', 'drift')),
  active_version text NULL,
  challenger_version text NULL,
  decision text NULL CHECK (decision IN ('promoted', 'rejected', 'failed', 'skipped')),
  reasons jsonb NOT NULL DEFAULT '[]' CHECK (jsonb_typeof(reasons) = 'array'),
  metrics jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(metrics) = 'object')
);
CREATE INDEX retrain_runs_detector_idx ON retrain_runs (detector, started_at DESC);
COMMENT ON TABLE retrain_runs IS 'Retraining runs: trigger, challenger, decision (promoted, rejected, failed, skipped) and why.';
