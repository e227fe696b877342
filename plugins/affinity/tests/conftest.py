"""The affinity plugin's tests build PSA's AffinityNet on the deeplab plugin's WideResNet38, so they
use the official-layout builders that the deeplab plugin's tests keep
(plugins/deeplab/tests/deeplab_official_layouts.py: ResNet38, PSA's ``resnet38_aff``, IRNet)."""

from __future__ import annotations

import sys
from pathlib import Path

_DEEPLAB_TESTS = str(Path(__file__).resolve().parents[2] / "deeplab" / "tests")
if _DEEPLAB_TESTS not in sys.path:
    sys.path.append(_DEEPLAB_TESTS)
