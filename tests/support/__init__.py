"""What the tests and the benchmarks share, kept out of the installed packages.

- :mod:`tests.support.random_weight_models`: tiny (and full-size) diffusion models built from configs
  with random weights, saved in the hub's layout so the real ``from_pretrained`` path loads them.
- :mod:`tests.support.reference_rasteriser`: a numpy rasteriser of a scene into the exact passes,
  the independent implementation the consistency tests build sequences with (and that a test
  checks against Blender's passes).
- :mod:`tests.support.drill_tasks`: farm task functions for scheduling tests and fault drills.

The benchmarks import them with the repository root on ``sys.path``.
"""
