"""``make reproduce``: the MAML and DTC papers' tables on phantoms, several seeds per arm, with verdicts.

* ``profiles.py``: the sizes and budgets of a run (``full``: what ``make reproduce`` runs on a
  2-core CPU; ``smoke``: every code path in minutes);
* ``arms.py``: every trained arm and every evaluation of both papers, as ``mmseg train`` /
  ``mmseg evaluate`` command lines;
* ``data.py``: the phantom case lists (training, validation, test) written once per work folder;
* ``runner.py``: the jobs (train, evaluate) run as child processes, resumable, two side by side,
  each with one thread, with their CPU time recorded; ``--max-minutes`` ends a chunk;
* ``ensemble.py``: MS+Ensemble's evaluation (mean of the single-phase U-Nets' probabilities);
* ``timing.py``: CPU seconds per iteration of every arm from a short run, and the projected cost;
* ``results.py``: reading finished runs back (per-case metrics, validation curves);
* ``report.py`` and ``figures.py``: the verdict per claim and ``docs/results.md`` with its PNGs.

``tools/reproduce.py`` is the command line.
"""
