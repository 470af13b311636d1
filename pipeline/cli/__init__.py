"""``python -m pipeline``: the command-line twin of every chat command.

``main`` parses the command line and runs the dataset commands; ``train`` and
``export`` hold the training and export commands; ``tables`` prints results for a
terminal. Each turns ``PipelineError`` into one line and an exit code here, at the edge.
"""
