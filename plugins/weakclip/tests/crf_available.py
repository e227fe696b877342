"""``needs_crf``: skip a test where the dense CRF (pydensecrf, from the ``pydensecrf2`` distribution) is absent."""

from __future__ import annotations

import importlib.util

import pytest

HAVE_PYDENSECRF = importlib.util.find_spec("pydensecrf") is not None
needs_crf = pytest.mark.skipif(not HAVE_PYDENSECRF, reason="pydensecrf is not installed")
