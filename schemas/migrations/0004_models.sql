-- Model registry: every ONNX model a detector may run, with its lifecycle status. A detector follows its one
-- active version; activating another one (rollback = activating an older one) retires the previous active.
CREATE TABLE models (
  id bigserial PRIMARY KEY,
  detector text NOT NULL CHECK (detector <> ''),
  version text NOT NULL CHECK (version <> ''),
  created_at timestamptz NOT NULL,
  registered_at timestamptz NOT NULL DEFAULT now(),
  status text NOT NULL DEFAULT 'candidate' CHECK (status IN ('candidate', 'active', 'retired')),
  activated_at timestamptz NULL,
  onnx bytea NOT NULL,
  metadata jsonb NOT NULL CHECK (jsonb_typeof(metadata) = 'object'),
  training_metrics jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(training_metrics) = 'object'),
  evaluation_metrics jsonb NULL CHECK (evaluation_metrics IS NULL OR jsonb_typeof(evaluation_metrics) = 'object'),
  CONSTRAINT models_detector_version_key UNIQUE (detector, version)
);

-- At most one active model per detector, enforced by the database (two concurrent activations cannot both win).
CREATE UNIQUE INDEX models_one_active_idx ON models (detector) WHERE status = 'active';

COMMENT ON TABLE models IS 'Registered AnomalyVae ONNX models per detector (candidate, active or retired).';
COMMENT ON COLUMN models.version IS 'The model''s content-derived version (anomalyvae.model_version metadata).';
COMMENT ON COLUMN models.created_at IS 'When the model was trained (anomalyvae.created_at metadata).';
COMMENT ON COLUMN models.registered_at IS 'When the model was added to the registry.';
COMMENT ON COLUMN models.status IS 'candidate (registered, not serving), active (the detector''s model), retired (was active).';
COMMENT ON COLUMN models.activated_at IS 'When the model last became active.';
COMMENT ON COLUMN models.onnx IS 'The whole ONNX model file.';
COMMENT ON COLUMN models.metadata IS 'The model''s metadata: {"features": fitted feature schema, "calibration": ..., "training": training summary, "threshold", "target_fpr", "latent_size"}.';
COMMENT ON COLUMN models.training_metrics IS 'Metrics from training (the training summary''s losses etc.).';
COMMENT ON COLUMN models.evaluation_metrics IS 'Metrics from evaluating the model on held-out data (retraining gates), when evaluated.';
