"""Drive realistic workloads through the whole pipeline and measure it: exactness, throughput,
latency, the benchmarks (``bench_*``), the demo, and the import-graph check (``imports``)."""
