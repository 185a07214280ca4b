"""Tools beside the service, run from a source checkout: never installed, never in the image.

- :mod:`tools.bench`: the benchmark, ``python -m service bench`` (or ``python -m tools.bench``);
  ``python -m tools.bench.profile`` samples the loaded workers with py-spy.
- :mod:`tools.replicas`: N replicas behind nginx without containers,
  ``python -m tools.replicas --replicas 3`` (docs/deployment.md), rendering
  ``deploy/nginx.conf.template`` with :mod:`tools.nginx`.
- :mod:`tools.ports`: a free loopback port, for the servers these start and for the tests.

Why here: they drive the service from outside (subprocesses, ``hey``, gunicorn with Flask,
nginx, py-spy) and need what only a checkout has (``deploy/``, the dev extras), so they are not
part of the importable ``service`` package, the wheel (pyproject's ``packages.find`` includes
``service*`` and ``export*`` only; ``tests/tools/test_wheel.py`` checks) or the container image
(the Dockerfile copies ``service/``). Not in ``deploy/``: that folder holds the files a
deployment consumes (compose, Kubernetes, nginx template) and is left out of the image's build
context; these are programs that use them. ``python -m`` and pytest (``pythonpath = ["."]``)
put the checkout first on ``sys.path``, which is how ``tools`` is found; the dependency points
one way only: ``tools`` imports ``service``, never the reverse.
"""
