"""Dataset, training and export logic for detbot, usable without Telegram.

The packages follow the data: ``data`` (a user's zip -> a checked, split, labelled
workspace with TFRecords) -> ``train`` (a job folder: config, checkpoints, events,
metrics) -> ``export`` (a checked model archive, and predictions with it); ``cli``
is the command line over all three. Dependencies point one way along that path;
``data`` never imports TensorFlow or ``train``, so dataset steps run in seconds.

Shared by all of them, one small module each: ``errors`` (the exceptions, with a
``kind`` the bot words), ``files`` (whole-or-nothing writes), ``label_map`` (the
``label_map.pbtxt`` format), ``drawing`` (boxes as users see them) and ``fetch``
(http(s) downloads that cannot be pointed at private addresses).
"""
