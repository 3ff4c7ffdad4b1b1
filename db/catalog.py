"""The database described by its own catalog: ``docs/database.md`` and ``conveyor db docs``.

This module owns reading PostgreSQL's catalog into plain rows (:func:`describe`) and rendering
them as Markdown (:func:`render_markdown`): each schema and its objects, what depends on what,
and which role may do what. It is generic: every schema but PostgreSQL's own, whoever owns the
objects. Partitions are folded into their partitioned table and extension members left out,
and nothing that differs between two freshly migrated databases (OIDs, times, the database's
or the migrating login's name, the partitions of the month) is read, so that the text is the
same byte for byte and ``tests/integration/test_database_docs.py`` can compare it with the
committed file.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

import psycopg
from psycopg.rows import dict_row

from conveyor.db.errors import wrap_exceptions

Row = dict[str, Any]
Description = dict[str, list[Row]]

# -- the catalog queries --------------------------------------------------------------------
# Schema names beginning with pg_ are PostgreSQL's (pg_catalog, pg_toast, pg_temp_N, ...).
USER_SCHEMA = "n.nspname <> 'information_schema' AND n.nspname !~ '^pg_'"
# Roles shown in the privileges: not superusers (they bypass every check), not PUBLIC
# (grantee 0 has no pg_roles row), not the predefined pg_* roles.
SHOWN_ROLE = "NOT g.rolsuper AND g.rolname !~ '^pg_'"


def _not_extension(catalog: str, oid: str) -> str:
    return (f"NOT EXISTS (SELECT FROM pg_depend e WHERE e.classid = '{catalog}'::regclass "
            f"AND e.objid = {oid} AND e.deptype = 'e')")


# Unqualified names in what pg_get_* print are resolved against the search path: with only
# pg_catalog on it, every other schema's name is printed, whatever the connection's own path.
PIN_SEARCH_PATH = "SET LOCAL search_path = pg_catalog, pg_temp"

SCHEMAS = f"""
SELECT n.nspname AS name, obj_description(n.oid, 'pg_namespace') AS comment
FROM pg_namespace n WHERE {USER_SCHEMA} AND {_not_extension('pg_namespace', 'n.oid')}
"""

# Sequences owned by a column (serial, identity) are the column's business: not listed.
RELATIONS = f"""
SELECT n.nspname AS schema, c.relname AS name, c.relkind::text AS relkind,
       CASE WHEN c.relkind = 'p' THEN pg_get_partkeydef(c.oid) END AS partition_key,
       obj_description(c.oid, 'pg_class') AS comment
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p', 'f', 'v', 'm', 'S') AND NOT c.relispartition
  AND {USER_SCHEMA} AND {_not_extension('pg_class', 'c.oid')}
  AND NOT (c.relkind = 'S' AND EXISTS (
      SELECT FROM pg_depend o WHERE o.classid = 'pg_class'::regclass AND o.objid = c.oid
        AND o.refclassid = 'pg_class'::regclass AND o.deptype IN ('a', 'i')))
"""

ROUTINES = f"""
SELECT n.nspname AS schema, p.proname || '(' || pg_get_function_identity_arguments(p.oid) || ')' AS name,
       p.prokind::text AS prokind, pg_get_function_result(p.oid) AS returns, l.lanname AS language,
       p.prosecdef AS security_definer, obj_description(p.oid, 'pg_proc') AS comment
FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace JOIN pg_language l ON l.oid = p.prolang
WHERE {USER_SCHEMA} AND {_not_extension('pg_proc', 'p.oid')}
"""

# tgtype's bits (PostgreSQL's trigger.h): 1 row, 2 before, 4 insert, 8 delete, 16 update,
# 32 truncate, 64 instead. Clones of a partitioned table's trigger (tgparentid) are not listed.
TRIGGERS = f"""
SELECT n.nspname AS schema, c.relname AS table, t.tgname AS name,
       CASE WHEN t.tgtype & 2 <> 0 THEN 'BEFORE' WHEN t.tgtype & 64 <> 0 THEN 'INSTEAD OF' ELSE 'AFTER' END
       || ' ' || array_to_string(ARRAY[CASE WHEN t.tgtype & 4 <> 0 THEN 'INSERT' END,
                                       CASE WHEN t.tgtype & 16 <> 0 THEN 'UPDATE' END,
                                       CASE WHEN t.tgtype & 8 <> 0 THEN 'DELETE' END,
                                       CASE WHEN t.tgtype & 32 <> 0 THEN 'TRUNCATE' END], ' OR ')
       || CASE WHEN t.tgtype & 1 <> 0 THEN ' FOR EACH ROW' ELSE ' FOR EACH STATEMENT' END
       || CASE WHEN t.tgenabled = 'D' THEN ' (disabled)' ELSE '' END AS fires,
       fn.nspname || '.' || f.proname || '(' || pg_get_function_identity_arguments(f.oid) || ')' AS function,
       obj_description(t.oid, 'pg_trigger') AS comment
FROM pg_trigger t
JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_proc f ON f.oid = t.tgfoid JOIN pg_namespace fn ON fn.oid = f.pronamespace
WHERE NOT t.tgisinternal AND t.tgparentid = 0 AND NOT c.relispartition
  AND {USER_SCHEMA} AND {_not_extension('pg_class', 'c.oid')}
"""

# Each edge is (classid, objid) -> (classid, objid); `names` then gives both ends a schema and
# a name, mapping an index to its table and a partition (or a partition's index) to the root
# of its partition tree (pg_partition_root walks pg_inherits), so no partition is ever named.
# Ends outside the user schemas or inside an extension have no name and drop out.
DEPENDENCIES = f"""
WITH edges (obj_class, obj_id, ref_class, ref_id, how, edge) AS (
    SELECT 'pg_class'::regclass::oid, w.ev_class, d.refclassid, d.refobjid,
           CASE WHEN w.rulename <> '_RETURN' THEN 'rule ' || w.rulename
                WHEN d.refclassid = 'pg_proc'::regclass THEN 'view calls' ELSE 'view reads' END, 'reads'
    FROM pg_rewrite w
    JOIN pg_depend d ON d.classid = 'pg_rewrite'::regclass AND d.objid = w.oid AND d.deptype = 'n'
    WHERE d.refobjid <> w.ev_class
  UNION ALL
    SELECT 'pg_class'::regclass::oid, k.conrelid, 'pg_class'::regclass::oid, k.confrelid,
           'foreign key (' || (SELECT string_agg(a.attname, ', ' ORDER BY u.i)
                               FROM unnest(k.conkey) WITH ORDINALITY u (attnum, i)
                               JOIN pg_attribute a ON a.attrelid = k.conrelid AND a.attnum = u.attnum) || ')',
           'foreign key'
    FROM pg_constraint k WHERE k.contype = 'f' AND k.conparentid = 0
  UNION ALL
    SELECT 'pg_class'::regclass::oid, t.tgrelid, 'pg_proc'::regclass::oid, t.tgfoid, 'trigger ' || t.tgname,
           'trigger'
    FROM pg_trigger t WHERE NOT t.tgisinternal AND t.tgparentid = 0
  UNION ALL
    SELECT 'pg_class'::regclass::oid, ad.adrelid, d.refclassid, d.refobjid, 'default of column ' || a.attname,
           'default'
    FROM pg_attrdef ad JOIN pg_attribute a ON a.attrelid = ad.adrelid AND a.attnum = ad.adnum
    JOIN pg_depend d ON d.classid = 'pg_attrdef'::regclass AND d.objid = ad.oid AND d.deptype = 'n'
    WHERE d.refobjid <> ad.adrelid
  UNION ALL
    SELECT 'pg_class'::regclass::oid, d.objid, 'pg_class'::regclass::oid, d.refobjid,
           CASE d.deptype WHEN 'i' THEN 'identity of column ' ELSE 'owned by column ' END || a.attname,
           'owned by'
    FROM pg_depend d JOIN pg_class s ON s.oid = d.objid AND s.relkind = 'S'
    JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
    WHERE d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_class'::regclass AND d.deptype IN ('a', 'i')
  UNION ALL
    SELECT 'pg_class'::regclass::oid, p.polrelid, d.refclassid, d.refobjid, 'policy ' || p.polname, 'policy'
    FROM pg_policy p
    JOIN pg_depend d ON d.classid = 'pg_policy'::regclass AND d.objid = p.oid AND d.deptype = 'n'
    WHERE d.refobjid <> p.polrelid
  UNION ALL
    SELECT 'pg_proc'::regclass::oid, d.objid, d.refclassid, d.refobjid, 'function body (BEGIN ATOMIC)', 'body'
    FROM pg_depend d WHERE d.classid = 'pg_proc'::regclass AND d.deptype = 'n'
), names (class, id, schema, name, kind) AS (
    SELECT 'pg_class'::regclass::oid, c.oid, n.nspname, r.relname::text, r.relkind::text
    FROM pg_class c LEFT JOIN pg_index i ON i.indexrelid = c.oid
    CROSS JOIN LATERAL (SELECT coalesce(i.indrelid, c.oid)::regclass AS rel) t
    JOIN pg_class r ON r.oid = coalesce(pg_partition_root(t.rel), t.rel)
    JOIN pg_namespace n ON n.oid = r.relnamespace
    WHERE {USER_SCHEMA} AND {_not_extension('pg_class', 'r.oid')}
  UNION ALL
    SELECT 'pg_proc'::regclass::oid, p.oid, n.nspname,
           p.proname || '(' || pg_get_function_identity_arguments(p.oid) || ')', 'routine'
    FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
    WHERE {USER_SCHEMA} AND {_not_extension('pg_proc', 'p.oid')}
)
SELECT DISTINCT o.schema AS object_schema, o.name AS object_name, o.kind AS object_kind,
       r.schema AS ref_schema, r.name AS ref_name, r.kind AS ref_kind, e.how, e.edge
