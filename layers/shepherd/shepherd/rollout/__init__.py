"""Rollouts: first deployment, shadow → A/B → full, judged from metrics, with verified rollback."""

# The container environment variable naming the package a multi-model model serves: batch transform,
# which sends no TargetModel, scores with that package instead (functions/prepare_transform).
MULTI_MODEL_PACKAGE = "SHEPHERD_MODEL_PACKAGE"
