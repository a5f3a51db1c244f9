"""The console (`conveyor web`): a Starlette app that reads conveyor's tables and views and acts
only through its fn_* SQL functions. Auth lives in users.py and sessions.py, pages in pages/."""
