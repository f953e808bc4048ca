"""The training child: ``python -m lsbackend.train_job``, started by ``training.run_in_child``.

Reads two pickles from stdin: the parent's ``sys.path`` with the file
descriptor to answer on and the niceness to run at, then the job (a
``trainer.TrainingJob``); builds a ``Trainer`` for it (not a ``Backend``: no
queue, no MODEL_URI loaded unless this training starts from it), trains and
sends back the ``TrainingOutcome``. Its exit code is 0 whenever the training
returned; anything else means it stopped before (the parent records that).
"""

from __future__ import annotations

import os
import pickle
import sys


def main() -> int:
    stdin = sys.stdin.buffer
    # The serving process counts this training from its outcome; a child writing prometheus' shared
    # files too would count it twice (prometheus_client reads this variable when it is imported).
    os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
    sys.path[:], result_fd, nice = pickle.load(stdin)  # before the job: unpickling it imports model.py from there
    os.set_inheritable(result_fd, False)  # processes fit may start must not hold the parent's pipe open
    # Below the serving workers: on a busy CPU the scheduler then runs /predict first and the fit
    # takes what is left. Before the job is unpickled: that imports the model's libraries, whose
    # thread pools (OpenBLAS, OpenMP) start then, and Linux keeps a niceness per thread, handed
    # only to threads started afterwards.
    os.nice(nice)
    job = pickle.load(stdin)
    from lsbackend.app import build_trainer  # after sys.path is the parent's
    from lsbackend.metrics import Metrics

    trainer = build_trainer(job.settings, job.model_class, Metrics())  # the parent counts the outcome
    result = trainer.run_job(job)
    with os.fdopen(result_fd, "wb") as out:
        out.write(pickle.dumps(result, protocol=5))
    return 0


if __name__ == "__main__":
    sys.exit(main())
