"""Rollouts: first deployment, shadow → A/B → full, judged from metrics, with verified rollback."""
