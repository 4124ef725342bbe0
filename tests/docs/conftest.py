"""The documentation's pages, each run once per session (tests that check what an example
computed read the same run as the test that runs every block)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.docs import blocks


@pytest.fixture(scope="session")
def page_run(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], list[blocks.Result]]:
    """page -> the results of its blocks, run in order in a directory of their own (once)."""
    done: dict[str, list[blocks.Result]] = {}

    def run(page: str) -> list[blocks.Result]:
        if page not in done:
            directory = tmp_path_factory.mktemp(page.replace("/", "-").removesuffix(".md"))
            done[page] = blocks.run_page(page, directory)
        return done[page]

    return run
