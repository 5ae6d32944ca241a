"""Typed shapes of the events Shepherd receives, validated at the edge."""
