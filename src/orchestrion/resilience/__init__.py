"""Resilience layers around handler calls in scale-out mode: circuit breakers, dead letters."""
