"""Repository-wide pytest settings (loaded for tests/ and for ``pytest --nbval solutions/...``).

Visible self-checks in the notebooks report and carry on by default (a learner's Run All reaches the end, see
:mod:`mem_tutorial.grading.selfcheck`); under pytest they raise, so nbval stays strict: a solution notebook whose
visible check fails is an error, not a printed line. Kernels started by nbval inherit this environment. A test
that wants the learner's behaviour (tests/test_learner_path.py) removes the variable for its own kernels.
"""

import os

os.environ.setdefault("MEM_TUTORIAL_SELFCHECK", "raise")
