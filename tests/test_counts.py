"""One count parser for every flag that takes a number of tokens or rows."""

import pytest

from saekit.counts import parse_count
from saekit.errors import ConfigError


@pytest.mark.parametrize(
    "text, value",
    [("1M", 1_000_000), ("200k", 200_000), ("1.5m", 1_500_000), ("12_345", 12345), ("2.5k", 2500), (" 7 ", 7), (64, 64)],
)
def test_counts_with_suffixes(text, value):
    assert parse_count(text) == value


@pytest.mark.parametrize("text", ["1.5", "1.2345k", "0", "-3", "ten", "", "1e6", "5x", True])
def test_bad_counts_name_the_flag(text):
    with pytest.raises(ConfigError, match="--tokens"):
        parse_count(text, "--tokens")
