"""autoclint: our classifier as a tool for your own data (fit, predict, zip, convert).

The AutoDL harness (autodl/) runs any submission and never imports our model; this package
is the application around our submission (model.py over skeleton/, configs/) and may.
"""
import os

# The checkout that holds model.py, skeleton/, configs/ and models/ (`pip install -e .`).
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
