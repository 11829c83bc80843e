"""Report pages: a results table as a standalone HTML page.

Snakemake's HTML report shows images and HTML inline but offers a CSV only as a download, so every
results table also gets a small page that the report embeds (``workflow/rules/report.smk``).
"""

from __future__ import annotations

import html

PAGE_STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #1f2328; }
h1 { font-size: 1.2em; margin-bottom: 0.2em; }
p { margin-top: 0; color: #57606a; }
table { border-collapse: collapse; font-size: 0.85em; }
th, td { border: 1px solid #d0d7de; padding: 0.25em 0.6em; text-align: right; }
th { background: #f6f8fa; position: sticky; top: 0; }
tr:nth-child(even) td { background: #fbfcfd; }
"""


def table_page(table_name: str, run_name: str, benchmark_label: str, body: str, rows: int) -> str:
    """The HTML page of one table: a title naming the table and the run, then the table itself."""
    title = html.escape(f"{table_name} — run {run_name}")
    subtitle = html.escape(f"{rows} rows · benchmark: {benchmark_label} · from tables/{table_name}.csv")
    return (
        '<!DOCTYPE html>\n<html><head><meta charset="utf-8">'
        f"<title>{title}</title><style>{PAGE_STYLE}</style></head>\n"
        f"<body><h1>{title}</h1><p>{subtitle}</p>\n{body}\n</body></html>\n"
    )
