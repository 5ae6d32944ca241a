"""Adapters between Shepherd's domain and boto3: AWS errors become domain errors here."""
