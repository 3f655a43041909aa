"""Job instrumentation on top of the thin client."""
