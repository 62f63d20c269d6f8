"""Amaranth 0.5 gateware of the accelerator. Every data path is a ``lib.stream``."""
