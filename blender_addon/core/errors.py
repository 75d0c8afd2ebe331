"""The add-on's one user-facing exception type (operators turn it into ``self.report``)."""
from __future__ import annotations


class MimoClientError(Exception):
    """Something the user can act on went wrong: server down, request rejected, bad rig, ..."""
