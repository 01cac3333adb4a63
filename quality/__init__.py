"""The quality harness: scripted French callers through the AudioSocket port, judged end to end.

`python -m quality` (`make quality`); see `quality/__main__.py`.
"""
