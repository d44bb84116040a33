"""What every layer of the project shares (classifier, services, training): the error hierarchy
(``errors``) and where the shipped models are (``models``). It imports nothing of the project, so
``classifier/`` can depend on it without depending on ``services/`` (tests/unit/test_layers.py)."""
