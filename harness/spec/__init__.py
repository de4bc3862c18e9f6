"""What a run is asked to do: cases, platforms, upstream-test cases, settings, quarantine,
read from YAML with file:line:key errors."""
