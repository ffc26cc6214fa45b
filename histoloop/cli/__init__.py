from histoloop.cli.main import main

__all__ = ["main"]