FROM edges e
JOIN names o ON o.class = e.obj_class AND o.id = e.obj_id
JOIN names r ON r.class = e.ref_class AND r.id = e.ref_id
WHERE e.edge = 'foreign key' OR (o.class, o.schema, o.name) IS DISTINCT FROM (r.class, r.schema, r.name)
"""

# An ACL that was never granted on is NULL and means the default: the owner holds everything.
SCHEMA_PRIVILEGES = f"""
SELECT n.nspname AS schema, g.rolname AS role, a.privilege_type AS privilege, a.is_grantable AS grantable
FROM pg_namespace n
CROSS JOIN LATERAL aclexplode(coalesce(n.nspacl, acldefault('n', n.nspowner))) a
JOIN pg_roles g ON g.oid = a.grantee
WHERE {USER_SCHEMA} AND {_not_extension('pg_namespace', 'n.oid')} AND {SHOWN_ROLE}
"""

# Whole-object grants (column NULL), column grants (pg_attribute.attacl), and EXECUTE.
OBJECT_PRIVILEGES = f"""
SELECT n.nspname AS schema, c.relname::text AS object, c.relkind::text AS relkind, NULL::name AS column_name,
       0 AS position, g.rolname AS role, a.privilege_type AS privilege, a.is_grantable AS grantable
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
CROSS JOIN LATERAL aclexplode(coalesce(
    c.relacl, acldefault(CASE WHEN c.relkind = 'S' THEN 's' ELSE 'r' END::"char", c.relowner))) a
JOIN pg_roles g ON g.oid = a.grantee
WHERE c.relkind IN ('r', 'p', 'f', 'v', 'm', 'S') AND NOT c.relispartition
  AND {USER_SCHEMA} AND {_not_extension('pg_class', 'c.oid')} AND {SHOWN_ROLE}
UNION ALL
SELECT n.nspname, c.relname, c.relkind::text, t.attname, t.attnum, g.rolname, a.privilege_type, a.is_grantable
FROM pg_attribute t JOIN pg_class c ON c.oid = t.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
CROSS JOIN LATERAL aclexplode(t.attacl) a
JOIN pg_roles g ON g.oid = a.grantee
WHERE t.attacl IS NOT NULL AND t.attnum > 0 AND NOT t.attisdropped AND NOT c.relispartition
  AND {USER_SCHEMA} AND {_not_extension('pg_class', 'c.oid')} AND {SHOWN_ROLE}
