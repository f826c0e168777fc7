# Metadata lives in setup.cfg; this shim keeps `pip install -e .` working with old tools.
from setuptools import setup

setup()
