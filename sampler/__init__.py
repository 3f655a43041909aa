"""Sample queue health: per queue, every N seconds, depth, oldest waiting job age and worker
counts (busy, idle, stalled) as gauges. ``python -m tally.sampler --queue rq:default``."""
