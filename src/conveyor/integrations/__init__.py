"""Enqueue on the connection an ORM already holds, so the job commits with the ORM's writes.

`conveyor.integrations.sqlalchemy` (extra ``conveyor[sqlalchemy]``) and
`conveyor.integrations.django` (extra ``conveyor[django]``) each hand back the psycopg connection
underneath the ORM's transaction; every conveyor client call takes it as is.
"""
