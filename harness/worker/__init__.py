"""The worker: pytest with the harness plugin, run where vLLM is (host, or any vLLM image).

A vLLM image has no pytest. The container launcher mounts a folder of pure-Python
distributions built on the host (``harness.host.launch.worker_deps``) and names it in
``HARNESS_WORKER_DEPS``; importing this package appends it to ``sys.path``, AFTER the image's
own site-packages, so it only fills what the image lacks and never shadows the vLLM (torch,
packaging...) that ships. Every worker process (``python -m harness.worker``, probes, the
offline child) imports this package first.
"""

import os as _os
import sys as _sys

_deps = _os.environ.get("HARNESS_WORKER_DEPS")
if _deps and _deps not in _sys.path:
    _sys.path.append(_deps)
