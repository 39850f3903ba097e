"""The lock-out check in front of Django's password backend.

django-axes counts failed passwords per account and address and refuses a locked
account; its backend insists on a request. Sign-ins without one (management commands,
`Client.login()` in tests) come from no address an attacker can repeat, so they skip
the check rather than fail.
"""

from __future__ import annotations

from axes.backends import AxesStandaloneBackend


class LockoutBackend(AxesStandaloneBackend):
    def authenticate(self, request, username=None, password=None, **kwargs):
        if request is None:
            return None
        return super().authenticate(request, username=username, password=password, **kwargs)
