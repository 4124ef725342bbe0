"""Every Python and shell block of the README and the documentation runs (or says why not), and
the documentation speaks of the software as it is."""

from __future__ import annotations

import re

import pytest

from tests.docs import blocks

PAGES = blocks.pages()
SLOW = [b for page in PAGES for b in blocks.blocks(page) if b.directive == "slow"]


@pytest.mark.parametrize("page", PAGES)
def test_every_block_of_the_page_runs(page: str, page_run) -> None:
    page_run(page)


@pytest.mark.slow
@pytest.mark.parametrize("block", SLOW, ids=[b.where for b in SLOW])
def test_a_slow_block_runs(block: blocks.Block, tmp_path) -> None:
    blocks.run_block(block, blocks.prepare(tmp_path))


def test_every_block_runs_or_says_why_not() -> None:
    for page in PAGES:
        for block in blocks.blocks(page):
            blocks.check(block)
            if block.lang in blocks.RUNS and block.directive == "not-run":
                assert len(block.argument.split()) >= 2, f"{block.where}: give a reason"


def test_the_reader_finds_the_directives() -> None:
    text = """intro

<!-- not-run: needs SLURM -->
```bash
sbatch job.sh
```

<!-- file: a.toml -->
```toml
x = 1
```

```python
print(1)
```
"""
    found = blocks.blocks("page.md", text)
    assert [(b.lang, b.directive, b.argument, b.line) for b in found] == [
        ("bash", "not-run", "needs SLURM", 4), ("toml", "file", "a.toml", 9),
        ("python", None, "", 13)]
    assert [b.runs for b in found] == [False, False, True]
    with pytest.raises(ValueError, match="not a directive"):
        blocks.blocks("page.md", "<!-- not run -->\n```bash\nls\n```\n")
    with pytest.raises(ValueError, match="needs a language"):
        blocks.check(blocks.blocks("page.md", "```\nls\n```\n")[0])
    with pytest.raises(ValueError, match="never closed"):
        blocks.blocks("page.md", "```bash\nls\n")


def test_shell_commands_join_continuations_and_drop_comments() -> None:
    block = blocks.Block("x.md", 1, "bash", "# a comment\nestibench run a \\\n    --quick\n\n"
                         "estibench show b   # trailing\n")
    assert blocks.commands(block) == ["estibench run a      --quick",
                                      "estibench show b   # trailing"]
    console = blocks.Block("x.md", 1, "console", "$ estibench list suites\nsmoke\n")
    assert blocks.commands(console) == ["estibench list suites"]


HISTORY = re.compile(r"session|issue [0-9]+|[0-9a-f]{7,} \(", re.I)


@pytest.mark.parametrize("page", PAGES)
def test_no_development_history(page: str) -> None:
    text = (blocks.ROOT / page).read_text()
    found = [f"{page}:{text.count(chr(10), 0, m.start()) + 1}: {m.group(0)!r}"
             for m in HISTORY.finditer(text)]
    assert not found, ("user-facing text speaks of the software as it is (history goes to "
                       "CHANGELOG.md):\n" + "\n".join(found))
