"""``fal_client.auth``'s credential names, for ``import fal_realtime as fal_client``.

Credentials come from the same local sources as ``fal_client``'s keys:
``FAL_KEY``, else ``FAL_KEY_ID`` + ``FAL_KEY_SECRET`` (joined as ``id:secret``).
``fal_client``'s other sources (a Google Colab secret, the tokens of
``fal auth login``) are not read.
"""

from __future__ import annotations

import os

from ._errors import CredentialsError, MissingCredentialsError

__all__ = ["MissingCredentialsError", "MISSING_CREDENTIALS_MESSAGE", "fetch_credentials"]

#: The message of a missing-credentials error (it names the variables as ``fal_client`` does).
MISSING_CREDENTIALS_MESSAGE = (
    "No credentials found. Set FAL_KEY (or FAL_KEY_ID/FAL_KEY_SECRET), or pass a key or a token provider."
)


def fetch_credentials() -> str:
    """The key from the environment, as ``fal_client.auth.fetch_credentials``:
    ``FAL_KEY``, else ``FAL_KEY_ID:FAL_KEY_SECRET``.

    Raises :class:`MissingCredentialsError` (the same class as
    :class:`fal_realtime.CredentialsError`) when neither is set.
    """
    key = os.environ.get("FAL_KEY")
    if key:
        return key
    key_id, secret = os.environ.get("FAL_KEY_ID"), os.environ.get("FAL_KEY_SECRET")
    if key_id and secret:
        return f"{key_id}:{secret}"
    raise CredentialsError(MISSING_CREDENTIALS_MESSAGE)
