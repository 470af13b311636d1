"""A trained job -> a checked model archive, and predictions with it.

``archive.export_job`` exports the SavedModel (and TFLite), verifies both in a fresh
process with ``verify`` and zips them with the label map, metrics and a README;
``predict`` loads an archive and runs it on a photo as its user sees it.
"""
