"""The RADIUS dictionary vpnhub ships (radius.dictionary, beside this module):
the attributes of RFC 2865, 2866, 2869 and 5176 that it sends and reads."""

from __future__ import annotations

import functools
from importlib import resources
from typing import Any

from pyrad.dictionary import Dictionary

__all__ = ["radius_dictionary"]


@functools.cache
def radius_dictionary() -> Any:
    """The parsed dictionary, once per process (pyrad's Dictionary is read-only after)."""
    path = resources.files("vpnhub.auth").joinpath("radius.dictionary")
    with resources.as_file(path) as file:
        return Dictionary(str(file))
