-- Per-window scoring statistics of each detector and model version: volumes, flag and dead-letter counts, and
-- the score distribution, to watch for drift (scores creeping up) and for broken producers (dead letters).
CREATE TABLE scoring_stats (
  detector text NOT NULL,
  window_start timestamptz NOT NULL,
  window_seconds integer NOT NULL CHECK (window_seconds > 0),
  model_version text NOT NULL,
  events_scored bigint NOT NULL DEFAULT 0 CHECK (events_scored >= 0),
  events_flagged bigint NOT NULL DEFAULT 0 CHECK (events_flagged >= 0),
  events_dead_lettered bigint NOT NULL DEFAULT 0 CHECK (events_dead_lettered >= 0),
  score_p50 double precision NULL,
  score_p90 double precision NULL,
  score_p99 double precision NULL,
  score_max double precision NULL,
  updated_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (detector, window_start, model_version),
  CONSTRAINT scoring_stats_flagged_le_scored CHECK (events_flagged <= events_scored),
  -- Quantiles are NULL while no event was scored in the window, and ordered otherwise.
  CONSTRAINT scoring_stats_quantiles_ordered CHECK (score_p50 <= score_p90 AND score_p90 <= score_p99 AND score_p99 <= score_max)
);

COMMENT ON TABLE scoring_stats IS 'Scoring statistics per detector, time window and model version.';
COMMENT ON COLUMN scoring_stats.window_start IS 'Start of the window (aligned to window_seconds).';
COMMENT ON COLUMN scoring_stats.events_scored IS 'Events scored in the window (flagged or not).';
COMMENT ON COLUMN scoring_stats.events_flagged IS 'Events whose score was above the threshold.';
COMMENT ON COLUMN scoring_stats.events_dead_lettered IS 'Events that could not be scored and went to the dead-letter topic.';
COMMENT ON COLUMN scoring_stats.score_p50 IS 'Median score of the events scored in the window.';
COMMENT ON COLUMN scoring_stats.score_p90 IS '90th percentile score.';
COMMENT ON COLUMN scoring_stats.score_p99 IS '99th percentile score.';
COMMENT ON COLUMN scoring_stats.score_max IS 'Largest score.';
