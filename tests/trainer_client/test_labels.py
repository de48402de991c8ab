"""trainer_client._labels beyond the shared grammar (tests/contract/test_labels.py runs the
grammar table through both parsers): its error survives crossing a process boundary."""

from __future__ import annotations

import pickle

import pytest

from trainer_client._labels import LabelError, parse_label


def test_label_errors_survive_pickling() -> None:
    with pytest.raises(LabelError) as info:
        parse_label({"pool": ["P1"]}, "labels[3]")
    again = pickle.loads(pickle.dumps(info.value))
    assert (again.message, again.field) == (info.value.message, "labels[3]")
    assert str(again) == str(info.value)
