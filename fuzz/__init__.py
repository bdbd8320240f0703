"""Fuzz targets for the inputs a device takes from strangers: WAV bytes, and HTTP requests.

Targets: ``wav`` (every source and reader agrees), ``load_audio`` (decode + resample,
bounded), ``classify`` (the whole pipeline agrees across sources) and ``http`` (the
dashboard server on loopback); see :mod:`fuzz.targets`.

Layout (one job per module):

* :mod:`fuzz.generate` -- seeded generators of structured inputs (WAV files whose every
  header field may lie, HTTP requests with hostile framing) and a byte mutator. One
  generator feeds both engines: it writes the seed corpus for atheris and is the
  hypothesis strategy (``st.randoms()`` in, bytes out), so the two explore the same space.
* :mod:`fuzz.targets` -- the properties checked for one input. Anything else than the
  documented error (:class:`~edge_ser.errors.EdgeSerError`) is a finding, and so is a
  broken invariant (sources that disagree, a rate that is not the asked one, samples
  outside [-1, 1], an HTTP 500, a non-JSON error, an injected response header, ...).
* :mod:`fuzz.worker` -- one target in one process, under an address-space cap
  (``resource.setrlimit``), with atheris (coverage-guided, libFuzzer) or hypothesis;
  findings are de-duplicated and written as they happen (input, hex, traceback).
* ``python -m fuzz`` (:mod:`fuzz.__main__`) -- the campaign: every target in turn, a
  worker restarted if it dies (hang, crash), executions and findings printed at the end.

``make fuzz`` runs a long campaign (``FUZZ_SECONDS``, default 600, shared by the targets);
``tests/test_fuzz.py`` runs a bounded number of examples of each target in ``make test``.
"""
