"""Version numbers, kept apart so that every module can import them without cycles."""

__all__ = ["API_VERSION"]

__version__ = "0.1.0"
"""Version of the ``wsss-kit`` distribution."""

API_VERSION = "1.0"
"""Interface version (``MAJOR.MINOR``). A plugin declaring ``wsss_api_version = "1.x"`` works with
any core ``1.y`` where ``y >= x``; a new major version means a breaking interface change."""
