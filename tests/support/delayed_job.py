"""The ``greybox`` CLI with one task of the job held at its start, for the fault drills.

    python -m tests.support.delayed_job TASK_ID SECONDS render TEMPLATE --out DIR ...

Runs :func:`render_farm.cli.main` on the arguments after SECONDS, with the job's task ``TASK_ID``
(e.g. ``passes/0003-0004``) wrapped by :func:`tests.support.drill_tasks.delay_task`: its first
attempt sleeps SECONDS in the worker before it runs, every other task runs at full speed.
"""

from __future__ import annotations

import signal
import sys


def main(argv: list[str]) -> int:
    task_id, seconds, *cli_args = argv
    # Ctrl-C raises KeyboardInterrupt as in a terminal, even when the suite was started in the
    # background (a shell starts background jobs with SIGINT ignored, and children inherit that)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    import render_farm.job_execution as job_execution
    from tests.support.drill_tasks import delay_task

    plain_build_graph = job_execution.build_graph

    def build_graph(*args, **kwargs):
        graph = plain_build_graph(*args, **kwargs)
        delay_task(graph, task_id, float(seconds))
        return graph

    job_execution.build_graph = build_graph
    from render_farm.cli import main as cli_main

    return cli_main(cli_args)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
