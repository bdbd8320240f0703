"""edge-ser: offline speech emotion recognition for Raspberry Pi-class devices.

The device path (this package) needs only NumPy and a TFLite interpreter.
"""

__version__ = "0.1.0"
