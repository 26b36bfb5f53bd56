"""User-facing errors: a message that names the problem and the fix, no traceback."""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Callable
from typing import TypeVar

from omegaconf import DictConfig

log = logging.getLogger("latent_traits")
F = TypeVar("F", bound=Callable)


class LatentTraitsError(Exception):
    """Bad input or a missing prerequisite that the user can fix; the message says how."""


def exit_on_user_error(fn: F) -> F:
    """Turn a LatentTraitsError into a clear message and exit status 2 instead of a traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            if args and isinstance(args[0], DictConfig):  # an entry point's config: checked first
                from latent_traits.config import check_config

                check_config(args[0])  # secrets, missing keys, wrong types and ranges
            return fn(*args, **kwargs)
        except LatentTraitsError as err:
            log.error("%s", err)
            print(f"error: {err}", file=sys.stderr)
            sys.exit(2)

    return wrapper  # type: ignore[return-value]
