"""Dataset, training and export logic for detbot, usable without Telegram.

Importing this package never imports TensorFlow: dataset steps run in seconds
without it; only the training and export modules load it.
"""
