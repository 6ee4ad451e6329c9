from joulescore.store.sqlite import ResultRow, RunRow, Store, default_db_path

__all__ = ["ResultRow", "RunRow", "Store", "default_db_path"]
