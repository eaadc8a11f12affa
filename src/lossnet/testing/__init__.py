"""Fabricators of tiny datasets in the official on-disk formats, for tests and smoke runs.

* :mod:`~lossnet.testing.fakes` -- STL-10 binaries and SVHN ``.mat`` files;
* :mod:`~lossnet.testing.bapps` -- BAPPS 2AFC/JND folders;
* :mod:`~lossnet.testing.roads` -- Massachusetts Roads tiles.

Nothing here is used by the library itself; the real readers live in :mod:`lossnet.data`.
"""
