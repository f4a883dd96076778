"""Built-in example functions for the ``python`` handler (reference 000 and demos).

``validate_schema``, ``clean_dataframe`` and ``transform_data`` make reference 000's sample
workflow run as written, on a small deterministic table; ``rollback_*`` are its compensation
functions. ``fail``, ``flaky`` and ``sleep`` exercise retries, compensation and timeouts.

They are registered as built-ins: a user function with the same name takes precedence.
Tabular data travels between nodes as ``{"rows": [{column: value}, ...]}``.
"""

from __future__ import annotations

import asyncio
import csv
import io
from collections import Counter
from collections.abc import Callable
from typing import Any, TypeVar

from orchestrion.errors import ErrorCategory, PermanentNodeError, TransientNodeError
from orchestrion.handlers.base import NodeContext
from orchestrion.handlers.python import function_registry

__all__ = [
    "SAMPLE_TABLE",
    "clean_dataframe",
    "fail",
    "flaky",
    "rollback_finalize",
    "rollback_initialize",
    "rollback_process",
    "rollback_validate",
    "sleep",
    "transform_data",
    "validate_schema",
]

F = TypeVar("F", bound=Callable[..., Any])

# Deliberately a little dirty (padding, mixed case, gaps) so that cleaning visibly does work.
SAMPLE_TABLE: tuple[dict[str, Any], ...] = (
    {"id": 1, "value": 10.5, "status": " Active ", "region": "eu"},
    {"id": 2, "value": None, "status": "inactive", "region": "us"},
    {"id": 3, "value": 7.25, "status": "ACTIVE", "region": "us"},
    {"id": 4, "value": 3.0, "status": "pending", "region": "eu"},
    {"id": 5, "value": 12.0, "status": None, "region": "apac"},
    {"id": 6, "value": 4.75, "status": "Inactive", "region": "apac"},
)


def _example(name: str | None = None) -> Callable[[F], F]:
    def decorate(func: F) -> F:
        function_registry.register(name or func.__name__, func, builtin=True)
        return func

    return decorate


def _upstream_rows(ctx: NodeContext) -> tuple[str | None, list[dict[str, Any]] | None]:
    """The first dependency output that carries ``rows`` (or ``records``)."""
    for dep in ctx.dependencies:
        output = ctx.outputs.get(dep)
        if isinstance(output, dict):
            for key in ("rows", "records"):
                rows = output.get(key)
                if isinstance(rows, list) and all(isinstance(row, dict) for row in rows):
                    return dep, rows
    return None, None


@_example()
def validate_schema(
    ctx: NodeContext,
    required_columns: list[str] | None = None,
    rows: list[dict[str, Any]] | None = None,
    **params: Any,
) -> dict[str, Any]:
    """Check that every row (given, or from upstream) has the required columns."""
    source: str | None = "params" if rows is not None else None
    if rows is None:
        source, rows = _upstream_rows(ctx)
    checked = list(required_columns or [])
    missing: dict[str, int] = {}
    for row in rows or []:
        for column in checked:
            if column not in row:
                missing[column] = missing.get(column, 0) + 1
    if missing:
        summary = ", ".join(f"'{col}' ({count} rows)" for col, count in sorted(missing.items()))
        raise PermanentNodeError(
            f"schema validation failed: missing column {summary}",
            category=ErrorCategory.VALIDATION,
            details={"missing": missing, "source": source},
        )
    result: dict[str, Any] = {
        "valid": True,
        "checked": checked,
        "row_count": len(rows or []),
        "source": source,
        "params": params,
    }
    if rows is not None:
        result["rows"] = rows  # passed on, so later steps can work on validated data
    return result


def _clean_value(value: Any) -> Any:
    return value.strip().lower() if isinstance(value, str) else value


