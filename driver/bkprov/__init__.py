"""bkprov: install any archived BuildKit release and prove it with a real build."""

__version__ = "0.1.0"
