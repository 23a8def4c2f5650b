"""The state store: SQL, schema, migrations and locking, on SQLite or PostgreSQL.

Entry points for the layers above:

- ``database.create_engine(url)`` and ``database.unit_of_work(engine)``;
- ``schema.upgrade(url)`` / ``schema.current(url)``;
- one module of repository functions per aggregate (``pipelines``, ``runs``,
  ``logs``, ``events``, ``environments``, ``approvals``, ``tokens``, ``audit``),
  each taking the unit of work's ``Session`` first and ``now`` as a keyword;
- ``claims``: claiming runs and events, leases, and singleton locks.
"""

from __future__ import annotations
