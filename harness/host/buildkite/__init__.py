"""Buildkite integration, one concept per module: the dynamic pipeline's steps (``pipeline``),
splitting and checking them as Buildkite takes uploads (``uploads``), parallel-job sharding
(``shard``), and the one gateway to ``buildkite-agent`` (``agent``). All but ``agent`` are pure.
"""
