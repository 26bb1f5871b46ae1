"""scistack: a versioned, queryable, lineage-tracked home for every value a pipeline produces.

```python
from scistack import configure_database, BaseVariable, lineage_fcn, for_each, Fixed
db = configure_database("gait.duckdb", ["subject", "session"])
class RawEMG(BaseVariable): pass
```
"""

from __future__ import annotations

from scistack.version import __version__  # noqa: E402

from scistack.database import Database, configure_database, get_database  # noqa: E402
from scistack import errors as _errors  # noqa: E402
from scistack.errors import *  # noqa: E402,F401,F403
from scistack.lineage.function import LineageFunction, LineageResult, Thunk, lineage_fcn, thunk  # noqa: E402
from scistack.report.why import WhyReport, why  # noqa: E402
from scistack.variables import BaseVariable  # noqa: E402
from scistack.foreach import (  # noqa: E402
    EachOf, Fixed, Merge, PathInput, PathOutput, RunReport, Split, for_each, set_schema)
from scistack import ui as _ui  # noqa: E402,F401 - registers db.ui()
from scistack import export as _export  # noqa: E402,F401 - registers db.export(), db.import_bundle()
from scistack import share as _share  # noqa: E402,F401 - registers db.share()
from scistack.join import join  # noqa: E402
from scistack.tables import export_frame  # noqa: E402
from scistack.dictdb import DataBase, get_db_by_unique_id, is_data_base  # noqa: E402
from scistack.dictdb import open_data_base as open  # noqa: E402,A001 - ISF's name; not in __all__,
# so `from scistack import *` never shadows the builtin open

__all__ = [
    "BaseVariable", "Database", "EachOf", "Fixed", "Merge", "PathInput", "PathOutput", "RunReport", "Split", "for_each", "set_schema", "LineageFunction", "LineageResult", "Thunk", "WhyReport",
    "DataBase", "configure_database", "export_frame", "get_db_by_unique_id", "is_data_base", "get_database", "join", "lineage_fcn", "thunk", "why", "__version__",
    *_errors.__all__,
]
