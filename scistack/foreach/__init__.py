"""Batch execution over metadata combinations (see `engine.for_each`)."""

from scistack.foreach.engine import for_each
from scistack.foreach.inputs import EachOf, Fixed, Merge
from scistack.foreach.paths import PathInput, PathOutput
from scistack.foreach.report import ComboResult, RunReport
from scistack.foreach.scifor import set_schema
from scistack.foreach.split import Split

__all__ = ["ComboResult", "EachOf", "Fixed", "Merge", "PathInput", "PathOutput", "RunReport", "Split", "for_each",
           "set_schema"]