UNION ALL
SELECT n.nspname, p.proname || '(' || pg_get_function_identity_arguments(p.oid) || ')', 'routine', NULL, 0,
       g.rolname, a.privilege_type, a.is_grantable
FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
CROSS JOIN LATERAL aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) a
JOIN pg_roles g ON g.oid = a.grantee
WHERE {USER_SCHEMA} AND {_not_extension('pg_proc', 'p.oid')} AND {SHOWN_ROLE}
"""

# Tables with row-level security on, or with policies (which do nothing while it is off).
ROW_SECURITY = f"""
SELECT n.nspname AS schema, c.relname AS table, c.relrowsecurity AS enabled, c.relforcerowsecurity AS forced,
       p.polname AS policy, p.polcmd::text AS command, p.polpermissive AS permissive,
       ARRAY(SELECT CASE WHEN o = 0 THEN 'PUBLIC' ELSE pg_get_userbyid(o)::text END
             FROM unnest(p.polroles) o) AS roles
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_policy p ON p.polrelid = c.oid
WHERE (c.relrowsecurity OR p.oid IS NOT NULL) AND NOT c.relispartition
  AND {USER_SCHEMA} AND {_not_extension('pg_class', 'c.oid')}
"""

HISTORY_EXISTS = "SELECT to_regclass('public.schema_history') IS NOT NULL"
HISTORY = "SELECT version, filename FROM public.schema_history ORDER BY version"

QUERIES = {"schemas": SCHEMAS, "relations": RELATIONS, "routines": ROUTINES, "triggers": TRIGGERS,
           "dependencies": DEPENDENCIES, "schema_privileges": SCHEMA_PRIVILEGES,
           "object_privileges": OBJECT_PRIVILEGES, "row_security": ROW_SECURITY}


def describe(conn: psycopg.Connection) -> Description:
    """The catalog of the connected database as plain, JSON-ready rows, in no order.

    Runs in a transaction of its own (a savepoint inside the caller's, whose search path it
    then pins to pg_catalog until that transaction ends)."""
    with wrap_exceptions(conn), conn.transaction():
        conn.execute(PIN_SEARCH_PATH)
        cursor = conn.cursor(row_factory=dict_row)
        description = {key: cursor.execute(query).fetchall() for key, query in QUERIES.items()}
        description["migrations"] = _migrations(conn)
        return description


def _migrations(conn: psycopg.Connection) -> list[Row]:
    """The applied migrations (schema_history), each with its file's phase, mode and purpose."""
    from conveyor.db.migrate import discover

    if conn.execute(HISTORY_EXISTS).fetchone() == (False,):
        return []
    files = {m.version: m for m in discover()}
    rows = []
    for version, filename in conn.execute(HISTORY).fetchall():
        known = files.get(version)
        rows.append({"version": version, "filename": filename, "phase": known.phase if known else "?",
                     "transactional": known.transactional if known else None,
                     "purpose": known.purpose if known else "(no file for this version in this release)"})
    return rows


# -- the Markdown ---------------------------------------------------------------------------

INTRO = """\
# Database

Generated by `make docs-db` from the PostgreSQL catalog of a freshly migrated database
(`conveyor.db.catalog`; `conveyor db docs --check FILE` compares a file with any database).
Do not edit it by hand: change the migrations and run `make docs-db`;
`tests/integration/test_database_docs.py` fails while the two disagree.

Every schema but PostgreSQL's own is described, whoever owns its objects; objects that belong
to an extension are left out. Partitions are not listed anywhere, since they come and go with
the calendar: a partitioned table shows its partition key (and its comment, how its partitions
are made), and what a partition or one of its indexes depends on is shown on the partitioned table.

The dependencies are PostgreSQL's own record of them (`pg_depend`, with `pg_constraint` for
foreign keys, `pg_trigger` for triggers, `pg_rewrite` for views). Function bodies are not in
it: PL/pgSQL, and SQL written as a string, is parsed only when the function runs, so which
tables a function reads or writes, or which functions it calls, appears nowhere below
(only SQL bodies written as `BEGIN ATOMIC` are recorded).
"""

