"""`persona bench`: an LLM endpoint's throughput and latency over a concurrency or request-rate sweep.

In the manner of vLLM's serving benchmark: per step req/s, input and output tokens/s,
latency percentiles, TTFT and inter-token latency when streaming, errors; the concurrency
where throughput saturates; JSON, a PNG plot, and `persona bench compare A.json B.json`.

Modules: `workload` (prompts), `request` (one request, streamed or not, timed), `sweep`
(runs one step), `stats` (pure summaries, saturation, comparison), `report` (table, JSON,
plot), `cli` (the command).
"""
