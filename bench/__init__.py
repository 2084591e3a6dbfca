"""The benchmark: the pipeline's throughput, its AWS requests and cost, and the sketches' error
(`make bench`, `make bench-capacity`, `make bench-ab`; docs/performance.md)."""
