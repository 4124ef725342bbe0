"""Report tables: one number format per column from the standard errors, toys apart from VAEs,
the suite as TOML, sortable headers with an inline script."""

from __future__ import annotations

import re
import tomllib

import pytest

from estibench import reports
from estibench.benchmarks.suites.schema import available_suites, load_suite, parse_suite
from estibench.reports.numbers import MISSING, column_format
from estibench.reports.tables import summary_tables
from estibench.reports.toml_text import to_toml
from tests.reports.fabricate import fabricate_run
from tests.reports.test_figure_layout import _with_toy


def _decimals(text: str) -> int:
    number = text.split(" ± ")[0]
    return len(number.split(".")[1]) if "." in number else 0


def test_two_significant_digits_of_the_smallest_error_set_the_column():
    fmt = column_format([12.3456, 1.5], [0.0123, 0.5])
    assert fmt.text(12.3456, 0.0123) == "12.346 ± 0.012"
    assert fmt.text(1.5, 0.5) == "1.500 ± 0.500"  # same decimals in every row
    assert fmt.text(float("nan"), 0.1) == MISSING and fmt.text(2.0, None) == "2.000"
    # the same value in every seed (a count of evaluations): no "± 0.000" beside it
    assert fmt.text(2.0, 0.0) == "2.000"
    # an error below the column's last decimal shows its own digit, not "± 0.000"
    assert fmt.text(2.0, 3e-7) == "2.000 ± 3e-07"


def test_without_errors_four_significant_digits_of_the_largest_value():
    fmt = column_format([123.456, 0.5])
    assert (fmt.text(123.456), fmt.text(0.5)) == ("123.5", "0.5")


def test_columns_spanning_decades_are_scientific():
    fmt = column_format([1e-6, 3e-2], [1e-7, 1e-3])
    assert fmt.scientific
    # the value is 10 errors: three significant digits show two of its error
    assert fmt.text(1e-6, 1e-7) == "1.00e-06 ± 1.00e-07"


@pytest.fixture(scope="module")
def toy_and_vae(tmp_path_factory):
    frame = _with_toy(reports.load(fabricate_run(tmp_path_factory.mktemp("run") / "run")))
    return summary_tables(reports.summary_table(frame))


def test_toys_and_vaes_have_their_own_tables_without_empty_columns(toy_and_vae):
    titles = [title for title, _ in toy_and_vae]
    assert "Bounds on held-out data (final checkpoint): VAEs" in titles
    assert any(t.startswith("Gradient quality (final checkpoint") and t.endswith(": toys")
               for t in titles)
    for title, table in toy_and_vae:
        objectives = {row[0] for row in table.rows}
        assert ("bernoulli_toy" in objectives) == title.endswith("toys"), title
        for j in range(2, len(table.columns)):
            assert any(row[j] != MISSING for row in table.rows), (title, table.columns[j])
    toy_bounds = dict(toy_and_vae).get("Bounds on held-out data (final checkpoint): toys")
    assert toy_bounds is None or "test ELBO (nats)" not in toy_bounds.columns


def test_one_number_format_per_column(toy_and_vae):
    for title, table in toy_and_vae:
        for j in range(3, len(table.columns)):
            shown = [row[j] for row in table.rows if row[j] != MISSING]
            if shown and "e" not in shown[0]:
                assert len({_decimals(s) for s in shown}) == 1, (title, table.columns[j], shown)


@pytest.mark.parametrize("name", available_suites())
def test_the_suite_as_toml_reads_back_as_the_same_suite(name):
    suite = load_suite(name).model_dump()
    assert parse_suite(tomllib.loads(to_toml(suite))).model_dump() == suite


def test_report_shows_the_suite_as_toml_and_sorts_tables_inline(tmp_path):
    run = fabricate_run(tmp_path / "run")
    html = reports.write_report(run)["html"].read_text()
    assert '<th class="sortable"' in html
    scripts = re.findall(r"<script([^>]*)>(.*?)</script>", html, re.S)
    assert len(scripts) == 1 and scripts[0][0] == ""  # inline: no src
    assert "addEventListener" in scripts[0][1] and "sort" in scripts[0][1]
    assert "[[estimators]]" in html and "seeds = [0, 1, 2]" in html
