"""Shepherd's domain package, deployed to Lambda as the shared layer."""
