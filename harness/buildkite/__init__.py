"""Buildkite integration: the dynamic pipeline (``pipeline``), parallel-job sharding (``shard``)
and the one gateway to ``buildkite-agent`` (``agent``). Pipeline and sharding are pure planning;
only ``agent`` runs anything.
"""
