"""Fuzzing every decoder of outside input: ``python -m bench.fuzz [--examples N]``.

``inputs`` builds malformed payloads (hypothesis strategies), ``targets`` feeds them to the real
handlers of a running system, ``run`` counts what each answered; tests reuse all three with fewer examples.
"""