MIGRATIONS_INTRO = """\
What `conveyor db migrate` applied to this database, in order, and why (each file's first comment
paragraph). `conveyor db status --json` adds who applied each one, when, from which host and with
which Conveyor version, how long it took and how many times it waited out a lock
(docs/operations.md, "Migrations without downtime"). A contract step is applied only by
`conveyor db migrate --contract` on a database that already had migrations."""

RELKINDS = {"r": "table", "p": "partitioned table", "f": "foreign table", "v": "view",
            "m": "materialized view", "S": "sequence", "routine": "routine"}
PROKINDS = {"f": "function", "p": "procedure", "a": "aggregate", "w": "window function"}
POLICY_COMMANDS = {"r": "SELECT", "a": "INSERT", "w": "UPDATE", "d": "DELETE", "*": "ALL"}
PRIVILEGE_ORDER = ("SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE", "REFERENCES", "TRIGGER", "USAGE",
                   "CREATE", "EXECUTE")
# What an owner holds by default, printed as ALL (tables and views, sequences).
EVERYTHING = {"table": set(PRIVILEGE_ORDER[:7]), "sequence": {"SELECT", "UPDATE", "USAGE"}}
TABLE_EDGES = {"foreign key": "-->|FK|", "reads": "-.->|reads|"}
TABLE_LIKE = ("r", "p", "f", "v", "m")


def render_markdown(description: Description) -> str:
    """``description`` (from :func:`describe`) as Markdown: sorted, the same text for the same catalog."""
    schemas = sorted(description["schemas"], key=lambda s: s["name"])
    parts = [INTRO, *_overview(description, schemas)]
    for schema in schemas:
        parts += _schema_section(description, schema)
    parts += _dependencies(description["dependencies"])
    parts += _mermaid(description)
    parts += _privileges(description)
    parts += _migration_log(description.get("migrations", []))
    return "\n".join(parts).rstrip("\n") + "\n"


def _migration_log(rows: list[Row]) -> list[str]:
    """Every applied migration with its purpose (the first comment paragraph of its file)."""
    if not rows:
        return []
    body = [[str(r["version"]), _code(r["filename"]), r["phase"],
             {True: "one transaction", False: "statement by statement", None: "?"}[r["transactional"]],
             _cell(r["purpose"])] for r in sorted(rows, key=lambda r: r["version"])]
    return ["## Migrations", "", MIGRATIONS_INTRO, "",
            *_table(["version", "file", "phase", "applied", "purpose"], body), ""]


def _table(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(_cell(value) for value in row) + " |" for row in rows]
    return [*lines, ""]


def _cell(text: str | None) -> str:
    return " ".join((text or "").split()).replace("|", "\\|")


def _code(name: str) -> str:
    return f"`{name}`"


def _in(rows: list[Row], schema: str) -> list[Row]:
    return [row for row in rows if row["schema"] == schema]


def _overview(description: Description, schemas: list[Row]) -> list[str]:
    counted = ("relations", "routines", "triggers")
    rows = [[_code(s["name"]), *(str(len(_in(description[k], s["name"]))) for k in counted), s["comment"]]
            for s in schemas]
    return ["## Schemas", "", *_table(["schema", "relations", "routines", "triggers", "comment"], rows)]


