"""Layer 3: every ModelsLab fetch endpoint as data, declared once in `table.py`.

Adding an endpoint is one row (a class attribute) in `table.py`; both clients, the
simulator, the CLI and the docs' endpoint table follow from it.
"""
