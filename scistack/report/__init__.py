"""Reporting on a project: history and listings (`history`), the completeness grid
(`status`) and why a value is stale (`why`). Read-only; the CLI and the web view are thin
shells over these functions.
"""
