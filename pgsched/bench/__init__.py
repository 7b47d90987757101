"""`pgsched bench`: what users get, measured on a server with production settings.

By default on a private embedded server with stock settings (autovacuum on), created and removed
by the bench; with ``--dsn`` on that server, whose settings are printed with a warning for each
difference from stock. Every figure is per run; the report carries each run and the medians.
Not a test: it asserts nothing about speed, it reports.

The package imports nothing: a bench worker process loads ``pgsched.bench.tasks`` alone, as an application's
worker loads its own tasks. ``pgsched.bench.run`` runs the bench.
"""
