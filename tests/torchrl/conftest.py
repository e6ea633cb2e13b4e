"""Skip the TorchRL tests where TorchRL is not installed; helpers live in torchrl_helpers.py."""

import pytest

pytest.importorskip("torchrl")
