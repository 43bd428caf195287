from setuptools import setup

# Everything lives in setup.cfg; this file exists for Beam's `--setup_file ./setup.py` (Dataflow workers build
# and install the package from it) and for tools that still look for setup.py.
setup()
