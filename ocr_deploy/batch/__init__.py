"""`ocr-deploy batch`: many images and videos segmented on Ray (a laptop or a cluster),
resumable, with one Parquet row per frame. Ray is imported only when a batch runs.

plan.py: inputs -> WorkItems and output names; table.py: results/errors tables and what is done;
workers.py: what runs on the workers; cluster.py: Ray itself; runner.py: the run.
"""

from ocr_deploy.batch.plan import BatchInputError, WorkItem, plan_items, read_manifest
from ocr_deploy.batch.runner import STOP_AFTER_ENV, BatchOptions, BatchSummary, model_digest, run_batch
from ocr_deploy.batch.table import ERRORS_NAME, RESULTS_NAME, ResultStore
from ocr_deploy.batch.workers import CRASH_ON_ENV, WorkerConfig

__all__ = ["CRASH_ON_ENV", "ERRORS_NAME", "RESULTS_NAME", "STOP_AFTER_ENV", "BatchInputError", "BatchOptions",
           "BatchSummary", "ResultStore", "WorkItem", "WorkerConfig", "model_digest", "plan_items", "read_manifest",
           "run_batch"]
