"""Batch jobs: many questions over many documents, resumable, for cron.

    jobs.py       Job (plain data), job files, question files
    results.py    the results file: one fsynced JSON line per finished job; resume
    work.py       Work (a job plus everything needed to run it) and run_work(): a pure function
    executors.py  Executor: LocalExecutor (threads); RayExecutor (executors_ray.py, rlm[ray])
    driver.py     Batch: ingest shared documents once, dispatch, cap cost, record, report
"""
