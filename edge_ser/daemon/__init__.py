"""The microphone daemon: ``edge-ser listen`` (real time, unattended) and ``edge-ser devices``.

Data flows one way, each step in its own module::

    sources (mic / WAV / stdin) -> capture (thread + bounded queue) -> service (worker:
    resample -> vad/segmenter -> Classifier) -> events -> sinks (stdout, file, MQTT, ...)

Nothing here imports pyaudio, tomllib or the model until it is needed.
"""