def _schema_section(description: Description, schema: Row) -> list[str]:
    name = schema["name"]
    lines = [f"## Schema `{name}`", ""] + ([_cell(schema["comment"]), ""] if schema["comment"] else [])
    relations = sorted(_in(description["relations"], name), key=lambda r: r["name"])
    lines += _group("Tables", ["table", "kind", "partition key", "comment"],
                    [[_code(r["name"]), RELKINDS[r["relkind"]], r["partition_key"], r["comment"]]
                     for r in relations if r["relkind"] in TABLE_LIKE[:3]])
    lines += _group("Views", ["view", "kind", "comment"],
                    [[_code(r["name"]), RELKINDS[r["relkind"]], r["comment"]]
                     for r in relations if r["relkind"] in TABLE_LIKE[3:]])
    lines += _group("Sequences (not owned by a column)", ["sequence", "comment"],
                    [[_code(r["name"]), r["comment"]] for r in relations if r["relkind"] == "S"])
    lines += _group("Functions and procedures", ["routine", "kind", "returns", "language", "security", "comment"],
                    [_routine(r) for r in sorted(_in(description["routines"], name), key=lambda r: r["name"])])
    triggers = sorted(_in(description["triggers"], name), key=lambda t: (t["table"], t["name"]))
    lines += _group("Triggers", ["table", "trigger", "fires", "function", "comment"],
                    [[_code(t["table"]), _code(t["name"]), t["fires"], _code(t["function"]), t["comment"]]
                     for t in triggers])
    return lines


def _group(title: str, headers: Sequence[str], rows: list[list[str]]) -> list[str]:
    return [f"### {title}", "", *_table(headers, rows)] if rows else []


def _routine(row: Row) -> list[str]:
    security = "SECURITY DEFINER" if row["security_definer"] else ""
    return [_code(row["name"]), PROKINDS.get(row["prokind"], row["prokind"]), row["returns"], row["language"],
            security, row["comment"]]


def _dependencies(rows: list[Row]) -> list[str]:
    keys = ("object_schema", "object_name", "ref_schema", "ref_name", "how")
    ordered = sorted(rows, key=lambda row: tuple(row[key] for key in keys))
    body = [(_end(row, "object"), _end(row, "ref"), row["how"]) for row in ordered]
    return ["## Dependencies", "", *_table(["object", "depends on", "how"], body)]


def _end(row: Row, end: str) -> str:
    return f"`{row[end + '_schema']}.{row[end + '_name']}` ({RELKINDS[row[end + '_kind']]})"


def _mermaid(description: Description) -> list[str]:
    """Tables and views, a subgraph per schema; the foreign keys and what views read."""
    lines = ["### Tables and views", "", "```mermaid", "flowchart LR"]
    relations = [r for r in description["relations"] if r["relkind"] in TABLE_LIKE]
    for schema in sorted({r["schema"] for r in relations}):
        names = sorted(r["name"] for r in relations if r["schema"] == schema)
        lines += [f'    subgraph {_node_id("schema", schema)}["{schema}"]',
                  *(f'        {_node_id(schema, name)}["{name}"]' for name in names), "    end"]
    edges = {(_node_id(r["object_schema"], r["object_name"]), TABLE_EDGES[r["edge"]],
              _node_id(r["ref_schema"], r["ref_name"]))
             for r in description["dependencies"]
             if r["edge"] in TABLE_EDGES and r["object_kind"] in TABLE_LIKE and r["ref_kind"] in TABLE_LIKE}
    lines += [f"    {source} {arrow} {target}" for source, arrow, target in sorted(edges)]
    return [*lines, "```", ""]


def _node_id(schema: str, name: str) -> str:
    return re.sub(r"\W", "_", f"{schema}__{name}", flags=re.ASCII)


PRIVILEGES_INTRO = """\
Every role that holds a privilege, but superusers (they bypass every check), PUBLIC and
PostgreSQL's predefined `pg_*` roles. An owner holds every privilege on what it owns (`ALL`);
`*` marks a privilege held with the grant option; `SELECT (a, b)` is granted on those columns only.
"""


def _privileges(description: Description) -> list[str]:
    return ["## Privileges", "", PRIVILEGES_INTRO, *_schema_access(description),
            *_object_privileges(description["object_privileges"]), *_row_security(description["row_security"])]


