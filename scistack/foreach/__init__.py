"""Batch execution over metadata combinations (see `engine.for_each`)."""

from scistack.foreach.engine import for_each
from scistack.foreach.inputs import Fixed, Merge
from scistack.foreach.report import ComboResult, RunReport
from scistack.foreach.scifor import set_schema

__all__ = ["ComboResult", "Fixed", "Merge", "RunReport", "for_each", "set_schema"]
