"""Our AutoDL harness: dataset format (read and write), ingestion, scoring, local runner,
dataset builders and the benchmark. Independent of any submission, ours included."""
