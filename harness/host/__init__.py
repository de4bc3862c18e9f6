"""What runs on the orchestrating machine: plan execution, launching the worker, images,
the doctor, Buildkite steps, bisect, the transformers reference."""
