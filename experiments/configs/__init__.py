"""ml_collections presets for experiments/find_ticket.py (``--config=experiments/configs/<name>.py``)."""
