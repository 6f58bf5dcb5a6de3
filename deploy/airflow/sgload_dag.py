"""sgload on Airflow: sync SendGrid objects, flush the spool to the bucket,
then check the run, every 15 minutes.

Each sgload command prints its summary as ONE JSON line with --json (also
when it fails: {"error": ..., "hint": ..., "exit_code": N}), and
BashOperator pushes the last line of stdout to XCom, so downstream tasks
read the summary with json.loads. Runs on the machine (or a worker pinned
to it) whose local disk holds the spool that `sgload serve` writes.

Exit codes: 0 done; 3 sync partly failed (fails the task, the summary names
the collections); 4 another flush holds the spool (harmless: skipped).
"""

import json
from datetime import datetime, timedelta

from airflow import DAG
from airflow.exceptions import AirflowException
from airflow.operators.bash import BashOperator
from airflow.operators.python import PythonOperator

SPOOL = "/var/lib/sgload"
BUCKET = "gs://acme-sendgrid"
PREFIX = "sendgrid"


def check_flush(ti, **_):
    """Read flush's one-line JSON summary from XCom and log what it did."""
    summary = json.loads(ti.xcom_pull(task_ids="flush"))
    if "error" in summary:  # printed when flush failed before its summary
        raise AirflowException(f"flush: {summary['error']} ({summary.get('hint', '')})")
    print(
        f"flushed {summary['events']} events into {summary['rows']} rows, "
        f"{summary['duplicates']} duplicates dropped, {len(summary['manifests'])} manifests"
    )
    if summary["rows_with_errors"]:
        print(f"warning: {summary['rows_with_errors']} rows with _errors")
    return summary["rows"]


with DAG(
    dag_id="sgload",
    description="SendGrid events and objects into the bucket as Parquet",
    schedule=timedelta(minutes=15),
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    default_args={"retries": 2, "retry_delay": timedelta(minutes=2)},
    tags=["sgload", "sendgrid"],
) as dag:
    sync = BashOperator(
        task_id="sync",
        bash_command=f"sgload sync --json --spool {SPOOL}",
        env={"SENDGRID_API_KEY": "{{ var.value.sendgrid_api_key }}"},
        append_env=True,
    )
    flush = BashOperator(
        task_id="flush",
        bash_command=f"sgload flush --json --spool {SPOOL} --bucket {BUCKET} --prefix {PREFIX}",
        # Another flush still running: nothing was done, nothing is wrong.
        skip_on_exit_code=4,
    )
    check = PythonOperator(task_id="check_flush", python_callable=check_flush)
    # A monitoring check of its own: exits 6 (fails the task) past thresholds.
    status = BashOperator(
        task_id="status",
        bash_command=f"sgload status --json --spool {SPOOL} --bucket {BUCKET} --prefix {PREFIX}",
    )

    sync >> flush >> check >> status
