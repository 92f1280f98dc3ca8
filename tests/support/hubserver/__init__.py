"""A local stand-in for the Hugging Face Hub, good enough for the real ``huggingface_hub`` client.

It owns nothing of the product: tests start it (``python -m tests.support.hubserver --port-file F
--data-dir D``), point ``HfApi(endpoint=…)`` at it with ``HF_HUB_DISABLE_XET=1`` (plain LFS uploads)
and drive failures through its ``/_test`` control API. :mod:`.model` holds the state (repos,
commits, LFS objects, faults, counters); :mod:`.server` the HTTP routes. It binds 127.0.0.1 only
and uses the standard library only.
"""

from .model import Fault, HubState
from .server import make_server

__all__ = ["Fault", "HubState", "make_server"]
