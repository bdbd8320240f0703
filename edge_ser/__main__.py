"""``python -m edge_ser``: the same command line as the ``edge-ser`` script."""

from edge_ser.cli import run

if __name__ == "__main__":
    run()
