from __future__ import annotations

import pytest

from ecmem.errors import ConfigError, InvalidNameError
from ecmem.names import decode_name, encode_name, validate_name
from ecmem.units import format_size, parse_size


@pytest.mark.parametrize("name", ["a", "ckpt/job42/rank0", "x y", "ünï/cödé", "a.b/c-d_e"])
def test_good_names(name: str) -> None:
    assert validate_name(name) == name
    assert decode_name(encode_name(name)) == name
    assert "/" not in encode_name(name)


@pytest.mark.parametrize(
    "name,needle",
    [
        ("", "empty"),
        ("/a", "empty part"),
        ("a/", "empty part"),
        ("a//b", "empty part"),
        ("a/../b", "'..'"),
        ("..", "'..'"),
        ("./a", "'.'"),
        ("a\nb", "control"),
        ("x" * 300, "longer than 255"),
        ("a/" * 600 + "a", "longer than 1024"),
    ],
)
def test_bad_names(name: str, needle: str) -> None:
    with pytest.raises(InvalidNameError) as err:
        validate_name(name)
    assert needle in str(err.value)


@pytest.mark.parametrize(
    "text,value",
    [
        ("0", 0),
        ("4096", 4096),
        ("4KiB", 4096),
        ("1MiB", 1 << 20),
        ("4GiB", 4 << 30),
        ("1.5GiB", 3 << 29),
        ("100M", 100_000_000),
        ("2k", 2000),
        (" 7 b ", 7),
        (42, 42),
    ],
)
def test_parse_size(text: str | int, value: int) -> None:
    assert parse_size(text) == value


@pytest.mark.parametrize("text", ["-1", "-5MiB", "lots", "4XB", "1..2", -3])
def test_parse_size_bad(text: str | int) -> None:
    with pytest.raises(ConfigError):
        parse_size(text)


def test_format_size() -> None:
    assert format_size(512) == "512 B"
    assert format_size(1536) == "1.5 KiB"
    assert format_size(4 << 30) == "4.0 GiB"
