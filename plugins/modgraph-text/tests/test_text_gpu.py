"""The text modality's hooks and a text node on a CUDA GPU (text is linked in the vision and audio GPU tests).

Marked ``gpu``: skipped without CUDA; run them with ``pytest -m gpu`` (issue 18).
"""

from __future__ import annotations

import pytest

from modgraph.testing import check_modality, cuda_missing
from modgraph_text import Text

pytestmark = pytest.mark.gpu


def test_conformance_kit_on_cuda(tmp_path):
    if cuda_missing():
        pytest.skip(cuda_missing())
    check_modality(Text().with_options({"train_per_class": 10, "test_per_class": 10}), tmp_path,
                   data_root=tmp_path / "unused", device="cuda")
