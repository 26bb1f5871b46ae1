"""Text that is not UTF-8: a str holding a lone surrogate, as os.listdir, glob and PathInput read
a file name with a byte that is not UTF-8 ('caf\\udce9.csv' for a Latin-1 'café.csv').

JSON escapes such a str, but no UTF-8 file or database takes it: a save journalled it and then
failed, and from then on every process failed to open the project. Saves refuse it before
anything is written; a journal that already holds it still opens.
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from scistack import BaseVariable, InvalidMetadataError
from scistack.errors import UnsupportedValueError
from tests.helpers import journal_size

NAME = "caf\udce9.csv"  # os.fsdecode(b"caf\xe9.csv")


class Scan(BaseVariable):
    pass


@pytest.mark.parametrize("case, error", [
    ("value", UnsupportedValueError),
    ("in_list", UnsupportedValueError),
    ("in_tuple", UnsupportedValueError),
    ("dict_value", UnsupportedValueError),
    ("dict_key", UnsupportedValueError),
    ("numpy_str", UnsupportedValueError),
    ("str_array", UnsupportedValueError),
    ("str_array_2d", UnsupportedValueError),
    ("str_array_0d", UnsupportedValueError),
    ("object_column", UnsupportedValueError),
    ("label", InvalidMetadataError),
    ("version_key", InvalidMetadataError),
])
def test_a_save_of_text_that_is_not_utf8_is_refused_naming_it_and_the_fix_and_writes_nothing(project, case, error):
    Scan.save(1.0, subject=1, session="pre")
    before = journal_size(project)
    value, meta = 2.0, {"subject": 2, "session": "pre"}
    if case == "label":
        meta["subject"] = "caf\udce9"
    elif case == "version_key":
        meta["file"] = NAME
    else:
        value = {"value": NAME, "in_list": [NAME, "b"], "in_tuple": ("a", NAME), "dict_value": {"f": NAME},
                 "dict_key": {NAME: 1}, "numpy_str": np.str_(NAME), "str_array": np.array(["a.csv", NAME]),
                 "str_array_2d": np.array([["a", "b"], ["c", NAME]]), "str_array_0d": np.array(NAME),
                 "object_column": pd.DataFrame({"f": pd.Series(["a.csv", NAME], dtype=object)})}[case]
    with pytest.raises(error) as caught:
        Scan.save(value, **meta)
    message = str(caught.value)
    assert "caf\\udce9" in message and "lone surrogate" in message, message
    assert "encode('utf-8', 'surrogateescape').decode('latin-1')" in message, message
    assert journal_size(project) == before
    project.close()
    # the project opens, and its SQL views are up to date
    code = ("import scistack; db = scistack.configure_database('gait.duckdb', ['subject', 'session'])\n"
            "print(db.sql('SELECT count(*) AS n FROM Scan')['n'].tolist())")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert done.returncode == 0 and done.stdout.split() == ["[1]"], done.stdout + done.stderr
    assert "not brought up to date" not in done.stderr, done.stderr


def test_valid_text_beyond_ascii_is_saved_as_before(project):
    Scan.save({"f": "café.csv", "g": "😀"}, subject=1, session="pré", note="naïve 😀")
    Scan.save(np.array(["café", "😀"]), subject=2, session="pre")
    assert Scan.load(subject=1, session="pré").data == {"f": "café.csv", "g": "😀"}
    assert Scan.load(subject=2, session="pre").data.tolist() == ["café", "😀"]
