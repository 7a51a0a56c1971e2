"""`wse study` settings: the presets `wse study --help` prints are the presets (its words give the same settings),
learning rates may be written as powers of two, and a word that does not parse is named in the one error line."""

from __future__ import annotations

import pytest

from runtime.errors import UserError
from runtime.study.settings import KINDS, parse_settings, preset_text


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("quick", [True, False])
def test_the_printed_presets_are_the_presets(kind, quick):
    words = preset_text(kind, quick).split()
    assert parse_settings(kind, quick, words) == parse_settings(kind, quick, [])
    if quick:  # the quick preset's words turn the GPU defaults into it
        assert parse_settings(kind, False, words) == parse_settings(kind, True, [])


def test_rates_as_powers_of_two():
    assert parse_settings("mup", True, ["lrs=2^-9,0.01,2^-7"]).lrs == [2.0 ** -9, 0.01, 2.0 ** -7]
    assert parse_settings("scaling", True, ["lr=2^-8"]).lr == 2.0 ** -8
    with pytest.raises(UserError, match=r"lrs\.1: Input should be a valid number.*\(got '2\^x'\)"):
        parse_settings("mup", True, ["lrs=2^-9,2^x,2^-7"])
