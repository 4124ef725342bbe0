"""Shared test setup."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch


@pytest.fixture(autouse=True, scope="module")
def one_thread() -> Iterator[None]:
    """One intra-op thread while a module's tests run (restored afterwards). The tests run many
    tiny tensor operations, where extra threads only synchronise; on a machine whose cores are
    shared they spin and make the statistical tests several times slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
