"""`harness bisect`: from "broken since last night" to the first bad image.

search.py (pure: which candidate to run next), state.py (the resumable state file),
candidates.py + registry.py (the ordered candidate list), step.py (one `harness run --image`),
report.py (terminal and Markdown), command.py (the command line other reports print).
"""
