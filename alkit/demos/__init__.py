"""Runnable end-to-end demos behind the ``alkit`` command (``alkit demo ...``, ``alkit kfold``).

Each demo is a module with ``main(argv=None)`` (so ``python -m alkit.demos.<name>`` works), ``add_arguments(parser)``
(shared with :mod:`alkit.cli`) and ``run(args)`` returning what it measured, so a notebook or a test can call it
without a subprocess.

* :mod:`alkit.demos.hymenoptera` - Lightning Flash's ants-vs-bees active-learning demo, on alkit.
* :mod:`alkit.demos.kfold` - ``kfold_fit`` on scikit-learn's digits or on a folder of class-per-folder images.
* :mod:`alkit.demos.digits` - the digits data module and MLP the k-fold demo (and notebook 02) use.
"""