def _schema_access(description: Description) -> list[str]:
    on_schema = _grouped(description["schema_privileges"], ("schema", "role"))
    objects: dict[tuple[str, str, str], set[str]] = defaultdict(set)
    for row in description["object_privileges"]:
        objects[(row["schema"], row["role"], "routine" if row["relkind"] == "routine" else "relation")].add(
            row["object"])
    pairs = sorted(set(on_schema) | {(schema, role) for schema, role, _kind in objects})
    rows = [[_code(schema), _code(role), _privilege_text(on_schema.get((schema, role), []), "schema"),
             str(len(objects.get((schema, role, "relation"), ()))),
             str(len(objects.get((schema, role, "routine"), ())))] for schema, role in pairs]
    return ["### Who may touch which schema", "",
            *_table(["schema", "role", "on the schema", "relations with a grant", "routines with a grant"], rows)]


def _object_privileges(rows: list[Row]) -> list[str]:
    grouped = _grouped(rows, ("schema", "object", "relkind", "role"))
    lines = []
    for schema in sorted({key[0] for key in grouped}):
        keys = sorted((key for key in grouped if key[0] == schema), key=lambda k: (k[2] == "routine", k[1], k[3]))
        body = [[_code(obj), RELKINDS[relkind], _code(role), _grants(grouped[(s, obj, relkind, role)], relkind)]
                for s, obj, relkind, role in keys]
        lines += [f"### Privileges in `{schema}`", "", *_table(["object", "kind", "role", "privileges"], body)]
    return lines


def _grants(rows: list[Row], relkind: str) -> str:
    """Whole-object privileges, then column grants as ``SELECT (a, b)``."""
    kind = {"S": "sequence", "routine": "routine"}.get(relkind, "table")
    parts = [_privilege_text([r for r in rows if r["column_name"] is None], kind)]
    columns = _grouped([r for r in rows if r["column_name"] is not None], ("privilege", "grantable"))
    for privilege, grantable in sorted(columns, key=lambda key: _privilege_rank(key[0])):
        names = [r["column_name"] for r in sorted(columns[(privilege, grantable)], key=lambda r: r["position"])]
        parts.append(f"{privilege}{'*' if grantable else ''} ({', '.join(names)})")
    return ", ".join(part for part in parts if part)


def _privilege_text(rows: list[Row], kind: str) -> str:
    grantable = {r["privilege"] for r in rows if r["grantable"]}
    plain = {r["privilege"] for r in rows} - grantable
    return ", ".join([*_collapsed(plain, kind), *(f"{p}*" for p in _collapsed(grantable, kind))])


def _collapsed(held: set[str], kind: str) -> list[str]:
    everything = EVERYTHING.get(kind)
    if everything and everything <= held:
        return ["ALL", *sorted(held - everything, key=_privilege_rank)]
    return sorted(held, key=_privilege_rank)


def _privilege_rank(privilege: str) -> tuple[int, str]:
    known = privilege in PRIVILEGE_ORDER
    return (PRIVILEGE_ORDER.index(privilege) if known else len(PRIVILEGE_ORDER), privilege)


def _row_security(rows: list[Row]) -> list[str]:
    ordered = sorted(rows, key=lambda r: (r["schema"], r["table"], r["policy"] or ""))
    body = [[_code(f"{r['schema']}.{r['table']}"), _rls_state(r), _code(r["policy"]) if r["policy"] else "",
             _policy_command(r), ", ".join(sorted(r["roles"]))] for r in ordered]
    return ["### Row-level security", "", *_table(["table", "row-level security", "policy", "for", "roles"], body)]


def _rls_state(row: Row) -> str:
    if not row["enabled"]:
        return "off (its policies apply to nobody)"
    return "on, forced on the owner too" if row["forced"] else "on"


def _policy_command(row: Row) -> str:
    if row["command"] is None:
        return ""
    command = POLICY_COMMANDS.get(row["command"], str(row["command"]))
    return command if row["permissive"] else f"{command} (restrictive)"


def _grouped(rows: list[Row], keys: Sequence[str]) -> dict[tuple, list[Row]]:
    grouped: dict[tuple, list[Row]] = defaultdict(list)
    for row in rows:
        grouped[tuple(row[key] for key in keys)].append(row)
    return dict(grouped)
