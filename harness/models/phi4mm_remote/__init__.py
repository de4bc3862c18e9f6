"""Remote code copied verbatim into the phi4mm model directory (loaded there by transformers with
trust_remote_code). Kept as a package so it ships with the harness; not imported by the harness."""