@_example()
def clean_dataframe(
    ctx: NodeContext,
    columns: list[str] | None = None,
    rows: list[dict[str, Any]] | None = None,
    drop_incomplete: bool = True,
    **params: Any,
) -> dict[str, Any]:
    """Keep ``columns``, trim and lower-case text, drop rows with gaps in those columns.

    Works on ``rows`` if given, else on upstream rows, else on the built-in sample table.
    """
    if rows is None:
        _, rows = _upstream_rows(ctx)
    table = [dict(row) for row in (rows if rows is not None else SAMPLE_TABLE)]
    known = sorted({key for row in table for key in row})
    selected = list(columns) if columns else known
    unknown = [column for column in selected if column not in known]
    if table and unknown:
        raise PermanentNodeError(
            f"clean_dataframe: unknown column(s) {unknown} (table has {known})",
            category=ErrorCategory.VALIDATION,
        )
    cleaned: list[dict[str, Any]] = []
    dropped = 0
    for row in table:
        picked = {column: _clean_value(row.get(column)) for column in selected}
        if drop_incomplete and any(value is None or value == "" for value in picked.values()):
            dropped += 1
            continue
        cleaned.append(picked)
    return {"rows": cleaned, "columns": selected, "row_count": len(cleaned), "dropped": dropped}


@_example()
def transform_data(
    ctx: NodeContext,
    output_format: str = "json",
    rows: list[dict[str, Any]] | None = None,
    **params: Any,
) -> dict[str, Any]:
    """Sort rows by id, add each row's share of the total value, emit JSON records or CSV."""
    if rows is None:
        _, rows = _upstream_rows(ctx)
    rows = rows or []
    total = sum(float(row["value"]) for row in rows if isinstance(row.get("value"), int | float))
    records = []
    for row in sorted(rows, key=lambda r: str(r.get("id", ""))):
        record = dict(row)
        value = row.get("value")
        if isinstance(value, int | float) and total:
            record["share"] = round(float(value) / total, 4)
        records.append(record)
    summary = {
        "count": len(records),
        "total_value": round(total, 4),
        "by_status": dict(Counter(str(r.get("status")) for r in records if "status" in r)),
    }
    fmt = output_format.lower()
    if fmt == "json":
        return {"format": "json", "records": records, "summary": summary}
    if fmt == "csv":
        buffer = io.StringIO()
        fields = sorted({key for record in records for key in record})
        writer = csv.DictWriter(buffer, fieldnames=fields, lineterminator="\n")
        writer.writeheader()
        writer.writerows(records)
        return {"format": "csv", "data": buffer.getvalue(), "summary": summary}
    raise PermanentNodeError(
        f"transform_data: unsupported output_format '{output_format}' (use 'json' or 'csv')",
        category=ErrorCategory.CONFIG,
    )


def _rollback(name: str) -> Callable[..., dict[str, Any]]:
    def rollback(ctx: NodeContext, **params: Any) -> dict[str, Any]:
        ctx.logger.info("compensating node %s with %s", ctx.node_id, name)
        return {"rolled_back": ctx.node_id, "compensation": name}

    rollback.__name__ = rollback.__qualname__ = name
    rollback.__doc__ = f"Compensation example: records that node ctx.node_id was undone ({name})."
    function_registry.register(name, rollback, builtin=True)
    return rollback


rollback_initialize = _rollback("rollback_initialize")
rollback_process = _rollback("rollback_process")
rollback_validate = _rollback("rollback_validate")
rollback_finalize = _rollback("rollback_finalize")


@_example()
def fail(
    message: str = "failed on purpose", transient: bool = False, category: str | None = None
) -> None:
    """Always raise: a transient error (retried) or a permanent one (not retried)."""
    if transient:
        raise TransientNodeError(message, category=category)
    raise PermanentNodeError(message, category=category)


@_example()
def flaky(ctx: NodeContext, failures: int = 1, value: Any = None) -> dict[str, Any]:
    """Fail with a transient error on the first ``failures`` attempts, then succeed."""
    if ctx.attempt <= failures:
        raise TransientNodeError(
            f"flaky: attempt {ctx.attempt} fails on purpose ({failures} planned failures)",
            category=ErrorCategory.FLAKY,
        )
    return {"attempt": ctx.attempt, "value": value}


@_example()
async def sleep(seconds: float = 0.1, value: Any = None) -> dict[str, Any]:
    """Sleep without blocking the event loop, then return how long and ``value``."""
    if seconds < 0:
        raise PermanentNodeError("sleep: seconds must be >= 0", category=ErrorCategory.CONFIG)
    await asyncio.sleep(seconds)
    return {"slept": seconds, "value": value}
