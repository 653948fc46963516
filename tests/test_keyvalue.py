"""One `KEY=VALUE` parser for --set and --sweep: each problem names the option, what is wrong and what works."""

from __future__ import annotations

import pytest

from lorakit.config.keyvalue import SET, SWEEP, split_key_value, typed_value
from lorakit.config.schema import ValueProblem


def problem(call) -> str:
    with pytest.raises(ValueProblem) as caught:
        call()
    return str(caught.value)


def test_a_key_and_its_text_are_split_at_the_first_equals_sign():
    assert split_key_value(" sample_prompt_prefix =a=b", SET) == ("sample_prompt_prefix", "a=b")


@pytest.mark.parametrize(("item", "option", "message"), [
    ("network_dim", SET, "--set 'network_dim': write KEY=VALUE, e.g. --set network_dim=32"),
    ("=32", SET, "--set '=32': write KEY=VALUE, e.g. --set network_dim=32"),
    ("network_dim=", SWEEP, "--sweep 'network_dim=': write KEY=V1,V2,..., e.g. --sweep network_dim=16,32"),
    ("network-dim=16", SET, "--set 'network-dim=16': 'network-dim' is not a key name (letters, digits and _ only); "
                            "did you mean network_dim"),
    ("dataset_config=x.toml", SWEEP, "--sweep dataset_config: lorakit sets this itself (lorakit writes dataset.toml"),
])
def test_malformed_items_say_what_works(item, option, message):
    assert problem(lambda: split_key_value(item, option)).startswith(message)


def test_an_empty_set_value_is_a_value():
    assert split_key_value("sample_prompt_prefix=", SET) == ("sample_prompt_prefix", "")


def test_values_are_typed_by_their_key_and_problems_name_the_option():
    assert typed_value("network_dim", "32", SET) == 32
    assert problem(lambda: typed_value("network_dim", "big", SWEEP)) == "--sweep network_dim = 'big' is not an integer"
    assert problem(lambda: typed_value("network_dimm", "1", SET)).startswith("--set unknown key 'network_dimm'")
