"""The add-on's one user-facing exception type (operators turn it into ``self.report``).

Not to be confused with the wire client's ``vendor.client.MimoClientError`` (the server did not
answer or refused a request), which the operators report the same way.
"""
from __future__ import annotations


class AddonError(Exception):
    """Something the user can act on went wrong: no body in the scene, bad rig, bad setting, ..."""
