"""The daemon: a supervisor of `persona run` jobs with an HTTP job API and Prometheus metrics.

Each job runs as its own `python -m engine run` child process (one code path with a local
run); the daemon launches, pauses (SIGINT: the child checkpoints and exits 130), resumes
(re-launches the same command) and cancels them, and keeps their state in a state dir.
"""
