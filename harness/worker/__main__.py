"""``python -m harness.worker ARGS``: pytest with ARGS, after the package's import has put the
mounted worker dependencies (if any) on ``sys.path``; the same as ``python -m pytest ARGS``
where pytest is installed."""

import sys

import pytest

if __name__ == "__main__":
    sys.exit(pytest.console_main())
