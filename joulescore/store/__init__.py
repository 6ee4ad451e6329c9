from joulescore.store.common import default_db_path
from joulescore.store.sqlite import ResultRow, RunRow, Store

__all__ = ["ResultRow", "RunRow", "Store", "default_db_path"]
